// Asking a server for its WAL position on a session's own connection (read-position.ts), against
// every answer a server can give, over loopback: what it asks, a good answer split anywhere, errors,
// a NULL or malformed value, bad bytes, a server that closes or says nothing, and the catch-up wait.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { reachesPosition, serverPosition } from '../../src/proxy/read-position.js';
import { MessageReader, parseQuery, type Message } from '../../src/proxy/protocol.js';
import {
  encodeCommandComplete,
  encodeDataRow,
  encodeErrorResponse,
  encodeNotice,
  encodeParameterStatus,
  encodeReadyForQuery,
  encodeRowDescription,
} from '../../src/proxy/protocol-encode.js';
import { connected } from '../helpers/loopback.js';

let server: net.Server;
before(async () => {
  server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});
after(() => server.close());

const answer = (value: string | null): Buffer =>
  Buffer.concat([encodeRowDescription(['lsn']), encodeDataRow([value]), encodeCommandComplete('SELECT 1'), encodeReadyForQuery('I')]);

/** Our end and the "server's" end of one connection, with the first Query the server's end receives. */
async function pair(): Promise<{ proxy: net.Socket; db: net.Socket; query: Promise<string> }> {
  const [proxy, db] = await connected(server);
  const query = new Promise<string>((resolve) => {
    const reader = new MessageReader();
    const onData = (chunk: Buffer) => {
      reader.push(chunk);
      const m = reader.next();
      if (!m) return;
      db.off('data', onData);
      resolve(parseQuery(m.frame));
    };
    db.on('data', onData);
  });
  return { proxy, db, query };
}

const notice = encodeNotice({ severity: 'NOTICE', code: '00000', message: 'noise' });
const promoted = encodeParameterStatus('in_hot_standby', 'off');
const notification = Buffer.from('410000000e00000007636800706c00', 'hex'); // NotificationResponse: pid 7, channel "ch", payload "pl"

test('asks with a plain Query and reads the LSN, whatever way the answer is split; what the server says besides goes aside, in order', async () => {
  for (const split of [0, 1, 7, 20, 40, 60]) {
    const { proxy, db, query } = await pair();
    const aside: Buffer[] = [];
    const position = serverPosition(proxy, 2000, (m: Message) => aside.push(m.frame));
    assert.match(await query, /pg_last_wal_replay_lsn\(\).*pg_current_wal_lsn\(\)/);
    const bytes = Buffer.concat([
      notice,
      encodeRowDescription(['lsn']),
      encodeDataRow(['16/B374D848']),
      promoted,
      notification,
      encodeCommandComplete('SELECT 1'),
      encodeReadyForQuery('I'),
    ]);
    db.write(bytes.subarray(0, split));
    await new Promise((r) => setTimeout(r, 10));
    db.write(bytes.subarray(split));
    assert.equal(await position, 0x16 * 2 ** 32 + 0xb374d848, `split at ${split}`);
    assert.deepEqual(aside, [notice, promoted, notification], `split at ${split}`);
    assert.equal(proxy.listenerCount('data'), 0, 'its listener is gone');
    proxy.destroy();
    db.destroy();
  }
});

test('every answer that is not a position is an error that says what went wrong', async () => {
  const cases: [string, (db: net.Socket) => void, RegExp][] = [
    ['an error', (db) => db.write(Buffer.concat([encodeErrorResponse({ severity: 'ERROR', code: '42501', message: 'permission denied' }), encodeReadyForQuery('I')])), /failed: 42501 permission denied/],
    ['NULL', (db) => db.write(answer(null)), /does not know its WAL position/],
    ['not an LSN', (db) => db.write(answer('yesterday')), /not an LSN/],
    ['a bad length', (db) => db.write(Buffer.from([0x44, 0, 0, 0, 1])), /invalid message length/],
    ['the server closing', (db) => db.end(), /closed the connection while asking the WAL position/],
    ['silence', () => undefined, /timed out after 300 ms/],
  ];
  for (const [what, reply, error] of cases) {
    const { proxy, db, query } = await pair();
    const position = serverPosition(proxy, 300, () => assert.fail('nothing aside'));
    await query;
    reply(db);
    await assert.rejects(position, error, what);
    proxy.destroy();
    db.destroy();
  }
});

test('the catch-up wait asks again until the server has reached the floor, or gives up at its deadline', async () => {
  const [proxy, db] = await connected(server);
  const positions = ['0/100', '0/180', '0/200'];
  let asked = 0;
  const reader = new MessageReader();
  db.on('data', (chunk: Buffer) => {
    reader.push(chunk);
    while (reader.next()) {
      const reply = answer(positions[Math.min(asked++, positions.length - 1)]!);
      db.write(asked === 2 ? Buffer.concat([notice, promoted, reply]) : reply);
    }
  });
  const reported = new Map([['in_hot_standby', 'on'], ['server_version', '15.18']]);
  assert.equal(await reachesPosition(proxy, 0x200, Date.now() + 2000, 500, reported), true);
  assert.equal(asked, 3, 'asked until it got there');
  assert.deepEqual([...reported], [['in_hot_standby', 'off'], ['server_version', '15.18']], 'a changed value is kept, a notice is not');
  const t0 = Date.now();
  assert.equal(await reachesPosition(proxy, 0x201, Date.now() + 200, 500, reported), false);
  assert.ok(Date.now() - t0 < 1000, 'gave up at the deadline');
  assert.equal(proxy.listenerCount('timeout'), 0, 'no listener left behind by the questions asked');
  proxy.destroy();
  db.destroy();
});
