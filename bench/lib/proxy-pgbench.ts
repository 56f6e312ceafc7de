// pgbench runs for bench/proxy.ts: tps from pgbench's summary, p50/p99 latency from its
// per-transaction logs (`--log`: one file per thread, the 3rd column is the latency in µs).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BenchAbort } from './cluster.js';
import { cpuTicks, hostBusyTicks, runQueueWaitNs, TICKS_PER_SECOND, treeCpuTicks } from './cpu.js';

/** The issue's two workloads; bench/proxy.ts runs these unless --workloads names others. */
export const WORKLOADS = ['select-only', 'simple-update'] as const;
/**
 * Also: the per-request transaction of row-level-security apps (`SET LOCAL` a tenant, read, commit)
 * and of PostgREST (`set_config(..., true)` for the request's claims, read, commit). Both change
 * only transaction-scoped state, so a proxy may keep such sessions movable and unpinned. And
 * pool-reset: a read, then the statement asyncpg's pool sends when a connection is given back. And
 * search-path: a schema-per-tenant app's request, a session-level `SET search_path` then a read.
 */
export const ALL_WORKLOADS = [...WORKLOADS, 'set-local', 'set-config', 'pool-reset', 'search-path'] as const;
export type Workload = (typeof ALL_WORKLOADS)[number];

/** pgbench's accounts at the scale bench/proxy.ts loads (-s 10); custom scripts get no :scale of their own. */
const ACCOUNTS = 1_000_000;
const SCRIPTS: Partial<Record<Workload, string>> = {
  'set-local': [
    `\\set aid random(1, ${ACCOUNTS})`,
    'BEGIN;',
    'SET LOCAL app.tenant = :aid;',
    'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;',
    'END;',
  ].join('\n'),
  'set-config': [
    `\\set aid random(1, ${ACCOUNTS})`,
    'BEGIN;',
    "SELECT set_config('request.jwt.claims', '{\"sub\": \":aid\", \"role\": \"web\"}', true), set_config('request.method', 'GET', true);",
    'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;',
    'END;',
  ].join('\n'),
  'pool-reset': [
    `\\set aid random(1, ${ACCOUNTS})`,
    'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;',
    // One Query, as asyncpg sends it (in a pgbench script a backslash before ';' joins statements).
    'SELECT pg_advisory_unlock_all()\\; CLOSE ALL\\; UNLISTEN *\\; RESET ALL;',
  ].join('\n'),
  'search-path': [
    `\\set aid random(1, ${ACCOUNTS})`,
    '\\set tenant random(1, 4)',
    'SET search_path = tenant_:tenant, public;',
    'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;',
  ].join('\n'),
};

/** pgbench's arguments choosing the workload: a built-in script, or a script file written into dir. */
function workloadArgs(w: Workload, dir: string): string[] {
  if (w === 'select-only') return ['-S'];
  if (w === 'simple-update') return ['-N'];
  const file = path.join(dir, `${w}.sql`);
  fs.writeFileSync(file, SCRIPTS[w] + '\n');
  return ['-f', file];
}

/** baton: the proxy with its native relay; baton-ts: a second proxy with `relay: js`. */
export const PATHS = ['direct', 'baton', 'baton-ts', 'haproxy', 'pgbouncer'] as const;
/** kernel-fwd (with --kernel-forward): bench/kernel-forward, a plain TCP forwarder in a BPF sockmap. */
/** Not run unless named in --paths: kernel-fwd (with --kernel-forward), baton-plain (a second proxy
 * whose native relay makes one system call per recv and send: BATON_RELAY_IO=plain). */
export type PathName = (typeof PATHS)[number] | 'kernel-fwd' | 'baton-plain' | 'baton-tcp';

export interface Target {
  host: string;
  port: number;
  user: string;
  password: string;
}

export interface PgbenchResult {
  workload: Workload;
  clients: number;
  path: PathName;
  startedAt: string;
  tps: number;
  transactions: number;
  failed: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU time (user + system) the relaying process spent per transaction, µs; null for direct. */
  relayCpuUs: number | null;
  /** Time the relaying threads spent runnable but waiting for a CPU, per transaction, µs
   * (/proc/<pid>/task/<tid>/schedstat): baton's relay threads, every thread of the other relays; null
   * for direct or where the kernel keeps no schedstat. */
  relayWaitUs: number | null;
  /** CPU time of the serving PostgreSQL (postmaster, backends, WAL sender and writer, ended
   * backends too) per transaction, µs; null if no transaction completed. */
  serverCpuUs: number | null;
  /** CPU time the whole host was busy per transaction (every process, the kernel's interrupts),
   * µs, summed over CPUs; null if no transaction completed. */
  hostCpuUs: number | null;
  /** The rate pgbench was held to (-R, transactions per second), or null: as fast as it could. */
  rate: number | null;
}

/** pgbench children still running, so an abort can stop them. */
export const running = new Set<ChildProcess>();

function env(t: Target): NodeJS.ProcessEnv {
  // sslmode=disable everywhere: no SSLRequest round trip, the same handshake on every path.
  return { ...process.env, PGHOST: t.host, PGPORT: String(t.port), PGUSER: t.user, PGPASSWORD: t.password, PGDATABASE: 'postgres', PGSSLMODE: 'disable' };
}

function run(args: string[], t: Target): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('pgbench', args, { env: env(t), stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', (e) => {
      running.delete(child);
      reject(new BenchAbort(`could not run pgbench: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      running.delete(child);
      if (code === 0) return resolve(out);
      const tail = (err + out).trimEnd().split('\n').slice(-10).join('\n');
      reject(new BenchAbort(`pgbench ${args.join(' ')} against ${t.host}:${t.port} failed (${signal ?? `exit ${code}`}):\n${tail}`));
    });
  });
}

export async function pgbenchInit(t: Target, scale: number): Promise<void> {
  await run(['-i', '-s', String(scale), '-q'], t);
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Latencies (ms, sorted) from every `prefix.<pid>[.<thread>]` file in dir; failed/skipped lines are left out. */
export function readLatencies(dir: string): Float64Array {
  const values: number[] = [];
  for (const f of fs.readdirSync(dir)) {
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      const us = Number(line.split(' ')[2]);
      if (line && Number.isFinite(us)) values.push(us / 1000);
    }
  }
  return Float64Array.from(values).sort();
}

function field(out: string, re: RegExp, what: string): number {
  const m = re.exec(out);
  if (!m) throw new BenchAbort(`pgbench printed no ${what}:\n${out}`);
  return Number(m[1]);
}

export interface RunSpec {
  workload: Workload;
  clients: number;
  path: PathName;
  seconds: number;
  threads: number;
  /** pgbench -R: transactions per second, scheduled; latency then counts from each transaction's
   * scheduled start, so a path that falls behind shows it in its latency. */
  rate?: number;
}

/** Whose CPU time a run measures. */
export interface Measured {
  /** The process between pgbench and PostgreSQL on this path, or null (direct, or not a process). */
  relayPid: number | null;
  /** Its threads on the per-query path, by name, when it has others (baton's main thread handles etcd
   * and logins); undefined: all of them. */
  relayThreads?: RegExp;
  /** The postmaster of the PostgreSQL that serves the run. */
  serverPid: number;
}

const perTx = (ticks: number, transactions: number): number => (ticks / TICKS_PER_SECOND / transactions) * 1e6;

export async function pgbench(t: Target, s: RunSpec, { relayPid, relayThreads, serverPid }: Measured): Promise<PgbenchResult> {
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-pgbench-'));
  const scriptDir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-script-'));
  const startedAt = new Date().toISOString();
  try {
    // -n: the caller vacuums and truncates pgbench_history directly before every run.
    const args = [...workloadArgs(s.workload, scriptDir), '-n', '-j', String(s.threads), '-c', String(s.clients), '-T', String(s.seconds)];
    if (s.rate !== undefined) args.push('-R', String(s.rate));
    const cpuBefore = relayPid ? cpuTicks(relayPid) : 0;
    const waitBefore = relayPid ? runQueueWaitNs(relayPid, relayThreads) : null;
    const serverBefore = treeCpuTicks(serverPid);
    const hostBefore = hostBusyTicks();
    const out = await run([...args, '--log', `--log-prefix=${path.join(logDir, 'tx')}`], t);
    const hostCpu = hostBusyTicks() - hostBefore;
    const serverCpu = treeCpuTicks(serverPid) - serverBefore;
    const cpu = relayPid ? cpuTicks(relayPid) - cpuBefore : 0;
    const waitAfter = relayPid ? runQueueWaitNs(relayPid, relayThreads) : null;
    const lat = readLatencies(logDir);
    const failedMatch = /number of failed transactions: (\d+)/.exec(out);
    const transactions = field(out, /number of transactions actually processed: (\d+)/, 'transaction count');
    return {
      workload: s.workload,
      clients: s.clients,
      path: s.path,
      startedAt,
      tps: field(out, /tps = ([\d.]+) \(without initial connection time\)/, 'tps'),
      transactions,
      failed: failedMatch ? Number(failedMatch[1]) : 0,
      p50Ms: percentile(lat, 50),
      p99Ms: percentile(lat, 99),
      relayCpuUs: relayPid && transactions > 0 ? perTx(cpu, transactions) : null,
      relayWaitUs: waitBefore !== null && waitAfter !== null && transactions > 0 ? (waitAfter - waitBefore) / 1000 / transactions : null,
      serverCpuUs: transactions > 0 ? perTx(serverCpu, transactions) : null,
      hostCpuUs: transactions > 0 ? perTx(hostCpu, transactions) : null,
      rate: s.rate ?? null,
    };
  } finally {
    fs.rmSync(logDir, { recursive: true, force: true });
    fs.rmSync(scriptDir, { recursive: true, force: true });
  }
}
