// Where the proxy reaches a member: its Unix socket only when the token beside it is the member's.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { SOCKET_TOKEN_FILE } from '../../src/postgres/conf.js';
import { connectServer } from '../../src/proxy/server-connect.js';
import { describeAddress, readSocketToken, serverAddress } from '../../src/proxy/server-address.js';
import { member } from '../helpers/observation.js';

const SOCKET = '/run/baton/node1/data.sock/.s.PGSQL.5432';
const withSocket = member('node1', { host: '10.0.0.1', port: 5432, localSocket: { path: SOCKET, token: 'abc' } });

describe('serverAddress', () => {
  const tokenIs = (t: string | null) => (p: string) => (p === SOCKET ? t : null);

  it('the socket when the token beside it is the member\'s', () => {
    assert.deepEqual(serverAddress(withSocket, true, tokenIs('abc')), { path: SOCKET });
  });

  it('TCP otherwise: another token (another server at the same path), none (another host), switched off, or an old record', () => {
    const tcp = { host: '10.0.0.1', port: 5432 };
    assert.deepEqual(serverAddress(withSocket, true, tokenIs('xyz')), tcp);
    assert.deepEqual(serverAddress(withSocket, true, tokenIs(null)), tcp);
    assert.deepEqual(serverAddress(withSocket, false, tokenIs('abc')), tcp);
    assert.deepEqual(serverAddress(member('node1', { host: '10.0.0.1', port: 5432 }), true, tokenIs('abc')), tcp);
    const emptyToken = member('node1', { host: '10.0.0.1', port: 5432, localSocket: { path: SOCKET, token: '' } });
    assert.deepEqual(serverAddress(emptyToken, true, () => ''), tcp);
  });

  it('describes either kind', () => {
    assert.equal(describeAddress({ path: SOCKET }), SOCKET);
    assert.equal(describeAddress({ host: '::1', port: 5432 }), '::1:5432');
  });
});

describe('on a real socket', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-socket-'));
  const socketPath = path.join(dir, '.s.PGSQL.5999');
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads the token beside a socket; nothing to read is null, never an error', () => {
    assert.equal(readSocketToken(socketPath), null);
    fs.writeFileSync(path.join(dir, SOCKET_TOKEN_FILE), 'tok\n');
    assert.equal(readSocketToken(socketPath), 'tok');
    assert.equal(readSocketToken('/nonexistent/dir/.s.PGSQL.1'), null);
    assert.equal(readSocketToken(path.join(dir, SOCKET_TOKEN_FILE, '.s.PGSQL.1')), null); // ENOTDIR
  });

  it('connectServer goes through the socket, and falls back to TCP at once when nothing listens there', async () => {
    const seen: string[] = [];
    const answer = (label: string) => (s: net.Socket) => s.once('data', () => (seen.push(label), s.write(Buffer.from('R\0\0\0\x08\0\0\0\0'))));
    const unix = net.createServer(answer('unix'));
    const tcp = net.createServer(answer('tcp'));
    await new Promise<void>((r) => unix.listen(socketPath, r));
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    const m = member('node1', { host: '127.0.0.1', port: (tcp.address() as net.AddressInfo).port });
    try {
      const a = await connectServer(m, { path: socketPath }, Buffer.from('startup'), 2000);
      assert.ok('server' in a);
      assert.deepEqual(a.address, { path: socketPath });
      a.server.destroy();
      await new Promise<void>((r) => unix.close(() => r()));
      const b = await connectServer(m, { path: socketPath }, Buffer.from('startup'), 2000);
      assert.ok('server' in b);
      assert.deepEqual(b.address, { host: '127.0.0.1', port: m.port });
      b.server.destroy();
      await new Promise<void>((r) => tcp.close(() => r()));
      const c = await connectServer(m, { path: socketPath }, Buffer.from('startup'), 2000);
      assert.ok('retry' in c && /node1 \(127\.0\.0\.1:\d+\): connect ECONNREFUSED/.test(c.retry), JSON.stringify(c));
      assert.deepEqual(seen, ['unix', 'tcp']);
    } finally {
      unix.close();
      tcp.close();
    }
  });
});
