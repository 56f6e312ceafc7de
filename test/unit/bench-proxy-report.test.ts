// bench/proxy.ts's arithmetic: medians over rounds, ratios to the direct path, the verdict against
// the target, and the round-by-round comparison of baton with PgBouncer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compare, medians, pairedLines, verdicts } from '../../bench/lib/proxy-report.js';
import type { PathName, PgbenchResult, Workload } from '../../bench/lib/proxy-pgbench.js';

function run(workload: Workload, clients: number, path: PathName, tps: number, p99Ms: number): PgbenchResult {
  return { workload, clients, path, startedAt: '2026-11-30T00:00:00Z', tps, transactions: tps * 15, failed: 0, p50Ms: p99Ms / 3, p99Ms, relayCpuUs: path === 'direct' ? null : 15 };
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
  const [v] = verdicts(rows, ['simple-update'], [8]);
  assert.equal(v!.pass, false, 'baton 0.828 under PgBouncer 0.838 misses');
  assert.match(v!.line, /8 clients MISSED \(tps ratio baton 0\.828 vs pgbouncer 0\.838, baton p99 overhead \+0\.950 ms\)/);
});

test('paired lines compare baton with PgBouncer round by round, p99 overhead against that round’s direct run', () => {
  const lines = pairedLines(RESULTS, ['simple-update'], [8]);
  assert.deepEqual(lines, ['simple-update 8 clients, per round: baton/pgbouncer tps 1.080 0.909 (baton ahead in 1 of 2); p99 overhead baton +0.50 +1.40, pgbouncer +1.20 +0.50 ms']);
  assert.deepEqual(pairedLines(RESULTS, ['select-only'], [8]), [], 'a cell not measured gives no line');
});
