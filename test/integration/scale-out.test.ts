// Online scale-out against a real cluster: add a member while a writer inserts, prove it holds every
// acknowledged row, see it in the proxy's pool and in `baton replication`, compare members with
// `baton check consistency` (and catch a difference made on purpose), remove it, and refuse bad input.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { startCluster, Writer, type TestCluster } from '../helpers/cluster.js';
import { addLocalMember } from '../../src/cli/node-add.js';
import { removeMember } from '../../src/cli/node-remove.js';
import { gatherReplication } from '../../src/cli/replication.js';
import { queryPoolNodes } from '../../src/cli/proxy-cmd.js';
import { sqlCredentials } from '../../src/cli/member-sql.js';
import { readLocalCluster } from '../../src/cli/local-cluster.js';
import { checkConsistency } from '../../src/verify/consistency.js';
import { runAsFor } from '../../src/util/os-user.js';

const run = promisify(execFile);
let t: TestCluster;
/** The leader and the replica that bootstrap chose (either may win the race to initialise). */
let L = '';
let R = '';

function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, ['bin/baton.js', ...args, '--dir', t.c.dir], { timeout: 60_000 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
}

function proxyWriter(): Writer {
  return new Writer(async () => {
    const c = new pg.Client({
      host: t.c.host,
      port: t.c.proxy!.readWritePort,
      user: t.c.superuser.username,
      password: t.c.superuser.password,
      database: 'postgres',
      connectionTimeoutMillis: 3000,
    });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  });
}

async function sql<T extends pg.QueryResultRow>(member: string, text: string, params: unknown[] = []): Promise<T[]> {
  const db = await t.client(member);
  try {
    return (await db.query<T>(text, params)).rows;
  } finally {
    await db.end();
  }
}

/** Waits until `member` has replayed everything the leader had written when this was called. */
async function caughtUp(member: string): Promise<void> {
  const lsn = (await sql<{ lsn: string }>(L, 'SELECT pg_current_wal_lsn()::text AS lsn'))[0]!.lsn;
  await t.waitFor(`${member} to replay up to ${lsn}`, async () => (await sql<{ ok: boolean }>(member, 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn]))[0]!.ok);
}

const cred = () => sqlCredentials(readLocalCluster(t.c.dir), undefined);

before(async () => {
  // A long ttl keeps a frozen member's key for the unreachable-source case below.
  t = await startCluster({ nodes: 2, dcs: { ttl: 10 } });
  L = (await t.leader()).name;
  R = L === 'node1' ? 'node2' : 'node1';
  const db = await t.client(L);
  await db.query('CREATE TABLE acked(id int PRIMARY KEY)');
  // Enough data that the copy takes a while and the writer runs during it.
  await db.query("CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 400000) g");
  await db.end();
});
after(async () => {
  await t?.stop();
});

test('node add under write load: the writer sees no error, the new member has every acknowledged row and joins the pool', async () => {
  const writer = proxyWriter();
  writer.start();
  await t.waitFor('the writer to get going', () => writer.acked.length > 20);
  const progress: string[] = [];
  let r: Awaited<ReturnType<typeof addLocalMember>>;
  let ackedDuringAdd: number;
  try {
    r = await addLocalMember(t.store, {
      dir: t.c.dir,
      name: 'node3',
      tags: {},
      maxLagBytes: 1024 * 1024,
      timeoutMs: 120_000,
      osUser: 'postgres',
      out: () => undefined,
      progress: (l) => progress.push(l),
    });
    ackedDuringAdd = writer.acked.length;
    await new Promise((res) => setTimeout(res, 500));
  } finally {
    await writer.stop();
  }
  assert.equal(writer.failed, 0, 'the writer saw no error');
  assert.ok(writer.acked.length > ackedDuringAdd, 'writes went on after the add');
  assert.equal(r.member.state, 'streaming');
  assert.ok(progress.some((l) => new RegExp(`node3: cloning from ${L}: .*B`).test(l)), `clone progress was shown: ${progress.join(' | ')}`);

  await caughtUp('node3');
  const n = (await sql<{ n: number }>('node3', 'SELECT count(*)::int AS n FROM acked WHERE id = ANY($1)', [writer.acked]))[0]!.n;
  assert.equal(n, writer.acked.length, 'every acknowledged row is on the new member');

  const pool = await queryPoolNodes({ host: t.c.host, port: t.c.proxy!.adminPort, password: t.c.proxy!.adminPassword });
  const row = pool.rows.find((x) => x[pool.fields.indexOf('port')] === String(t.member('node3').pgPort));
  assert.equal(row?.[pool.fields.indexOf('status')], 'up', 'node3 is in the proxy pool');

  const repl = await gatherReplication(await t.view(), cred());
  const link = repl.links.find((l) => l.upstream === L && l.member === 'node3');
  assert.equal(link?.state, 'streaming');
  assert.equal(link?.slot, 'node3');
  assert.deepEqual(repl.unreachable, []);
});

test('check consistency: all members match, also while a writer runs', async () => {
  // The writer counts ids from 1 again: start from an empty table.
  await sql(L, 'TRUNCATE acked');
  const writer = proxyWriter();
  writer.start();
  let reports: Awaited<ReturnType<typeof checkConsistency>>;
  try {
    await t.waitFor('the writer to get going', () => writer.acked.length > 20);
    const view = await t.view();
    reports = await checkConsistency(view, cred(), { members: view.members, timeoutMs: 30_000, progress: () => undefined });
  } finally {
    await writer.stop();
  }
  assert.equal(writer.failed, 0);
  const postgres = reports.find((r) => r.database === 'postgres')!;
  assert.deepEqual(postgres.tables.map((x) => x.table).sort(), ['public.acked', 'public.bulk']);
  for (const tb of postgres.tables) {
    assert.ok(tb.same, `${tb.table} matches: ${JSON.stringify(tb.digests)}`);
    assert.deepEqual(Object.keys(tb.digests).sort(), [L, R, 'node3'].sort());
  }
  assert.equal(postgres.tables.find((x) => x.table === 'public.bulk')!.digests['node3']!.rows, 400000);
  // Every replica was paused at or after the barrier, and replay runs again afterwards.
  for (const lsn of Object.values(postgres.pausedAt)) assert.ok(lsn >= postgres.barrierLsn);
  for (const m of [R, 'node3']) {
    assert.equal((await sql<{ s: string }>(m, 'SELECT pg_get_wal_replay_pause_state() AS s'))[0]!.s, 'not paused');
  }
  const ok = await cli('check', 'consistency');
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /consistent: \d+ tables/);
});

test('check consistency catches a row changed on one replica behind PostgreSQL\'s back', async () => {
  const db = await t.client(L);
  await db.query('CREATE TABLE tamper(id int, v text) WITH (autovacuum_enabled = off)');
  await db.query("INSERT INTO tamper SELECT g, 'original-' || lpad(g::text, 4, '0') FROM generate_series(1, 100) g");
  // Frozen and checkpointed: nothing will write this page again, so WAL replay cannot undo the edit.
  await db.query('VACUUM FREEZE tamper');
  await db.query('CHECKPOINT');
  const file = (await db.query<{ file: string }>("SELECT pg_relation_filepath('tamper') AS file")).rows[0]!.file;
  await db.end();
  await caughtUp(R);

  const replica = t.member(R);
  t.signalAgent(R, 'SIGTERM'); // the agent stops PostgreSQL and exits
  await t.waitFor(`${R} to stop`, (v) => !v.members.some((m) => m.name === R));
  await new Promise((res) => setTimeout(res, 300));
  const rel = path.join(replica.dataDir, file);
  const bytes = fs.readFileSync(rel);
  const at = bytes.indexOf('original-0042');
  assert.ok(at > 0, 'the row is in the file');
  bytes.write('tampered-0042', at, 'latin1');
  fs.writeFileSync(rel, bytes);
  // Page checksums are on: recompute them so the edited page reads as valid.
  const ids = runAsFor('postgres');
  for (const mode of ['--disable', '--enable']) {
    await run('/usr/lib/postgresql/15/bin/pg_checksums', [mode, '-D', replica.dataDir], { ...(ids && { uid: ids.uid, gid: ids.gid }) });
  }
  t.startAgent(R);
  await t.waitFor(`${R} to stream again`, (v) => v.members.some((m) => m.name === R && m.state === 'streaming'));
  await caughtUp(R);

  const view = await t.view();
  const [report] = await checkConsistency(view, cred(), { members: view.members, databases: ['postgres'], timeoutMs: 30_000, progress: () => undefined });
  const tampered = report!.tables.find((x) => x.table === 'public.tamper')!;
  assert.equal(tampered.same, false);
  assert.equal(tampered.digests[R]!.rows, 100);
  assert.notEqual(tampered.digests[R]!.sum, tampered.digests[L]!.sum);
  assert.equal(tampered.digests['node3']!.sum, tampered.digests[L]!.sum);
  assert.ok(report!.tables.filter((x) => x.table !== 'public.tamper').every((x) => x.same));

  const r = await cli('check', 'consistency', '--database', 'postgres');
  assert.equal(r.code, 1);
  assert.match(r.stdout, /public\.tamper .*DIFFERENT/);
  assert.match(r.stderr, /members differ in 1 table: postgres\.public\.tamper/);
  const pair = await cli('check', 'consistency', '--database', 'postgres', '--members', `${L},node3`);
  assert.equal(pair.code, 0, pair.stderr);
});

test('bad input: duplicate name, unknown member, removing the leader, bad clone sources', async () => {
  const dup = await cli('node', 'add', 'node3');
  assert.equal(dup.code, 1);
  assert.match(dup.stderr, /a member named node3 already exists/);
  const badName = await cli('node', 'add', 'no/slash');
  assert.equal(badName.code, 1);
  assert.match(badName.stderr, /invalid member name/);
  const unknown = await cli('node', 'remove', 'ghost');
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no member named ghost/);
  const leader = await cli('node', 'remove', L);
  assert.equal(leader.code, 1);
  assert.match(leader.stderr, new RegExp(`${L} is the leader.*\\n.*switch over first`));
  const noSource = await cli('node', 'add', 'node4', '--clone-from', 'ghost');
  assert.equal(noSource.code, 1);
  assert.match(noSource.stderr, /clone source ghost is not a member/);
  const unknownCheck = await cli('check', 'consistency', '--members', `${L},ghost`);
  assert.equal(unknownCheck.code, 1);
  assert.match(unknownCheck.stderr, /unknown member: ghost/);

  // The replica freezes with its PostgreSQL dead: its key still says streaming, but nothing answers.
  t.signalAgent(R, 'SIGSTOP');
  try {
    await t.kill(R, { agent: false, postmaster: true });
    const gone = await cli('node', 'add', 'node4', '--clone-from', R);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, new RegExp(`clone source ${R} is unreachable: nothing answers at 127\\.0\\.0\\.1:\\d+`));
  } finally {
    t.signalAgent(R, 'SIGCONT');
  }
  assert.ok(!readLocalCluster(t.c.dir)!.members.some((m) => m.name === 'node4'), 'nothing was added');
  assert.ok(!fs.existsSync(path.join(t.c.dir, 'node4')));
  await t.waitFor(`${R} to stream again`, (v) => v.members.some((m) => m.name === R && m.state === 'streaming'));
});

test('node remove: stops the member, drops its slot, its key and its pool entry, and removes its directory', async () => {
  const port = String(t.member('node3').pgPort);
  const lines: string[] = [];
  await removeMember(t.store, { name: 'node3', local: readLocalCluster(t.c.dir), cred: cred(), keepData: false, out: (l) => lines.push(l) });
  assert.ok(lines.some((l) => l.includes(`dropped replication slot node3 on ${L}`)), lines.join('\n'));
  const view = await t.view();
  assert.deepEqual(view.members.map((m) => m.name).sort(), [L, R].sort());
  assert.deepEqual(await sql(L, "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'node3'"), []);
  assert.ok(!readLocalCluster(t.c.dir)!.members.some((m) => m.name === 'node3'));
  assert.ok(!fs.existsSync(path.join(t.c.dir, 'node3')));
  await t.waitFor('the proxy to drop node3', async () => {
    const pool = await queryPoolNodes({ host: t.c.host, port: t.c.proxy!.adminPort, password: t.c.proxy!.adminPassword });
    return !pool.rows.some((x) => x[pool.fields.indexOf('port')] === port);
  });
  // Writes go on with the two members left.
  const n = (await sql<{ n: number }>(L, 'WITH i AS (INSERT INTO acked VALUES (-1) RETURNING 1) SELECT count(*)::int AS n FROM i'))[0]!.n;
  assert.equal(n, 1);
});
