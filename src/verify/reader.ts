// A client reading through the read-only path every READ_EVERY_MS, reconnecting after any error, and
// recording every attempt, so the drill can say how long reads were unavailable.
import type pg from 'pg';
import { performance } from 'node:perf_hooks';
import type { ReadAttempt } from './accounting.js';
import { withTimeout } from './writer.js';

const READ_EVERY_MS = 50;
const QUERY_TIMEOUT_MS = 5000;

export class AckReader {
  readonly attempts: ReadAttempt[] = [];
  private stopped = false;
  private done: Promise<void> | null = null;

  constructor(
    private readonly connect: () => Promise<pg.Client>,
    private readonly query: string,
  ) {}

  start(): void {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    let client: pg.Client | null = null;
    while (!this.stopped) {
      const startMs = performance.now();
      try {
        client ??= await withTimeout(this.connect(), QUERY_TIMEOUT_MS);
        await withTimeout(client.query(this.query), QUERY_TIMEOUT_MS);
        this.attempts.push({ startMs, endMs: performance.now(), ok: true });
      } catch {
        this.attempts.push({ startMs, endMs: performance.now(), ok: false });
        const c = client;
        client = null;
        void c?.end().catch(() => undefined);
      }
      await new Promise((r) => setTimeout(r, READ_EVERY_MS));
    }
    await client?.end().catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}
