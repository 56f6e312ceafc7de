// A client writing one row per transaction through the multi-host read-write URI, reconnecting
// on any error, and recording when each commit was acknowledged (performance.now()).
import type pg from 'pg';
import { performance } from 'node:perf_hooks';
import { connectMultiHost, type MultiHostTarget } from '../../src/verify/multihost.js';

const RETRY_DELAY_MS = 20;
/** An INSERT that neither commits nor fails within this long counts as failed (bounds stop()). */
const QUERY_TIMEOUT_MS = 10_000;

export class AckWriter {
  /** Acknowledged ids and the instant each commit was acknowledged, in order. */
  readonly ackedIds: number[] = [];
  readonly ackedAt: number[] = [];
  /** Instants of failed attempts (failed connect or failed INSERT). */
  readonly failedAt: number[] = [];
  private stopped = false;
  private done: Promise<void> | null = null;
  private nextId: number;

  constructor(
    private readonly target: MultiHostTarget,
    firstId: number,
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
      try {
        client ??= await connectMultiHost(this.target);
        const id = this.nextId++;
        await withTimeout(client.query('INSERT INTO bench(id) VALUES ($1)', [id]), QUERY_TIMEOUT_MS);
        this.ackedAt.push(performance.now());
        this.ackedIds.push(id);
      } catch {
        this.failedAt.push(performance.now());
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

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
