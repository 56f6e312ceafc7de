// `baton up` / `baton down`: a whole cluster on this machine (etcd and one agent per member),
// each a separate process, so killing an agent and its PostgreSQL is a real host crash.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';
import { startEtcdProcess, waitEtcdHealthy } from '../dcs/etcd-process.js';
import { EtcdStore } from '../dcs/etcd-store.js';
import type { ClusterView, MemberTags } from '../dcs/types.js';
import { UsageError } from '../util/errors.js';
import { portInUse } from '../util/net.js';
import { ensureDirFor, runAsFor } from '../util/os-user.js';
import { removeOrphanedDsmSegments } from '../postgres/dsm.js';
import {
  clusterFile,
  etcdEndpoint,
  pidAlive,
  readLocalCluster,
  writeLocalCluster,
  type LocalCluster,
  type LocalMember,
  type LocalProxy,
} from './local-cluster.js';
import type { RelayMode } from '../proxy/native-relay.js';
import type { PgParameters } from '../postgres/types.js';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/baton.js');

export interface UpOptions {
  dir: string;
  nodes: number;
  basePort: number;
  cluster: string;
  osUser: string;
  timeoutMs: number;
  /** Extra bootstrap.dcs settings (tests use them to shorten restart windows and the like). */
  dcs?: Record<string, unknown>;
  /** The proxy's `relay` setting (default auto: native when built). */
  proxyRelay?: RelayMode;
  /** postgresql.parameters of every member started here (members added later do not get them). */
  pgParameters?: PgParameters;
  out: (line: string) => void;
}

function secret(): string {
  return crypto.randomBytes(18).toString('base64url');
}

function plan(o: UpOptions): LocalCluster {
  const dir = path.resolve(o.dir);
  const host = '127.0.0.1';
  const members: LocalMember[] = [];
  for (let i = 0; i < o.nodes; i++) {
    const name = `node${i + 1}`;
    members.push({
      name,
      configFile: path.join(dir, name, 'baton.yml'),
      dataDir: path.join(dir, name, 'data'),
      pgPort: o.basePort + i,
      apiPort: o.basePort + 100 + i,
      agentLog: path.join(dir, name, 'agent.log'),
      agentPid: null,
    });
  }
  return {
    cluster: o.cluster,
    dir,
    host,
    etcd: {
      clientPort: o.basePort + 200,
      peerPort: o.basePort + 201,
      dataDir: path.join(dir, 'etcd'),
      log: path.join(dir, 'etcd.log'),
      pid: null,
    },
    superuser: { username: 'postgres', password: secret() },
    replication: { username: 'replicator', password: secret() },
    apiToken: secret(),
    members,
    proxy: {
      configFile: path.join(dir, 'proxy', 'proxy.yml'),
      log: path.join(dir, 'proxy', 'proxy.log'),
      readWritePort: o.basePort + 300,
      readOnlyPort: o.basePort + 301,
      adminPort: o.basePort + 302,
      adminPassword: secret(),
      pid: null,
    },
  };
}

function proxyConfig(c: LocalCluster, p: LocalProxy, relay: RelayMode): string {
  return toYaml({
    cluster: c.cluster,
    etcd: { hosts: [`${c.host}:${c.etcd.clientPort}`] },
    listen: {
      read_write: `${c.host}:${p.readWritePort}`,
      read_only: `${c.host}:${p.readOnlyPort}`,
      admin: `${c.host}:${p.adminPort}`,
    },
    admin_password: p.adminPassword,
    // Lets the proxy move idle sessions to a new leader on their user's behalf.
    auth_users: { [c.superuser.username]: c.superuser.password },
    relay,
  });
}

function startProxyProcess(p: LocalProxy): number {
  const log = fs.openSync(p.log, 'a');
  const child = spawn(process.execPath, ['--enable-source-maps', BIN, 'proxy', '--config', p.configFile], {
    detached: true,
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  child.unref();
  if (!child.pid) throw new UsageError('could not start the proxy');
  return child.pid;
}

async function waitPortOpen(host: string, port: number, pid: number, what: string, logFile: string): Promise<void> {
  const t0 = Date.now();
  while (!(await portInUse(host, port))) {
    if (!pidAlive(pid)) throw new UsageError(`${what} exited`, `read its log: ${logFile}`);
    if (Date.now() - t0 > 15_000) throw new UsageError(`${what} did not listen on ${host}:${port} within 15 s`, `read its log: ${logFile}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A member's baton.yml; `extra` is for members added later (`baton node add`). */
export function memberConfig(
  c: LocalCluster,
  m: LocalMember,
  dcs: Record<string, unknown>,
  extra: { cloneFrom?: string; tags?: Partial<MemberTags>; parameters?: PgParameters } = {},
): string {
  return toYaml({
    cluster: c.cluster,
    name: m.name,
    etcd: { hosts: [`${c.host}:${c.etcd.clientPort}`] },
    postgresql: {
      data_dir: m.dataDir,
      listen: `${c.host}:${m.pgPort}`,
      authentication: { superuser: c.superuser, replication: c.replication },
      log_file: path.join(path.dirname(m.configFile), 'postgresql.log'),
      ...(extra.cloneFrom !== undefined && { clone_from: extra.cloneFrom }),
      ...(extra.parameters && Object.keys(extra.parameters).length > 0 && { parameters: extra.parameters }),
    },
    restapi: { listen: `${c.host}:${m.apiPort}`, token: c.apiToken },
    ...(extra.tags && Object.keys(extra.tags).length > 0 && { tags: extra.tags }),
    bootstrap: { dcs },
  });
}

async function checkPortsFree(c: LocalCluster): Promise<void> {
  const ports = [c.etcd.clientPort, c.etcd.peerPort, ...c.members.flatMap((m) => [m.pgPort, m.apiPort])];
  if (c.proxy) ports.push(c.proxy.readWritePort, c.proxy.readOnlyPort, c.proxy.adminPort);
  for (const port of ports) {
    if (await portInUse(c.host, port)) {
      throw new UsageError(`port ${c.host}:${port} is already in use`, 'choose other ports with --base-port P, or stop what uses it');
    }
  }
}

export function startAgentProcess(m: LocalMember): number {
  const log = fs.openSync(m.agentLog, 'a');
  const child = spawn(process.execPath, ['--enable-source-maps', BIN, 'agent', '--config', m.configFile], {
    detached: true,
    stdio: ['ignore', log, log],
    env: { ...process.env },
  });
  fs.closeSync(log);
  child.unref();
  if (!child.pid) throw new UsageError(`could not start the agent for ${m.name}`);
  return child.pid;
}

export async function up(o: UpOptions): Promise<LocalCluster> {
  const existing = readLocalCluster(o.dir);
  if (existing && (pidAlive(existing.etcd.pid) || pidAlive(existing.proxy?.pid ?? null) || existing.members.some((m) => pidAlive(m.agentPid)))) {
    throw new UsageError(`a cluster is already running from ${existing.dir}`, `see "baton status --dir ${o.dir}", or stop it with "baton down --dir ${o.dir}"`);
  }
  if (o.nodes < 1 || o.nodes > 9) throw new UsageError(`--nodes must be between 1 and 9 (got ${o.nodes})`);
  const c = existing ?? plan(o);
  await checkPortsFree(c);
  const runAs = runAsFor(o.osUser);
  fs.mkdirSync(c.dir, { recursive: true, mode: 0o755 });
  fs.chmodSync(c.dir, 0o755);
  if (runAs) assertTraversable(c.dir, runAs.name);
  writeLocalCluster(c);

  fs.mkdirSync(c.etcd.dataDir, { recursive: true, mode: 0o700 });
  const etcd = await startEtcdProcess({
    dataDir: c.etcd.dataDir,
    clientPort: c.etcd.clientPort,
    peerPort: c.etcd.peerPort,
    logFile: c.etcd.log,
    detached: true,
    host: c.host,
  });
  etcd.child.unref();
  c.etcd.pid = etcd.pid;
  writeLocalCluster(c);
  await waitEtcdHealthy(etcdEndpoint(c), 15_000);
  o.out(`etcd running (pid ${etcd.pid}) at ${etcdEndpoint(c)}`);

  for (const m of c.members) {
    ensureDirFor(path.dirname(m.configFile), runAs, 0o755);
    if (!fs.existsSync(m.configFile)) fs.writeFileSync(m.configFile, memberConfig(c, m, o.dcs ?? {}, { parameters: o.pgParameters }), { mode: 0o600 });
    m.agentPid = startAgentProcess(m);
    o.out(`agent ${m.name} started (pid ${m.agentPid}); PostgreSQL on ${c.host}:${m.pgPort}, API on ${c.host}:${m.apiPort}`);
    writeLocalCluster(c);
  }
  await waitUntilHealthy(c, o.timeoutMs, o.out);
  if (c.proxy) {
    fs.mkdirSync(path.dirname(c.proxy.configFile), { recursive: true, mode: 0o700 });
    fs.writeFileSync(c.proxy.configFile, proxyConfig(c, c.proxy, o.proxyRelay ?? 'auto'), { mode: 0o600 });
    c.proxy.pid = startProxyProcess(c.proxy);
    writeLocalCluster(c);
    await waitPortOpen(c.host, c.proxy.adminPort, c.proxy.pid, 'the proxy', c.proxy.log);
    o.out(`proxy started (pid ${c.proxy.pid}): read-write ${c.host}:${c.proxy.readWritePort}, read-only ${c.host}:${c.proxy.readOnlyPort}, admin ${c.host}:${c.proxy.adminPort}`);
  }
  return c;
}

function assertTraversable(dir: string, user: string): void {
  for (let d = dir; d !== path.dirname(d); d = path.dirname(d)) {
    const mode = fs.statSync(d).mode;
    if ((mode & 0o001) === 0) {
      throw new UsageError(
        `PostgreSQL runs as "${user}", which cannot enter ${d} (mode ${(mode & 0o777).toString(8)})`,
        'put the cluster directory somewhere every user can traverse, e.g. --dir /tmp/baton',
      );
    }
  }
}

/** Returns once a leader runs and every other member streams; throws with each member's state otherwise. */
export async function waitUntilHealthy(c: LocalCluster, timeoutMs: number, out: (l: string) => void): Promise<ClusterView> {
  const store = new EtcdStore({ endpoints: [etcdEndpoint(c)], cluster: c.cluster });
  const t0 = Date.now();
  let last = '';
  try {
    for (;;) {
      const view = await store.read().catch(() => null);
      if (view) {
        const leader = view.members.find((m) => m.name === view.leader?.name && m.state === 'running');
        const streaming = view.members.filter((m) => m.state === 'streaming').length;
        // In synchronous mode the cluster is only whole once a standby holds every commit: until then
        // commits are asynchronous and no member may take over (status says so).
        const needSync = view.config.synchronousMode && c.members.length > 1;
        const sync = view.sync?.leader === leader?.name ? (view.sync?.members ?? []) : [];
        const line =
          `leader: ${leader?.name ?? 'none'}; streaming replicas: ${streaming}/${c.members.length - 1}` +
          (needSync ? `; synchronous standby: ${sync.join(', ') || 'none yet'}` : '');
        if (line !== last) out(line);
        last = line;
        if (leader && streaming === c.members.length - 1 && (!needSync || sync.length > 0)) return view;
      }
      for (const m of c.members) {
        if (m.agentPid && !pidAlive(m.agentPid)) {
          throw new UsageError(`the agent of ${m.name} exited`, `read its log: ${m.agentLog}`);
        }
      }
      if (Date.now() - t0 > timeoutMs) {
        throw new UsageError(`the cluster did not become healthy within ${timeoutMs / 1000} s (${last})`, `read the agent logs under ${c.dir}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await store.close();
  }
}

export async function waitExit(pid: number, ms: number): Promise<boolean> {
  const t0 = Date.now();
  while (pidAlive(pid)) {
    if (Date.now() - t0 > ms) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

export function kill(pid: number | null, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

export function postmasterPidOf(dataDir: string): number | null {
  try {
    const pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** SIGTERM (the agent stops PostgreSQL and gives up its keys), SIGKILL after 30 s. */
export async function stopAgent(m: LocalMember, out: (l: string) => void): Promise<void> {
  if (pidAlive(m.agentPid)) {
    kill(m.agentPid, 'SIGTERM');
    if (!(await waitExit(m.agentPid!, 30_000))) kill(m.agentPid, 'SIGKILL');
    out(`stopped agent ${m.name}`);
  }
  m.agentPid = null;
}

/** A postmaster whose agent was killed keeps running: stop it too (fast shutdown, then quit). */
export async function stopOrphanPostmaster(m: LocalMember, out: (l: string) => void): Promise<void> {
  const pm = postmasterPidOf(m.dataDir);
  if (pm && pidAlive(pm)) {
    kill(pm, 'SIGINT');
    if (!(await waitExit(pm, 30_000))) kill(pm, 'SIGQUIT');
    out(`stopped PostgreSQL of ${m.name}`);
  }
}

export async function down(dir: string, purge: boolean, out: (l: string) => void): Promise<void> {
  const c = readLocalCluster(dir);
  if (!c) throw new UsageError(`no local cluster in ${path.resolve(dir)} (no ${clusterFile(dir)})`, 'pass the --dir given to "baton up"');
  // Replicas first, so the leader's departure does not start an election among members about to stop.
  const store = new EtcdStore({ endpoints: [etcdEndpoint(c)], cluster: c.cluster, requestTimeoutMs: 1000 });
  const leader = await store.read().then((v) => v.leader?.name ?? null).catch(() => null);
  await store.close();
  if (c.proxy && pidAlive(c.proxy.pid)) {
    kill(c.proxy.pid, 'SIGTERM');
    if (!(await waitExit(c.proxy.pid!, 10_000))) kill(c.proxy.pid, 'SIGKILL');
    out('stopped the proxy');
  }
  if (c.proxy) c.proxy.pid = null;
  const ordered = [...c.members].sort((a, b) => Number(a.name === leader) - Number(b.name === leader));
  for (const m of ordered) await stopAgent(m, out);
  for (const m of c.members) await stopOrphanPostmaster(m, out);
  if (pidAlive(c.etcd.pid)) {
    kill(c.etcd.pid, 'SIGTERM');
    if (!(await waitExit(c.etcd.pid!, 10_000))) kill(c.etcd.pid, 'SIGKILL');
    out('stopped etcd');
  }
  c.etcd.pid = null;
  if (purge) {
    // A member killed outright leaves its shared memory segments in /dev/shm; restarted in place it
    // would remove them, but its data directory goes now.
    const orphans = removeOrphanedDsmSegments(c.dir, c.members.map((m) => m.dataDir));
    if (orphans.length > 0) out(`removed ${orphans.length} shared memory segment(s) of killed PostgreSQL instances`);
    fs.rmSync(c.dir, { recursive: true, force: true });
    out(`removed ${c.dir}`);
  } else {
    writeLocalCluster(c);
  }
}
