// bench/proxy.ts's arithmetic: medians over rounds, ratios to the direct path, the verdict against
// the target, and the round-by-round comparison of baton with PgBouncer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compare, driftLines, markdownTable, medians, pairedLines, PER_ROUND_LIMIT, ratioInterval, t95, verdicts } from '../../bench/lib/proxy-report.js';
import type { PathName, PgbenchResult, Workload } from '../../bench/lib/proxy-pgbench.js';

function run(workload: Workload, clients: number, path: PathName, tps: number, p99Ms: number): PgbenchResult {
  // Relay CPU, run-queue wait and server and host CPU vary with tps, so their medians are checked too.
  const relayed = path !== 'direct';
  return {
    workload, clients, path, startedAt: '2026-11-30T00:00:00Z', tps, transactions: tps * 15, failed: 0, p50Ms: p99Ms / 3, p99Ms,
    relayCpuUs: relayed ? tps / 100 : null, relayWaitUs: relayed ? tps / 10 : null, serverCpuUs: tps / 5, hostCpuUs: tps / 2, rate: null,
  };
}

/** Two rounds of simple-update at 8 clients: baton ahead of PgBouncer in the first, behind in the second. */
const RESULTS: PgbenchResult[] = [
  run('simple-update', 8, 'direct', 3000, 6.0),
  run('simple-update', 8, 'baton', 2700, 6.5),
  run('simple-update', 8, 'pgbouncer', 2500, 7.2),
  run('simple-update', 8, 'direct', 3400, 5.0),
  run('simple-update', 8, 'baton', 2600, 6.4),
  run('simple-update', 8, 'pgbouncer', 2860, 5.5),
];

test('medians per path, ratios to the median direct run, and the verdict', () => {
  const rows = compare(medians(RESULTS));
  const baton = rows.find((r) => r.path === 'baton')!;
  const pgb = rows.find((r) => r.path === 'pgbouncer')!;
  assert.equal(baton.tps, 2650);
  assert.equal(baton.tpsRatio, 2650 / 3200);
  assert.ok(Math.abs(baton.p99OverheadMs - (6.45 - 5.5)) < 1e-9);
  assert.equal(pgb.tpsRatio, 2680 / 3200);
  assert.equal(baton.relayCpuUs, 26.5);
  assert.equal(baton.relayWaitUs, 265);
  assert.equal(rows.find((r) => r.path === 'direct')!.relayWaitUs, null);
  assert.equal(baton.serverCpuUs, 530);
  assert.equal(rows.find((r) => r.path === 'direct')!.hostCpuUs, 1600);
  assert.match(markdownTable(rows), /\| simple-update \| 8 \| baton \| 2650 \| [^|]+ \| [^|]+ \| 0\.828 \| \+0\.950 \| 26\.5 \| 265\.0 \| 530 \| 1325 \|/);
});

test('verdict: paired round by round; throughput misses only when the whole interval is below 1, p99 by the median overhead', () => {
  // Two rounds, baton 1.080 then 0.909 of PgBouncer: level; p99 overhead +0.50 and +1.40, median +0.95.
  const [v] = verdicts(RESULTS, ['simple-update'], [8]);
  assert.equal(v!.pass, true);
  assert.match(v!.line, /PASS .*8 clients ok \(baton\/pgbouncer tps 0\.991, 95 % interval 0\.332-2\.960: level; baton p99 overhead \+0\.950 ms, median of 2 rounds\)/);
  // Baton 5 % behind in every round: behind, though its p99 is fine.
  const behind = [0, 1, 2].flatMap(() => [run('select-only', 8, 'direct', 10_000, 1.0), run('select-only', 8, 'baton', 6650, 1.5), run('select-only', 8, 'pgbouncer', 7000, 1.6)]);
  const [b] = verdicts(behind, ['select-only'], [8]);
  assert.equal(b!.pass, false);
  assert.match(b!.line, /8 clients MISSED \(baton\/pgbouncer tps 0\.950, 95 % interval 0\.950-0\.950: behind; baton p99 overhead \+0\.500 ms, median of 3 rounds\)/);
  // One round: the single ratio; a p99 overhead of 1 ms or more misses.
  const [one] = verdicts(RESULTS.slice(0, 3), ['simple-update'], [8]);
  assert.match(one!.line, /8 clients ok \(baton\/pgbouncer tps 1\.080: ahead; baton p99 overhead \+0\.500 ms\)/);
  const [slow] = verdicts(RESULTS.slice(3), ['simple-update'], [8]);
  assert.match(slow!.line, /FAIL .*8 clients MISSED \(baton\/pgbouncer tps 0\.909: behind; baton p99 overhead \+1\.400 ms\)/);
  const [none] = verdicts(RESULTS, ['simple-update'], [8, 32]);
  assert.equal(none!.pass, false);
  assert.match(none!.line, /32 clients: not measured/);
});

test('held runs (--load): the median of the rates they were held to; a run at full speed has none', () => {
  const held = [3000, 3200, 2900].map((rate, i) => ({ ...run('select-only', 8, 'baton', rate - i, 2.0), rate }));
  assert.equal(medians(held)[0]!.rate, 3000);
  assert.equal(medians(RESULTS).every((r) => r.rate === null), true);
});

test('paired lines compare baton with PgBouncer round by round, p99 overhead against that round’s direct run', () => {
  const lines = pairedLines(RESULTS, ['simple-update'], [8]);
  assert.deepEqual(lines, ['simple-update 8 clients, per round: baton/pgbouncer tps 1.080 0.909 (baton ahead in 1 of 2; geometric mean 0.991, 95 % interval 0.332-2.960); p99 overhead baton +0.50 +1.40, pgbouncer +1.20 +0.50 ms']);
  assert.deepEqual(pairedLines(RESULTS, ['select-only'], [8]), [], 'a cell not measured gives no line');
});

test('drift: the direct runs of a cell, round by round, with a warning past 20 % between the slowest and the fastest', () => {
  const steady = driftLines(RESULTS, ['simple-update'], [8]);
  assert.deepEqual(steady, { lines: ['direct simple-update 8 clients, per round: 3000 3400 tps (max/min 1.13)'], drifted: false });
  const slow = [...RESULTS, run('simple-update', 8, 'direct', 2000, 9.0)];
  const drifted = driftLines(slow, ['simple-update'], [8]);
  assert.equal(drifted.drifted, true);
  assert.equal(drifted.lines[0], 'direct simple-update 8 clients, per round: 3000 3400 2000 tps (max/min 1.70)');
  assert.match(drifted.lines[1]!, /^WARNING: the direct runs of one cell differ by up to 70 % between rounds/);
  assert.deepEqual(driftLines(RESULTS.slice(0, 3), ['simple-update'], [8]), { lines: [], drifted: false }, 'one round: nothing to compare');
});

test('paired ratios: geometric mean with a 95 % t interval on the logs; none for one round or a ratio that is not positive', () => {
  assert.deepEqual(ratioInterval([1, 1, 1]), { mean: 1, low: 1, high: 1 });
  const ci = ratioInterval([1.1, 0.9, 1.0])!;
  // logs 0.0953, -0.1054, 0: mean -0.00335, sd 0.1004, t(2) = 4.303, half-width 0.2494
  assert.ok(Math.abs(ci.mean - 0.99666) < 1e-4, `mean ${ci.mean}`);
  assert.ok(Math.abs(ci.low - 0.7767) < 1e-3 && Math.abs(ci.high - 1.2789) < 1e-3, `interval ${ci.low}-${ci.high}`);
  assert.equal(ratioInterval([1.05]), null);
  assert.equal(ratioInterval([1.05, 0]), null);
  assert.deepEqual(ratioInterval(Array.from({ length: 41 }, () => 1)), { mean: 1, low: 1, high: 1 }, 'beyond the t table');
});

test('t quantile: the table up to 19 degrees of freedom, the expansion beyond it within 0.001 of the exact value', () => {
  assert.equal(t95(1), 12.706);
  assert.equal(t95(19), 2.093);
  // Exact two-sided 95 % quantiles of Student's t.
  for (const [df, exact] of [[20, 2.086], [29, 2.045], [40, 2.021], [59, 2.001], [120, 1.98]] as const) {
    assert.ok(Math.abs(t95(df)! - exact) < 1e-3, `t95(${df}) = ${t95(df)}, not ${exact}`);
  }
  assert.equal(t95(0), null);
  assert.equal(t95(2.5), null);
});

test('paired lines over many rounds: a summary with the interval and each path’s median p99 overhead', () => {
  const rounds = PER_ROUND_LIMIT + 2;
  const many: PgbenchResult[] = [];
  for (let i = 0; i < rounds; i++) {
    // baton 2 % ahead in every round; p99 overhead 0.5 ms for baton, 0.3 + i/100 ms for PgBouncer.
    many.push(run('select-only', 8, 'direct', 10_000 + i * 500, 1.0), run('select-only', 8, 'baton', 7140, 1.5), run('select-only', 8, 'pgbouncer', 7000, 1.3 + i / 100));
  }
  const [line] = pairedLines(many, ['select-only'], [8]);
  assert.equal(line, `select-only 8 clients, ${rounds} rounds: baton/pgbouncer tps ahead in ${rounds} of ${rounds}; geometric mean 1.020, 95 % interval 1.020-1.020; median p99 overhead baton +0.50, pgbouncer +0.36 ms`);
});

test('run-queue wait of a process: a count for a live one, null for one that is gone', async () => {
  const { runQueueWaitNs } = await import('../../bench/lib/cpu.js');
  const mine = runQueueWaitNs(process.pid);
  assert.ok(mine !== null && Number.isInteger(mine) && mine >= 0, `got ${mine}`);
  // pid_max is at most 2^22: no process has this pid.
  assert.equal(runQueueWaitNs(2 ** 22 + 1), null);
});

test('CPU of a process tree counts a child that ended and was waited for, and the host counts it too', async () => {
  const { execFileSync } = await import('node:child_process');
  const { hostBusyTicks, treeCpuTicks } = await import('../../bench/lib/cpu.js');
  const mine = treeCpuTicks(process.pid);
  const host = hostBusyTicks();
  // A child that spins for about 300 ms of CPU, then ends; execFileSync waits for it.
  execFileSync(process.execPath, ['-e', 'const t = Date.now(); while (Date.now() - t < 300);']);
  const grew = treeCpuTicks(process.pid) - mine;
  assert.ok(grew >= 20, `the ended child's CPU is counted: ${grew} ticks`);
  assert.ok(hostBusyTicks() - host >= grew / 2, 'the host was busy at least as long');
  assert.throws(() => treeCpuTicks(2 ** 22 + 1), /no process/);
});
