import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { startAdminConsole, type AdminBackend, type PoolNodeRow } from '../../src/proxy/admin.js';
import { CLIENT_COLUMNS, RELAY_COLUMNS, ROUTING_COLUMNS, SERVER_COLUMNS, STATS_COLUMNS } from '../../src/proxy/admin-commands.js';
import { MessageReader, SSL_REQUEST, parseErrorOrNotice, type Message } from '../../src/proxy/protocol.js';
import { encodeCancel, encodePassword, encodeQuery, encodeStartup } from '../../src/proxy/protocol-encode.js';
import { silentLogger } from '../../src/util/log.js';

const PSQL = '/usr/lib/postgresql/15/bin/psql';
const PASSWORD = 's3cret';

const NODES: PoolNodeRow[] = [
  { node_id: 0, hostname: '10.0.0.1', port: 5432, status: 'up', lb_weight: 1 / 3, role: 'primary', select_cnt: 12, load_balance_node: false, replication_delay: 0 },
  { node_id: 1, hostname: '10.0.0.2', port: 5433, status: 'waiting', lb_weight: 2 / 3, role: 'standby', select_cnt: 7, load_balance_node: true, replication_delay: 1024 },
];

class TestBackend implements AdminBackend {
  calls: string[] = [];
  failStats = false;
  poolNodes(): PoolNodeRow[] {
    return NODES;
  }
  clients() {
    return [{ id: 1, listener: 'read-write', client: '127.0.0.1:5000', user: 'app', extra_field: 'x' }];
  }
  servers() {
    return [];
  }
  stats() {
    if (this.failStats) throw new Error('stats are unavailable');
    return [{ member: 'pg1', sessions: 1, queries: 42 }];
  }
  relay() {
    return [{ thread: '0', kind: 'native', sessions: 3, load_pct: '12.5', io: 'io_uring' }];
  }
  routing() {
    return [
      { listener: 'read-write', member: null, waits_for: 'a switchover is in progress', refused: null },
      { listener: 'read-only', member: 'pg2', waits_for: null, refused: null },
    ];
  }
  async pause(): Promise<void> {
    await new Promise((r) => setTimeout(r, 20));
    this.calls.push('pause');
  }
  resume(): void {
    this.calls.push('resume');
  }
  config() {
    return [{ setting: 'pause_timeout', value: '10', reload: 'applies at once' }];
  }
  reloadFails = false;
  reload(): { applied: string[]; needRestart: string[] } {
    this.calls.push('reload');
    if (this.reloadFails) throw new Error('p.yml: pause_timeout: Number must be greater than 0');
    return { applied: ['pause_timeout', 'auth_users'], needRestart: ['listen.read_write'] };
  }
}

/** Connects a raw socket, sends the given buffers, and returns the messages received until the server closes. */
function rawExchange(port: number, ...sends: Buffer[]): Promise<{ bytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    socket.on('connect', () => {
      for (const b of sends) socket.write(b);
    });
    socket.on('data', (d) => got.push(d));
    socket.on('error', reject);
    socket.on('close', () => resolve({ bytes: Buffer.concat(got) }));
    setTimeout(() => reject(new Error('server did not close the connection')), 5000).unref();
  });
}

/** The one ErrorResponse among a connection's messages. */
function fatalOf(bytes: Buffer) {
  const msgs = messages(bytes).filter((m) => m.type === 0x45);
  assert.equal(msgs.length, 1, 'one ErrorResponse');
  return parseErrorOrNotice((msgs[0] as Message).frame);
}

function messages(bytes: Buffer): Message[] {
  const r = new MessageReader();
  r.push(bytes);
  const out: Message[] = [];
  for (let m = r.next(); m; m = r.next()) out.push(m);
  return out;
}

describe('admin console', () => {
  const backend = new TestBackend();
  let consolePort = 0;
  let close: () => Promise<void> = async () => {};
  const clients: pg.Client[] = [];

  async function connect(password: string = PASSWORD): Promise<pg.Client> {
    const c = new pg.Client({ host: '127.0.0.1', port: consolePort, user: 'admin', database: 'baton', password });
    await c.connect();
    clients.push(c);
    return c;
  }

  before(async () => {
    const started = await startAdminConsole({ host: '127.0.0.1', port: 0, password: PASSWORD, backend, logger: silentLogger(), cluster: 'test' });
    consolePort = started.port;
    close = started.close;
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    await close();
  });

  it('SHOW POOL_NODES lists the nodes like pgpool-II', async () => {
    const c = await connect();
    const res = await c.query('show   pool_nodes ; ');
    assert.deepEqual(
      res.fields.map((f) => f.name),
      ['node_id', 'hostname', 'port', 'status', 'lb_weight', 'role', 'select_cnt', 'load_balance_node', 'replication_delay'],
    );
    assert.deepEqual(res.rows, [
      { node_id: '0', hostname: '10.0.0.1', port: '5432', status: 'up', lb_weight: '0.333333', role: 'primary', select_cnt: '12', load_balance_node: 'false', replication_delay: '0' },
      { node_id: '1', hostname: '10.0.0.2', port: '5433', status: 'waiting', lb_weight: '0.666667', role: 'standby', select_cnt: '7', load_balance_node: 'true', replication_delay: '1024' },
    ]);
    assert.equal(res.rowCount, 2);
  });

  it('psql can query it (SSLRequest answered N, cleartext password)', { skip: !existsSync(PSQL) && 'psql not installed' }, async () => {
    const { stdout } = await promisify(execFile)(PSQL, ['-X', '-h', '127.0.0.1', '-p', String(consolePort), '-U', 'admin', '-d', 'baton', '-Atc', 'SHOW POOL_NODES'], {
      env: { ...process.env, PGPASSWORD: PASSWORD, PGSSLMODE: 'prefer', PGCONNECT_TIMEOUT: '5' },
      timeout: 10_000,
    });
    assert.deepEqual(stdout.trim().split('\n'), [
      '0|10.0.0.1|5432|up|0.333333|primary|12|false|0',
      '1|10.0.0.2|5433|waiting|0.666667|standby|7|true|1024',
    ]);
  });

  it('SHOW CLIENTS / SERVERS / STATS: fixed columns, NULL for missing keys, extra keys appended', async () => {
    const c = await connect();
    const clientsRes = await c.query('SHOW CLIENTS');
    assert.deepEqual(clientsRes.fields.map((f) => f.name), [...CLIENT_COLUMNS, 'extra_field']);
    assert.equal(clientsRes.rows[0].id, '1');
    assert.equal(clientsRes.rows[0].user, 'app');
    assert.equal(clientsRes.rows[0].database, null);
    assert.equal(clientsRes.rows[0].extra_field, 'x');
    const servers = await c.query('show servers');
    assert.equal(servers.rows.length, 0);
    assert.deepEqual(servers.fields.map((f) => f.name), [...SERVER_COLUMNS]);
    const stats = await c.query('Show Stats;');
    assert.deepEqual(stats.fields.map((f) => f.name), [...STATS_COLUMNS]);
    assert.equal(stats.rows[0].queries, '42');
    assert.equal(stats.rows[0].active, null);
    const relay = await c.query('show relay');
    assert.deepEqual(relay.fields.map((f) => f.name), [...RELAY_COLUMNS]);
    assert.deepEqual(relay.rows, [{ thread: '0', kind: 'native', sessions: '3', load_pct: '12.5', io: 'io_uring' }]);
    const routing = await c.query('SHOW ROUTING');
    assert.deepEqual(routing.fields.map((f) => f.name), [...ROUTING_COLUMNS]);
    assert.deepEqual(routing.rows, [
      { listener: 'read-write', member: null, waits_for: 'a switchover is in progress', refused: null },
      { listener: 'read-only', member: 'pg2', waits_for: null, refused: null },
    ]);
  });

  it('PAUSE and RESUME call the backend, in order, and answer with their tags', async () => {
    const c = await connect();
    backend.calls = [];
    const res = await c.query('pause');
    assert.equal(res.command, 'PAUSE');
    assert.deepEqual(backend.calls, ['pause']);
    const both = await c.query('PAUSE; RESUME;');
    assert.equal(Array.isArray(both), true);
    assert.deepEqual(backend.calls, ['pause', 'pause', 'resume']);
  });

  it('RELOAD lists what applied and what needs a restart; a file that does not parse is an error and the session goes on', async () => {
    const c = await connect();
    backend.calls = [];
    const res = await c.query('reload');
    assert.equal(res.command, 'RELOAD');
    assert.deepEqual(res.rows, [
      { setting: 'pause_timeout', outcome: 'applied' },
      { setting: 'auth_users', outcome: 'applied' },
      { setting: 'listen.read_write', outcome: 'changed in the file; applies after a restart' },
    ]);
    backend.reloadFails = true;
    try {
      await assert.rejects(c.query('RELOAD'), /pause_timeout: Number must be greater than 0/);
    } finally {
      backend.reloadFails = false;
    }
    assert.equal((await c.query('RELOAD')).command, 'RELOAD');
    assert.deepEqual(backend.calls, ['reload', 'reload', 'reload']);
  });

  it('SHOW CONFIG shows the backend\'s rows', async () => {
    const c = await connect();
    assert.deepEqual((await c.query('show config')).rows, [{ setting: 'pause_timeout', value: '10', reload: 'applies at once' }]);
  });

  it('SHOW HELP lists the commands; an empty query gets EmptyQueryResponse', async () => {
    const c = await connect();
    const help = await c.query('SHOW HELP');
    const commands = help.rows.map((r: { command: string }) => r.command);
    for (const cmd of ['SHOW POOL_NODES', 'SHOW CLIENTS', 'SHOW SERVERS', 'SHOW STATS', 'PAUSE', 'RESUME', 'RELOAD', 'SHOW CONFIG']) assert.ok(commands.includes(cmd), cmd);
    const empty = await c.query(' ; ');
    assert.equal(empty.rows.length, 0);
    assert.equal(empty.command, null);
  });

  it('an unknown command is an error and the session goes on', async () => {
    const c = await connect();
    await assert.rejects(c.query('SELECT 1'), (err: pg.DatabaseError) => {
      assert.equal(err.code, '42601');
      assert.equal(err.message, 'unknown admin command: SELECT 1; try SHOW HELP');
      return true;
    });
    backend.failStats = true;
    await assert.rejects(c.query('SHOW STATS'), (err: pg.DatabaseError) => err.code === 'XX000' && /unavailable/.test(err.message));
    backend.failStats = false;
    assert.equal((await c.query('SHOW POOL_NODES')).rows.length, 2);
  });

  it('a wrong password is refused with 28P01', async () => {
    await assert.rejects(connect('wrong'), (err: pg.DatabaseError) => {
      assert.equal(err.code, '28P01');
      assert.match(err.message, /password authentication failed for user "admin"/);
      return true;
    });
  });

  it('the extended protocol gets 0A000, then the session works again after Sync', async () => {
    const c = await connect();
    await assert.rejects(c.query({ text: 'SHOW POOL_NODES', values: [1] }), (err: pg.DatabaseError) => {
      assert.equal(err.code, '0A000');
      assert.match(err.message, /simple query protocol only/);
      return true;
    });
    await assert.rejects(c.query({ name: 'prepared', text: 'SHOW POOL_NODES' }), { code: '0A000' });
    assert.equal((await c.query('SHOW POOL_NODES')).rows.length, 2);
  });

  it('garbage on a raw socket gets FATAL 08P01 and a close; other clients are unaffected', async () => {
    const c = await connect();
    // Not a startup packet at all: the "length" is huge.
    let f = fatalOf((await rawExchange(consolePort, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))).bytes);
    assert.equal(f.S, 'FATAL');
    assert.equal(f.C, '08P01');
    assert.match(f.M ?? '', /startup packet too long/);
    // A startup packet without a user.
    f = fatalOf((await rawExchange(consolePort, encodeStartup({ database: 'x' }))).bytes);
    assert.match(f.M ?? '', /no user/);
    // A cleartext password where the SCRAM exchange is expected.
    f = fatalOf((await rawExchange(consolePort, encodeStartup({ user: 'admin' }), encodePassword(PASSWORD))).bytes);
    assert.equal(f.C, '08P01');
    assert.match(f.M ?? '', /SASL/);
    // After the login (on a console that asks for no password): a message with an impossible length.
    const open = await startAdminConsole({ host: '127.0.0.1', port: 0, password: null, backend, logger: silentLogger(), cluster: 'test' });
    try {
      const bad = Buffer.from([0x51, 0, 0, 0, 1]);
      f = fatalOf((await rawExchange(open.port, encodeStartup({ user: 'admin' }), bad)).bytes);
      assert.equal(f.C, '08P01');
      assert.match(f.M ?? '', /invalid message length 1/);
      // An unknown message type.
      const odd = Buffer.from([0x21, 0, 0, 0, 4]);
      f = fatalOf((await rawExchange(open.port, encodeStartup({ user: 'admin' }), odd)).bytes);
      assert.match(f.M ?? '', /invalid frontend message type 33/);
    } finally {
      await open.close();
    }
    assert.equal((await c.query('SHOW POOL_NODES')).rows.length, 2);
  });

  it('SSLRequest gets N, then the startup is served; bytes sent behind an SSLRequest before its answer are refused; CancelRequest is just closed', async () => {
    const ssl = Buffer.alloc(8);
    ssl.writeInt32BE(8, 0);
    ssl.writeInt32BE(SSL_REQUEST, 4);
    const open = await startAdminConsole({ host: '127.0.0.1', port: 0, password: null, backend, logger: silentLogger(), cluster: 'test' });
    const bytes = await new Promise<Buffer>((resolve, reject) => {
      const socket = net.connect(open.port, '127.0.0.1', () => socket.write(ssl));
      const got: Buffer[] = [];
      socket.once('data', (n: Buffer) => {
        got.push(n);
        socket.on('data', (d: Buffer) => got.push(d));
        socket.write(Buffer.concat([encodeStartup({ user: 'admin' }), encodeQuery('SHOW STATS'), Buffer.from([0x58, 0, 0, 0, 4])]));
      });
      socket.on('error', reject);
      socket.on('close', () => resolve(Buffer.concat(got)));
    });
    assert.equal(bytes[0], 'N'.charCodeAt(0));
    const types = messages(bytes.subarray(1)).map((m) => String.fromCharCode(m.type)).join('');
    await open.close();
    assert.equal(types, 'RSSSSSSKZTDCZ'); // auth ok, 6 parameters, key, ready; result set; ready
    // In the same write as the SSLRequest: never encrypted, perhaps injected (CVE-2021-23214).
    const injected = await rawExchange(consolePort, Buffer.concat([ssl, encodeStartup({ user: 'admin' }), encodePassword(PASSWORD), encodeQuery('PAUSE')]));
    const f = fatalOf(injected.bytes);
    assert.equal(f.C, '08P01');
    assert.match(f.M ?? '', /received unencrypted data after SSL request/);
    const cancel = await rawExchange(consolePort, encodeCancel(1, 2));
    assert.equal(cancel.bytes.length, 0);
  });

  it('without a password configured, anyone may connect', async () => {
    const open = await startAdminConsole({ host: '127.0.0.1', port: 0, password: null, backend, logger: silentLogger(), cluster: 'test' });
    try {
      const c = new pg.Client({ host: '127.0.0.1', port: open.port, user: 'whoever', database: 'x' });
      await c.connect();
      assert.equal((await c.query('SHOW POOL_NODES')).rows.length, 2);
      await c.end();
    } finally {
      await open.close();
    }
  });
});

describe('admin console over TLS: SCRAM-SHA-256-PLUS', { skip: !existsSync(PSQL) && 'psql not installed' }, () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'baton-admin-tls-'));
  const consoles: { close: () => Promise<void> }[] = [];

  /** A console serving a fresh self-signed certificate made with these openssl req arguments. */
  async function tlsConsole(name: string, keyArgs: string[]): Promise<number> {
    const [key, cert] = [path.join(dir, `${name}.key`), path.join(dir, `${name}.pem`)];
    await promisify(execFile)('openssl', ['req', '-x509', ...keyArgs, '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', key, '-out', cert]);
    const context = tls.createSecureContext({ key: readFileSync(key), cert: readFileSync(cert) });
    const started = await startAdminConsole({ host: '127.0.0.1', port: 0, password: PASSWORD, tls: context, backend: new TestBackend(), logger: silentLogger(), cluster: 'test' });
    consoles.push(started);
    return started.port;
  }

  /** SHOW STATS as psql -At prints TestBackend's one row. */
  const STATS_LINE = 'pg1|1||||42|||';

  /** psql's one-line answer to SHOW STATS, or its error. */
  async function psql(port: number, conninfo: string, password = PASSWORD): Promise<string> {
    try {
      const { stdout } = await promisify(execFile)(PSQL, ['-X', '-Atc', 'SHOW STATS', `host=127.0.0.1 port=${port} user=admin dbname=baton connect_timeout=5 ${conninfo}`], {
        env: { ...process.env, PGPASSWORD: password },
        timeout: 10_000,
      });
      return stdout.trim();
    } catch (err) {
      return String((err as { stderr?: string }).stderr ?? err).trim();
    }
  }

  after(async () => {
    await Promise.all(consoles.map((c) => c.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('libpq with channel_binding=require logs in, with SHA-256 and SHA-384 certificates; a wrong password is still refused', async () => {
    for (const [name, args] of [['rsa', ['-newkey', 'rsa:2048', '-sha256']], ['ec384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-sha384']]] as const) {
      const port = await tlsConsole(name, [...args]);
      assert.equal(await psql(port, 'sslmode=require channel_binding=require'), STATS_LINE, name);
      assert.match(await psql(port, 'sslmode=require channel_binding=require', 'wrong'), /password authentication failed for user "admin"/, name);
      // In cleartext there is nothing to bind to: libpq refuses before it sends a password.
      assert.match(await psql(port, 'sslmode=disable channel_binding=require'), /channel binding (is )?required/, name);
      assert.equal(await psql(port, 'sslmode=disable'), STATS_LINE, name);
    }
  });

  it('pg (node-postgres) with enableChannelBinding logs in over TLS', async () => {
    const port = await tlsConsole('pg', ['-newkey', 'rsa:2048']);
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'admin', database: 'baton', password: PASSWORD, ssl: { rejectUnauthorized: false }, enableChannelBinding: true });
    await c.connect();
    try {
      assert.equal((await c.query('SHOW POOL_NODES')).rows.length, 2);
    } finally {
      await c.end();
    }
  });

  it('a certificate that names no hash to bind with (Ed25519): no -PLUS offered, and a client that can do without it gets in', async () => {
    const port = await tlsConsole('ed25519', ['-newkey', 'ed25519']);
    assert.equal(await psql(port, 'sslmode=require channel_binding=prefer'), STATS_LINE);
    assert.match(await psql(port, 'sslmode=require channel_binding=require'), /did not offer an authentication method that supports channel binding/);
  });
});
