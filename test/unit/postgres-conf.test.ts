import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  batonConf,
  conninfo,
  pgHbaConf,
  postgresqlConf,
  quoteConfValue,
  quoteConninfoValue,
  slotName,
} from '../../src/postgres/conf.js';

const opts = {
  listenHost: '10.0.0.1',
  port: 5433,
  dataDir: '/var/lib/baton/data',
  parameters: { work_mem: '8MB', max_connections: 200, fsync: true },
  superuser: { username: 'postgres', password: 'su' },
  replication: { username: 'replicator', password: "it's a \\secret" },
  memberName: 'Node-1',
};

/** Reads the value of a name = 'value' line back the way PostgreSQL's conf lexer does. */
function unquoteConf(quoted: string): string {
  assert.match(quoted, /^'.*'$/s);
  return quoted.slice(1, -1).replace(/\\(.)|''/g, (_m, c: string | undefined) =>
    c === undefined ? "'" : c === 'n' ? '\n' : c === 'r' ? '\r' : c,
  );
}

describe('quoting', () => {
  it('doubles single quotes and escapes backslashes in postgresql.conf values', () => {
    assert.equal(quoteConfValue("a'b\\c"), "'a''b\\\\c'");
    assert.equal(unquoteConf(quoteConfValue("a'b\\c\nd")), "a'b\\c\nd");
  });

  it('escapes quotes and backslashes with a backslash in conninfo values', () => {
    assert.equal(quoteConninfoValue("p'w\\d"), "'p\\'w\\\\d'");
    assert.equal(conninfo({ host: 'h', port: 5 }), "host='h' port='5'");
  });
});

describe('postgresql.conf', () => {
  const text = postgresqlConf(opts);
  it('holds the replication settings and a socket directory next to the data directory', () => {
    for (const line of [
      "listen_addresses = '10.0.0.1'",
      'port = 5433',
      "unix_socket_directories = '/var/lib/baton/data.sock'",
      "wal_level = 'replica'",
      'hot_standby = on',
      'wal_log_hints = on',
      'max_wal_senders = 10',
      'max_replication_slots = 10',
      "wal_keep_size = '128MB'",
      "max_slot_wal_keep_size = '2GB'",
      'hot_standby_feedback = on',
      "wal_receiver_status_interval = '1s'",
      "wal_retrieve_retry_interval = '100ms'",
      "password_encryption = 'scram-sha-256'",
      "shared_buffers = '32MB'",
    ]) {
      assert.ok(text.split('\n').includes(line), `missing: ${line}`);
    }
  });

  it('adds the member parameters after the defaults and includes baton.conf last', () => {
    const lines = text.trimEnd().split('\n');
    assert.equal(lines.at(-1), "include 'baton.conf'");
    assert.ok(lines.indexOf('max_connections = 200') > lines.indexOf('max_connections = 100'));
    assert.ok(lines.includes("work_mem = '8MB'"));
    assert.ok(lines.includes('fsync = on'));
  });

  it('rejects a parameter name that would inject lines', () => {
    assert.throws(() => postgresqlConf({ ...opts, parameters: { 'a = 1\nb': 'x' } }), /invalid PostgreSQL parameter/);
  });
});

describe('baton.conf', () => {
  it('streams from the upstream with a quoted password and the member name', () => {
    const text = batonConf(opts, { upstream: { host: '10.0.0.2', port: 5432, slot: 'node_1' }, synchronousStandbyNames: '' });
    const line = text.split('\n').find((l) => l.startsWith('primary_conninfo = '))!;
    const info = unquoteConf(line.slice('primary_conninfo = '.length));
    assert.match(info, /host='10\.0\.0\.2' port='5432' user='replicator' /);
    assert.ok(info.includes("password='it\\'s a \\\\secret'"), info);
    assert.ok(info.includes("application_name='Node-1'"));
    assert.ok(info.includes("connect_timeout='2'"));
    assert.ok(info.includes("keepalives='1'"));
    assert.ok(text.includes("primary_slot_name = 'node_1'"));
    assert.ok(text.includes("recovery_target_timeline = 'latest'"));
    assert.ok(text.includes("synchronous_standby_names = ''"));
  });

  it('has no upstream for a primary and carries synchronous_standby_names', () => {
    const text = batonConf(opts, { upstream: null, synchronousStandbyNames: 'ANY 1 ("node_2")' });
    assert.ok(text.includes("primary_conninfo = ''"));
    assert.ok(text.includes("primary_slot_name = ''"));
    assert.ok(text.includes(`synchronous_standby_names = 'ANY 1 ("node_2")'`));
  });
});

describe('pg_hba.conf', () => {
  const text = pgHbaConf(opts, { memberHosts: ['10.0.0.2', 'fd00::3', '10.0.0.2'] });
  const lines = text.split('\n').filter((l) => l && !l.startsWith('#'));
  it('allows loopback and member hosts only, with SCRAM', () => {
    assert.equal(lines[0], 'local all all scram-sha-256'); // a proxy on this host relays client logins through the socket
    for (const l of [
      'host all all 127.0.0.1/32 scram-sha-256',
      'host all all ::1/128 scram-sha-256',
      'host all all 10.0.0.2/32 scram-sha-256',
      'host all all fd00::3/128 scram-sha-256',
      'host replication replicator 10.0.0.2/32 scram-sha-256',
      'host replication postgres 10.0.0.2/32 scram-sha-256',
      'host replication replicator fd00::3/128 scram-sha-256',
    ]) {
      assert.ok(lines.includes(l), `missing: ${l}`);
    }
    assert.equal(lines.filter((l) => l === 'host all all 10.0.0.2/32 scram-sha-256').length, 1);
    assert.ok(!text.includes('0.0.0.0/0'));
    assert.ok(!/\btrust\b/.test(text));
  });
});

describe('slotName', () => {
  it('lowercases and replaces what PostgreSQL does not allow', () => {
    assert.equal(slotName('Node-1.example'), 'node_1_example');
    assert.equal(slotName('a_b9'), 'a_b9');
    assert.equal(slotName('x'.repeat(80)).length, 63);
  });
});
