// The proxy config: defaults, and refusals that name the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseProxyConfig } from '../../src/proxy/config.js';

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
});
