// Which client messages leave session state behind (and so pin a session to its server).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { messagePinReason, sqlPinReason } from '../../src/proxy/session-state.js';

test('plain reads, writes, transactions and DDL leave no session state', () => {
  for (const sql of [
    'SELECT 1',
    '  insert into t values (1)',
    'UPDATE t SET v = 2 WHERE id = 1',
    'BEGIN; UPDATE t SET v = 1; COMMIT',
    'with x as (select 1) select * from x',
    'CREATE TABLE t2 (a int)',
    '/* hello */ SELECT 1 -- bye',
    'COPY t FROM STDIN',
  ]) {
    assert.equal(sqlPinReason(sql), null, sql);
  }
});

test('settings, prepared statements, temporary tables, LISTEN, locks and cursors pin', () => {
  for (const sql of [
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
  ]) {
    assert.ok(sqlPinReason(sql), sql);
  }
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

/** The rule written plainly (strip comments, lower-case search, every statement's first word): the
 * fast path in sqlPinReason must agree with it on whether a statement pins. */
function pinsByReference(sql: string): boolean {
  const text = sql.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/--[^\n]*/g, ' ');
  const lower = text.toLowerCase();
  if (['temp', 'set_config', 'advisory', 'listen', 'dblink', 'declare', 'prepare'].some((w) => lower.includes(w))) return true;
  const safe = ['SELECT', 'INSERT', 'UPDATE', 'BEGIN', 'COMMIT', 'CREATE', 'WITH', 'VACUUM'];
  return text.split(';').some((s) => {
    const word = /^\s*([A-Za-z]+)/.exec(s)?.[1]?.toUpperCase();
    return word !== undefined && !safe.includes(word);
  });
}

test('property: the fast path pins exactly when the plain rule does', () => {
  const piece = fc.constantFrom(
    'SELECT 1', 'select a from t', 'insert into t values (1)', 'UPDATE t SET v = 1', 'BEGIN', 'commit', 'with x as (select 1) select 1',
    'SET x = 1', 'reset all', 'LISTEN ch', 'create temp table x (a int)', 'DECLARE c CURSOR FOR SELECT 1', 'prepare p as select 1',
    ' ', ';', '\n', '-- note\n', '/* c */', '/* temp */', '-- set\n', "'a;b'", 'SeLeCt 2', 'Listen', 'dblink', '', 'vacuum',
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
