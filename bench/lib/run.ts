// How a benchmark script ends: run main, always clean up, exit with main's code (1 if it threw).
import { BenchCluster } from './cluster.js';
import type { PgParameters } from '../../src/postgres/types.js';
export async function runBenchmark(main: () => Promise<number>, cleanup: () => Promise<void>): Promise<never> {
  let code = 1;
  try {
    code = await main();
  } catch (err) {
    console.error(`benchmark aborted: ${err instanceof Error ? err.message : String(err)}`);
    code = 1;
  } finally {
    await cleanup();
  }
  process.exit(code);
}

/**
 * The cluster a benchmark starts, and stopping it exactly once: at the end, on an error, or on
 * SIGINT/SIGTERM/SIGHUP (then exit 130). A stop during the start waits for it, so no agent is missed.
 */
export class BenchLifecycle {
  cluster: BenchCluster | null = null;
  private starting: Promise<BenchCluster> | null = null;
  private stopping: Promise<void> | null = null;

  constructor(
    private readonly log: (line: string) => void,
    /** Anything else to stop first (child processes, daemons). */
    private readonly stopOthers: () => void | Promise<void> = () => undefined,
  ) {
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(sig, () => {
        if (this.stopping) return log(`${sig}: already stopping`);
        log(`${sig}: aborting the benchmark`);
        void this.stop().finally(() => process.exit(130));
      });
    }
  }

  /** True once stopping has begun: the benchmark should return. */
  get aborted(): boolean {
    return this.stopping !== null;
  }

  /** Run once the cluster has stopped (a host setting to put back). */
  private readonly afterStop: (() => void)[] = [];

  whenStopped(f: () => void): void {
    this.afterStop.push(f);
  }

  async start(nodes: number, pgParameters: PgParameters = {}): Promise<BenchCluster> {
    this.starting = BenchCluster.start(nodes, this.log, pgParameters);
    this.cluster = await this.starting;
    return this.cluster;
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.stopOthers();
      const c = this.cluster ?? (await this.starting?.catch(() => null)) ?? null;
      if (c) {
        this.log('stopping the cluster');
        await c.stop(this.log);
      }
      for (const f of this.afterStop) f();
    })();
    return this.stopping;
  }
}
