// The replay log of a moving session: which statements it keeps, matched to the server's replies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { queryEffect } from '../../src/proxy/replay-sql.js';
import { REPLAY_LIMITS, SessionReplayLog } from '../../src/proxy/session-replay.js';

const P = 0x50;
const Q = 0x51;
const C = 0x43;
const S = 0x53;
const B = 0x42;

const parse = (name: string, sql: string) => Buffer.from(`${name}\0${sql}\0\0\0`);
const query = (sql: string) => Buffer.from(`${sql}\0`);
const close = (kind: 'S' | 'P', name: string) => Buffer.from(`${kind}${name}\0`);

/** Replies as a server gives them, one letter per message ('Z' + status for ReadyForQuery; 'C:TAG'
 * for a CommandComplete with that tag, 'C' alone for one with a tag that ends no transaction). */
function reply(log: SessionReplayLog, ...messages: string[]): (string | null)[] {
  return messages.map((m) => {
    if (m.startsWith('Z')) return log.readyForQuery(m[1] ?? 'I');
    if (m.startsWith('C')) return log.serverMessage(C, Buffer.from(`${m.slice(2) || 'SELECT 1'}\0`));
    return log.serverMessage(m.charCodeAt(0));
  });
}

const kept = (log: SessionReplayLog) => log.replay.map((e) => `${e.kind}:${e.names.join(',')}`);

test('queryEffect: settings, DISCARD ALL and DEALLOCATE are recognised; other forms are not', () => {
  assert.deepEqual(queryEffect("SET search_path = app, public"), { kind: 'settings', names: ['search_path'] });
  assert.deepEqual(queryEffect("set session statement_timeout to '5s'"), { kind: 'settings', names: ['statement_timeout'] });
  assert.deepEqual(queryEffect("SET TIME ZONE 'UTC'; SET my.tenant = '42'"), { kind: 'settings', names: ['timezone', 'my.tenant'] });
  assert.deepEqual(queryEffect('RESET ALL'), { kind: 'settings', names: ['*'] });
  assert.deepEqual(queryEffect('/* tagged */ RESET work_mem;'), { kind: 'settings', names: ['work_mem'] });
  assert.deepEqual(queryEffect('DISCARD ALL'), { kind: 'discard-all' });
  assert.deepEqual(queryEffect("SELECT set_config('TimeZone', 'Europe/Paris', false)"), { kind: 'settings', names: ['timezone'] });
  // asyncpg's reset when a pooled connection is given back: nothing an unpinned session holds, and RESET ALL.
  assert.deepEqual(queryEffect('SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;'), { kind: 'settings', names: ['*'] });
  assert.deepEqual(queryEffect('DISCARD TEMP; DISCARD SEQUENCES'), { kind: 'settings', names: [] });
  assert.deepEqual(queryEffect('DEALLOCATE ALL'), { kind: 'deallocate', name: null });
  assert.deepEqual(queryEffect('deallocate prepare Stmt_1'), { kind: 'deallocate', name: 'stmt_1' });
  assert.deepEqual(queryEffect('DEALLOCATE "Stmt ""1"""'), { kind: 'deallocate', name: 'Stmt "1"' });
  // Nothing outlasts the transaction: nothing to keep, nothing pinned.
  for (const sql of [
    'SET LOCAL work_mem = 1000',
    'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE',
    'SET CONSTRAINTS ALL DEFERRED',
    "SELECT set_config('TimeZone', 'UTC', true)",
    "SET LOCAL app.tenant = '42'; INSERT INTO t VALUES (1)",
    "select set_config('search_path', $1, true), set_config('role', $2, true), set_config('request.jwt.claims', $3, TRUE)",
  ]) assert.deepEqual(queryEffect(sql), { kind: 'settings', names: [] }, sql);
  assert.deepEqual(queryEffect("SET LOCAL a.b = 1; SET c.d = 2"), { kind: 'settings', names: ['c.d'] });
  assert.deepEqual(queryEffect('SET ROLE app'), { kind: 'settings', names: ['role'] });
  assert.deepEqual(queryEffect('reset role'), { kind: 'settings', names: ['role'] });
  assert.deepEqual(queryEffect('SET SESSION AUTHORIZATION "App"'), { kind: 'settings', names: ['session_authorization'] });
  assert.deepEqual(queryEffect('SET LOCAL ROLE app'), { kind: 'settings', names: [] });
  // As JDBC's setTransactionIsolation sends it: the defaults of later transactions, each a parameter.
  assert.deepEqual(queryEffect('SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ'), { kind: 'settings', names: ['default_transaction_isolation'] });
  assert.deepEqual(queryEffect('set session characteristics as transaction read only, not deferrable'), {
    kind: 'settings',
    names: ['default_transaction_read_only', 'default_transaction_deferrable'],
  });
  assert.deepEqual(queryEffect('SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED READ WRITE'), {
    kind: 'settings',
    names: ['default_transaction_isolation', 'default_transaction_read_only'],
  });
  for (const sql of [
    'SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SOMETIMES',
    'SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; LISTEN x',
    'SET XML OPTION DOCUMENT',
    "SET application_name = 'a;b'", // a quoted ';' is not split correctly: pins rather than guesses
    'SET temp_buffers = 100', // mentions temp
    "SET search_path = app; SELECT pg_sleep(1)",
    "SELECT set_config('a', current_user, false)",
    "SELECT set_config('a', (SELECT pg_advisory_lock(1))::text, true)", // local, but its argument is not
    "SELECT set_config('a', 'b', true), set_config('c', 'd', false)",
    "SELECT set_config('a', 'b'", // unbalanced
    "SET app.tenant = '1'; INSERT INTO t VALUES (1)", // a session setting in a Query that must not run again
    "SELECT pg_advisory_lock(1)",
    'PREPARE s AS SELECT 1',
    'LISTEN x',
    '',
  ]) assert.equal(queryEffect(sql), null, sql);
});

test('a named Parse is kept once the server confirms it; a failed one is not', () => {
  const log = new SessionReplayLog();
  assert.equal(log.clientMessage(P, parse('s1', 'SELECT $1::int'), false), null);
  assert.equal(log.clientMessage(S, Buffer.alloc(0), false), null);
  assert.equal(log.following, true);
  assert.deepEqual(reply(log, '1', 'Z'), [null, null]);
  assert.equal(log.following, false);
  assert.deepEqual(kept(log), ['prepare:s1']);
  assert.equal(log.replay[0]!.frame.subarray(5).toString(), parse('s1', 'SELECT $1::int').toString());

  log.clientMessage(P, parse('bad', 'SELEC 1'), false);
  log.clientMessage(S, Buffer.alloc(0), false);
  reply(log, 'E', 'Z');
  assert.deepEqual(kept(log), ['prepare:s1']);
  assert.equal(log.summary(), '1 prepared statement');
});

test('in a pipeline, an error skips every Parse up to the Sync; the next batch counts again', () => {
  const log = new SessionReplayLog();
  for (const [t, b] of [
    [P, parse('a', 'SELECT 1')],
    [B, Buffer.alloc(6)],
    [P, parse('b', 'SELECT 2')],
    [S, Buffer.alloc(0)],
    [P, parse('c', 'SELECT 3')],
    [S, Buffer.alloc(0)],
  ] as const) assert.equal(log.clientMessage(t, b, false), null);
  // a parsed, the Bind failed (b skipped), then c parsed after the second Sync.
  assert.deepEqual(reply(log, '1', 'E', 'ZI', '1', 'ZI'), [null, null, null, null, null]);
  assert.deepEqual(kept(log), ['prepare:a', 'prepare:c']);
});

test('Close and DEALLOCATE remove statements; DISCARD ALL empties the log', () => {
  const log = new SessionReplayLog();
  for (const name of ['a', 'b', 'c']) {
    log.clientMessage(P, parse(name, 'SELECT 1'), false);
    log.clientMessage(S, Buffer.alloc(0), false);
    reply(log, '1', 'ZI');
  }
  log.clientMessage(Q, query('SET search_path = app'), false);
  reply(log, 'C', 'ZI');
  log.clientMessage(C, close('S', 'a'), false);
  log.clientMessage(C, close('P', 'portal'), false);
  log.clientMessage(S, Buffer.alloc(0), false);
  reply(log, '3', '3', 'ZI');
  assert.deepEqual(kept(log), ['prepare:b', 'prepare:c', 'settings:search_path']);
  log.clientMessage(Q, query('DEALLOCATE b'), false);
  reply(log, 'C', 'ZI');
  assert.deepEqual(kept(log), ['prepare:c', 'settings:search_path']);
  assert.equal(log.summary(), '1 prepared statement, 1 setting');
  log.clientMessage(Q, query('DISCARD ALL'), false);
  reply(log, 'C', 'ZI');
  assert.deepEqual(kept(log), []);
  assert.equal(log.summary(), null);
});

test('settings: kept in order with statements, a parameter set again since the last Parse replaces itself', () => {
  const log = new SessionReplayLog();
  const set = (sql: string) => {
    assert.equal(log.clientMessage(Q, query(sql), false), null);
    assert.deepEqual(reply(log, 'C', 'ZI'), [null, null]);
  };
  set('SET search_path = a');
  set('SET work_mem = 1000');
  log.clientMessage(P, parse('s', 'SELECT * FROM t'), false);
  log.clientMessage(S, Buffer.alloc(0), false);
  reply(log, '1', 'ZI');
  set('SET search_path = b');
  set('SET search_path = c');
  set('SET statement_timeout = 10');
  // search_path = a stays: s was parsed under it.
  assert.deepEqual(kept(log), ['settings:search_path', 'settings:work_mem', 'prepare:s', 'settings:search_path', 'settings:statement_timeout']);
  assert.match(log.replay[3]!.frame.toString(), /search_path = c/);
  set('RESET ALL');
  assert.deepEqual(kept(log), ['settings:search_path', 'settings:work_mem', 'prepare:s', 'settings:*']);
  // A role change is a barrier too: what was set before it may have needed the earlier role.
  set('SET ROLE admin');
  set('SET app.x = 1');
  set('SET ROLE app');
  set('SET app.x = 2');
  set('SET app.x = 3');
  assert.deepEqual(kept(log).slice(4), ['settings:role', 'settings:app.x', 'settings:role', 'settings:app.x']);
  assert.match(log.replay.at(-1)!.frame.toString(), /app.x = 3/);
  set('RESET ALL'); // leaves the role as it is, as PostgreSQL's RESET ALL does
  assert.deepEqual(kept(log).slice(4), ['settings:role', 'settings:app.x', 'settings:role', 'settings:*']);
});

test('a setting made inside a transaction block is kept when the block commits, dropped when it rolls back', () => {
  const send = (log: SessionReplayLog, sql: string) => assert.equal(log.clientMessage(Q, query(sql), false), null);
  const committed = new SessionReplayLog();
  send(committed, 'BEGIN');
  assert.deepEqual(reply(committed, 'C:BEGIN', 'ZT'), [null, null]);
  send(committed, "SET search_path = app");
  assert.deepEqual(reply(committed, 'C:SET', 'ZT'), [null, null]);
  send(committed, 'SELECT 1');
  reply(committed, 'T', 'D', 'C', 'ZT');
  send(committed, "SET work_mem = '8MB'");
  assert.deepEqual(reply(committed, 'C:SET', 'ZT'), [null, null]);
  assert.deepEqual(kept(committed), []);
  send(committed, 'COMMIT');
  assert.deepEqual(reply(committed, 'C:COMMIT', 'ZI'), [null, null]);
  assert.deepEqual(kept(committed), ['settings:search_path', 'settings:work_mem']);
  assert.equal(committed.needsTypeScript, false);

  /** A session whose setting waits for its transaction block to end. */
  const settingInTx = () => {
    const log = new SessionReplayLog();
    send(log, "SET search_path = app");
    assert.deepEqual(reply(log, 'C:SET', 'ZT'), [null, null]);
    return log;
  };
  const rolledBack = settingInTx();
  send(rolledBack, 'ROLLBACK');
  assert.deepEqual(reply(rolledBack, 'C:ROLLBACK', 'ZI'), [null, null]);
  assert.deepEqual(kept(rolledBack), []);
  assert.equal(rolledBack.needsTypeScript, false);

  // A failed block: COMMIT answers ROLLBACK.
  const failed = settingInTx();
  send(failed, 'SELECT 1/0');
  assert.deepEqual(reply(failed, 'E', 'ZE'), [null, null]);
  send(failed, 'COMMIT');
  assert.deepEqual(reply(failed, 'C:ROLLBACK', 'ZI'), [null, null]);
  assert.deepEqual(kept(failed), []);

  // ROLLBACK TO SAVEPOINT (tagged ROLLBACK, the block still open), chained transactions and two ends
  // in one request are not modelled.
  const toSavepoint = settingInTx();
  send(toSavepoint, 'ROLLBACK TO SAVEPOINT a');
  assert.deepEqual(reply(toSavepoint, 'C:ROLLBACK', 'ZT'), [null, 'a transaction chained or rolled back to a savepoint after a setting changed in it']);
  const chained = settingInTx();
  send(chained, 'COMMIT AND CHAIN');
  assert.deepEqual(reply(chained, 'C:COMMIT', 'ZT'), [null, 'a transaction chained or rolled back to a savepoint after a setting changed in it']);
  // Rolled back to a savepoint made before the setting, then committed, in one request.
  const twice = settingInTx();
  send(twice, 'ROLLBACK TO a; COMMIT');
  assert.deepEqual(reply(twice, 'C:ROLLBACK', 'C:COMMIT'), [null, 'a transaction ended twice in one request after a setting changed in it (a rollback to a savepoint, then the end of the block?)']);
  // A savepoint made and released after the setting undoes nothing.
  const released = settingInTx();
  send(released, 'SAVEPOINT a');
  assert.deepEqual(reply(released, 'C:SAVEPOINT', 'ZT'), [null, null]);
  send(released, 'RELEASE a');
  assert.deepEqual(reply(released, 'C:RELEASE', 'ZT'), [null, null]);
  send(released, 'COMMIT');
  assert.deepEqual(reply(released, 'C:COMMIT', 'ZI'), [null, null]);
  assert.deepEqual(kept(released), ['settings:search_path']);
  const unreadable = settingInTx();
  send(unreadable, 'COMMIT');
  assert.match(unreadable.serverMessage(C, null)!, /CommandComplete the proxy could not read/);
});

test('what the log cannot follow or keep pins the session', () => {
  const setInTx = new SessionReplayLog();
  setInTx.clientMessage(Q, query('SET work_mem = 1000'), false);
  assert.deepEqual(reply(setInTx, 'C', 'ZT'), [null, null]);
  assert.notEqual(setInTx.clientMessage(Q, query("PREPARE TRANSACTION 't1'"), false), null, 'the session would outlive its transaction');

  const onlyClears = new SessionReplayLog();
  onlyClears.clientMessage(Q, query('CLOSE ALL; UNLISTEN *'), false);
  assert.deepEqual(reply(onlyClears, 'C', 'C', 'ZT'), [null, null, null]);
  assert.deepEqual(kept(onlyClears), []);

  const failedSet = new SessionReplayLog();
  failedSet.clientMessage(Q, query('SET no_such_thing = 1'), false);
  assert.deepEqual(reply(failedSet, 'E', 'ZI'), [null, null]);
  assert.deepEqual(kept(failedSet), []);

  const busy = new SessionReplayLog();
  assert.match(String(busy.clientMessage(P, parse('s', 'SELECT 1'), true)), /named prepared statement "s"/);
  assert.match(String(busy.clientMessage(Q, query('SET XML OPTION DOCUMENT'), false)), /SET changes session state/);
  assert.match(String(busy.clientMessage(P, parse('t', 'LISTEN x'), false)), /listen/);
  assert.match(String(busy.clientMessage(0x46, Buffer.alloc(4), false)), /function call/);

  const mismatch = new SessionReplayLog();
  mismatch.clientMessage(Q, query('SELECT 1'), false);
  assert.match(String(reply(mismatch, '1')[0]), /could not match/);
  assert.equal(mismatch.following, false);

  const closeUnseen = new SessionReplayLog();
  closeUnseen.clientMessage(P, parse('s', 'SELECT 1'), false);
  closeUnseen.clientMessage(S, Buffer.alloc(0), false);
  reply(closeUnseen, '1', 'ZI');
  assert.match(String(closeUnseen.clientMessage(C, close('S', 's'), true)), /closed in a pipeline/);

  const many = new SessionReplayLog();
  let reason: string | null = null;
  for (let i = 0; i <= REPLAY_LIMITS.entries && !reason; i++) {
    many.clientMessage(P, parse(`s${i}`, 'SELECT 1'), false);
    many.clientMessage(S, Buffer.alloc(0), false);
    reason = reply(many, '1', 'ZI')[0]!;
  }
  assert.match(String(reason), /more session state than the proxy keeps/);
});

test('plain statements and unnamed Parses leave nothing behind and end the batch at ReadyForQuery', () => {
  const log = new SessionReplayLog();
  assert.equal(log.clientMessage(Q, query('SELECT 1'), false), null);
  assert.equal(log.clientMessage(P, parse('', 'SELECT 2'), false), null);
  assert.equal(log.clientMessage(S, Buffer.alloc(0), false), null);
  assert.deepEqual(reply(log, 'T', 'D', 'C', 'ZI', '1', 'ZI'), [null, null, null, null, null, null]);
  assert.equal(log.following, false);
  assert.deepEqual(kept(log), []);
  // A message of a batch the native relay began (busy) is not followed.
  assert.equal(log.clientMessage(S, Buffer.alloc(0), true), null);
  assert.equal(log.following, false);
});

test('a setting sent as JDBC does (unnamed Parse, Bind, Execute, Sync) is kept as a Query, once it ran outside a transaction', () => {
  const bind = (portal: string, statement: string) => Buffer.from(`${portal}\0${statement}\0\0\0\0\0\0\0`);
  const execute = (portal: string) => Buffer.from(`${portal}\0\0\0\0\0`);
  const D = 0x44;
  const X = 0x45; // Execute (the client's 'E')
  const jdbcSet = (log: SessionReplayLog, sql: string) => {
    for (const [t, b] of [
      [P, parse('', sql)],
      [B, bind('', '')],
      [D, Buffer.from('P\0')],
      [X, execute('')],
      [S, Buffer.alloc(0)],
    ] as const) assert.equal(log.clientMessage(t, b, false), null);
  };
  const log = new SessionReplayLog();
  jdbcSet(log, 'SET search_path TO app, public');
  assert.equal(log.needsTypeScript, true);
  assert.deepEqual(reply(log, '1', '2', 'n', 'C', 'ZI'), [null, null, null, null, null]);
  assert.deepEqual(kept(log), ['settings:search_path']);
  assert.equal(log.replay[0]!.frame.toString('latin1', 0, 1), 'Q');
  assert.equal(log.replay[0]!.frame.toString('utf8', 5), 'SET search_path TO app, public\0');
  assert.equal(log.needsTypeScript, true, 'a later Bind of the unnamed statement would run the setting again');
  log.clientMessage(Q, query('SELECT 1'), false);
  reply(log, 'T', 'D', 'C', 'ZI');
  assert.equal(log.needsTypeScript, false, 'a simple Query drops the unnamed statement');

  const inTx = new SessionReplayLog();
  jdbcSet(inTx, 'SET work_mem = 1000');
  assert.deepEqual(reply(inTx, '1', '2', 'n', 'C', 'ZT'), [null, null, null, null, null]);
  assert.deepEqual(kept(inTx), [], 'not before its transaction commits');
  assert.equal(inTx.needsTypeScript, true, 'the end of the transaction must be seen');

  const failed = new SessionReplayLog();
  jdbcSet(failed, 'SET work_mem = nonsense');
  assert.deepEqual(reply(failed, '1', '2', 'n', 'E', 'ZI'), [null, null, null, null, null]);
  assert.deepEqual(kept(failed), []);

  // Prepared in one batch, run in the next: kept when it ran.
  const later = new SessionReplayLog();
  later.clientMessage(P, parse('', 'SET statement_timeout = 5000'), false);
  later.clientMessage(S, Buffer.alloc(0), false);
  reply(later, '1', 'ZI');
  assert.deepEqual(kept(later), []);
  later.clientMessage(B, bind('', ''), false);
  later.clientMessage(X, execute(''), false);
  later.clientMessage(S, Buffer.alloc(0), false);
  reply(later, '2', 'C', 'ZI');
  assert.deepEqual(kept(later), ['settings:statement_timeout']);

  const mixed = new SessionReplayLog();
  for (const [t, b] of [
    [P, parse('', 'SET work_mem = 1000')],
    [B, bind('', '')],
    [X, execute('')],
    [P, parse('', 'SELECT 1')],
    [B, bind('', '')],
    [X, execute('')],
    [S, Buffer.alloc(0)],
  ] as const) assert.equal(mixed.clientMessage(t, b, false), null);
  assert.equal(reply(mixed, '1', '2', 'C', '1', '2', 'C', 'ZI').at(-1), 'a setting changed in a batch with other statements');

  const namedPortal = new SessionReplayLog();
  namedPortal.clientMessage(P, parse('', 'SET work_mem = 1000'), false);
  assert.equal(namedPortal.clientMessage(B, bind('p1', ''), false), null);
  assert.deepEqual(reply(namedPortal, '1', '2'), [null, 'a setting bound to a named portal']);
  assert.match(String(new SessionReplayLog().clientMessage(P, parse('', 'SET XML OPTION DOCUMENT'), false)), /SET changes session state/);
});

test('transaction-scoped settings (SET LOCAL, set_config(..., true)) neither pin nor enter the log', () => {
  const log = new SessionReplayLog();
  for (const sql of ['BEGIN', "SET LOCAL app.tenant = '42'", 'INSERT INTO t VALUES (1)', 'COMMIT']) {
    assert.equal(log.clientMessage(Q, query(sql), false), null, sql);
    assert.deepEqual(reply(log, 'C', sql === 'COMMIT' ? 'ZI' : 'ZT'), [null, null]);
  }
  // PostgREST's per-request statement, prepared under a name.
  const postgrest = "select set_config('search_path', $1, true), set_config('role', $2, true)";
  assert.equal(log.clientMessage(P, parse('pgrst_1', postgrest), false), null);
  assert.equal(log.clientMessage(S, Buffer.alloc(0), false), null);
  reply(log, '1', 'ZI');
  assert.deepEqual(kept(log), ['prepare:pgrst_1']);
  // Sent while a batch the native relay began is still answered: nothing to follow, nothing pinned.
  assert.equal(log.clientMessage(Q, query("SET LOCAL app.tenant = '7'"), true), null);
  assert.equal(log.clientMessage(P, parse('', "SELECT set_config('role', $1, true)"), true), null);
  assert.match(String(log.clientMessage(P, parse('', "SELECT set_config('role', $1, false)"), true)), /set_config/);
});

test('the last unnamed Parse is kept for a move; a Query or a Close of the unnamed statement destroys it, as on the server', () => {
  const log = new SessionReplayLog();
  // A function, so that TypeScript does not narrow the field after an assertion.
  const unnamed = (): Buffer | null => log.unnamedParse;
  assert.equal(unnamed(), null);
  log.clientMessage(P, parse('', 'SELECT $1::int + 1'), false);
  assert.deepEqual(unnamed()?.subarray(5), parse('', 'SELECT $1::int + 1'));
  assert.equal(unnamed()?.[0], P);
  assert.equal(unnamed()?.readInt32BE(1), parse('', 'SELECT $1::int + 1').length + 4);
  log.clientMessage(P, parse('named', 'SELECT 2'), false);
  log.clientMessage(C, close('S', 'named'), false);
  log.clientMessage(C, close('P', ''), false);
  assert.deepEqual(unnamed()?.subarray(5), parse('', 'SELECT $1::int + 1'), 'named statements and portals leave it alone');
  log.clientMessage(C, close('S', ''), false);
  assert.equal(unnamed(), null);
  log.clientMessage(P, parse('', 'SELECT 3'), false);
  log.clientMessage(Q, query('SELECT 4'), false);
  assert.equal(unnamed(), null, 'a simple Query destroys the unnamed statement');
  log.clientMessage(P, parse('', `SELECT '${'x'.repeat(70_000)}'`), false);
  assert.equal(unnamed(), null, 'too large to keep');
  log.clientMessage(P, null, false);
  assert.equal(unnamed(), null, 'not whole in the chunk');
});

test('RESET ALL enters the log only when a setting is kept (the native relay passes it otherwise); UNLISTEN leaves nothing', () => {
  assert.deepEqual(queryEffect('UNLISTEN x'), { kind: 'settings', names: [] });
  const log = new SessionReplayLog();
  log.clientMessage(Q, query('RESET ALL'), false);
  reply(log, 'C', 'ZI');
  assert.deepEqual(kept(log), []);
  assert.equal(log.holdsSettings, false);
  log.clientMessage(Q, query("SET application_name = 'a'"), false);
  reply(log, 'C', 'ZI');
  assert.equal(log.holdsSettings, true);
  log.clientMessage(Q, query('RESET ALL'), false);
  reply(log, 'C', 'ZI');
  assert.deepEqual(kept(log), ['settings:*']);
});

test('settings the native relay kept enter the log as if TypeScript had seen them, and one it sent unanswered is followed', () => {
  const frame = (sql: string) => Buffer.concat([Buffer.from([Q, 0, 0, 0, 0]), query(sql)]);
  const log = new SessionReplayLog();
  log.clientMessage(P, parse('s', 'SELECT 1'), false);
  log.clientMessage(S, Buffer.alloc(0), false);
  reply(log, '1', 'ZI');
  assert.equal(log.summary([frame('SET search_path = a'), frame('SET work_mem = 1')]), '1 prepared statement, 2 settings', 'a look without taking them in');
  assert.deepEqual(kept(log), ['prepare:s']);
  assert.equal(log.keptByRelay([frame('SET search_path = a'), frame('SET work_mem = 1')]), null);
  assert.equal(log.keptByRelay([frame('SET search_path = b')]), null);
  assert.deepEqual(kept(log), ['prepare:s', 'settings:work_mem', 'settings:search_path'], 'set again after the Parse: replaced');
  assert.equal(log.summary([frame('SET search_path = c')]), '1 prepared statement, 2 settings');
  assert.match(log.replay.at(-1)!.frame.toString(), /search_path = b/);
  // Unanswered: the replies still to come decide, an error that passed already included.
  assert.equal(log.sentByRelay(frame('SET statement_timeout = 5'), false, true), null);
  assert.ok(log.following);
  assert.deepEqual(reply(log, 'C', 'ZI'), [null, null]);
  assert.deepEqual(kept(log).at(-1), 'settings:statement_timeout');
  assert.equal(log.sentByRelay(frame('SET lock_timeout = 5'), true, true), null);
  reply(log, 'ZI');
  assert.notEqual(kept(log).at(-1), 'settings:lock_timeout', 'its error passed in the native relay');
  // What the log cannot follow or read pins.
  assert.match(log.sentByRelay(frame('SET lock_timeout = 5'), false, false)!, /pipeline/);
  assert.match(new SessionReplayLog().keptByRelay([frame('SET a = 1; SELECT 1')])!, /native relay kept/);
  assert.match(new SessionReplayLog().keptByRelay([Buffer.from('Q')])!, /native relay kept/);
});
