// A client writing one row per transaction with an increasing id, reconnecting after any error, and
// recording every attempt: when it started and ended (performance.now()) and whether the commit was
// acknowledged. The drill and the benchmarks judge availability and durability from this record.
import type pg from 'pg';
import { performance } from 'node:perf_hooks';
import type { WriteAttempt } from './accounting.js';

const RETRY_DELAY_MS = 20;
/** An INSERT that neither commits nor fails within this long counts as failed (bounds stop()). */
const QUERY_TIMEOUT_MS = 10_000;

export class AckWriter {
  /** Every attempt, in order (times are performance.now()). */
  readonly attempts: WriteAttempt[] = [];
  /** Acknowledged ids and the instant each commit was acknowledged, in order. */
  readonly ackedIds: number[] = [];
  readonly ackedAt: number[] = [];
  /** Instants of failed attempts (failed connect or failed INSERT). */
  readonly failedAt: number[] = [];
  private stopped = false;
  private done: Promise<void> | null = null;
  private nextId: number;

  /** `insert` takes the id as $1, e.g. INSERT INTO bench(id) VALUES ($1); `prepared`: as a named
   * prepared statement (prepared once per connection, as pgx, asyncpg or JDBC do). */
  constructor(
    private readonly connect: () => Promise<pg.Client>,
    firstId: number,
    private readonly insert = 'INSERT INTO bench(id) VALUES ($1)',
    private readonly prepared = false,
  ) {
    this.nextId = firstId;
  }

  /** The next id this writer would use (so the following run does not reuse ids). */
  get next(): number {
    return this.nextId;
  }

  start(): void {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    let client: pg.Client | null = null;
    while (!this.stopped) {
      // Every attempt uses a new id, also after a failure: a failed attempt may have committed.
      const id = this.nextId++;
      const startMs = performance.now();
      try {
        client ??= await withTimeout(this.connect(), QUERY_TIMEOUT_MS);
        const query = this.prepared ? { name: 'ack_writer_insert', text: this.insert, values: [id] } : { text: this.insert, values: [id] };
        await withTimeout(client.query(query), QUERY_TIMEOUT_MS);
        const endMs = performance.now();
        this.attempts.push({ id, startMs, endMs, ok: true });
        this.ackedAt.push(endMs);
        this.ackedIds.push(id);
      } catch {
        const endMs = performance.now();
        this.attempts.push({ id, startMs, endMs, ok: false });
        this.failedAt.push(endMs);
        const c = client;
        client = null;
        void c?.end().catch(() => undefined);
        await new Promise((r) => setTimeout(r, RETRY_DELAY_MS));
      }
    }
    await client?.end().catch(() => undefined);
  }

  /** First acknowledged commit after `t`, or undefined. */
  firstAckAfter(t: number): number | undefined {
    return this.ackedAt.find((a) => a > t);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
