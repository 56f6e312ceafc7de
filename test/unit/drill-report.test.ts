// The drill's configuration, its tables and its SVG timeline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { account } from '../../src/verify/accounting.js';
import { parseDrillConfig } from '../../src/verify/drill-config.js';
import { runsTable, summaries, summarise, summaryTable, timelineSvg } from '../../src/verify/drill-report.js';
import type { RunReport, Scenario } from '../../src/verify/drill.js';
import { parseScenarios } from '../../src/cli/verify-cmd.js';

test('drill config: defaults, durations in ms or s or plain seconds, strict keys', () => {
  assert.deepEqual(parseDrillConfig({}, 'f').targets, { rtoPlannedMs: 1000, rtoUnplannedMs: 5000, rpoRows: 0 });
  const c = parseDrillConfig({ targets: { rto_planned: '500ms', rto_unplanned: 2.5, rpo: 3 }, fault_command: 'true', read_write_uri: 'postgresql://a@h:1/db' }, 'f');
  assert.deepEqual(c.targets, { rtoPlannedMs: 500, rtoUnplannedMs: 2500, rpoRows: 3 });
  assert.equal(c.faultCommand, 'true');
  assert.equal(c.readWriteUri, 'postgresql://a@h:1/db');
  assert.equal(parseDrillConfig({ targets: { rto_unplanned: '1.5s' } }, 'f').targets.rtoUnplannedMs, 1500);
  const bad: [unknown, RegExp][] = [
    [{ targets: { rto_planned: 'soon' } }, /f: targets\.rto_planned: .*duration such as 500ms or 5s/],
    [{ targets: { rpo: -1 } }, /f: targets\.rpo/],
    [{ targets: { rpo: 0.5 } }, /f: targets\.rpo/],
    [{ target: {} }, /unknown key\(s\) "target"/],
    [{ targets: { rto: '1s' } }, /targets: unknown key\(s\) "rto"/],
    [{ read_only_uri: 'http://x' }, /read_only_uri: expected a postgresql:\/\/ URI/],
    [{ fault_command: '' }, /fault_command/],
    [[1, 2], /invalid verify configuration/],
  ];
  for (const [raw, re] of bad) assert.throws(() => parseDrillConfig(raw, 'f'), re, JSON.stringify(raw));
});

test('scenarios: names, comma lists and all; unknown names are refused with the list', () => {
  assert.deepEqual(parseScenarios('freeze'), ['freeze']);
  assert.deepEqual(parseScenarios('switchover, host-crash'), ['switchover', 'host-crash']);
  assert.equal(parseScenarios('all').length, 6);
  assert.throws(() => parseScenarios('switchover,meteor'), /unknown scenario meteor/);
  assert.throws(() => parseScenarios(','), /unknown scenario \(none\)/);
});

test('summaries: median of an even and an odd count, min and max; missing values are left out', () => {
  assert.deepEqual(summarise([3, 1, 2]), { median: 2, min: 1, max: 3 });
  assert.deepEqual(summarise([4, 1, 2, 3]), { median: 2.5, min: 1, max: 4 });
  assert.deepEqual(summarise([NaN, 5]), { median: 5, min: 5, max: 5 });
  assert.ok(Number.isNaN(summarise([]).median));
});

function report(scenario: Scenario, run: number, rtoGapMs: number, lost = false): RunReport {
  const writes = [
    { id: 1, startMs: 0, endMs: 500, ok: true },
    { id: 2, startMs: 500, endMs: 500 + rtoGapMs, ok: true },
  ];
  const acc = account({ writes, reads: [], faultAtMs: 600, wholeAtMs: 1500, endMs: 2000 + rtoGapMs }, lost ? [1] : [1, 2]);
  return { scenario, run, startedAt: '2026-11-30T00:00:00Z', leaderBefore: 'a', leaderAfter: 'b', hurt: 'a', faultAtMs: 600, faultEndMs: 1200, wholeAtMs: 1500, endMs: 2000 + rtoGapMs, account: acc };
}

test('tables: one row per run, one summary row per scenario', () => {
  const runs = [report('switchover', 1, 300), report('switchover', 2, 500), report('freeze', 1, 3000, true)];
  const t = runsTable(runs);
  assert.match(t, /\| switchover +\| 1 +\| a -> b +\| a +\| 300 /);
  assert.match(t, /\| freeze +\| 1 .*\| 1 +\| 0 +\| 900 /); // 1 lost, 0 unacked present, whole 900 ms after the fault
  const s = summaries(runs);
  assert.deepEqual(s.map((x) => [x.scenario, x.runs, x.rtoMs.median]), [['switchover', 2, 400], ['freeze', 1, 3000]]);
  assert.match(summaryTable(s), /\| switchover +\| 2 +\| 400 \(300\.\.500\)/);
});

test('timeline SVG: a row per run with bars, the fault, its end and whole again marked; text escaped', () => {
  const runs = [report('switchover', 1, 300), report('freeze', 1, 3000)];
  runs[1]!.leaderAfter = '<b&>';
  const svg = timelineSvg(runs);
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.equal(svg.match(/class="fault"/g)?.length, 2);
  assert.equal(svg.match(/class="fault-end"/g)?.length, 2);
  assert.equal(svg.match(/class="whole"/g)?.length, 2);
  assert.equal(svg.match(/<rect x=/g)?.length, 4); // two acknowledged writes per run, each in its own 100 ms bucket
  assert.match(svg, /a -&gt; &lt;b&amp;&gt;/);
  assert.ok(!svg.includes('<b&>'));
});
