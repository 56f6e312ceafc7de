// One writer: a leader whose agent is frozen past its lease must not acknowledge writes once
// another member is promoted, and rejoins as a replica when it thaws.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, type TestCluster } from '../helpers/cluster.js';

let t: TestCluster;

before(async () => {
  t = await startCluster();
});
after(async () => {
  for (const m of t?.c.members ?? []) {
    try {
      t.signalAgent(m.name, 'SIGCONT');
    } catch {
      /* not running */
    }
  }
  await t?.stop();
});

test('frozen leader: no write acknowledged after another member is promoted; demotes and rejoins after SIGCONT', async () => {
  const old = await t.leader();
  const setup = await t.client(old.name);
  await setup.query('CREATE TABLE fence(id int primary key)');
  await setup.end();
  await t.waitFor('a synchronous standby', (v) => (v.sync?.members.length ?? 0) > 0);
  const oldDb = await t.client(old.name);

  t.signalAgent(old.name, 'SIGSTOP');
  const view = await t.waitFor('another member promoted', (v) =>
    v.leader && v.leader.name !== old.name && v.members.find((m) => m.name === v.leader?.name && m.role === 'primary') ? v : null,
  30_000);

  // The old postmaster still runs (its agent is frozen), but it must not acknowledge this write.
  let acknowledged = false;
  const attempt = oldDb
    .query('INSERT INTO fence VALUES (1)')
    .then(() => {
      acknowledged = true;
    })
    .catch(() => undefined);
  await Promise.race([attempt, new Promise((r) => setTimeout(r, 3000))]);
  assert.equal(acknowledged, false, 'the old primary acknowledged a write after another member was promoted');

  t.signalAgent(old.name, 'SIGCONT');
  await attempt;
  assert.equal(acknowledged, false, 'the write was never acknowledged');
  await oldDb.end().catch(() => undefined);
  const rejoined = await t.waitFor('old leader rejoins as a streaming replica', (v) =>
    v.members.find((m) => m.name === old.name && m.role === 'replica' && m.state === 'streaming') ? v : null,
  90_000);
  assert.equal(rejoined.leader?.name, view.leader?.name);
  const db = await t.client(view.leader!.name);
  const r = await db.query('SELECT count(*)::int AS n FROM fence');
  await db.end();
  assert.equal(r.rows[0].n, 0, 'the unacknowledged write did not survive on the new leader');
});
