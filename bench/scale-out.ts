// Scale-out benchmark: how long `baton node add` takes, with about 1 GB of data and a writer running,
// from the command to a new member streaming with lag under 1 MB, against a plain pg_basebackup of the
// same data in the same run.
//
//   node --import tsx bench/scale-out.ts [--scale 70] [--runs 3] [--json FILE]
//
// One local 2-member cluster (synchronous replication on); pgbench -i -s SCALE on the leader; then a
// writer inserts one row per transaction through the multi-host read-write URI for the whole
// measurement. Each run times, back to back (the order alternates between runs so that neither
// always gets the warmer page cache):
//   plain  pg_basebackup -X stream --checkpoint=fast from the leader into an empty directory;
//   baton  `baton node add` (a new agent: slot, pg_basebackup through it, start, catch up) until the
//          command returns, which it does once the member streams with lag under --max-lag 1MB;
//          then the new member is checked to hold every row acknowledged so far, and removed.
// `sync` runs before each timed copy, so neither pays for writing back the other's dirty pages.
// Exit 0 when the target holds (median baton/plain <= 1.3, no writer error, no acknowledged row
// missing), 2 when it does not, 1 when the benchmark could not run.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { renderTable } from '../src/cli/table.js';
import { ensureDirFor, runAsFor } from '../src/util/os-user.js';
import { connectMultiHost, parseMultiHostUri } from '../src/verify/multihost.js';
import { BenchAbort, BenchCluster, runningLeader, sleep } from './lib/cluster.js';
import { pgbenchInit } from './lib/proxy-pgbench.js';
import { machine, stats } from './lib/report.js';
import { BenchLifecycle, runBenchmark } from './lib/run.js';
import { AckWriter } from '../src/verify/writer.js';

const NODES = 2;
const TARGET_RATIO = 1.3;
const MAX_LAG = '1MB';
const PG_BIN = '/usr/lib/postgresql/15/bin';
const log = (line: string): void => console.log(line);

function options(): { scale: number; runs: number; json: string | null } {
  const { values } = parseArgs({
    options: { scale: { type: 'string', default: '70' }, runs: { type: 'string', default: '3' }, json: { type: 'string' } },
    strict: true,
  });
  const scale = Number(values.scale);
  if (!Number.isInteger(scale) || scale < 1) throw new BenchAbort(`--scale must be a positive integer (got ${values.scale})`);
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new BenchAbort(`--runs must be a positive integer (got ${values.runs})`);
  return { scale, runs, json: values.json ?? null };
}

interface RunResult {
  run: number;
  first: 'plain' | 'baton';
  plainMs: number;
  batonMs: number;
  ratio: number;
  /** Rows the writer had acknowledged when the new member was checked, and how many it lacked. */
  ackedChecked: number;
  missingOnNewMember: number;
}

/** Child processes still running, so an abort can stop them. */
const children = new Set<import('node:child_process').ChildProcess>();

/** Runs a program to completion; its output lines go to `onLine`; rejects on a non-zero exit. */
function runProgram(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; asPostgres?: boolean; onLine?: (l: string) => void }): Promise<number> {
  const ids = opts.asPostgres ? runAsFor('postgres') : null;
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], ...(ids && { uid: ids.uid, gid: ids.gid }) });
    children.add(child);
    let tail = '';
    const onData = (b: Buffer): void => {
      const text = b.toString();
      tail = (tail + text).slice(-4000);
      for (const line of text.split(/[\r\n]+/)) if (line.trim()) opts.onLine?.(line);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (e) => {
      children.delete(child);
      reject(new BenchAbort(`could not run ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      children.delete(child);
      if (code === 0) return resolve(performance.now() - t0);
      reject(new BenchAbort(`${path.basename(cmd)} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${tail}`));
    });
  });
}

const life = new BenchLifecycle(log, () => {
  for (const c of children) c.kill('SIGTERM');
});

async function plainBasebackup(bc: BenchCluster, leaderPort: number, run: number): Promise<number> {
  const dir = path.join(bc.dir, `plain-basebackup-${run}`);
  ensureDirFor(dir, runAsFor('postgres'));
  const { username, password } = bc.c.replication;
  try {
    return await runProgram(
      path.join(PG_BIN, 'pg_basebackup'),
      ['-D', dir, '-h', bc.c.host, '-p', String(leaderPort), '-U', username, '-X', 'stream', '--checkpoint=fast'],
      { env: { PGPASSWORD: password }, asPostgres: true },
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function batonNodeAdd(bc: BenchCluster, name: string): Promise<number> {
  let lastProgress = 0;
  return runProgram(process.execPath, ['bin/baton.js', 'node', 'add', name, '--dir', bc.dir, '--max-lag', MAX_LAG, '--timeout', '1800'], {
    onLine: (l) => {
      // Progress lines come about once a second: show one in five, and every other line.
      const isProgress = /cloning from/.test(l);
      if (isProgress && Date.now() - lastProgress < 5000) return;
      if (isProgress) lastProgress = Date.now();
      log(`    | ${l}`);
    },
  });
}

/** Rows acknowledged so far that the member lacks, once it has replayed what the leader had written. */
async function missingAcked(bc: BenchCluster, leader: string, member: string, acked: number[]): Promise<number> {
  const ldb = await bc.client(leader);
  const lsn = (await ldb.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
  await ldb.end();
  const db = await bc.client(member);
  try {
    const t0 = Date.now();
    while (!(await db.query<{ ok: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn])).rows[0]!.ok) {
      if (Date.now() - t0 > 60_000) throw new BenchAbort(`${member} did not replay up to ${lsn} within 60 s`);
      await sleep(50);
    }
    const n = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM bench WHERE id = ANY($1)', [acked])).rows[0]!.n;
    return acked.length - n;
  } finally {
    await db.end();
  }
}

async function main(): Promise<number> {
  const o = options();
  const m = machine();
  log(`baton scale-out benchmark: pgbench -i -s ${o.scale}, ${o.runs} run(s), a writer running throughout`);
  log(`machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB memory, ${m.os}, node ${m.node}; ${m.date}`);

  const bc = await life.start(NODES);
  if (life.aborted) return 130;
  const leaderRec = runningLeader(await bc.waitHealthy());
  if (!leaderRec) throw new BenchAbort('no running leader');
  const leader = bc.member(leaderRec.name);
  const { username: user, password } = bc.c.superuser;

  log(`leader ${leader.name} on ${bc.c.host}:${leader.pgPort}; pgbench -i -s ${o.scale} (this takes a while)`);
  const t0 = performance.now();
  await pgbenchInit({ host: bc.c.host, port: leader.pgPort, user, password }, o.scale);
  const db = await bc.client(leader.name);
  await db.query('CREATE TABLE bench(id bigint PRIMARY KEY, at timestamptz DEFAULT now())');
  await db.query('CHECKPOINT');
  const size = (await db.query<{ b: string }>('SELECT pg_database_size(current_database())::text AS b')).rows[0]!.b;
  await db.end();
  const sizeMiB = Number(size) / 2 ** 20;
  log(`  loaded in ${((performance.now() - t0) / 1000).toFixed(0)} s; database size ${sizeMiB.toFixed(0)} MiB`);
  await bc.waitHealthy();

  const writer = new AckWriter(() => connectMultiHost(parseMultiHostUri(bc.readWriteUri(), password)), 1);
  writer.start();
  const results: RunResult[] = [];
  try {
    await sleep(1000);
    for (let run = 1; run <= o.runs; run++) {
      if (life.aborted) return 130;
      const name = `added${run}`;
      const first = run % 2 === 1 ? 'plain' : 'baton';
      let plainMs = 0;
      let batonMs = 0;
      for (const which of first === 'plain' ? (['plain', 'baton'] as const) : (['baton', 'plain'] as const)) {
        // Dirty pages of the previous copy would otherwise be written back during this one.
        execFileSync('sync');
        if (which === 'plain') {
          log(`run ${run}: plain pg_basebackup from ${leader.name}`);
          plainMs = await plainBasebackup(bc, leader.pgPort, run);
          log(`  ${(plainMs / 1000).toFixed(1)} s`);
        } else {
          log(`run ${run}: baton node add ${name} --max-lag ${MAX_LAG}`);
          batonMs = await batonNodeAdd(bc, name);
          log(`  ${(batonMs / 1000).toFixed(1)} s`);
        }
      }
      const acked = [...writer.ackedIds];
      const missing = await missingAcked(bc, leader.name, name, acked);
      log(`  ${name} holds ${acked.length - missing} of the ${acked.length} rows acknowledged so far`);
      await runProgram(process.execPath, ['bin/baton.js', 'node', 'remove', name, '--dir', bc.dir], { onLine: (l) => log(`    | ${l}`) });
      results.push({ run, first, plainMs, batonMs, ratio: batonMs / plainMs, ackedChecked: acked.length, missingOnNewMember: missing });
    }
  } finally {
    await writer.stop();
  }

  const failed = writer.failedAt.length;
  const rows: (string | number)[][] = results.map((r) => [r.run, r.first, (r.plainMs / 1000).toFixed(1), (r.batonMs / 1000).toFixed(1), r.ratio.toFixed(2), r.missingOnNewMember]);
  const plain = stats(results.map((r) => r.plainMs));
  const baton = stats(results.map((r) => r.batonMs));
  const ratio = stats(results.map((r) => r.ratio));
  rows.push(['median', '', (plain.median / 1000).toFixed(1), (baton.median / 1000).toFixed(1), ratio.median.toFixed(2), '']);
  const headers = ['run', 'first', 'plain pg_basebackup s', 'baton node add s', 'ratio', 'acked rows missing'];
  const missing = results.reduce((a, r) => a + r.missingOnNewMember, 0);
  const met = ratio.median <= TARGET_RATIO && failed === 0 && missing === 0;
  log('');
  log(renderTable(headers, rows));
  log('');
  log(`writer: ${writer.ackedIds.length} rows acknowledged, ${failed} failed attempts`);
  log(`target (median ratio <= ${TARGET_RATIO}, no writer error, no acknowledged row missing): ${met ? 'met' : 'NOT met'}`);
  log(`Machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB memory, ${m.os}, Node ${m.node}. Date: ${m.date}. Database ${sizeMiB.toFixed(0)} MiB (pgbench -s ${o.scale}).`);
  log('');
  log(`| ${headers.join(' | ')} |`);
  log(`|${headers.map(() => '---').join('|')}|`);
  for (const r of rows) log(`| ${r.join(' | ')} |`);
  if (o.json) {
    fs.writeFileSync(o.json, JSON.stringify({ machine: m, scale: o.scale, databaseBytes: Number(size), results, writer: { acked: writer.ackedIds.length, failed }, met }, null, 2) + '\n');
    log(`\nraw results written to ${o.json}`);
  }
  return met ? 0 : 2;
}

await runBenchmark(main, () => life.stop());
