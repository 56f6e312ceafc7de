// The proxy config: defaults, and refusals that name the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseProxyConfig } from '../../src/proxy/config.js';
import { configRows, planReload } from '../../src/proxy/config-reload.js';

const valid = {
  cluster: 'demo',
  etcd: { hosts: ['127.0.0.1:2379'] },
  listen: { read_write: '127.0.0.1:6432', read_only: '127.0.0.1:6433', admin: '127.0.0.1:6434' },
};

test('defaults', () => {
  const c = parseProxyConfig(valid, 'p.yml');
  assert.equal(c.maxReplicationLag, 1024 * 1024);
  assert.equal(c.readOnlyFallbackToLeader, true);
  assert.equal(c.pauseTimeoutMs, 10_000);
  assert.equal(c.startupTimeoutMs, 60_000);
  assert.equal(parseProxyConfig({ ...valid, startup_timeout: 0.5 }, 'p.yml').startupTimeoutMs, 500);
  assert.equal(c.tls, null);
  assert.deepEqual(c.readOnly, { host: '127.0.0.1', port: 6433 });
  assert.equal(c.relay, 'auto');
  assert.equal(parseProxyConfig({ ...valid, relay: 'js' }, 'p.yml').relay, 'js');
  assert.ok(c.relayThreads >= 1 && c.relayThreads <= 4);
  assert.equal(parseProxyConfig({ ...valid, relay_threads: 3 }, 'p.yml').relayThreads, 3);
});

test('refusals name the field', () => {
  const err = (raw: unknown) => {
    try {
      parseProxyConfig(raw, 'p.yml');
    } catch (e) {
      return (e as Error).message;
    }
    return assert.fail('accepted');
  };
  assert.match(err({ ...valid, listen: { ...valid.listen, admin: 'nope' } }), /p\.yml: listen\.admin: expected host:port/);
  assert.match(err({ ...valid, pause_timeout: -1 }), /pause_timeout/);
  assert.match(err({ ...valid, startup_timeout: 0 }), /startup_timeout/);
  assert.match(err({ ...valid, startup_timeout: 7200 }), /startup_timeout/);
  assert.match(err({ ...valid, startup_timeout: '60' }), /startup_timeout/);
  assert.match(err({ ...valid, tls: { cert: 'c.pem' } }), /tls\.key/);
  assert.match(err({ ...valid, extra: true }), /unknown key\(s\) "extra"/);
  assert.match(err({ ...valid, admin_password: 'short' }), /admin_password: use at least 8 characters/);
  assert.match(err({ ...valid, relay: 'fast' }), /relay/);
  assert.match(err({ ...valid, relay_threads: 0 }), /relay_threads/);
  assert.match(err({ ...valid, relay_threads: 17 }), /relay_threads/);
  assert.match(err({ ...valid, use_local_socket: 'yes' }), /use_local_socket/);
});

test('reload: live settings apply, those that shape listeners, etcd or the relay wait for a restart', () => {
  const running = parseProxyConfig({ ...valid, auth_users: { app: 'old' } }, 'p.yml');
  assert.deepEqual(planReload(running, parseProxyConfig({ ...valid, auth_users: { app: 'old' } }, 'p.yml')), { next: running, applied: [], needRestart: [] });
  const file = parseProxyConfig(
    {
      ...valid,
      listen: { ...valid.listen, read_only: '127.0.0.1:7433' },
      etcd: { hosts: ['127.0.0.1:2479'] },
      relay_threads: running.relayThreads + 1,
      admin_password: 'a-new-password',
      pause_timeout: 30,
      max_replication_lag: 0,
      auth_users: { app: 'new', other: 'x' },
      tls: { cert: 'c.pem', key: 'k.pem' },
      use_local_socket: false,
    },
    'p.yml',
  );
  const plan = planReload(running, file);
  assert.deepEqual(plan.applied.sort(), ['admin_password', 'auth_users', 'max_replication_lag', 'pause_timeout', 'tls', 'use_local_socket']);
  assert.equal(plan.next.useLocalSocket, false);
  assert.deepEqual(plan.needRestart.sort(), ['etcd.hosts', 'listen.read_only', 'relay_threads']);
  assert.equal(plan.next.pauseTimeoutMs, 30_000);
  assert.equal(plan.next.maxReplicationLag, 0);
  assert.deepEqual(plan.next.authUsers, { app: 'new', other: 'x' });
  assert.deepEqual(plan.next.tls, { cert: 'c.pem', key: 'k.pem' });
  // What needs a restart keeps the value the proxy runs with.
  assert.deepEqual(plan.next.readOnly, running.readOnly);
  assert.deepEqual(plan.next.etcdEndpoints, running.etcdEndpoints);
  assert.equal(plan.next.relayThreads, running.relayThreads);
});

test('SHOW CONFIG rows: every setting as the file spells it, secrets left out, and whether a reload changes it', () => {
  const c = parseProxyConfig({ ...valid, admin_password: 'very-secret', auth_users: { app: 'also-secret', batch: 'x' }, pause_timeout: 2.5 }, 'p.yml');
  const rows = configRows(c);
  const by = new Map(rows.map((r) => [r.setting, r]));
  assert.equal(rows.length, 18);
  assert.deepEqual(by.get('use_local_socket'), { setting: 'use_local_socket', value: 'true', reload: 'applies at once' });
  assert.deepEqual(by.get('pause_timeout'), { setting: 'pause_timeout', value: '2.5', reload: 'applies at once' });
  assert.deepEqual(by.get('listen.read_only'), { setting: 'listen.read_only', value: '127.0.0.1:6433', reload: 'needs a restart' });
  assert.equal(by.get('etcd.hosts')?.value, '127.0.0.1:2379');
  assert.equal(by.get('admin_password')?.value, '(set)');
  assert.equal(by.get('auth_users')?.value, 'app, batch');
  assert.ok(!JSON.stringify(rows).includes('secret'), 'no password shown');
});
