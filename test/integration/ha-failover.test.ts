// Unplanned failures on a real cluster: a host crash, and a postmaster crash (restart in place,
// then failover after max_restarts). Synchronous mode: no acknowledged row may be lost.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startCluster, Writer, type TestCluster } from '../helpers/cluster.js';
import { connectMultiHost, parseMultiHostUri } from '../../src/verify/multihost.js';
import { connectionUris } from '../../src/cli/local-cluster.js';

const run = promisify(execFile);
let t: TestCluster;

before(async () => {
  t = await startCluster({ dcs: { max_restarts: 2, restart_window: 120 } });
  const leader = await t.leader();
  const db = await t.client(leader.name);
  await db.query('CREATE TABLE acked(id int primary key, at timestamptz default now())');
  await db.end();
  await t.waitFor('a synchronous standby', (v) => (v.sync?.members.length ?? 0) > 0);
});
after(async () => {
  await t?.stop();
});

function readWriteTarget() {
  const uri = connectionUris(t.c.members.map((m) => ({ host: t.c.host, port: m.pgPort })), t.c.superuser.username).readWrite;
  return parseMultiHostUri(uri, t.c.superuser.password);
}

async function countPresent(member: string, ids: number[]): Promise<number> {
  const db = await t.client(member);
  const r = await db.query<{ n: string }>('SELECT count(*) AS n FROM acked WHERE id = ANY($1)', [ids]);
  await db.end();
  return Number(r.rows[0]?.n);
}

test('host crash: a replica is promoted, writes resume, no acknowledged row is lost, the old member rejoins', async () => {
  await t.client((await t.leader()).name).then((db) => db.query('TRUNCATE acked').then(() => db.end()));
  const old = await t.leader();
  const writer = new Writer(() => connectMultiHost(readWriteTarget()));
  writer.start();
  await new Promise((r) => setTimeout(r, 1500));
  const ackedBefore = writer.acked.length;
  await t.kill(old.name, { agent: true, postmaster: true });
  const promoted = await t.waitFor('a new running leader', (v) =>
    v.leader && v.leader.name !== old.name ? v.members.find((m) => m.name === v.leader?.name && m.role === 'primary') : null,
  30_000);
  await new Promise((r) => setTimeout(r, 1500));
  await writer.stop();
  assert.ok(ackedBefore > 0, 'writes were acknowledged before the crash');
  assert.ok(writer.acked.length > ackedBefore, 'writes acknowledged again after the failover');
  assert.equal(await countPresent(promoted.name, writer.acked), writer.acked.length, 'every acknowledged row is on the new leader');

  t.startAgent(old.name);
  const view = await t.waitFor('old leader rejoins as a streaming replica', (v) =>
    v.members.find((m) => m.name === old.name && m.role === 'replica' && m.state === 'streaming') ? v : null,
  90_000);
  assert.equal(view.leader?.name, promoted.name);
  let present = 0;
  for (let i = 0; i < 50 && present < writer.acked.length; i++) {
    present = await countPresent(old.name, writer.acked);
    if (present < writer.acked.length) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(present, writer.acked.length, 'the rejoined member holds every acknowledged row');
});

test('postmaster crash: restarted in place without failover; after max_restarts, failover', async () => {
  const leader = await t.leader();
  const timelineBefore = leader.timeline;
  await t.kill(leader.name, { agent: false, postmaster: true });
  await t.waitFor('postmaster restarted', () => t.postmasterPid(leader.name), 20_000);
  const v1 = await t.waitFor('leader running again', (v) => v.members.find((m) => m.name === v.leader?.name && m.state === 'running') ? v : null);
  assert.equal(v1.leader?.name, leader.name, 'no failover for one crash');
  assert.equal(v1.members.find((m) => m.name === leader.name)?.timeline, timelineBefore, 'same timeline');
  const db = await t.client(leader.name);
  await db.query('INSERT INTO acked(id) VALUES (-1)');
  await db.end();

  // Second crash within the window reaches max_restarts=2; the third gives up leadership.
  await t.kill(leader.name, { agent: false, postmaster: true });
  await t.waitFor('postmaster restarted again', (v) => t.postmasterPid(leader.name) && v.members.find((m) => m.name === leader.name && m.state === 'running'), 20_000);
  await t.kill(leader.name, { agent: false, postmaster: true });
  const v3 = await t.waitFor('another member leads', (v) =>
    v.leader && v.leader.name !== leader.name && v.members.find((m) => m.name === v.leader?.name && m.state === 'running') ? v : null,
  30_000);
  assert.notEqual(v3.leader?.name, leader.name);
  const last = v3.history.at(-1)!;
  assert.equal(last.leader, v3.leader?.name);
  await t.waitFor('the crashed member rejoins as a replica', (v) => v.members.find((m) => m.name === leader.name && m.state === 'streaming'), 90_000);
});

test('only a synchronous standby is promoted automatically; "baton failover --to" forces the rest', async () => {
  const view = await t.waitFor('a leader with a synchronous standby and all streaming', (v) =>
    v.sync?.leader === v.leader?.name && (v.sync?.members.length ?? 0) > 0 && v.members.every((m) => m.state === 'running' || m.state === 'streaming') && v.members.length === 3 ? v : null,
  60_000);
  const leader = view.leader!.name;
  const syncStandby = view.sync!.members[0]!;
  const async = t.c.members.find((m) => m.name !== leader && m.name !== syncStandby)!.name;

  const refused = await run(process.execPath, ['bin/baton.js', 'failover', '--to', async, '--dir', t.c.dir]).catch((e: { code: number; stderr: string }) => e);
  assert.equal((refused as { code: number }).code, 1);
  assert.match((refused as { stderr: string }).stderr, /healthy leader/);

  await t.kill(leader, { agent: true, postmaster: true });
  await t.kill(syncStandby, { agent: true, postmaster: true });
  await t.waitFor('leader key expired', (v) => v.leader === null, 15_000);
  await new Promise((r) => setTimeout(r, 3000));
  const stuck = await t.view();
  assert.equal(stuck.leader, null, `the asynchronous replica ${async} must not promote itself`);
  assert.match(stuck.members.find((m) => m.name === async)?.problem ?? '', /not a synchronous standby/);

  const forced = await run(process.execPath, ['bin/baton.js', 'failover', '--to', async, '--dir', t.c.dir]);
  assert.match(forced.stdout, new RegExp(`failed over to ${async}`));
  const after = await t.leader();
  assert.equal(after.name, async);
  const db = await t.client(async);
  await db.query('INSERT INTO acked(id) VALUES (-2)');
  await db.end();
  assert.match((await t.view()).history.at(-1)!.reason, /forced failover/);

  t.startAgent(leader);
  t.startAgent(syncStandby);
  await t.waitFor('both crashed members rejoin', (v) =>
    [leader, syncStandby].every((n) => v.members.find((m) => m.name === n && m.state === 'streaming')), 90_000);
});
