// A running agent's reload: which changed settings apply at once, which wait for a restart, and
// which are read only when the cluster was created.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMemberConfig } from '../../src/config/load.js';
import { planMemberReload } from '../../src/config/reload.js';
import { MINIMAL_MEMBER_CONFIG } from '../helpers/member-config.js';

interface Raw {
  [key: string]: unknown;
  name: string;
  etcd: { hosts: string[] };
  postgresql: {
    [key: string]: unknown;
    data_dir: string;
    listen: string;
    authentication: { superuser: { username: string; password: string }; replication: { username: string; password: string } };
    parameters: Record<string, string | number>;
  };
  restapi: { listen: string; token: string };
  tags: Record<string, number | boolean>;
}

const base: Raw = {
  ...MINIMAL_MEMBER_CONFIG,
  postgresql: { ...MINIMAL_MEMBER_CONFIG.postgresql, parameters: { work_mem: '4MB', shared_buffers: '64MB' } },
  restapi: { ...MINIMAL_MEMBER_CONFIG.restapi, token: 'a-token-of-sixteen-chars' },
  tags: { weight: 2 },
};

const config = (edit: (raw: Raw) => void = () => undefined) => {
  const raw = structuredClone(base);
  edit(raw);
  return parseMemberConfig(raw, '/etc/baton/m.yml');
};

test('an unchanged file changes nothing', () => {
  const plan = planMemberReload(config(), config());
  assert.deepEqual([plan.applied, plan.needRestart, plan.bootstrapOnly], [[], [], []]);
  assert.deepEqual(plan.next, config());
});

test('tags, parameters, the API token and clone_from apply at once, named as in the file', () => {
  const running = config();
  const file = config((r) => {
    r.tags = { weight: 5, noloadbalance: true };
    r.postgresql.parameters = { work_mem: '8MB', shared_buffers: '64MB', statement_timeout: 5000 };
    r.restapi.token = 'another-token-of-16-chars';
    r.postgresql.clone_from = 'db2';
  });
  const plan = planMemberReload(running, file);
  assert.deepEqual(plan.applied, [
    'postgresql.clone_from',
    'restapi.token',
    'tags.noloadbalance',
    'tags.weight',
    'postgresql.parameters.statement_timeout',
    'postgresql.parameters.work_mem',
  ]);
  assert.deepEqual(plan.needRestart, []);
  assert.equal(plan.next.tags.weight, 5);
  assert.equal(plan.next.tags.noloadbalance, true);
  assert.deepEqual(plan.next.pg.parameters, { work_mem: '8MB', shared_buffers: '64MB', statement_timeout: 5000 });
  assert.equal(plan.next.api.token, 'another-token-of-16-chars');
  assert.equal(plan.next.pg.cloneFrom, 'db2');
  assert.deepEqual(running.tags.weight, 2, 'the running configuration is not modified by planning');
});

test('a removed parameter is a change too (PostgreSQL goes back to its default)', () => {
  const plan = planMemberReload(config(), config((r) => {
    r.postgresql.parameters = { shared_buffers: '64MB' };
  }));
  assert.deepEqual(plan.applied, ['postgresql.parameters.work_mem']);
  assert.deepEqual(plan.next.pg.parameters, { shared_buffers: '64MB' });
});

test('identity, addresses, paths and credentials need a restart and keep their running value', () => {
  const running = config();
  const file = config((r) => {
    r.name = 'db9';
    r.etcd = { hosts: ['127.0.0.1:2380'] };
    r.postgresql.listen = '127.0.0.1:5433';
    r.postgresql.data_dir = 'data/elsewhere';
    r.postgresql.authentication.superuser.password = 'secret-three';
    r.restapi.listen = '127.0.0.1:8009';
    r.tags = { weight: 3 };
  });
  const plan = planMemberReload(running, file);
  assert.deepEqual(plan.needRestart, [
    'name',
    'etcd.hosts',
    'postgresql.data_dir',
    'postgresql.listen',
    'postgresql.connect_address', // follows listen when not set
    'postgresql.authentication.superuser',
    'postgresql.log_file', // follows data_dir when not set
    'restapi.listen',
    'restapi.connect_address',
  ]);
  assert.deepEqual(plan.applied, ['tags.weight'], 'what can apply still does');
  assert.equal(plan.next.name, 'db1');
  assert.equal(plan.next.pg.listen.port, 5432);
  assert.equal(plan.next.pg.superuser.password, 'secret-one');
  assert.equal(plan.next.tags.weight, 3);
});

test('bootstrap.dcs changes are reported as read only at cluster creation', () => {
  const plan = planMemberReload(config(), config((r) => {
    r.bootstrap = { dcs: { ttl: 10, loop_wait: 2 } };
  }));
  assert.deepEqual(plan.bootstrapOnly, ['bootstrap.dcs.loop_wait', 'bootstrap.dcs.ttl']);
  assert.deepEqual([plan.applied, plan.needRestart], [[], []]);
  assert.equal(plan.next.initialDynamicConfig.ttl, 3);
});
