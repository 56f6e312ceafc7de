// The native relay's pieces that can be checked without sockets: its pin fast path must never call
// safe what the TypeScript rule pins (nor pin what it calls safe), and a scanner position must survive
// the trip through the shared state array at any byte. The relay itself runs in proxy.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { loadNativeRelay, STATE } from '../../src/proxy/native-relay.js';
import { queryEffect } from '../../src/proxy/replay-sql.js';
import { messagePinReason } from '../../src/proxy/session-state.js';
import { FrameScanner } from '../../src/proxy/scanner.js';

const { relay, error } = loadNativeRelay();

test('the native relay is built (make build) and matches the TypeScript state layout', () => {
  assert.ok(relay, error ?? 'not loaded');
  assert.equal(relay.stateLength, STATE.length);
});

const fragment = fc.constantFrom(
  'SELECT', 'select', 'InSeRt', 'UPDATE', 'delete', 'WITH', 'begin', 'COMMIT', 'end', 'CREATE', 'TABLE', 'copy', 'explain', 'VALUES',
  'SET', 'set', 'RESET', 'DISCARD', 'LISTEN', 'unlisten', 'PREPARE', 'EXECUTE', 'DEALLOCATE', 'DO', 'CALL', 'LOCK', 'FETCH', 'NOTIFY',
  'temp', 'TEMPORARY', 'tmp', 'pg_advisory_lock(1)', 'set_config', 'dblink', 'declare', 'x', 't', 'p1', '42', "'str'", '(', ')', '*', ',', '=',
  // Risky words in other cases, after a safe first word too: every first letter in both cases.
  'prepare', 'Listen', 'AdViSoRy', 'DBLINK', 'Declare', 'SET_CONFIG', 'Temp', 'lis', 'prep',
  // Transaction-scoped settings and what comes close to them.
  'LOCAL', 'local', 'TRANSACTION', 'constraints', 'local_x', 'LOCAL1', 'SET LOCAL ', 'set transaction ', 'true', 'TRUE', 'false', '$1', '"q"',
  "set_config('a', 'b', true)", "SET_CONFIG ( $1 , (1) , True )", "set_config('a', 'b', false)", "set_config('a', 'b'", "set_config('é', 'b',\u00a0true)",
  'set_config\u00a0(', "'", '"',
  // Locks and cursors that end with the transaction, and what comes close to them.
  'DECLARE c CURSOR', 'cursor', 'WITH HOLD', 'without hold', 'with', 'HOLD', 'hold_x', 'with\u00a0hold', 'pg_advisory_xact_lock(1)', '_XACT_LOCK',
  '_xact_loc', 'LOCK', 'fetch', 'MOVE', 'close',
  // What a pool sends when a connection is given back.
  'UNLISTEN', 'un', 'UN', 'pg_advisory_unlock_all()', '_unlock', 'RESET ALL', 'reset', 'all',
  // Session settings the native relay keeps, and what comes close to them.
  'SET search_path = tenant_1, public', 'set Application_Name TO ', 'SET SESSION ', 'session', ' TO ', 'to', '=', 'role', 'ROLE',
  'session_authorization', 'TIME ZONE', 'time', 'a.b', 'app.$x', '.', 'characteristics', 'SET x=1', 'SET x',
  ' ', '  ', '\t', '\n', '\r\n', ';', ' ; ', ';;', '--', '-- c\n', '/*', '*/', '/* c */', 'é', '\u00a0', '\u0000', 'ＳＥＬＥＣＴ',
);
const sql = fc.array(fragment, { maxLength: 12 }).map((parts) => parts.join(''));
const verdictName = ['safe', 'pins', 'unsure', 'keeps'];
type Verdict = 0 | 1 | 2 | 3;

function cstr(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
}

/** Each SQL text as a Query, and as an unnamed Parse: the native verdict (0 safe, 1 pins, 2 unsure,
 * 3 a setting the relay keeps, which pins as a Parse) is the expected one, and where it is not
 * "unsure" TypeScript's rule agrees. */
function expectVerdicts(cases: [string, Verdict][]): void {
  for (const [text, expected] of cases) {
    const body = cstr(text);
    assert.equal(relay!.messageVerdict(0x51, body), expected, JSON.stringify(text));
    if (expected !== 2) assert.equal(messagePinReason(0x51, body) === null ? 0 : 1, expected === 3 ? 1 : expected, `TypeScript: ${JSON.stringify(text)}`);
    const parse = Buffer.concat([cstr(''), body, Buffer.from([0, 0])]);
    assert.equal(relay!.messageVerdict(0x50, parse), expected === 3 ? 1 : expected, `unnamed Parse: ${JSON.stringify(text)}`);
  }
}

test('Query: where the native fast path decides, it decides as the TypeScript rule', () => {
  fc.assert(
    fc.property(sql, (text) => {
      const body = cstr(text);
      const v = relay!.messageVerdict(0x51, body);
      const reason = messagePinReason(0x51, body);
      if (v === 0) assert.equal(reason, null, `native: safe, TypeScript: ${reason} for ${JSON.stringify(text)}`);
      if (v === 1 || v === 3) assert.notEqual(reason, null, `native: pins, TypeScript: safe for ${JSON.stringify(text)}`);
      // A setting the relay keeps is one TypeScript's replay log keeps, under the same name.
      if (v === 3) assert.deepEqual(queryEffect(text), { kind: 'settings', names: [relay!.sessionSetting(Buffer.from(text))] }, JSON.stringify(text));
      // Plain ASCII without comments is always decided natively (the fast path is not "always unsure").
      if (/^[\x01-\x7f]*$/.test(text) && !text.includes('--') && !text.includes('/*')) assert.notEqual(verdictName[v], 'unsure', JSON.stringify(text));
      // Comments too: an application that tags its queries with comments keeps its sessions on the native relay.
      if (/^[\x01-\x7f]*$/.test(text)) assert.notEqual(verdictName[v], 'unsure', `comments: ${JSON.stringify(text)}`);
    }),
    { numRuns: 3000 },
  );
});

test('Query with comments: decided as the TypeScript rule, which strips block comments before line comments', () => {
  const cases: [string, 0 | 1][] = [
    ['/* app=web */ SELECT 1', 0],
    ['SELECT 1 -- trailing', 0],
    ['-- leading\nUPDATE t SET a = 1', 0],
    ['/* SET x = 1 */ SELECT 1', 0],
    ['SELECT 1; -- x\nSET a = 1', 1],
    ['-- /* \n */ SELECT 1', 0],
    ['/* unterminated SET a = 1', 0], // no leading word: PostgreSQL rejects it anyway
    ['SELECT /* temp */ 1', 0],
    ['SELECT 1 /* a */ /* b */; /**/ COMMIT', 0],
  ];
  expectVerdicts(cases);
});

test('Query with text beyond ASCII: decided natively, except where a Unicode space may come before the first word', () => {
  const cases: [string, Verdict][] = [
    ["SELECT 'café'", 0],
    ["INSERT INTO t VALUES ('ＳＥＴ')", 0],
    ["UPDATE t SET a = 'é' -- é\n", 0],
    ["SELECT 'é'; SET a = 1", 1],
    ["SELECT 'temp é'", 1],
    ['\u00a0SET a = 1', 2],
    ["SELECT 1;\u00a0SELECT 'é'", 2],
  ];
  expectVerdicts(cases);
  assert.notEqual(messagePinReason(0x51, cstr('\u00a0SET a = 1')), null, 'TypeScript skips the no-break space and pins SET');
});

test('transaction-scoped settings stay on the native relay, decided as the TypeScript rule', () => {
  const cases: [string, Verdict][] = [
    ["SET LOCAL app.tenant = '42'", 0],
    ['set Local role web', 0],
    ['BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT 1', 0],
    ['SET CONSTRAINTS ALL DEFERRED', 0],
    ['SET\tLOCAL\nx = 1', 0],
    ["SET LOCALé = 1", 0], // no word boundary in TypeScript's ASCII \b either: then PostgreSQL rejects it
    ['SET local_x = 1', 3],
    ['SET LOCAL2 = 1', 3],
    ['SET x = 1', 3],
    ['SET', 1],
    ['SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY', 1],
    ['SET\u00a0LOCAL x = 1', 2],
    ["select set_config('search_path', $1, true), set_config('role', $2, true), set_config('request.jwt.claims', $3, TRUE)", 0],
    ["SELECT set_config ( 'a' , (1)::text , true ) ; SELECT 1", 0],
    ["SELECT set_config('a', 'x,y)', true)", 0],
    ["SELECT set_config('a', 'b', false)", 1],
    ["SELECT set_config('a', 'b', true, 1)", 1],
    ["SELECT set_config('a', 'b', 'c', true)", 1],
    ["SELECT set_config('a', true)", 1],
    ["SELECT set_config('a', 'b', true", 1],
    ["SELECT set_config('a', 'b', true) x; LISTEN ch", 1],
    ["SELECT set_config('a', pg_advisory_lock(1)::text, true)", 1],
    ["SELECT set_config('a', 'b', (SELECT true))", 1],
    ["SELECT set_config('é', 'b', true)", 0],
    ["SELECT set_config('a', 'b', true\u00a0)", 2],
    ["SELECT set_config\u00a0('a', 'b', true)", 2],
  ];
  expectVerdicts(cases);
  assert.equal(messagePinReason(0x51, cstr("SELECT set_config('a', 'b', true\u00a0)")), null, 'TypeScript trims the no-break space');
});

test('locks and cursors that end with the transaction stay on the native relay, decided as the TypeScript rule', () => {
  const cases: [string, Verdict][] = [
    ['LOCK TABLE t IN ACCESS EXCLUSIVE MODE', 0],
    ['SELECT pg_advisory_xact_lock(42)', 0],
    ['select pg_try_advisory_xact_lock_shared(1, 2)', 0],
    ['SELECT pg_advisory_lock(1)', 1],
    ['SELECT pg_advisory_xact_loc(1)', 1],
    ['SELECT pg_advisory_xact_lock(1), pg_advisory_lock(2)', 1],
    ['DECLARE "c" NO SCROLL CURSOR WITHOUT HOLD FOR SELECT 1', 0],
    ['declare c cursor for select 1; fetch forward 100 from c; move 5 in c; close c', 0],
    ['  DECLARE c CURSOR FOR SELECT 1', 0],
    ['DECLARE c CURSOR WITH HOLD FOR SELECT 1', 1],
    ['DECLARE c CURSOR with\n\thold FOR SELECT 1', 1],
    ['DECLARE c CURSOR WITH HOLDx FOR SELECT 1', 0],
    ['DECLARE c CURSOR xWITH HOLD FOR SELECT 1', 0],
    ['DECLARE c CURSOR FOR SELECT 1; SELECT 1 WITH HOLD', 0], // WITH HOLD in another statement
    ["SELECT 'declare'", 1],
    ['SELECT 1;DECLARE c CURSOR FOR SELECT 2', 0],
    ['DECLARE c CURSOR WITH\u00a0HOLD FOR SELECT 1', 2],
    ["SELECT 'é'\u00a0DECLARE", 2],
  ];
  expectVerdicts(cases);
  assert.notEqual(messagePinReason(0x51, cstr('DECLARE c CURSOR WITH\u00a0HOLD FOR SELECT 1')), null, 'TypeScript reads the no-break space as a space');
});

test('undoing what an unpinned session cannot hold stays on the native relay; RESET ALL too while the replay log holds no settings', () => {
  expectVerdicts([
    ['UNLISTEN *', 0],
    ['unlisten channel_1', 0],
    ['SELECT pg_advisory_unlock_all()', 0],
    ['select pg_advisory_unlock(1), PG_ADVISORY_UNLOCK_SHARED(2)', 0],
    ['SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *', 0],
    ['LISTEN ch', 1],
    ['SELECT 1; xlisten', 1],
    ['SELECT 1;listen ch', 1],
    ['SELECT pg_advisory_unloc(1)', 1],
    ['RESET ALL', 1],
  ]);
  const asyncpgReset = cstr('SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;');
  assert.equal(relay!.messageVerdict(0x51, asyncpgReset), 1, "asyncpg's reset, with settings in the log: TypeScript's replay log takes the RESET ALL");
  assert.equal(relay!.messageVerdict(0x51, asyncpgReset, 1), 0, 'and without: nothing for the log to change');
  for (const [text, expected] of [
    ['RESET ALL', 0],
    ['  reset\tAll ; SELECT 1', 0],
    ['RESET ALL x', 1],
    ['RESET ALLx', 1],
    ['RESET work_mem', 1],
    ['RESET', 1],
    ['RESET ALL; SET x = 1', 1],
    ['SET x = 1', 3],
  ] as const) {
    assert.equal(relay!.messageVerdict(0x51, cstr(text), 1), expected, `with no settings logged: ${JSON.stringify(text)}`);
  }
  // The flag changes nothing but RESET.
  fc.assert(
    fc.property(sql, (text) => {
      if (/reset/i.test(text)) return;
      assert.equal(relay!.messageVerdict(0x51, cstr(text), 1), relay!.messageVerdict(0x51, cstr(text)), JSON.stringify(text));
    }),
    { numRuns: 1000 },
  );
});

test('plain session settings: the native relay keeps them (verdict 3) under the name the replay log in TypeScript gives them', () => {
  const cases: [string, string | null][] = [
    ['SET search_path = tenant_7, public', 'search_path'],
    ["set  session\tApplication_Name TO 'web'", 'application_name'],
    ["SET app.tenant_id = '42';;  ", 'app.tenant_id'],
    ["SET timezone TO 'UTC'", 'timezone'],
    ['SET statement_timeout=0', 'statement_timeout'],
    ['SET x$y = 1', 'x$y'],
    ['SET role = web', null], // barriers in the replay log: TypeScript keeps those itself
    ['SET SESSION AUTHORIZATION web', null],
    ['SET session_authorization = web', null],
    ['SET LOCAL x = 1', null],
    ['SET TIME ZONE UTC', null],
    ['SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY', null],
    ['SET x = 1; SELECT 1', null],
    ["SET application_name = 'a;b'", null],
    ['SET x = 1 -- c', null],
    ['SET /* c */ x = 1', null],
    ["SET application_name = 'é'", null],
    ['SET x', null],
    ['SETx = 1', null],
    ['SET x.y.z = 1', null],
    [`SET ${'a'.repeat(64)} = 1`, null],
    ["SET application_name = 'temp'", null], // a risky word: TypeScript pins it
  ];
  for (const [text, name] of cases) {
    assert.equal(relay!.sessionSetting(Buffer.from(text)), name, JSON.stringify(text));
    assert.equal(relay!.messageVerdict(0x51, cstr(text)) === 3, name !== null, `verdict: ${JSON.stringify(text)}`);
    if (name !== null) assert.deepEqual(queryEffect(text), { kind: 'settings', names: [name] }, `TypeScript: ${JSON.stringify(text)}`);
  }
  let kept = 0;
  fc.assert(
    fc.property(sql, (text) => {
      const v = relay!.messageVerdict(0x51, cstr(text));
      assert.equal(v === 3, relay!.sessionSetting(Buffer.from(text)) !== null, JSON.stringify(text));
      if (v === 3) kept++;
    }),
    { numRuns: 3000 },
  );
  assert.ok(kept > 0, 'the fuzz reaches settings the relay keeps');
});

test('Parse: unnamed statements follow their SQL, named ones and malformed ones pin', () => {
  fc.assert(
    fc.property(fc.constantFrom('', 'stmt1'), sql, fc.boolean(), (name, text, truncated) => {
      let body = Buffer.concat([cstr(name), cstr(text), Buffer.from([0, 0])]);
      if (truncated) body = body.subarray(0, Math.max(0, name.length));
      const v = relay!.messageVerdict(0x50, body);
      const reason = messagePinReason(0x50, body);
      if (v === 0) assert.equal(reason, null, `native: safe, TypeScript: ${reason}`);
      if (v === 1) assert.notEqual(reason, null, 'native: pins, TypeScript: safe');
      if (name !== '' || truncated) assert.equal(v, 1);
    }),
    { numRuns: 1000 },
  );
  assert.equal(relay!.messageVerdict(0x46, Buffer.alloc(4)), 1, 'FunctionCall pins');
  assert.equal(relay!.messageVerdict(0x51, null), 1, 'a query not whole in the chunk pins');
  assert.equal(relay!.messageVerdict(0x42, Buffer.alloc(10)), 0, 'Bind leaves nothing behind by itself');
  assert.equal(relay!.messageVerdict(0x43, Buffer.from('Sstmt1\0')), 2, 'closing a named statement goes to TypeScript, which keeps the replay log');
  assert.equal(relay!.messageVerdict(0x43, Buffer.from('S\0')), 0, 'closing the unnamed statement does not');
  assert.equal(relay!.messageVerdict(0x43, Buffer.from('Pportal\0')), 0, 'closing a portal does not');
});

test('a scanner position saved to the shared array and loaded again scans on identically, at any cut', () => {
  const message = fc.tuple(fc.constantFrom(0x44, 0x43, 0x5a, 0x54), fc.uint8Array({ maxLength: 40 })).map(([type, body]) => {
    const b = type === 0x5a ? Buffer.from([0x49 + (body[0] ?? 0) % 2 * 11]) : Buffer.from(body); // Z carries 'I' or 'T'
    const m = Buffer.alloc(5 + b.length);
    m[0] = type;
    m.writeInt32BE(4 + b.length, 1);
    b.copy(m, 5);
    return m;
  });
  fc.assert(
    fc.property(fc.array(message, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 6 }), (messages, cuts) => {
      const stream = Buffer.concat(messages);
      const events = (restore: boolean): string[] => {
        const seen: string[] = [];
        let scanner = new FrameScanner(1 << 20, { onReadyForQuery: (s) => seen.push(s) });
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        let at = 0;
        for (const p of [...points, stream.length]) {
          scanner.scan(stream.subarray(at, p));
          at = p;
          if (restore) {
            const shared = new Float64Array(STATE.length);
            scanner.saveTo(shared, STATE.serverScan);
            scanner = new FrameScanner(1 << 20, { onReadyForQuery: (s) => seen.push(s) });
            scanner.loadFrom(shared, STATE.serverScan);
          }
        }
        seen.push(scanner.atBoundary() ? 'boundary' : 'mid-message');
        return seen;
      };
      assert.deepEqual(events(true), events(false));
    }),
    { numRuns: 500 },
  );
});
