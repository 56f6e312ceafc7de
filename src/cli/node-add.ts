// `baton node add`: a new member of a local cluster (its own ports, data directory and agent), cloned
// from the leader or a chosen replica while the cluster keeps taking writes, followed until it streams.
// On another host the agent is started by hand (docs/operations.md) and `baton node wait` follows it.
import fs from 'node:fs';
import path from 'node:path';
import type { EtcdStore } from '../dcs/etcd-store.js';
import type { MemberRecord, MemberTags } from '../dcs/types.js';
import { BatonError, UsageError } from '../util/errors.js';
import { portInUse } from '../util/net.js';
import { ensureDirFor, runAsFor } from '../util/os-user.js';
import { memberNameSchema } from '../config/schema.js';
import { pidAlive, readLocalCluster, writeLocalCluster, type LocalCluster, type LocalMember } from './local-cluster.js';
import { describeProgress, type ProgressSample } from './progress.js';
import { dropSlotsOfGoneMember } from './node-remove.js';
import { queryPoolNodes } from './proxy-cmd.js';
import { memberConfig, startAgentProcess, stopAgent, stopOrphanPostmaster } from './up.js';

export interface FollowOptions {
  /** Done once the member streams with at most this many bytes of lag. */
  maxLagBytes: number;
  timeoutMs: number;
  /** The member's agent on this machine: its exit ends the wait at once. */
  agent?: { pid: number | null; log: string };
  progress: (line: string) => void;
}

export interface FollowResult {
  member: MemberRecord;
  ms: number;
  /** Time spent copying (pg_basebackup), when the clone was seen. */
  cloneMs: number | null;
  cloneBytes: number | null;
}

/** Waits until `name` streams with lag under the limit, reporting clone progress; throws on failure. */
export async function followNewMember(store: EtcdStore, name: string, o: FollowOptions): Promise<FollowResult> {
  const t0 = Date.now();
  let cloneSeenAt: number | null = null;
  let cloneEndedAt: number | null = null;
  let cloneBytes: number | null = null;
  let last = '';
  const say = (line: string) => {
    if (line !== last) o.progress(line);
    last = line;
  };
  for (;;) {
    const view = await store.read().catch((err: unknown) => {
      say(`etcd: ${(err as Error).message} (retrying)`);
      return null;
    });
    const rec = view?.members.find((m) => m.name === name);
    if (o.agent && !pidAlive(o.agent.pid)) {
      throw new BatonError(`the agent of ${name} exited`, `read its log: ${o.agent.log}\n${tail(o.agent.log)}`);
    }
    if (rec?.problem && /clon/i.test(rec.problem)) throw new BatonError(`adding ${name} failed: ${rec.problem}`);
    if (rec?.clone) {
      cloneSeenAt ??= Date.parse(rec.clone.startedAt) || Date.now();
      cloneBytes = rec.clone.doneBytes;
      const sample: ProgressSample = { doneBytes: rec.clone.doneBytes, totalBytes: rec.clone.totalBytes, elapsedMs: Date.now() - cloneSeenAt };
      say(`${name}: cloning from ${rec.clone.source}: ${describeProgress(sample)}`);
    } else if (rec) {
      if (cloneSeenAt !== null) cloneEndedAt ??= Date.now();
      const lag = rec.lagBytes === null ? 'unknown' : `${rec.lagBytes} bytes`;
      say(`${name}: ${rec.state}${rec.state === 'streaming' ? `, lag ${lag}` : ''}`);
      if (rec.state === 'streaming' && rec.lagBytes !== null && rec.lagBytes <= o.maxLagBytes) {
        return { member: rec, ms: Date.now() - t0, cloneMs: cloneSeenAt && cloneEndedAt ? cloneEndedAt - cloneSeenAt : null, cloneBytes };
      }
    } else {
      say(`${name}: waiting for its agent to register`);
    }
    if (Date.now() - t0 > o.timeoutMs) {
      throw new BatonError(`${name} did not stream with lag under ${o.maxLagBytes} bytes within ${o.timeoutMs / 1000} s (${last})`, 'see "baton status" and "baton replication"');
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

function tail(file: string, lines = 8): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

export interface AddOptions {
  dir: string;
  name?: string;
  cloneFrom?: string;
  tags: Partial<MemberTags>;
  maxLagBytes: number;
  timeoutMs: number;
  osUser: string;
  out: (line: string) => void;
  progress: (line: string) => void;
}

function nextName(c: LocalCluster, taken: Set<string>): string {
  for (let i = c.members.length + 1; ; i++) if (!taken.has(`node${i}`)) return `node${i}`;
}

/** Checks the name, the clone source and the ports; returns the member to create. */
async function planMember(c: LocalCluster, store: EtcdStore, o: AddOptions): Promise<LocalMember> {
  const view = await store.read();
  const taken = new Set([...c.members.map((m) => m.name), ...view.members.map((m) => m.name)]);
  const name = o.name ?? nextName(c, taken);
  const valid = memberNameSchema.safeParse(name);
  if (!valid.success) throw new UsageError(`invalid member name ${JSON.stringify(name)}: ${valid.error.issues[0]?.message ?? 'invalid'}`);
  if (taken.has(name)) throw new UsageError(`a member named ${name} already exists`, `choose another name (taken: ${[...taken].sort().join(', ')})`);
  const leader = view.members.find((m) => m.name === view.leader?.name && m.state === 'running');
  if (!leader) throw new UsageError('the cluster has no running leader to clone from', 'see "baton status"; add the member once a leader runs');
  if (o.cloneFrom !== undefined) {
    const src = view.members.find((m) => m.name === o.cloneFrom);
    if (!src) throw new UsageError(`clone source ${o.cloneFrom} is not a member`, `members: ${view.members.map((m) => m.name).join(', ')}`);
    if (src.state !== 'streaming' && src.state !== 'running') {
      throw new UsageError(`clone source ${src.name} is ${src.state}, not streaming`, 'pick a streaming replica, or leave --clone-from out to clone from the leader');
    }
    if (!(await portInUse(src.host, src.port))) {
      throw new UsageError(`clone source ${src.name} is unreachable: nothing answers at ${src.host}:${src.port}`, 'check that its PostgreSQL runs and the address is right, or pick another source');
    }
  }
  // Members use consecutive PostgreSQL ports from the base port; the REST API sits 100 above.
  const pgPort = Math.max(...c.members.map((m) => m.pgPort)) + 1;
  if (pgPort >= c.etcd.clientPort - 100) throw new UsageError('no port left for another member in this local cluster');
  for (const port of [pgPort, pgPort + 100]) {
    if (await portInUse(c.host, port)) throw new UsageError(`port ${c.host}:${port} for ${name} is already in use`, 'stop what uses it, then try again');
  }
  const home = path.join(c.dir, name);
  if (fs.existsSync(home)) throw new UsageError(`${home} already exists`, 'remove it (a leftover of an earlier member?) or choose another name');
  return {
    name,
    configFile: path.join(home, 'baton.yml'),
    dataDir: path.join(home, 'data'),
    pgPort,
    apiPort: pgPort + 100,
    agentLog: path.join(home, 'agent.log'),
    agentPid: null,
  };
}

export async function addLocalMember(store: EtcdStore, o: AddOptions): Promise<FollowResult & { name: string }> {
  const c = readLocalCluster(o.dir);
  if (!c) throw new UsageError(`no local cluster in ${path.resolve(o.dir)}`, 'node add starts agents for a cluster made by "baton up"; on another host, see docs/operations.md');
  if (!pidAlive(c.etcd.pid)) throw new UsageError(`the cluster in ${c.dir} is not running`, `start it with "baton up --dir ${o.dir}"`);
  const m = await planMember(c, store, o);
  const runAs = runAsFor(o.osUser);
  ensureDirFor(path.dirname(m.configFile), runAs, 0o755);
  fs.writeFileSync(m.configFile, memberConfig(c, m, {}, { cloneFrom: o.cloneFrom, tags: o.tags }), { mode: 0o600 });
  m.agentPid = startAgentProcess(m);
  c.members.push(m);
  writeLocalCluster(c);
  o.out(`agent ${m.name} started (pid ${m.agentPid}); PostgreSQL on ${c.host}:${m.pgPort}, API on ${c.host}:${m.apiPort}`);
  try {
    const r = await followNewMember(store, m.name, { ...o, agent: { pid: m.agentPid, log: m.agentLog } });
    if (c.proxy && pidAlive(c.proxy.pid)) await waitInPool(c, m, o);
    return { ...r, name: m.name };
  } catch (err) {
    // Leave no half-added member behind: stop it, drop its slots, forget it.
    o.out(`adding ${m.name} failed: stopping its agent and removing ${path.dirname(m.configFile)}`);
    await stopAgent(m, o.out);
    await stopOrphanPostmaster(m, o.out);
    const cred = { user: c.superuser.username, password: c.superuser.password };
    const dropped = await dropSlotsOfGoneMember(store, m.name, cred, o.out).catch(() => new Set<string>());
    if (dropped.size) o.out(`dropped replication slot of ${m.name} on ${[...dropped].join(', ')}`);
    const now = readLocalCluster(o.dir);
    if (now) writeLocalCluster({ ...now, members: now.members.filter((x) => x.name !== m.name) });
    fs.rmSync(path.dirname(m.configFile), { recursive: true, force: true });
    fs.rmSync(`${m.dataDir}.clone-in-progress`, { force: true });
    throw err;
  }
}

/** The proxy routes read-only sessions to the new member once it shows as up with a weight. */
async function waitInPool(c: LocalCluster, m: LocalMember, o: AddOptions): Promise<void> {
  const admin = { host: c.host, port: c.proxy!.adminPort, password: c.proxy!.adminPassword };
  const t0 = Date.now();
  for (;;) {
    const pool = await queryPoolNodes(admin).catch(() => null);
    const row = pool?.rows.find((r) => r[pool.fields.indexOf('port')] === String(m.pgPort));
    if (pool && row && row[pool.fields.indexOf('status')] === 'up') {
      const weight = Number(row[pool.fields.indexOf('lb_weight')]);
      o.out(weight > 0 ? `${m.name} is in the proxy's read-only pool (lb_weight ${weight.toFixed(3)})` : `${m.name} is known to the proxy (noloadbalance: no read sessions)`);
      return;
    }
    if (Date.now() - t0 > 15_000) {
      o.out(`warning: the proxy does not show ${m.name} as up yet; see "baton pool"`);
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
