// `baton verify` against a real local cluster: one run of every scenario (the short drill CI runs),
// its report and timeline, a verdict that fails when a target cannot be met, and bad input.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { etcdEndpoint, pidAlive, readLocalCluster } from '../../src/cli/local-cluster.js';
import type { RunReport } from '../../src/verify/drill.js';
import { SCENARIOS } from '../../src/verify/drill.js';

const run = promisify(execFile);
let t: TestCluster;

function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  // PGPASSWORD: how a remote drill's writer logs in (a local cluster's password comes from cluster.json).
  const env = { ...process.env, PGPASSWORD: t.c.superuser.password };
  return run(process.execPath, ['bin/baton.js', ...args], { timeout: 300_000, maxBuffer: 16 * 1024 * 1024, env }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
}

function file(name: string, text?: string): string {
  const p = path.join(t.c.dir, name);
  if (text !== undefined) fs.writeFileSync(p, text);
  return p;
}

before(async () => {
  t = await startCluster({ nodes: 3 });
});
after(async () => {
  await t?.stop();
});

test('one run of every scenario: no acknowledged row lost, the cluster whole again, a report and a timeline', async () => {
  // Generous bounds: timings are measured in bench/, not asserted here.
  const cfg = file('verify.yml', 'targets: { rto_planned: 10s, rto_unplanned: 30s, rpo: 0 }\n');
  const json = file('report.json');
  const svg = file('timeline.svg');
  const r = await cli('verify', '--dir', t.c.dir, '--scenario', 'all', '--config', cfg, '--json', json, '--svg', svg, '--duration', '2');
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /verdict: every target met/);
  for (const s of SCENARIOS) assert.match(r.stdout, new RegExp(`^\\| ${s} +\\| 1 `, 'm'), `table row for ${s}`);

  const report = JSON.parse(fs.readFileSync(json, 'utf8')) as { runs: RunReport[]; verdict: { met: boolean }; summaries: { scenario: string }[] };
  assert.equal(report.verdict.met, true);
  assert.deepEqual(report.runs.map((x) => x.scenario), [...SCENARIOS]);
  assert.deepEqual(report.summaries.map((x) => x.scenario), [...SCENARIOS]);
  for (const x of report.runs) {
    assert.deepEqual(x.account.lostAcked, [], `${x.scenario}: no acknowledged row lost`);
    assert.deepEqual(x.account.unexpected, []);
    assert.deepEqual(x.account.duplicates, []);
    assert.ok(x.account.writesResumed, `${x.scenario}: writes resumed`);
    assert.ok(x.account.acked > 0);
    assert.ok(x.wholeAtMs !== null && x.wholeAtMs >= x.faultAtMs, `${x.scenario}: whole again after the fault`);
    assert.equal(x.account.timeline.reduce((a, b) => a + b, 0), x.account.acked);
  }
  const byName = Object.fromEntries(report.runs.map((x) => [x.scenario, x]));
  // Leadership moved where the scenario moves it, and stayed where it should.
  for (const s of ['switchover', 'host-crash', 'freeze', 'standby-then-primary'] as const) assert.notEqual(byName[s]!.leaderAfter, byName[s]!.leaderBefore, s);
  assert.equal(byName['replica-crash']!.leaderAfter, byName['replica-crash']!.leaderBefore);
  assert.notEqual(byName['replica-crash']!.hurt, byName['replica-crash']!.leaderBefore);
  // standby-then-primary: the replica left running took over.
  const stp = byName['standby-then-primary']!;
  assert.ok(stp.leaderAfter !== stp.hurt && stp.leaderAfter !== stp.leaderBefore);

  const image = fs.readFileSync(svg, 'utf8');
  assert.match(image, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.equal(image.match(/class="fault"/g)?.length, SCENARIOS.length);
  assert.equal(image.match(/class="whole"/g)?.length, SCENARIOS.length);

  // Every member is back and streaming.
  const v = await t.view();
  assert.equal(v.members.filter((m) => m.state === 'streaming').length, 2);
});

test('--via multihost: the writer finds the leader through a multi-host URI instead of the proxy', async () => {
  const json = file('multihost.json');
  // Generous bounds, as above: a 1211 ms switchover on a busy machine failed the default 1 s target.
  const cfg = file('verify-multihost.yml', 'targets: { rto_planned: 10s, rto_unplanned: 30s, rpo: 0 }\n');
  const r = await cli('verify', '--dir', t.c.dir, '--scenario', 'switchover', '--via', 'multihost', '--config', cfg, '--json', json, '--duration', '1');
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /writes through a multi-host URI of the members/);
  const report = JSON.parse(fs.readFileSync(json, 'utf8')) as { runs: RunReport[] };
  assert.deepEqual(report.runs[0]!.account.lostAcked, []);
  assert.ok(report.runs[0]!.account.writesResumed);
});

test('Ctrl-C during a freeze thaws the frozen member and exits 130', async () => {
  const child = spawn(process.execPath, ['bin/baton.js', 'verify', '--dir', t.c.dir, '--scenario', 'freeze'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the freeze never started:\n${stderr}`)), 60_000);
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (/injecting freeze/.test(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  await new Promise((r) => setTimeout(r, 500));
  child.kill('SIGINT');
  assert.equal(await exited, 130, stderr);
  assert.match(stderr, /SIGINT: stopping the drill; putting the cluster back/);
  // No process of the cluster is left stopped (state T), every agent runs, and the cluster heals.
  for (const m of readLocalCluster(t.c.dir)!.members) {
    assert.ok(pidAlive(m.agentPid), `${m.name}'s agent runs`);
    const state = fs.readFileSync(`/proc/${m.agentPid}/stat`, 'utf8').split(') ')[1]!.slice(0, 1);
    assert.notEqual(state, 'T', `${m.name}'s agent is not stopped`);
  }
  await t.waitFor('every member streaming again', (v) => v.members.filter((m) => m.state === 'streaming').length === 2 && v.members.some((m) => m.role === 'primary' && m.state === 'running'));
});

test('a target that cannot be met fails the verdict, names the run and exits 1', async () => {
  const cfg = file('strict.yml', 'targets: { rto_unplanned: 0ms }\n');
  const r = await cli('verify', '--dir', t.c.dir, '--scenario', 'postgres-crash', '--config', cfg, '--duration', '1');
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /FAILED postgres-crash run 1: RTO \d+ ms is over the unplanned target of 0 ms/);
  assert.match(r.stderr, /targets not met in 1 case/);
});

test('bad input: unknown scenario, bad counts, a bad config, process faults on a remote cluster without a fault command', async () => {
  const unknown = await cli('verify', '--dir', t.c.dir, '--scenario', 'meteor');
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /unknown scenario meteor/);
  assert.match(unknown.stderr, /switchover, postgres-crash, host-crash, freeze, replica-crash, standby-then-primary/);
  const runs = await cli('verify', '--dir', t.c.dir, '--scenario', 'switchover', '--runs', '0');
  assert.notEqual(runs.code, 0);
  assert.match(runs.stderr, /--runs must be a whole number from 1 to 1000/);
  const via = await cli('verify', '--dir', t.c.dir, '--scenario', 'switchover', '--via', 'carrier-pigeon');
  assert.equal(via.code, 1);
  assert.match(via.stderr, /--via must be proxy or multihost/);
  const badCfg = file('bad.yml', 'targets: { rto_planned: soon }\nfault_comand: x\n');
  const cfg = await cli('verify', '--dir', t.c.dir, '--scenario', 'switchover', '--config', badCfg);
  assert.equal(cfg.code, 1);
  assert.match(cfg.stderr, /bad\.yml: targets\.rto_planned/);
  assert.match(cfg.stderr, /unknown key\(s\) "fault_comand"/);
  const missing = await cli('verify', '--dir', t.c.dir, '--scenario', 'switchover', '--config', file('nope.yml'));
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read verify config .*nope\.yml: ENOENT/);
  const remote = await cli('verify', '--etcd', etcdEndpoint(t.c), '--cluster', t.c.cluster, '--scenario', 'switchover,freeze');
  assert.equal(remote.code, 1);
  assert.match(remote.stderr, /scenario freeze hurts processes: it needs a local cluster \(--dir\) or fault_command/);
});

test('a remote cluster with a fault command: the command is run with the fault and the member', async () => {
  // The fault command stands in for ssh to the member's host: here it kills the member's postmaster.
  const seen = file('faults.log');
  const cmd = `echo "$BATON_FAULT $BATON_MEMBER $BATON_HOST:$BATON_PORT" >> ${seen}; kill -KILL $(head -1 ${t.c.dir}/$BATON_MEMBER/data/postmaster.pid)`;
  const cfg = file('remote.yml', `fault_command: '${cmd}'\ntargets: { rto_unplanned: 30s }\n`);
  const r = await cli('verify', '--etcd', etcdEndpoint(t.c), '--cluster', t.c.cluster, '--user', t.c.superuser.username, '--scenario', 'postgres-crash', '--config', cfg, '--duration', '1');
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /writes through a multi-host URI of the members; faults by the fault command/);
  assert.match(fs.readFileSync(seen, 'utf8'), /^postgres-crash node\d 127\.0\.0\.1:\d+\n$/);
});
