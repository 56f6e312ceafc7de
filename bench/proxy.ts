// Proxy benchmark: pgbench against the leader of one local cluster through five paths, in one run:
// direct to PostgreSQL, Baton's proxy (read-write port; native relay), a second Baton proxy relaying in
// TypeScript (relay: js), HAProxy (TCP mode) and PgBouncer (session mode). For each relaying process,
// its CPU time per transaction (from /proc). --kernel-forward adds a sixth path, kernel-fwd: a plain TCP
// forwarder whose bytes stay in the kernel (bench/kernel-forward, needs root), what an in-kernel relay
// could reach at best.
//
//   node --import tsx bench/proxy.ts [--seconds S] [--clients 8,32] [--workloads select-only,simple-update] [--rounds N] [--json FILE] [--kernel-forward]
//                                    [--paths direct,baton,pgbouncer] [--load 0.3] [--no-huge-pages] [--server-tcp]
//
// Every relay reaches the leader the same way: through its Unix socket, as Baton's proxy does with a
// server on its own host (use_local_socket) and as PgBouncer is usually deployed, PgBouncer and HAProxy
// configured alike. --server-tcp makes them all use TCP instead (for baton, a second proxy with
// use_local_socket: false). kernel-fwd always forwards to TCP. pgbench reaches every path over TCP.
//
// --paths may also name baton-plain: a second Baton proxy whose native relay makes one system call per
// recv and send (BATON_RELAY_IO=plain) instead of batching them per wake-up with io_uring; and
// baton-tcp: a second Baton proxy that reaches the leader over TCP (use_local_socket: false).
//
// --paths runs only those paths (direct always among them: every ratio is to it), so that many short
// rounds fit in a run: baton and PgBouncer measured seconds apart, round after round, are a paired
// comparison that the host's drift over minutes does not blur.
//
// --load F holds every run to the same rate (pgbench -R), F times what the direct path made in a
// run as fast as it could just before (a calibration run, once per round and cell, not reported).
// The latency then counts from each transaction's scheduled start, so it compares the paths at equal
// offered load: what a hop adds, apart from what it costs in capacity. (At full speed, with a fixed
// number of clients, a path's latency follows from its throughput: mean latency = clients / tps.)
//
// The members run on huge pages, reserved for the run and given back after (bench/lib/huge-pages.ts):
// on 4 kB pages a fresh backend spends its first seconds mapping shared memory, and every path but
// PgBouncer, which keeps its pooled backends, starts each run with fresh ones. --no-huge-pages shows it.
//
// For each client count, for select-only (-S) then simple-update (-N), the five paths run back to back
// (direct, baton, baton-ts, haproxy, pgbouncer; each round starts one path later) so that drift
// affects them all alike. Before every run, over a direct connection: the leader is checked unchanged, pgbench's tables vacuumed, its history truncated,
// a CHECKPOINT taken, and the previous run's connections waited out (PgBouncer keeps its pool of
// server connections between runs, as it does in use; every other path logs in when pgbench connects,
// before pgbench's clock starts). With --rounds N the whole sequence
// runs N times and the tables show each path's median (tps, p50, p99 and CPU each taken separately);
// the verdict against the issue's target compares baton with PgBouncer round by round (proxy-report.ts).
// The cluster, HAProxy and PgBouncer are always stopped (also on SIGINT/SIGTERM or an error).
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { BenchAbort, BenchCluster, runningLeader, sleep } from './lib/cluster.js';
import { daemons, describeBackend, startBatonPlainProxy, startBatonTcpProxy, startBatonTsProxy, startHaproxy, startKernelForward, startPgbouncer, versions } from './lib/proxy-daemons.js';
import { ALL_WORKLOADS, PATHS, pgbench, pgbenchInit, running, WORKLOADS, type PathName, type PgbenchResult, type RunSpec, type Target, type Workload } from './lib/proxy-pgbench.js';
import { compare, driftLines, markdownTable, medians, pairedLines, table, verdicts } from './lib/proxy-report.js';
import { machine } from './lib/report.js';
import { BenchLifecycle, runBenchmark } from './lib/run.js';
import { pagesFor, reserveHugePages } from './lib/huge-pages.js';

const NODES = 3;
const SCALE = 10;
const THREADS = 2;
const WARMUP_SECONDS = 2;
const log = (line: string): void => console.log(line);

interface Options {
  seconds: number;
  clients: number[];
  workloads: Workload[];
  rounds: number;
  json: string | null;
  /** Also measure bench/kernel-forward (path kernel-fwd), the upper bound of an in-kernel relay. */
  kernelForward: boolean;
  /** Run PostgreSQL on 4 kB pages: fresh backends start slow (see bench/lib/huge-pages.ts). */
  noHugePages: boolean;
  /** The paths measured, in order; direct always among them. */
  paths: PathName[];
  /** Hold each run to this fraction of a direct run's tps (pgbench -R), or null: as fast as they can. */
  load: number | null;
  /** The relays reach the leader over TCP rather than through its Unix socket. */
  serverTcp: boolean;
}

const MAX_ROUNDS = 60;

function isWorkload(s: string): s is Workload {
  return (ALL_WORKLOADS as readonly string[]).includes(s);
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '15' },
      clients: { type: 'string', default: '8,32' },
      workloads: { type: 'string', default: WORKLOADS.join(',') },
      rounds: { type: 'string', default: '1' },
      json: { type: 'string' },
      'kernel-forward': { type: 'boolean', default: false },
      'no-huge-pages': { type: 'boolean', default: false },
      'server-tcp': { type: 'boolean', default: false },
      paths: { type: 'string' },
      load: { type: 'string' },
    },
    strict: true,
  });
  const seconds = Number(values.seconds);
  if (!Number.isInteger(seconds) || seconds < 1) throw new BenchAbort(`--seconds must be a positive integer (got ${values.seconds})`);
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > MAX_ROUNDS) throw new BenchAbort(`--rounds must be an integer in 1..${MAX_ROUNDS} (got ${values.rounds})`);
  const clients = values.clients.split(',').map((s) => Number(s.trim()));
  // PostgreSQL runs with max_connections = 100; Baton's agents and this benchmark need a few.
  if (clients.length === 0 || clients.some((c) => !Number.isInteger(c) || c < 1 || c > 90)) {
    throw new BenchAbort(`--clients must be a comma-separated list of integers in 1..90 (got ${values.clients})`);
  }
  const workloads = values.workloads.split(',').map((s) => s.trim());
  const unknown = workloads.filter((w) => !isWorkload(w));
  if (workloads.length === 0 || unknown.length > 0) {
    throw new BenchAbort(`--workloads must be a comma-separated list of ${ALL_WORKLOADS.join(', ')} (got ${values.workloads})`);
  }
  const kernelForward = values['kernel-forward'];
  const known: PathName[] = [...PATHS, 'baton-plain', 'baton-tcp', ...(kernelForward ? ['kernel-fwd' as const] : [])];
  const paths = values.paths === undefined ? [...PATHS, ...(kernelForward ? ['kernel-fwd'] : [])] : values.paths.split(',').map((s) => s.trim());
  const bad = paths.filter((p) => !(known as string[]).includes(p));
  if (bad.length > 0 || new Set(paths).size !== paths.length || !paths.includes('direct')) {
    throw new BenchAbort(
      `--paths must be a comma-separated list of distinct paths from ${known.join(', ')}, direct among them (got ${values.paths ?? ''})` +
        (bad.includes('kernel-fwd') ? '; kernel-fwd needs --kernel-forward' : ''),
    );
  }
  if (values['server-tcp'] && paths.includes('baton-tcp')) throw new BenchAbort('--server-tcp measures baton over TCP already: leave baton-tcp out of --paths');
  const load = values.load === undefined ? null : Number(values.load);
  if (load !== null && !(load > 0 && load < 1)) throw new BenchAbort(`--load must be a fraction of the direct path's tps between 0 and 1, such as 0.3 (got ${values.load})`);
  return { seconds, clients, workloads: workloads.filter(isWorkload), rounds, json: values.json ?? null, kernelForward, paths: paths as PathName[], load, noHugePages: values['no-huge-pages'], serverTcp: values['server-tcp'] };
}

function rotate<T>(xs: readonly T[], by: number): T[] {
  const k = by % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

function killPgbench(): void {
  for (const child of running) child.kill('SIGTERM');
}

/** pgbench, HAProxy and PgBouncer stop before the cluster. */
const life = new BenchLifecycle(log, async () => {
  killPgbench();
  for (const d of daemons) {
    log(`stopping ${d.name} (pid ${d.pid ?? '?'})`);
    await d.stop();
  }
});

/** PgBouncer's pooled server connections, idle between its runs: reset by DISCARD ALL, they have
 * no application_name, while pgbench's sessions on every path say 'pgbench' (see startPgbouncer). */
const POOLED_IDLE = `state = 'idle' AND application_name = ''`;

async function clientBackends(db: pg.Client, where: string): Promise<number> {
  const r = await db.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND ${where}`);
  return Number(r.rows[0]?.n ?? 0);
}

/** Client backends other than Baton's own, ours and PgBouncer's idle pool. */
const otherBackends = (db: pg.Client): Promise<number> =>
  clientBackends(db, `pid <> pg_backend_pid() AND application_name NOT IN ('baton', 'baton-bench') AND NOT (${POOLED_IDLE})`);

const pooledIdle = (db: pg.Client): Promise<number> => clientBackends(db, POOLED_IDLE);

/** Before every run, directly on the leader: what pgbench itself would do without -n, a checkpoint,
 * and a wait (up to 15 s) until the connections of the previous run are gone. */
async function prepare(bc: BenchCluster, db: pg.Client, leader: string, baseline: number): Promise<void> {
  const now = runningLeader(await bc.store.read());
  if (now?.name !== leader) throw new BenchAbort(`the leader changed from ${leader} to ${now?.name ?? 'none'}: the numbers would not compare`);
  for (const d of daemons) if (!d.running()) throw new BenchAbort(`${d.name} exited; its log:\n${d.logTail()}`);
  await db.query('VACUUM pgbench_branches, pgbench_tellers');
  await db.query('TRUNCATE pgbench_history');
  await db.query('CHECKPOINT');
  const t0 = Date.now();
  let n = await otherBackends(db);
  while (n > baseline && Date.now() - t0 < 15_000) {
    await sleep(100);
    n = await otherBackends(db);
  }
  if (n > baseline) log(`  warning: ${n - baseline} connection(s) of the previous run still open`);
}

/** Shared memory of one member at Baton's settings (shared_buffers 32MB: 41 pages of 2 MB), with room. */
const SHARED_MEMORY_BYTES = 96 * 1024 * 1024;

/** Reserves huge pages for the members, to be given back once they stop: 'on', or why not. */
function useHugePages(): string {
  const r = reserveHugePages((info) => pagesFor(SHARED_MEMORY_BYTES, NODES, info));
  if (!r.ok) {
    log(`warning: huge pages off (${r.why}): fresh backends (direct, baton, HAProxy) start slower than PgBouncer's pooled ones`);
    return `off (${r.why})`;
  }
  life.whenStopped(() => {
    r.restore();
    if (r.added > 0) log(`gave back the ${r.added} huge pages added`);
  });
  log(`huge pages: ${r.pages} for the ${NODES} members${r.added > 0 ? ` (${r.added} added to the kernel's pool for this run)` : ''}`);
  return 'on';
}

async function main(): Promise<number> {
  const o = options();
  const m = machine();
  const v = versions();
  log(`baton proxy benchmark: pgbench -s ${SCALE}, ${o.seconds} s per run, clients ${o.clients.join(', ')}, workloads ${o.workloads.join(', ')}, -j ${THREADS}`);
  log(`machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB memory, ${m.os}, node ${m.node}; ${m.date}`);
  log(`versions: ${v.haproxy}; ${v.pgbouncer}; ${v.pgbench}`);

  const hugePages = o.noHugePages ? 'off (--no-huge-pages)' : useHugePages();
  const bc = await life.start(NODES, hugePages === 'on' ? { huge_pages: 'on' } : {});
  if (life.aborted) return 130;
  const leaderRec = runningLeader(await bc.waitHealthy());
  if (!leaderRec) throw new BenchAbort('no running leader');
  const leader = bc.member(leaderRec.name);
  const proxy = bc.c.proxy;
  if (!proxy) throw new BenchAbort(`${bc.dir}/cluster.json has no proxy`);
  const { username: user, password } = bc.c.superuser;
  const host = bc.c.host;
  const direct: Target = { host, port: leader.pgPort, user, password };

  log(`leader ${leader.name} on ${host}:${leader.pgPort}; initialising pgbench (scale ${SCALE}) directly`);
  await pgbenchInit(direct, SCALE);
  await bc.waitHealthy();
  const db = await bc.client(leader.name);
  try {
    await db.query("SET application_name = 'baton-bench'");
    const baseline = await otherBackends(db);

    const socket = leaderRec.localSocket?.path;
    if (!o.serverTcp && !socket) throw new BenchAbort(`${leader.name} publishes no Unix socket: run with --server-tcp`);
    const backend = { host, port: leader.pgPort, socket: o.serverTcp ? undefined : socket };
    log(`the relays reach the leader ${backend.socket ? `through its Unix socket ${backend.socket}` : 'over TCP (--server-tcp)'}`);
    const want = (path: PathName): boolean => o.paths.includes(path);
    const targets: Partial<Record<PathName, Target>> = { direct, baton: { ...direct, port: proxy.readWritePort } };
    // kernel-fwd's work runs in softirqs and kernel workers, charged to no process of its own: not measured.
    const relayPids: Partial<Record<PathName, number | null>> = { direct: null, baton: proxy.pid };
    if ((o.serverTcp && want('baton')) || want('baton-tcp')) { // never both (options())
      const tcp = await startBatonTcpProxy(proxy.configFile, host);
      if (life.aborted) return 130;
      const as: PathName = want('baton-tcp') ? 'baton-tcp' : 'baton';
      log(`baton proxy with use_local_socket: false (pid ${tcp.pid ?? '?'}) on ${host}:${tcp.port}, measured as ${as}`);
      targets[as] = { ...direct, port: tcp.port };
      relayPids[as] = tcp.pid ?? null;
    }
    if (want('haproxy')) {
      const haproxy = await startHaproxy(backend);
      if (life.aborted) return 130;
      log(`haproxy (pid ${haproxy.pid ?? '?'}) on ${host}:${haproxy.port} -> ${describeBackend(backend)}`);
      targets.haproxy = { ...direct, port: haproxy.port };
      relayPids.haproxy = haproxy.pid ?? null;
    }
    if (want('pgbouncer')) {
      const pgbouncer = await startPgbouncer(backend, user, password, Math.max(...o.clients));
      if (life.aborted) return 130;
      log(`pgbouncer (pid ${pgbouncer.pid ?? '?'}) on ${host}:${pgbouncer.port} -> ${describeBackend(backend)}`);
      targets.pgbouncer = { ...direct, port: pgbouncer.port };
      relayPids.pgbouncer = pgbouncer.pid ?? null;
    }
    if (want('baton-ts')) {
      const batonTs = await startBatonTsProxy(proxy.configFile, host);
      if (life.aborted) return 130;
      log(`baton proxy with relay: js (pid ${batonTs.pid ?? '?'}) on ${host}:${batonTs.port}`);
      targets['baton-ts'] = { ...direct, port: batonTs.port };
      relayPids['baton-ts'] = batonTs.pid ?? null;
    }
    if (want('baton-plain')) {
      const plain = await startBatonPlainProxy(proxy.configFile, host);
      if (life.aborted) return 130;
      log(`baton proxy with BATON_RELAY_IO=plain (pid ${plain.pid ?? '?'}) on ${host}:${plain.port}`);
      targets['baton-plain'] = { ...direct, port: plain.port };
      relayPids['baton-plain'] = plain.pid ?? null;
    }
    if (want('kernel-fwd')) {
      const kernelForward = await startKernelForward(backend);
      if (life.aborted) return 130;
      log(`bench/kernel-forward (pid ${kernelForward.pid ?? '?'}) on ${host}:${kernelForward.port} -> ${host}:${leader.pgPort}`);
      targets['kernel-fwd'] = { ...direct, port: kernelForward.port };
    }
    const paths = o.paths;

    let warmingUp = true;
    const runOne = async (spec: RunSpec): Promise<PgbenchResult> => {
      await prepare(bc, db, leader.name, baseline);
      if (life.aborted) throw new BenchAbort('stopping');
      if (spec.path === 'pgbouncer' && !warmingUp) {
        const pooled = await pooledIdle(db);
        if (pooled < spec.clients) log(`  warning: PgBouncer's pool holds ${pooled} server connections for ${spec.clients} clients: some will log in during the run`);
      }
      const target = targets[spec.path];
      if (!target) throw new BenchAbort(`no target for path ${spec.path}`);
      const serverPid = bc.postmasterPid(leader.name);
      if (!serverPid) throw new BenchAbort(`${leader.name}'s postmaster is not running`);
      // The native relay's threads carry baton's sessions; its main thread only logs them in.
      const relayThreads = spec.path.startsWith('baton') && spec.path !== 'baton-ts' ? /^baton-relay-/ : undefined;
      return pgbench(target, spec, { relayPid: relayPids[spec.path] ?? null, relayThreads, serverPid });
    };

    const maxClients = Math.max(...o.clients);
    // Also checks every path works before the long runs, and touches the freshly loaded tables once.
    log(`warm-up: ${WARMUP_SECONDS} s of each workload with ${maxClients} clients through each path (not reported)`);
    for (const workload of o.workloads) {
      for (const path of paths) {
        const r = await runOne({ workload, clients: maxClients, path, seconds: WARMUP_SECONDS, threads: Math.min(THREADS, maxClients) });
        log(`  ${workload} ${path}: ${r.tps.toFixed(0)} tps`);
      }
    }

    warmingUp = false;
    const results: PgbenchResult[] = [];
    for (let round = 1; round <= o.rounds; round++) {
      if (o.rounds > 1) log(`round ${round} of ${o.rounds}`);
      for (const clients of o.clients) {
        for (const workload of o.workloads) {
          const threads = Math.min(THREADS, clients);
          let rate: number | undefined;
          if (o.load !== null) {
            const full = await runOne({ workload, clients, path: 'direct', seconds: o.seconds, threads });
            rate = Math.max(1, Math.round(full.tps * o.load));
            log(`${workload} ${clients} clients direct, as fast as it can (calibration): ${full.tps.toFixed(0)} tps; every path held to ${rate} tps`);
          }
          // Each round starts from a different path, so that no path always runs right after another.
          for (const path of rotate(paths, round - 1)) {
            if (life.aborted) return 130;
            const r = await runOne({ workload, clients, path, seconds: o.seconds, threads, rate });
            results.push(r);
            const failed = r.failed > 0 ? `, ${r.failed} FAILED transactions` : '';
            const cpu =
              (r.relayCpuUs === null ? '' : `, relay CPU ${r.relayCpuUs.toFixed(1)} µs/tx`) +
              (r.relayWaitUs === null ? '' : `, waiting for a CPU ${r.relayWaitUs.toFixed(1)} µs/tx`) +
              (r.serverCpuUs === null ? '' : `, server CPU ${r.serverCpuUs.toFixed(0)} µs/tx`) +
              (r.hostCpuUs === null ? '' : `, host CPU ${r.hostCpuUs.toFixed(0)} µs/tx`);
            log(`${workload} ${clients} clients ${path}: ${r.tps.toFixed(0)} tps, p50 ${r.p50Ms.toFixed(3)} ms, p99 ${r.p99Ms.toFixed(3)} ms${cpu}${failed}`);
          }
        }
      }
    }

    const rows = compare(medians(results));
    const vs = verdicts(results, o.workloads, o.clients);
    log('');
    log(table(rows));
    log('');
    if (o.load === null) for (const x of vs) log(x.line);
    else log(`Every run held to ${o.load} of the direct tps of its round (pgbench -R): a tps ratio below 1 means that path fell behind. The target's verdict needs runs at full speed, so none is given.`);
    const paired = pairedLines(results, o.workloads, o.clients);
    log('');
    for (const line of paired) log(line);
    const drift = driftLines(results, o.workloads, o.clients);
    if (drift.lines.length) log('');
    for (const line of drift.lines) log(line);
    log('');
    log(`Machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB memory, ${m.os}, Node ${m.node}. Date: ${m.date}.`);
    log(`Versions: ${v.haproxy}; ${v.pgbouncer}; ${v.pgbench}. pgbench -s ${SCALE}, ${o.seconds} s per run, -j ${THREADS}, simple protocol, huge pages ${hugePages}, relays to the leader over ${o.serverTcp ? 'TCP' : 'its Unix socket'}, median of ${o.rounds} round(s)${o.load === null ? '' : `, held to ${o.load} of direct's tps (-R)`}.`);
    log('');
    log(markdownTable(rows));
    if (o.json) {
      const doc = { machine: m, versions: v, scale: SCALE, seconds: o.seconds, clients: o.clients, rounds: o.rounds, load: o.load, hugePages, serverLeg: o.serverTcp ? 'tcp' : 'unix socket', leader: leader.name, results: rows, runs: results, verdicts: vs, paired, drift };
      fs.writeFileSync(o.json, JSON.stringify(doc, null, 2) + '\n');
      log(`\nraw results written to ${o.json}`);
    }
    return results.some((r) => r.failed > 0) ? 2 : 0;
  } finally {
    await db.end().catch(() => undefined);
  }
}

await runBenchmark(main, async () => {
  await life.stop();
  killPgbench();
});
