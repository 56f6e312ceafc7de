// Which client messages leave session state behind (and so pin a session to its server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { messagePinReason, sqlPinReason } from '../../src/proxy/session-state.js';

const leaveNothing = (sqls: string[]): void => {
  for (const sql of sqls) assert.equal(sqlPinReason(sql), null, sql);
};
const pin = (sqls: string[]): void => {
  for (const sql of sqls) assert.ok(sqlPinReason(sql), sql);
};

test('plain reads, writes, transactions and DDL leave no session state', () => {
  leaveNothing([
    'SELECT 1',
    '  insert into t values (1)',
    'UPDATE t SET v = 2 WHERE id = 1',
    'BEGIN; UPDATE t SET v = 1; COMMIT',
    'with x as (select 1) select * from x',
    'CREATE TABLE t2 (a int)',
    '/* hello */ SELECT 1 -- bye',
    'COPY t FROM STDIN',
  ]);
});

test('settings that end with their transaction leave nothing behind: SET LOCAL, SET TRANSACTION, set_config(..., true)', () => {
  leaveNothing([
    "SET LOCAL app.tenant = '42'",
    'set local role web',
    'BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT 1; COMMIT',
    'SET CONSTRAINTS ALL DEFERRED',
    "SELECT set_config('request.jwt.claims', '{\"sub\": \"1\"}', true)",
    // PostgREST's per-request statement, parameters and all
    "select set_config('search_path', $1, true), set_config('role', $2, true), set_config('request.jwt.claims', $3, TRUE)",
    "SELECT set_config ( 'a' , (1)::text , true ) ; -- tenant\nSELECT 1",
    "SELECT set_config('x', 'é', true)",
  ]);
  pin([
    'SET local_x = 1', // a session setting named local_x
    'SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY',
    'SETLOCAL x = 1',
    "SELECT set_config('a', 'b', false)",
    "SELECT set_config('a', 'b', true, 1)",
    "SELECT set_config('a', 'b')",
    "SELECT set_config('a', 'b', true", // unbalanced
    "SELECT set_config('a', pg_advisory_lock(1)::text, true)", // local, but its argument is not
    "SELECT set_config('a', 'b', true), set_config('c', 'd', false)",
    "SELECT set_config('a', 'b', true) FROM t; LISTEN ch",
    "SELECT set_config('a', 'b', (SELECT true))",
  ]);
});

test('locks and cursors that end with their transaction leave nothing behind; WITH HOLD cursors and session locks pin', () => {
  leaveNothing([
    'LOCK TABLE t IN ACCESS EXCLUSIVE MODE',
    'SELECT pg_advisory_xact_lock(42)',
    'select pg_try_advisory_xact_lock_shared(1, 2)',
    'SELECT PG_ADVISORY_XACT_LOCK(hashtext($1))',
    // psycopg's and SQLAlchemy's server-side cursors inside a transaction
    'DECLARE "_django_curs_1" NO SCROLL CURSOR WITHOUT HOLD FOR SELECT * FROM t',
    'declare c cursor for select 1; fetch forward 100 from c; move 5 in c; close c',
    'BEGIN; DECLARE c BINARY CURSOR FOR SELECT 1; FETCH ALL FROM c; COMMIT',
  ]);
  pin([
    'DECLARE c CURSOR WITH HOLD FOR SELECT 1',
    'declare c no scroll cursor with\thold for select 1',
    'SELECT pg_advisory_lock(1)',
    'SELECT pg_advisory_xact_lock(1), pg_advisory_lock(2)',
    "SELECT 'declare'",
    'SELECT 1 FROM t; SELECT x declare',
  ]);
});

test('undoing what an unpinned session cannot hold leaves nothing behind: UNLISTEN, advisory unlocks (a pool giving a connection back)', () => {
  leaveNothing([
    'UNLISTEN *',
    'unlisten channel_1',
    'SELECT pg_advisory_unlock_all()',
    'select pg_advisory_unlock(1), pg_advisory_unlock_shared(2)',
    'SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *',
  ]);
  pin([
    'LISTEN channel_1',
    'SELECT 1; LISTEN x',
    'SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL', // asyncpg's reset: RESET ALL is the replay log's to judge
    'SELECT pg_advisory_lock(1); SELECT pg_advisory_unlock(1)',
  ]);
});

test('settings, prepared statements, temporary tables, LISTEN, locks and cursors pin', () => {
  pin([
    'SET search_path = x',
    'select 1; set work_mem = 1',
    'PREPARE p AS SELECT 1',
    'CREATE TEMP TABLE x (a int)',
    'create temporary table x (a int)',
    'LISTEN ch',
    "SELECT set_config('a.b', '1', false)",
    'SELECT pg_advisory_lock(1)',
    'DECLARE c CURSOR WITH HOLD FOR SELECT 1',
    'RESET ALL',
    'DISCARD ALL',
    'LOAD \'x\'',
    'DO $$ begin end $$',
  ]);
});

function body(...parts: (string | Buffer)[]): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.concat([Buffer.from(p), Buffer.from([0])]) : p)));
}

test('messages: named Parse and function calls pin; unnamed Parse is judged by its SQL; others never pin', () => {
  const Q = 'Q'.charCodeAt(0);
  const P = 'P'.charCodeAt(0);
  assert.equal(messagePinReason(Q, body('SELECT 1')), null);
  assert.match(messagePinReason(Q, body('SET x = 1')) ?? '', /SET/);
  assert.match(messagePinReason(Q, null) ?? '', /too large/);
  assert.equal(messagePinReason(P, body('', 'SELECT $1', Buffer.alloc(2))), null);
  assert.match(messagePinReason(P, body('s1', 'SELECT $1', Buffer.alloc(2))) ?? '', /named prepared statement "s1"/);
  assert.match(messagePinReason('F'.charCodeAt(0), Buffer.alloc(4)) ?? '', /function call/);
  for (const t of 'BEDSHCX') assert.equal(messagePinReason(t.charCodeAt(0), Buffer.alloc(8)), null, t);
});

/** The rule written plainly (strip comments, drop transaction-local set_config calls and
 * transaction-level advisory locks of the generator's shapes, then per statement: a lower-case search
 * for risky words except a leading DECLARE, and the first word unless it is a transaction-scoped SET
 * or a DECLARE without WITH HOLD): the fast path in sqlPinReason must agree with it on whether a
 * statement pins. */
function pinsByReference(sql: string): boolean {
  const text = sql
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/--[^\n]*/g, ' ')
    .replace(/set_config\('[^',]*', ('[^',]*'|\$1), true\)/gi, 'f()')
    .replace(/pg_(try_)?advisory_xact_lock(_shared)?|pg_advisory_unlock(_all|_shared)?|unlisten/gi, 'f');
  const risky = ['temp', 'set_config', 'advisory', 'listen', 'dblink', 'declare', 'prepare'];
  // 'F': an UNLISTEN after the replacement above.
  const safe = ['SELECT', 'INSERT', 'UPDATE', 'BEGIN', 'COMMIT', 'CREATE', 'WITH', 'VACUUM', 'LOCK', 'FETCH', 'CLOSE', 'F'];
  const scoped = ['SET LOCAL ', 'SET TRANSACTION ', 'SET CONSTRAINTS '];
  return text.split(';').some((s) => {
    const word = /^\s*([A-Za-z]+)/.exec(s)?.[1]?.toUpperCase();
    const searched = (word === 'DECLARE' ? s.replace(/declare/i, '') : s).toLowerCase();
    if (risky.some((w) => searched.includes(w))) return true;
    if (scoped.some((w) => s.trimStart().toUpperCase().startsWith(w))) return false;
    if (word === 'DECLARE') return /with\s+hold/i.test(s);
    return word !== undefined && !safe.includes(word);
  });
}

test('property: the fast path pins exactly when the plain rule does', () => {
  const piece = fc.constantFrom(
    'SELECT 1', 'select a from t', 'insert into t values (1)', 'UPDATE t SET v = 1', 'BEGIN', 'commit', 'with x as (select 1) select 1',
    'SET x = 1', 'reset all', 'LISTEN ch', 'create temp table x (a int)', 'DECLARE c CURSOR FOR SELECT 1', 'prepare p as select 1',
    ' ', ';', '\n', '-- note\n', '/* c */', '/* temp */', '-- set\n', "'a;b'", 'SeLeCt 2', 'Listen', 'dblink', '', 'vacuum',
    'SET LOCAL app.t = 1', 'set transaction read only', 'SET CONSTRAINTS ALL DEFERRED', 'SET local_x = 1', 'set session characteristics as transaction read only',
    "SELECT set_config('a.b', '1', true)", "select set_config('role', $1, TRUE)", "SELECT set_config('a', 'b', false)", 'set_config(',
    "SELECT set_config('a', pg_advisory_lock(1)::text, true)",
    'DECLARE c CURSOR WITH HOLD FOR SELECT 1', 'declare c no scroll cursor without hold for select 1', 'DECLARE c CURSOR FOR SELECT 1',
    'FETCH 10 FROM c', 'close c', 'LOCK TABLE t', 'SELECT pg_advisory_xact_lock(1)', 'select pg_try_advisory_xact_lock_shared(1)', 'SELECT pg_advisory_lock(1)',
    'UNLISTEN *', 'unlisten ch', 'SELECT pg_advisory_unlock_all()', 'select pg_advisory_unlock(1)', 'RESET ALL',
  );
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 8 }), (parts) => {
      const sql = parts.join('');
      // Words outside the reference's shortened safe list are left out of the generator on purpose.
      assert.equal(sqlPinReason(sql) !== null, pinsByReference(sql), JSON.stringify(sql));
    }),
    { numRuns: 2000 },
  );
});
