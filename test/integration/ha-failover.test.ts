// Unplanned failures on a real cluster: a host crash, and a postmaster crash (restart in place,
// then failover after max_restarts). Synchronous mode: no acknowledged row may be lost.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, Writer, type TestCluster } from '../helpers/cluster.js';
import { connectMultiHost, parseMultiHostUri } from '../../src/verify/multihost.js';
import { connectionUris } from '../../src/cli/local-cluster.js';

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
