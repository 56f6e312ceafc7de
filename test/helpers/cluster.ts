// A real local cluster for integration tests: etcd and agents as separate processes, on free ports,
// in a temporary directory, all stopped afterwards.
import type { RelayMode } from '../../src/proxy/native-relay.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { down, startAgentProcess, up } from '../../src/cli/up.js';
import { etcdEndpoint, pidAlive, readLocalCluster, writeLocalCluster, type LocalCluster, type LocalMember } from '../../src/cli/local-cluster.js';
import { EtcdStore } from '../../src/dcs/etcd-store.js';
import type { ClusterView, MemberRecord } from '../../src/dcs/types.js';
import { freePortBlock } from '../../src/util/net.js';

export interface TestCluster {
  c: LocalCluster;
  store: EtcdStore;
  view(): Promise<ClusterView>;
  leader(): Promise<MemberRecord>;
  member(name: string): LocalMember;
  client(name: string, opts?: { statementTimeoutMs?: number }): Promise<pg.Client>;
  /** Kills the member's agent and/or postmaster with SIGKILL (a host crash when both). */
  kill(name: string, what: { agent: boolean; postmaster: boolean }): Promise<void>;
  signalAgent(name: string, signal: NodeJS.Signals): void;
  startAgent(name: string): void;
  postmasterPid(name: string): number | null;
  waitFor<T>(what: string, fn: (v: ClusterView) => T | null | undefined | false | Promise<T | null | undefined | false>, timeoutMs?: number): Promise<T>;
  logs(): string;
  stop(): Promise<void>;
}

export async function startCluster(opts: { nodes?: number; dcs?: Record<string, unknown>; proxyRelay?: RelayMode } = {}): Promise<TestCluster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-test-'));
  fs.chmodSync(dir, 0o755);
  const c = await up({
    dir,
    nodes: opts.nodes ?? 3,
    basePort: await freePortBlock(),
    cluster: 'test',
    osUser: 'postgres',
    timeoutMs: 120_000,
    dcs: opts.dcs ?? {},
    proxyRelay: opts.proxyRelay,
    out: () => undefined,
  }).catch(async (err: unknown) => {
    await down(dir, false, () => undefined).catch(() => undefined);
    throw err;
  });
  const store = new EtcdStore({ endpoints: [etcdEndpoint(c)], cluster: c.cluster });
  const member = (name: string) => {
    const m = readLocalCluster(dir)!.members.find((x) => x.name === name);
    if (!m) throw new Error(`no member ${name}`);
    return m;
  };
  const postmasterPid = (name: string) => {
    try {
      const pid = Number(fs.readFileSync(path.join(member(name).dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return pidAlive(pid) ? pid : null;
    } catch {
      return null;
    }
  };
  const t: TestCluster = {
    c,
    store,
    view: () => store.read(),
    async leader() {
      return t.waitFor('a running leader', (v) => v.members.find((m) => m.name === v.leader?.name && m.state === 'running'));
    },
    member,
    async client(name, o = {}) {
      const m = member(name);
      const client = new pg.Client({
        host: c.host,
        port: m.pgPort,
        user: c.superuser.username,
        password: c.superuser.password,
        database: 'postgres',
        connectionTimeoutMillis: 3000,
        ...(o.statementTimeoutMs && { statement_timeout: o.statementTimeoutMs }),
      });
      client.on('error', () => undefined);
      await client.connect();
      return client;
    },
    async kill(name, what) {
      const m = member(name);
      const pm = postmasterPid(name);
      if (what.agent && m.agentPid) process.kill(m.agentPid, 'SIGKILL');
      if (what.postmaster && pm) process.kill(pm, 'SIGKILL');
      const t0 = Date.now();
      while ((what.agent && pidAlive(m.agentPid)) || (what.postmaster && pm && pidAlive(pm))) {
        if (Date.now() - t0 > 5000) throw new Error(`${name} did not die`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    signalAgent(name, signal) {
      const pid = member(name).agentPid;
      if (pid) process.kill(pid, signal);
    },
    startAgent(name) {
      const lc = readLocalCluster(dir)!;
      const m = lc.members.find((x) => x.name === name)!;
      m.agentPid = startAgentProcess(m);
      writeLocalCluster(lc);
    },
    postmasterPid,
    async waitFor(what, fn, timeoutMs = 60_000) {
      const t0 = Date.now();
      let last: ClusterView | null = null;
      for (;;) {
        last = await store.read().catch(() => last);
        const r = last ? await fn(last) : null;
        if (r) return r;
        if (Date.now() - t0 > timeoutMs) {
          throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last view: ${JSON.stringify(last?.members.map((m) => [m.name, m.role, m.state, m.problem]))} leader=${last?.leader?.name}\n${t.logs()}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    logs() {
      return readLocalCluster(dir)!
        .members.map((m) => {
          const text = fs.existsSync(m.agentLog) ? fs.readFileSync(m.agentLog, 'utf8').split('\n').slice(-15).join('\n') : '';
          return `--- ${m.name} agent log (tail) ---\n${text}`;
        })
        .join('\n');
    },
    async stop() {
      await store.close();
      await down(dir, !process.env.BATON_KEEP_TEST_DIRS, () => undefined);
    },
  };
  return t;
}

/** Inserts one row per transaction until stopped; records which ids were acknowledged. */
export class Writer {
  acked: number[] = [];
  failed = 0;
  private stopped = false;
  private done: Promise<void> | null = null;
  constructor(private readonly connect: () => Promise<pg.Client>) {}

  start(): void {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    let client: pg.Client | null = null;
    let id = 0;
    while (!this.stopped) {
      try {
        client ??= await this.connect();
        id++;
        await client.query('INSERT INTO acked(id) VALUES ($1)', [id]);
        this.acked.push(id);
      } catch {
        this.failed++;
        await client?.end().catch(() => undefined);
        client = null;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await client?.end().catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}
