// The native relay keeps plain session settings (`SET name = value`, sent alone while idle) itself
// rather than handing the session to TypeScript for each: kept once the server confirms them, one
// per parameter, handed over with the session. Over loopback, with the server's replies written by
// the test byte for byte as PostgreSQL sends them; proxy-suite.ts runs the same through real servers.
import { after, afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { loadNativeRelay, socketFd, STATE, type Handover, type RelayHandle } from '../../src/proxy/native-relay.js';
import { encodeCommandComplete, encodeErrorResponse, encodeMessage, encodeQuery, encodeReadyForQuery, encodeSync } from '../../src/proxy/protocol-encode.js';
import { readExactly, relaySockets } from '../helpers/loopback.js';

const { relay, error } = loadNativeRelay();

interface Session {
  handle: RelayHandle | null;
  state: Float64Array;
  app: net.Socket;
  db: net.Socket;
  sockets: net.Socket[];
  handback: Promise<Handover>;
}

const ok = (tag = 'SET'): Buffer => Buffer.concat([encodeCommandComplete(tag), encodeReadyForQuery('I')]);

describe('session settings kept by the native relay', { skip: !relay && (error ?? 'no relay'), timeout: 15_000 }, () => {
  const server = net.createServer();
  const open: Session[] = [];
  const listening = new Promise<void>((r) => server.listen(0, '127.0.0.1', r));

  async function attach(tx: 'I' | 'T' = 'I'): Promise<Session> {
    await listening;
    const { app, proxyClient, proxyServer, db } = await relaySockets(server);
    const state = new Float64Array(new ArrayBuffer(STATE.length * 8));
    state[STATE.tx] = tx.charCodeAt(0);
    state[STATE.resetAllIsNoop] = 1;
    let onHandback: (h: Handover) => void = () => {};
    const handback = new Promise<Handover>((r) => (onHandback = r));
    const session: Session = { handle: null, state, app, db, sockets: [app, proxyClient, proxyServer, db], handback };
    session.handle = relay!.attach(socketFd(proxyClient)!, socketFd(proxyServer)!, state, true, 1 << 20, (h) => {
      session.handle = null;
      onHandback(h);
    });
    open.push(session);
    return session;
  }

  /** The client sends `sql`; the server gets it unchanged and answers `reply`, which the client gets. */
  async function roundTrip(s: Session, sql: string, reply: Buffer | Buffer[] = ok()): Promise<void> {
    const query = encodeQuery(sql);
    const got = readExactly(s.db, query.length);
    s.app.write(query);
    assert.deepEqual(await got, query, `the server got ${JSON.stringify(sql)}`);
    const pieces = Array.isArray(reply) ? reply : [reply];
    const whole = Buffer.concat(pieces);
    const answered = readExactly(s.app, whole.length);
    for (const p of pieces) {
      s.db.write(p);
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.deepEqual(await answered, whole, `the client got the answer to ${JSON.stringify(sql)}`);
  }

  const detach = (s: Session): Handover => {
    assert.ok(s.handle, 'the relay still has the session');
    const h = relay!.detach(s.handle);
    s.handle = null;
    assert.ok(h);
    return h;
  };

  afterEach(() => {
    for (const s of open.splice(0)) {
      if (s.handle) relay!.detach(s.handle);
      for (const socket of s.sockets) socket.destroy();
    }
  });
  after(() => new Promise((r) => server.close(r)));

  it('keeps confirmed settings in the order they took effect, one per parameter, without handing the session back', async () => {
    const s = await attach();
    await roundTrip(s, 'SET search_path = tenant_1, public');
    await roundTrip(s, "SET application_name TO 'web'");
    await roundTrip(s, 'SELECT 1', ok('SELECT 1'));
    await roundTrip(s, 'set Search_Path = tenant_2, public');
    assert.deepEqual(relay!.keptSettings(s.handle!), [encodeQuery("SET application_name TO 'web'"), encodeQuery('set Search_Path = tenant_2, public')]);
    assert.equal(s.state[STATE.resetAllIsNoop], 0, 'RESET ALL would now undo a kept setting: TypeScript must see it');
    assert.equal(s.state[STATE.queries], 4);
    const h = detach(s);
    assert.equal(h.reason, 'detached');
    assert.deepEqual(h.keptSettings, [encodeQuery("SET application_name TO 'web'"), encodeQuery('set Search_Path = tenant_2, public')]);
    assert.equal(h.pendingSetting, undefined);
  });

  it('reads answers split across reads, and keeps nothing the server refused', async () => {
    const s = await attach();
    await roundTrip(s, 'SET statement_timeout = 1', [ok().subarray(0, 3), ok().subarray(3, 14), ok().subarray(14)]);
    const refused = Buffer.concat([encodeErrorResponse({ severity: 'ERROR', code: '22023', message: 'invalid value' }), encodeReadyForQuery('I')]);
    await roundTrip(s, 'SET work_mem = 1', [...refused].map((b) => Buffer.from([b])));
    const h = detach(s);
    assert.deepEqual(h.keptSettings, [encodeQuery('SET statement_timeout = 1')]);
  });

  it('hands over a setting still unanswered, saying whether its error has passed', async () => {
    const s = await attach();
    const query = encodeQuery('SET lock_timeout = 5');
    const got = readExactly(s.db, query.length);
    s.app.write(query);
    await got;
    const error = encodeErrorResponse({ severity: 'ERROR', code: '22023', message: 'invalid value' });
    const passed = readExactly(s.app, error.length);
    s.db.write(error);
    await passed;
    const h = detach(s);
    assert.deepEqual(h.pendingSetting, query);
    assert.equal(h.pendingSettingFailed, true);
    assert.equal(h.keptSettings, undefined);
    assert.equal(s.state[STATE.syncs], 1, 'its ReadyForQuery is still due');
  });

  it('hands the session back for a setting inside a transaction block, behind a query in flight, or past its limits', async () => {
    const inTx = await attach('T');
    inTx.app.write(encodeQuery('SET search_path = a'));
    const h1 = await inTx.handback;
    assert.equal(h1.reason, 'client message for the TypeScript relay');
    assert.deepEqual(h1.fromClient, encodeQuery('SET search_path = a'));

    const pipelined = await attach();
    const both = Buffer.concat([encodeQuery('SELECT pg_sleep(1)'), encodeQuery('SET search_path = a')]);
    pipelined.app.write(both);
    const h2 = await pipelined.handback;
    assert.deepEqual(h2.fromClient, encodeQuery('SET search_path = a'), 'the setting waits for TypeScript, which follows the replies');

    const many = await attach();
    for (let i = 0; i < 16; i++) await roundTrip(many, `SET app.p${i} = ${i}`);
    await roundTrip(many, 'SET app.p3 = 33'); // a parameter already kept: replaced, no more room needed
    assert.equal(relay!.keptSettings(many.handle!).length, 16);
    many.app.write(encodeQuery('SET app.p16 = 16'));
    const h3 = await many.handback;
    assert.deepEqual(h3.fromClient, encodeQuery('SET app.p16 = 16'));
    assert.equal(h3.keptSettings?.length, 16);
    assert.deepEqual(h3.keptSettings?.at(-1), encodeQuery('SET app.p3 = 33'));
  });

  it('a batch that begins in the chunk at hand goes back whole with a setting in it, as JDBC sends BEGIN and SET with autocommit off', async () => {
    const z = Buffer.from([0]);
    const unnamed = (sql: string) => [
      encodeMessage('P', Buffer.concat([Buffer.from(`\0${sql}\0`), Buffer.alloc(2)])),
      encodeMessage('B', Buffer.concat([z, z, Buffer.alloc(6)])),
      encodeMessage('E', Buffer.concat([z, Buffer.alloc(4)])),
    ];
    const begin = Buffer.concat(unnamed('BEGIN'));
    const set = Buffer.concat([...unnamed('SET search_path = a'), encodeSync()]);
    const whole = await attach();
    whole.app.write(Buffer.concat([begin, set]));
    const h1 = await whole.handback;
    assert.deepEqual(h1.fromClient, Buffer.concat([begin, set]), 'TypeScript follows the batch from its first message');
    assert.equal(h1.toServer, null);
    assert.deepEqual([whole.state[STATE.syncs], whole.state[STATE.unsynced], whole.state[STATE.busy]], [0, 0, 0], 'nothing of it counted as sent');

    // Begun in an earlier chunk, already on its way: only the setting goes back (the session will pin).
    const split = await attach();
    const forwarded = readExactly(split.db, begin.length);
    split.app.write(begin);
    assert.deepEqual(await forwarded, begin);
    split.app.write(set);
    const h2 = await split.handback;
    assert.deepEqual(h2.fromClient, set);
    assert.equal(split.state[STATE.unsynced], 1);
  });

  it('hands the session back for the settings TypeScript keeps itself: the role, several in one Query', async () => {
    for (const sql of ['SET role = web', 'SET a = 1; SET b = 2', 'SET LOCAL2 = 1; SELECT 1']) {
      const s = await attach();
      s.app.write(encodeQuery(sql));
      const h = await s.handback;
      assert.deepEqual(h.fromClient, encodeQuery(sql), sql);
      assert.equal(h.keptSettings, undefined);
    }
  });
});
