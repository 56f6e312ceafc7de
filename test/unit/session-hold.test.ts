// What a session holds back from the server while it cannot forward (here: its login, to a server that
// accepted the connection and hangs) stays bounded: past 1 MB the client is paused, and waits in TCP.
// The queries come in the same packets as the startup message, so they also show that bytes right
// behind it are framed like every later byte.
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Session, type SessionHooks } from '../../src/proxy/session.js';
import { encodeQuery, encodeStartup } from '../../src/proxy/protocol-encode.js';
import { silentLogger } from '../../src/util/log.js';
import { tcpAddress } from '../../src/proxy/server-address.js';
import { member } from '../helpers/observation.js';

const hungSockets: net.Socket[] = [];
const hung = net.createServer((s) => hungSockets.push(s)); // accepts, never answers: a hung PostgreSQL
const sessions: Session[] = [];
let proxy: net.Server;

before(async () => {
  await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
  const hungPort = (hung.address() as net.AddressInfo).port;
  const hooks: SessionHooks = {
    route: async () => member('m1', { host: '127.0.0.1', port: hungPort, role: 'primary', state: 'running' }),
    publishedPosition: () => null,
    register: () => ({ pid: 1, secret: 1 }),
    unregister: () => undefined,
    cancel: async () => undefined,
    credentials: () => null,
    addressOf: (m) => tcpAddress(m),
    holdingTransactions: () => false,
    pauseTimeoutMs: 30_000,
    tls: null,
    maxMessageLength: 1 << 30,
    connectTimeoutMs: 30_000,
    startupTimeoutMs: 30_000,
    nativeRelay: null,
    log: silentLogger(),
  };
  proxy = net.createServer((socket) => {
    const s = new Session(socket, 'rw', hooks);
    sessions.push(s);
    s.start();
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
});

after(async () => {
  for (const s of sessions) s.close();
  for (const s of hungSockets) s.destroy();
  await new Promise((r) => proxy.close(r));
  await new Promise((r) => hung.close(r));
});

it('a client streaming while its login hangs is paused once 1 MB is held', async () => {
  const client = net.connect((proxy.address() as net.AddressInfo).port, '127.0.0.1');
  client.on('error', () => undefined);
  await new Promise((r) => client.once('connect', r));
  client.write(encodeStartup({ user: 'app', database: 'app' }));
  // Up to 64 MB offered as fast as the socket takes it, for a second: a pipelining client or a COPY.
  const chunk = Buffer.concat(Array.from({ length: 4096 }, () => encodeQuery('SELECT 1'))); // 60 kB of queries
  let offered = 0;
  const until = Date.now() + 1000;
  while (Date.now() < until && offered < 64 * 1024 * 1024) {
    offered += chunk.length;
    if (!client.write(chunk)) await Promise.race([new Promise((r) => client.once('drain', r)), new Promise((r) => setTimeout(r, 100))]);
  }
  await new Promise((r) => setTimeout(r, 200));
  const s = sessions.at(-1)!;
  assert.equal(hungSockets.length, 1, 'the session is logging in to the hung server');
  assert.equal(s.state, 'startup', 'the session is still open: the queries behind its startup message were read as queries');
  assert.ok(s.heldBytes > 1024 * 1024 && s.heldBytes < 2 * 1024 * 1024, `held ${s.heldBytes} bytes of ${offered} offered`);
  // The rest waits in the sockets' buffers and the client's: it could not write its 64 MB.
  assert.ok(offered < 64 * 1024 * 1024 && client.writableLength > 0, `the client wrote ${offered} bytes, ${client.writableLength} still queued`);
  client.destroy();
});
