// One local Baton cluster for the benchmark: started in a temp dir on a free port block,
// with helpers to crash members, restart agents, wait for health, and stop everything.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { down, startAgentProcess, up } from '../../src/cli/up.js';
import { connectionUris, etcdEndpoint, pidAlive, readLocalCluster, writeLocalCluster, type LocalCluster, type LocalMember } from '../../src/cli/local-cluster.js';
import { EtcdStore } from '../../src/dcs/etcd-store.js';
import type { ClusterView, MemberRecord } from '../../src/dcs/types.js';
import type { PgParameters } from '../../src/postgres/types.js';
import { freePortBlock } from '../../src/util/net.js';
import { isWhole, runningLeader } from '../../src/verify/drill.js';

/** Every wait in the benchmark gives up after this long. */
export const WAIT_MS = 60_000;

export class BenchAbort extends Error {}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export { runningLeader };

/** A leader runs, every other member streams, and the sync key names a synchronous standby of that leader. */
export function healthy(v: ClusterView, nodes: number): boolean {
  return v.members.length === nodes && v.config.synchronousMode && isWhole(v, v.members.map((m) => m.name));
}

export class BenchCluster {
  private stopping: Promise<void> | null = null;

  private constructor(
    readonly dir: string,
    readonly c: LocalCluster,
    readonly store: EtcdStore,
  ) {}

  /** Starts etcd and 3 agents; on failure stops what was started. */
  static async start(nodes: number, log: (l: string) => void, pgParameters: PgParameters = {}): Promise<BenchCluster> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-'));
    fs.chmodSync(dir, 0o755);
    log(`cluster directory: ${dir}`);
    const c = await up({
      dir,
      nodes,
      basePort: await freePortBlock(),
      cluster: 'bench',
      osUser: 'postgres',
      timeoutMs: WAIT_MS,
      dcs: {},
      pgParameters,
      out: (l) => log(`  ${l}`),
    }).catch(async (err: unknown) => {
      await down(dir, true, () => undefined).catch(() => fs.rmSync(dir, { recursive: true, force: true }));
      throw err;
    });
    return new BenchCluster(dir, c, new EtcdStore({ endpoints: [etcdEndpoint(c)], cluster: c.cluster, requestTimeoutMs: 2000 }));
  }

  /** How the writer reaches the leader: libpq-style multi-host URI, or baton proxy's read-write port. */
  via: 'multihost' | 'proxy' = 'multihost';
  /** The writer inserts through a named prepared statement. */
  preparedWriter = false;

  /** The writer's read-write URI, with connect_timeout=1. */
  readWriteUri(): string {
    if (this.via === 'proxy') {
      if (!this.c.proxy) throw new BenchAbort('the cluster has no proxy');
      return `postgresql://${this.c.superuser.username}@${this.c.host}:${this.c.proxy.readWritePort}/postgres?connect_timeout=1`;
    }
    const uri = connectionUris(this.c.members.map((m) => ({ host: this.c.host, port: m.pgPort })), this.c.superuser.username).readWrite;
    return uri.replace(/connect_timeout=\d+/, 'connect_timeout=1');
  }

  member(name: string): LocalMember {
    const m = readLocalCluster(this.dir)?.members.find((x) => x.name === name);
    if (!m) throw new BenchAbort(`no member ${name} in ${this.dir}/cluster.json`);
    return m;
  }

  postmasterPid(name: string): number | null {
    try {
      const pid = Number(fs.readFileSync(path.join(this.member(name).dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return Number.isInteger(pid) && pid > 0 && pidAlive(pid) ? pid : null;
    } catch {
      return null;
    }
  }

  /** SIGKILLs the agent and/or postmaster of a member at the same instant, then waits until they are gone. */
  async kill(name: string, what: { agent: boolean; postmaster: boolean }): Promise<void> {
    const m = this.member(name);
    const pm = this.postmasterPid(name);
    if (what.postmaster && !pm) throw new BenchAbort(`${name} has no running postmaster to kill`);
    if (what.agent && !pidAlive(m.agentPid)) throw new BenchAbort(`${name} has no running agent to kill`);
    if (what.agent && m.agentPid) process.kill(m.agentPid, 'SIGKILL');
    if (what.postmaster && pm) process.kill(pm, 'SIGKILL');
    const t0 = Date.now();
    while ((what.agent && pidAlive(m.agentPid)) || (what.postmaster && pidAlive(pm))) {
      if (Date.now() - t0 > 5000) throw new BenchAbort(`${name} did not die within 5 s of SIGKILL`);
      await sleep(10);
    }
  }

  /** Starts the agent of a member again and records its pid in cluster.json (so `down` stops it). */
  restartAgent(name: string): void {
    const lc = readLocalCluster(this.dir);
    const m = lc?.members.find((x) => x.name === name);
    if (!lc || !m) throw new BenchAbort(`no member ${name} in ${this.dir}/cluster.json`);
    m.agentPid = startAgentProcess(m);
    writeLocalCluster(lc);
  }

  async waitFor<T>(what: string, fn: (v: ClusterView) => T | null | undefined | false, timeoutMs = WAIT_MS): Promise<T> {
    const t0 = Date.now();
    let last: ClusterView | null = null;
    for (;;) {
      last = await this.store.read().catch(() => last);
      const r = last ? fn(last) : null;
      if (r) return r;
      if (Date.now() - t0 > timeoutMs) {
        const members = last?.members.map((m) => `${m.name}=${m.role}/${m.state}${m.problem ? ` (${m.problem})` : ''}`).join(', ');
        throw new BenchAbort(
          `timed out after ${timeoutMs / 1000} s waiting for ${what}; leader=${last?.leader?.name ?? 'none'} sync=${last?.sync?.members.join(',') ?? 'none'} members: ${members ?? 'unknown'}\n${this.logs()}`,
        );
      }
      await sleep(100);
    }
  }

  waitHealthy(what = 'a healthy cluster (leader running, all replicas streaming, a synchronous standby)'): Promise<ClusterView> {
    return this.waitFor(what, (v) => (healthy(v, this.c.members.length) ? v : null));
  }

  /** A direct connection to one member (superuser). */
  async client(name: string): Promise<pg.Client> {
    const m = this.member(name);
    const client = new pg.Client({
      host: this.c.host,
      port: m.pgPort,
      user: this.c.superuser.username,
      password: this.c.superuser.password,
      database: 'postgres',
      connectionTimeoutMillis: 3000,
      query_timeout: 10_000,
    });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  }

  logs(): string {
    return (readLocalCluster(this.dir)?.members ?? [])
      .map((m) => {
        const text = fs.existsSync(m.agentLog) ? fs.readFileSync(m.agentLog, 'utf8').split('\n').slice(-10).join('\n') : '';
        return `--- ${m.name} agent log (tail) ---\n${text}`;
      })
      .join('\n');
  }

  /** Stops etcd, every agent and postmaster, and removes the directory. Safe to call more than once. */
  stop(log: (l: string) => void): Promise<void> {
    this.stopping ??= (async () => {
      await this.store.close().catch(() => undefined);
      await down(this.dir, true, (l) => log(`  ${l}`)).catch((err: unknown) => {
        log(`  stopping the cluster failed: ${(err as Error).message}`);
      });
      fs.rmSync(this.dir, { recursive: true, force: true });
    })();
    return this.stopping;
  }
}
