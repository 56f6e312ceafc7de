// The member config: defaults, and refusals that name the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMemberConfig } from '../../src/config/load.js';
import { MINIMAL_MEMBER_CONFIG } from '../helpers/member-config.js';

const valid = MINIMAL_MEMBER_CONFIG;

function refusal(raw: unknown): string {
  try {
    parseMemberConfig(raw, 'm.yml');
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail('accepted an invalid config');
}

test('a minimal config gets the documented defaults', () => {
  const c = parseMemberConfig(valid, '/etc/baton/m.yml');
  assert.equal(c.pg.binDir, '/usr/lib/postgresql/15/bin');
  assert.equal(c.pg.osUser, 'postgres');
  assert.equal(c.pg.dataDir, '/etc/baton/data/db1', 'relative paths are relative to the config file');
  assert.deepEqual(c.pg.connect, { host: '127.0.0.1', port: 5432 });
  assert.deepEqual(c.etcdEndpoints, ['http://127.0.0.1:2379']);
  assert.equal(c.api.token, null);
  assert.equal(c.tags.weight, 1);
  assert.equal(c.initialDynamicConfig.synchronousMode, true);
  assert.equal(c.initialDynamicConfig.ttl, 3);
});

test('bootstrap.dcs overrides the dynamic defaults', () => {
  const c = parseMemberConfig({ ...valid, bootstrap: { dcs: { ttl: 10, synchronous_mode_strict: true, max_restarts: 1 } } }, 'm.yml');
  assert.equal(c.initialDynamicConfig.ttl, 10);
  assert.equal(c.initialDynamicConfig.synchronousModeStrict, true);
  assert.equal(c.initialDynamicConfig.maxRestarts, 1);
});

test('refusals name the field path and the reason', () => {
  assert.match(refusal({ ...valid, extra: 1 }), /m\.yml: \(top level\): unknown key\(s\) "extra"/);
  assert.match(refusal({ ...valid, postgresql: { ...valid.postgresql, listen: 'localhost' } }), /postgresql\.listen: expected host:port/);
  assert.match(refusal({ ...valid, postgresql: { ...valid.postgresql, listen: 'h:70000' } }), /postgresql\.listen: port must be between 1 and 65535/);
  assert.match(refusal({ ...valid, etcd: { hosts: [] } }), /etcd\.hosts: name at least one etcd endpoint/);
  assert.match(
    refusal({ ...valid, postgresql: { ...valid.postgresql, authentication: { ...valid.postgresql.authentication, superuser: { username: 'p', password: 'x' } } } }),
    /postgresql\.authentication\.superuser\.password: use at least 8 characters/,
  );
  assert.match(refusal({ ...valid, restapi: { listen: '127.0.0.1:8008', token: 'short' } }), /restapi\.token: use a token of at least 16/);
  assert.match(refusal({ ...valid, bootstrap: { dcs: { ttl: 1 } } }), /bootstrap\.dcs\.ttl: etcd leases shorter than 2 s/);
  assert.match(refusal({ ...valid, tags: { weight: -1 } }), /tags\.weight/);
  assert.match(refusal({ ...valid, name: '../etc' }), /name: letters, digits/);
  assert.match(refusal(null), /cluster/);
  assert.match(refusal('just a string'), /m\.yml/);
});
