// The replay log against a model of a PostgreSQL server session: for random conversations of
// prepared statements, settings, transactions and errors, either the log pins the session or running
// the log on a fresh session rebuilds the same prepared statements and settings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SessionReplayLog } from '../../src/proxy/session-replay.js';

type Msg = { type: string; body: Buffer };
const cstr = (s: string) => Buffer.from(`${s}\0`);
const int16 = (n: number) => Buffer.from([n >> 8, n & 255]);
const msg = {
  query: (sql: string): Msg => ({ type: 'Q', body: cstr(sql) }),
  parse: (name: string, sql: string): Msg => ({ type: 'P', body: Buffer.concat([cstr(name), cstr(sql), int16(0)]) }),
  bind: (): Msg => ({ type: 'B', body: Buffer.concat([cstr(''), cstr(''), int16(0), int16(0), int16(0)]) }),
  execute: (): Msg => ({ type: 'E', body: Buffer.concat([cstr(''), Buffer.alloc(4)]) }),
  close: (name: string): Msg => ({ type: 'C', body: Buffer.concat([Buffer.from('S'), cstr(name)]) }),
  sync: (): Msg => ({ type: 'S', body: Buffer.alloc(0) }),
};

/** A server session, as far as the log cares: prepared statements, settings, transactions, errors. */
class ModelServer {
  stmts = new Map<string, string>();
  gucs = new Map<string, string>();
  private overlay: Map<string, string | null> | null = null; // settings of the open transaction (null: reset)
  private local = new Map<string, string>(); // SET LOCAL: gone when the transaction ends, whatever the outcome
  private explicit = false;
  private failed = false; // the explicit transaction failed
  private savepoints: { name: string; overlay: Map<string, string | null> | null; local: Map<string, string> }[] = [];
  private skipping = false; // extended protocol: after an error, up to the Sync
  private batchError = false;
  private unnamed: string | null = null;
  private portal: string | null = null;
  replies: string[] = [];

  get inTransaction(): boolean {
    return this.explicit;
  }

  effective(): Map<string, string> {
    const m = new Map(this.gucs);
    for (const [k, v] of this.overlay ?? []) if (v === null) m.delete(k);
    else m.set(k, v);
    for (const [k, v] of this.local) m.set(k, v);
    return m;
  }
  private set(name: string, value: string | null): void {
    (this.overlay ??= new Map()).set(name, value);
  }
  private endImplicit(ok: boolean): void {
    if (this.explicit) return;
    this.local.clear();
    if (ok) this.gucs = this.effective();
    this.overlay = null;
  }
  private error(): void {
    this.replies.push('E');
    if (this.explicit) this.failed = true;
  }
  private z(): void {
    this.replies.push(`Z${this.explicit ? (this.failed ? 'E' : 'T') : 'I'}`);
  }

  /** One statement; false when it failed. Replies with its CommandComplete tag as PostgreSQL does. */
  private run(sql: string): boolean {
    const set = /^SET (LOCAL )?(\w+\.\w+) = '(\w+)'$/.exec(sql);
    const end = /^(COMMIT|ROLLBACK)( AND CHAIN)?$/.exec(sql);
    const savepoint = /^(SAVEPOINT|ROLLBACK TO|RELEASE) (\w+)$/.exec(sql);
    if (this.failed && !end && savepoint?.[1] !== 'ROLLBACK TO') return false;
    let tag = 'SELECT 1';
    if (set) {
      if (set[3] === 'bad') return false;
      if (set[1]) this.local.set(set[2]!, set[3]!);
      else this.set(set[2]!, set[3]!);
      tag = 'SET';
    } else if (sql === 'BEGIN') {
      this.explicit = true;
      tag = 'BEGIN';
    } else if (end) {
      if (end[2] && !this.explicit) return false; // AND CHAIN outside a transaction block is an error
      const commit = end[1] === 'COMMIT' && !this.failed;
      tag = commit ? 'COMMIT' : 'ROLLBACK'; // COMMIT of a failed block rolls back, and says so
      this.local.clear();
      if (commit) this.gucs = this.effective();
      this.overlay = null;
      this.explicit = !!end[2];
      this.failed = false;
      this.savepoints = [];
    } else if (savepoint) {
      if (!this.explicit) return false;
      const at = this.savepoints.map((x) => x.name).lastIndexOf(savepoint[2]!);
      if (savepoint[1] === 'SAVEPOINT') this.savepoints.push({ name: savepoint[2]!, overlay: this.overlay && new Map(this.overlay), local: new Map(this.local) });
      else if (at < 0) return false;
      else if (savepoint[1] === 'RELEASE') this.savepoints.length = at;
      else {
        const sp = this.savepoints[at]!;
        this.overlay = sp.overlay && new Map(sp.overlay);
        this.local = new Map(sp.local);
        this.savepoints.length = at + 1;
        this.failed = false;
      }
      tag = savepoint[1] === 'ROLLBACK TO' ? 'ROLLBACK' : savepoint[1]!;
    } else if (sql === 'RESET ALL') {
      for (const k of this.effective().keys()) this.set(k, null);
    } else if (sql.startsWith('DEALLOCATE ')) {
      if (!this.stmts.delete(sql.slice(11))) return false;
    } else if (sql === 'DISCARD ALL') {
      if (this.explicit) return false;
      this.stmts.clear();
      this.gucs.clear();
      this.overlay = null;
    } else if (sql !== 'SELECT 1') return false; // anything else is a syntax error
    this.replies.push(`C${tag}`);
    return true;
  }

  receive(m: Msg): void {
    const text = (from: number) => m.body.toString('utf8', from, m.body.indexOf(0, from));
    if (m.type === 'Q') {
      this.unnamed = null;
      this.portal = null;
      let ok = true;
      for (const sql of text(0).split('; ')) {
        if (!this.run(sql)) {
          this.error();
          ok = false;
          break;
        }
      }
      this.endImplicit(ok);
      return this.z();
    }
    if (m.type === 'S') {
      this.skipping = false;
      this.endImplicit(!this.batchError);
      this.batchError = false;
      return this.z();
    }
    if (this.skipping) return;
    const fail = () => {
      this.error();
      this.skipping = true;
      this.batchError = true;
    };
    if (m.type === 'P') {
      const name = text(0);
      const sql = text(name.length + 1);
      if (name === '') this.unnamed = null;
      if (this.failed || sql.includes('bad') || (name !== '' && this.stmts.has(name))) return fail();
      if (name === '') this.unnamed = sql;
      else this.stmts.set(name, sql);
      this.replies.push('1');
    } else if (m.type === 'B') {
      if (this.failed || this.unnamed === null) return fail();
      this.portal = this.unnamed;
      this.replies.push('2');
    } else if (m.type === 'E') {
      if (this.portal === null || !this.run(this.portal)) return fail();
    } else if (m.type === 'C') {
      this.stmts.delete(text(1));
      this.replies.push('3');
    }
  }
}

const guc = fc.constantFrom('app.a', 'app.b');
const value = fc.constantFrom('x', 'y', 'bad');
const stmtName = fc.constantFrom('s1', 's2');
const setSql = fc.tuple(fc.constantFrom('', 'LOCAL '), guc, value).map(([local, g, v]) => `SET ${local}${g} = '${v}'`);
const transactionSql = fc.constantFrom('BEGIN', 'COMMIT', 'ROLLBACK', 'COMMIT AND CHAIN', 'ROLLBACK AND CHAIN', 'SAVEPOINT a', 'ROLLBACK TO a', 'RELEASE a');
const batch: fc.Arbitrary<Msg[]> = fc.oneof(
  fc
    .oneof(
      setSql,
      fc.constantFrom('SELECT 1', 'BEGIN', 'RESET ALL', 'DISCARD ALL', 'DEALLOCATE s1', 'SELEC 1'),
      transactionSql,
      fc.tuple(setSql, setSql).map(([a, b]) => `${a}; ${b}`),
      fc.tuple(transactionSql, transactionSql).map(([a, b]) => `${a}; ${b}`),
    )
    .map((sql) => [msg.query(sql)]),
  fc
    .array(
      fc.oneof(
        fc.tuple(stmtName, fc.constantFrom('SELECT 1', 'SELECT bad')).map(([n, sql]) => [msg.parse(n, sql)]),
        setSql.map((sql) => [msg.parse('', sql), msg.bind(), msg.execute()]),
        setSql.map((sql) => [msg.parse('', sql)]),
        fc.constant([msg.bind(), msg.execute()]),
        fc.constant([msg.parse('', 'SELECT 1'), msg.bind(), msg.execute()]),
        transactionSql.map((sql) => [msg.parse('', sql), msg.bind(), msg.execute()]),
        stmtName.map((n) => [msg.close(n)]),
      ),
      { minLength: 1, maxLength: 3 },
    )
    .map((parts) => [...parts.flat(), msg.sync()]),
);

/** A transaction block, as drivers with autocommit off run one: BEGIN, some requests, then its end. */
const transactionBlock: fc.Arbitrary<Msg[][]> = fc
  .tuple(
    fc.boolean(),
    fc.array(batch, { maxLength: 4 }),
    fc.constantFrom('COMMIT', 'COMMIT', 'ROLLBACK', 'COMMIT AND CHAIN', 'ROLLBACK TO a', 'ROLLBACK TO a; COMMIT', 'RELEASE a; COMMIT'),
  )
  .map(([savepoint, inner, end]) => [[msg.query('BEGIN')], ...(savepoint ? [[msg.query('SAVEPOINT a')]] : []), ...inner, [msg.query(end)]]);
const conversation: fc.Arbitrary<Msg[][]> = fc
  .array(fc.oneof(batch.map((b) => [b]), transactionBlock), { minLength: 1, maxLength: 5 })
  .map((parts) => parts.flat());

/** Runs a conversation through the model server and the log; true when it was checked (not pinned, idle). */
function converse(batches: Msg[][]): boolean {
  const server = new ModelServer();
  const log = new SessionReplayLog();
  let pinned: string | null = null;
  for (const b of batches) {
    b.forEach((m, i) => {
      pinned ??= log.clientMessage(m.type.charCodeAt(0), m.body, i > 0);
      server.receive(m);
    });
    for (const r of server.replies) {
      if (r.startsWith('Z')) pinned ??= log.readyForQuery(r[1]!);
      else pinned ??= log.serverMessage(r.charCodeAt(0), r[0] === 'C' ? cstr(r.slice(1)) : null);
    }
    server.replies = [];
    if (pinned) return false;
  }
  assert.equal(log.following, false, 'every reply was matched');
  if (server.inTransaction) return false; // a move waits for the session to be idle
  const fresh = new ModelServer();
  for (const e of log.replay) {
    fresh.receive({ type: String.fromCharCode(e.frame[0]!), body: e.frame.subarray(5) });
    if (e.kind === 'prepare') fresh.receive(msg.sync());
  }
  assert.ok(!fresh.replies.includes('E'), `the replay failed: ${fresh.replies.join(' ')}`);
  assert.deepEqual(fresh.stmts, server.stmts);
  assert.deepEqual(fresh.effective(), server.effective());
  return true;
}

test('replaying the log on a fresh session rebuilds the prepared statements and settings, or the session is pinned', () => {
  let checked = 0;
  fc.assert(
    fc.property(conversation, (batches) => {
      if (converse(batches)) checked++;
    }),
    { numRuns: 3000 },
  );
  assert.ok(checked > 300, `only ${checked} conversations ended unpinned and idle`);
});

test('an unnamed Parse skipped after an error leaves the earlier unnamed statement, a setting, to a later Bind', () => {
  converse([
    [msg.parse('s1', 'SELECT 1'), msg.sync()],
    [msg.parse('', "SET app.a = 'x'"), msg.parse('s1', 'SELECT 1'), msg.parse('', 'SELECT 1'), msg.bind(), msg.execute(), msg.sync()],
    [msg.bind(), msg.execute(), msg.sync()],
  ]);
});

test('a setting committed by a COMMIT in the middle of a batch that then fails (found by the property above)', () => {
  const checked = converse([
    [msg.query('BEGIN')],
    [msg.parse('', "SET app.a = 'x'"), msg.bind(), msg.execute(), msg.parse('', 'COMMIT'), msg.bind(), msg.execute(), msg.parse('', "SET app.a = 'bad'"), msg.sync()],
    [msg.query('COMMIT')],
    [msg.bind(), msg.execute(), msg.sync()],
  ]);
  assert.equal(checked, false, 'such a batch pins');
});

test('a setting made before a savepoint in a batch that then fails, the block rolled back to the savepoint and committed (found by the property above)', () => {
  const checked = converse([
    [msg.query('BEGIN')],
    [msg.parse('', "SET app.a = 'x'"), msg.bind(), msg.execute(), msg.parse('', 'SAVEPOINT a'), msg.bind(), msg.execute(), msg.parse('', "SET app.a = 'bad'"), msg.sync()],
    [msg.query('ROLLBACK TO a; COMMIT')],
    [msg.query('BEGIN')],
    [msg.query('COMMIT')],
  ]);
  assert.equal(checked, false, 'two transaction ends in one request pin');
});
