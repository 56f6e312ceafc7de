// Read-only move benchmark: what clients of baton proxy's read-only port see when the replica their
// sessions are on falls past max_replication_lag. The proxy moves each idle session to the other replica
// (src/proxy/session.ts move(), router.ts readSessionMove); this measures how long that takes and what
// the clients notice.
//
//   node --import tsx bench/read-move.ts [--rounds 5] [--readers 4] [--pause-ms 10] [--json FILE]
//
// One local 3-member cluster with its proxy (`baton up`). Each round picks a replica (alternating),
// opens --readers sessions on the read-only port that the balancing put on it, and has each run
// `SELECT current_setting('port'), count(*) FROM t`, pausing --pause-ms between two queries (0: back to
// back, a client that is idle only between its queries). Then it pauses that replica's replay
// and writes 3 MB on the leader, plus a row every 100 ms. Per reader it records:
//   switch: from the moment etcd shows the replica more than 1 MB behind to the first answer from the
//           other replica;
//   first:  how long the first query answered by the other replica took (it waited for the move);
//   longest: the longest time one query took during the round (the 3 MB write slows everything);
// plus errors and reads that went back in time (a count lower than one already seen). Replay resumes
// and the cluster settles before the next round.
// Exit 0 when no reader saw an error or a read back in time, 2 when one did, 1 when it could not run.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { renderTable } from '../src/cli/table.js';
import { replayLag } from '../src/proxy/router.js';
import type { ClusterView } from '../src/dcs/types.js';
import { BenchAbort, runningLeader, sleep } from './lib/cluster.js';
import { machine, stats } from './lib/report.js';
import { BenchLifecycle, runBenchmark } from './lib/run.js';

const NODES = 3;
const LAG_LIMIT = 1024 * 1024; // the proxy's default max_replication_lag
const log = (line: string): void => console.log(line);
const life = new BenchLifecycle(log);

function options(): { rounds: number; readers: number; pauseMs: number; json: string | null } {
  const { values } = parseArgs({
    options: { rounds: { type: 'string', default: '5' }, readers: { type: 'string', default: '4' }, 'pause-ms': { type: 'string', default: '10' }, json: { type: 'string' } },
    strict: true,
  });
  const rounds = Number(values.rounds);
  const readers = Number(values.readers);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) throw new BenchAbort(`--rounds must be an integer in 1..50 (got ${values.rounds})`);
  if (!Number.isInteger(readers) || readers < 1 || readers > 40) throw new BenchAbort(`--readers must be an integer in 1..40 (got ${values.readers})`);
  const pauseMs = Number(values['pause-ms']);
  if (!Number.isInteger(pauseMs) || pauseMs < 0 || pauseMs > 1000) throw new BenchAbort(`--pause-ms must be an integer in 0..1000 (got ${values['pause-ms']})`);
  return { rounds, readers, pauseMs, json: values.json ?? null };
}

interface Reader {
  client: pg.Client;
  stop: boolean;
  done: Promise<void>;
  maxLatencyMs: number;
  errors: string[];
  backInTime: number;
  /** When the first answer came from a port other than the starting one (performance.now()), and how long that query took. */
  switchedAt: number | null;
  switchQueryMs: number;
}

/** A read-only session placed on `port`, querying in a loop until stopped. */
async function reader(connect: () => pg.Client, port: number, pauseMs: number): Promise<Reader> {
  let client: pg.Client | null = null;
  for (let i = 0; i < 10 && !client; i++) {
    const c = connect();
    await c.connect();
    const at = (await c.query<{ port: number }>("SELECT current_setting('port')::int AS port")).rows[0]!.port;
    if (at === port) client = c;
    else await c.end();
  }
  if (!client) throw new BenchAbort(`no read-only session landed on port ${port} in 10 tries`);
  const r: Reader = { client, stop: false, done: Promise.resolve(), maxLatencyMs: 0, errors: [], backInTime: 0, switchedAt: null, switchQueryMs: NaN };
  r.done = (async () => {
    let seen = 0;
    while (!r.stop) {
      const t0 = performance.now();
      try {
        const row = (await r.client.query<{ port: number; n: number }>("SELECT current_setting('port')::int AS port, (SELECT count(*) FROM t)::int AS n")).rows[0]!;
        const t1 = performance.now();
        r.maxLatencyMs = Math.max(r.maxLatencyMs, t1 - t0);
        if (row.n < seen) r.backInTime++;
        seen = Math.max(seen, row.n);
        if (row.port !== port && r.switchedAt === null) {
          r.switchedAt = t1;
          r.switchQueryMs = t1 - t0;
        }
      } catch (err) {
        r.errors.push((err as Error).message);
        return;
      }
      if (pauseMs > 0) await sleep(pauseMs);
    }
  })();
  return r;
}

function lagOf(v: ClusterView, name: string): number {
  const m = v.members.find((x) => x.name === name);
  return m ? (replayLag(v, m) ?? Infinity) : Infinity;
}

interface RoundResult {
  round: number;
  replica: string;
  switchMs: number[];
  firstQueryMs: number[];
  stallMs: number[];
  errors: number;
  backInTime: number;
}

async function main(): Promise<number> {
  const o = options();
  const m = machine();
  log(`baton read-only move benchmark: ${o.rounds} round(s), ${o.readers} reader(s) on the replica that falls behind, ${o.pauseMs} ms between a reader's queries`);
  const bc = await life.start(NODES);
  if (life.aborted) return 130;
  if (!bc.c.proxy) throw new BenchAbort('the cluster has no proxy');
  const leaderRec = runningLeader(await bc.waitHealthy());
  if (!leaderRec) throw new BenchAbort('no running leader');
  const ldb = await bc.client(leaderRec.name);
  await ldb.query('CREATE TABLE t(id bigserial PRIMARY KEY, v text)');
  const { username: user, password } = bc.c.superuser;
  const connect = () => {
    const c = new pg.Client({ host: bc.c.host, port: bc.c.proxy!.readOnlyPort, user, password, database: 'postgres', connectionTimeoutMillis: 5000 });
    c.on('error', () => undefined);
    return c;
  };
  const replicas = bc.c.members.filter((x) => x.name !== leaderRec.name);
  const results: RoundResult[] = [];
  try {
    for (let round = 1; round <= o.rounds; round++) {
      if (life.aborted) return 130;
      const [behind, other] = round % 2 ? [replicas[0]!, replicas[1]!] : [replicas[1]!, replicas[0]!];
      await bc.waitFor('both replicas within the lag limit', (v) => lagOf(v, behind.name) <= LAG_LIMIT && lagOf(v, other.name) <= LAG_LIMIT);
      const readers: Reader[] = [];
      for (let i = 0; i < o.readers; i++) readers.push(await reader(connect, behind.pgPort, o.pauseMs));
      await sleep(500);
      const bdb = await bc.client(behind.name);
      await bdb.query('SELECT pg_wal_replay_pause()');
      let writing = true;
      const trickle = (async () => {
        await ldb.query("INSERT INTO t(v) SELECT repeat('x', 1000) FROM generate_series(1, 3000)");
        while (writing) {
          await ldb.query("INSERT INTO t(v) VALUES ('tick')");
          await sleep(100);
        }
      })();
      await bc.waitFor(`${behind.name} more than 1 MB behind in etcd`, (v) => lagOf(v, behind.name) > LAG_LIMIT && lagOf(v, behind.name) !== Infinity, 30_000);
      const lagSeenAt = performance.now();
      const deadline = Date.now() + 30_000;
      while (readers.some((r) => r.switchedAt === null && r.errors.length === 0) && Date.now() < deadline) await sleep(20);
      await sleep(500);
      for (const r of readers) r.stop = true;
      await Promise.all(readers.map((r) => r.done));
      writing = false;
      await trickle;
      await bdb.query('SELECT pg_wal_replay_resume()');
      await bdb.end();
      for (const r of readers) await r.client.end().catch(() => undefined);
      const result: RoundResult = {
        round,
        replica: behind.name,
        switchMs: readers.map((r) => (r.switchedAt === null ? Infinity : Math.max(0, r.switchedAt - lagSeenAt))),
        firstQueryMs: readers.map((r) => r.switchQueryMs),
        stallMs: readers.map((r) => r.maxLatencyMs),
        errors: readers.reduce((a, r) => a + r.errors.length, 0),
        backInTime: readers.reduce((a, r) => a + r.backInTime, 0),
      };
      for (const r of readers) for (const e of r.errors) log(`  reader error: ${e}`);
      log(`round ${round} (${behind.name} behind): switch ms ${result.switchMs.map((x) => x.toFixed(0)).join(' ')}; first query there ms ${result.firstQueryMs.map((x) => x.toFixed(0)).join(' ')}; longest query ms ${result.stallMs.map((x) => x.toFixed(0)).join(' ')}; errors ${result.errors}; back in time ${result.backInTime}`);
      results.push(result);
    }
  } finally {
    await ldb.end().catch(() => undefined);
  }

  const all = (f: (r: RoundResult) => number[]) => stats(results.flatMap(f));
  const sw = all((r) => r.switchMs);
  const st = all((r) => r.stallMs);
  const fq = all((r) => r.firstQueryMs.filter((x) => Number.isFinite(x)));
  const errors = results.reduce((a, r) => a + r.errors, 0);
  const back = results.reduce((a, r) => a + r.backInTime, 0);
  const headers = ['measure', 'median ms', 'min ms', 'max ms'];
  const rows = [
    ['switch (lag shown in etcd -> first answer from the other replica)', sw.median.toFixed(0), sw.min.toFixed(0), sw.max.toFixed(0)],
    ['first query answered by the other replica', fq.median.toFixed(0), fq.min.toFixed(0), fq.max.toFixed(0)],
    ['longest query per reader and round', st.median.toFixed(0), st.min.toFixed(0), st.max.toFixed(0)],
  ];
  log('');
  log(renderTable(headers, rows));
  log(`${results.length * o.readers} reader-rounds: ${errors} errors, ${back} reads back in time`);
  log(`Machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB memory, ${m.os}, Node ${m.node}. Date: ${m.date}.`);
  if (o.json) {
    fs.writeFileSync(o.json, JSON.stringify({ machine: m, readers: o.readers, results, errors, backInTime: back }, null, 2) + '\n');
    log(`raw results written to ${o.json}`);
  }
  return errors === 0 && back === 0 ? 0 : 2;
}

await runBenchmark(main, () => life.stop());
