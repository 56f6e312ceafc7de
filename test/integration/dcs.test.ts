// EtcdStore and EtcdClient against a real etcd.
import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { after, before, test } from 'node:test';
import { EtcdClient, WatchCompactedError, type WatchEvent } from '../../src/dcs/etcd-client.js';
import { EtcdStore } from '../../src/dcs/etcd-store.js';
import type { ClusterChange } from '../../src/dcs/store.js';
import { withMemberChange } from '../../src/dcs/member-change.js';
import type { MemberRecord, SwitchoverRequest } from '../../src/dcs/types.js';
import { StoreUnavailableError } from '../../src/util/errors.js';
import { freePort } from '../../src/util/net.js';
import { startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { member as sharedMember } from '../helpers/observation.js';

let etcd: TestEtcd;
let clusterSeq = 0;

before(async () => {
  etcd = await startEtcd();
});
after(async () => {
  await etcd?.stop();
});

/** A store on a cluster name no other test uses, closed when the test ends. */
function newStore(t: { after(fn: () => Promise<void>): void }, endpoints = [etcd.endpoint]): EtcdStore {
  const store = new EtcdStore({ endpoints, cluster: `c${++clusterSeq}`, requestTimeoutMs: 1000 });
  t.after(() => store.close());
  return store;
}

function member(name: string): MemberRecord {
  return sharedMember(name, {
    host: '127.0.0.1',
    apiUrl: 'http://127.0.0.1:8008',
    receivedLsn: 100,
    replayedLsn: 90,
    tags: { priority: 1 },
    agentPid: 1,
    postmasterPid: null,
    upstream: 'a',
    systemId: '7',
  });
}

async function until(cond: () => boolean, timeoutMs: number): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - start;
}

test('lease grant, keepalive and revoke', async (t) => {
  const store = newStore(t);
  const lease = await store.grantLease(10);
  assert.match(lease, /^\d+$/);
  const before = Date.now();
  const ka = await store.keepAlive(lease);
  assert.equal(ka.ttl, 10);
  assert.ok(ka.sentAt >= before && ka.sentAt <= Date.now());
  await store.revokeLease(lease);
  assert.equal((await store.keepAlive(lease)).ttl, 0);
  await store.revokeLease(lease); // already gone: not an error
});

test('leader key is create-if-absent and released only by its owner', async (t) => {
  const store = newStore(t);
  const lease = await store.grantLease(30);
  const other = await store.grantLease(30);
  assert.equal(await store.acquireLeader('a', lease), true);
  assert.equal(await store.acquireLeader('b', other), false);
  assert.equal(await store.isLeader('a', lease), true);
  assert.equal(await store.isLeader('a', other), false);
  assert.equal(await store.isLeader('b', other), false);

  assert.equal(await store.releaseLeader('b'), false);
  const view = await store.read();
  assert.equal(view.leader?.name, 'a');
  assert.match(view.leader?.modRevision ?? '', /^\d+$/);

  await store.revokeLease(lease);
  assert.equal((await store.read()).leader, null);
  assert.equal(await store.acquireLeader('b', other), true);
  assert.equal(await store.releaseLeader('b'), true);
  assert.equal((await store.read()).leader, null);
  await store.revokeLease(other);
});

test('initialize happens only once', async (t) => {
  const store = newStore(t);
  assert.equal((await store.read()).initialize, null);
  assert.equal(await store.initialize('7001'), true);
  assert.equal(await store.initialize('7002'), false);
  assert.equal((await store.read()).initialize, '7001');
});

test('members, config, sync and history round-trip through read()', async (t) => {
  const store = newStore(t);
  const lease = await store.grantLease(30);
  t.after(() => store.revokeLease(lease));
  await store.putMember(member('b'), lease);
  await store.putMember(member('a'), lease);
  await store.putConfig({ ...(await store.read()).config, ttl: 9 });
  await store.putSync({ leader: 'a', members: ['b'] });
  for (const tl of [10, 2, 1]) {
    await store.appendHistory({ timeline: tl, lsn: tl * 100, at: 'now', leader: 'a', previousLeader: null, reason: 'x' });
  }
  const view = await store.read();
  assert.deepEqual(view.members.map((m) => m.name), ['a', 'b']);
  assert.deepEqual(view.members[0], { ...member('a'), updatedAt: view.members[0]!.updatedAt });
  assert.equal(view.config.ttl, 9);
  assert.equal(view.config.loopWait, 1);
  assert.deepEqual(view.sync, { leader: 'a', members: ['b'] });
  assert.deepEqual(view.history.map((h) => h.timeline), [1, 2, 10]);
  assert.match(view.revision, /^\d+$/);

  await store.deleteMember('b');
  await store.putSync(null);
  const after = await store.read();
  assert.deepEqual(after.members.map((m) => m.name), ['a']);
  assert.equal(after.sync, null);
});

test('config missing fields get defaults', async (t) => {
  const store = newStore(t);
  const client = new EtcdClient({ endpoints: [etcd.endpoint] });
  await client.put(store.keys.config, JSON.stringify({ ttl: 5, paused: true }));
  const { config } = await store.read();
  assert.equal(config.ttl, 5);
  assert.equal(config.paused, true);
  assert.equal(config.maxRestarts, 3);
  assert.deepEqual(config.standbyMembers, []);
});

test('read() skips a member whose value is not JSON and says which key', async (t) => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const store = new EtcdStore({ endpoints: [etcd.endpoint], cluster: `c${++clusterSeq}`, logger: pino({ level: 'warn' }, sink) });
  t.after(() => store.close());
  const lease = await store.grantLease(30);
  t.after(() => store.revokeLease(lease));
  await store.putMember(member('good'), lease);
  const client = new EtcdClient({ endpoints: [etcd.endpoint] });
  await client.put(store.keys.member('bad'), '{not json');
  const view = await store.read();
  assert.deepEqual(view.members.map((m) => m.name), ['good']);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, new RegExp(store.keys.member('bad')));
});

test('switchover request is create-if-absent', async (t) => {
  const store = newStore(t);
  const req: SwitchoverRequest = {
    kind: 'switchover',
    from: 'a',
    to: 'b',
    requestedAt: new Date().toISOString(),
    phase: 'requested',
    deadline: Date.now() + 30000,
    reason: 'test',
  };
  assert.equal(await store.requestSwitchover(req), true);
  assert.equal(await store.requestSwitchover({ ...req, to: 'c' }), false);
  await store.updateSwitchover({ ...req, phase: 'demoting' });
  assert.deepEqual((await store.read()).switchover, { ...req, phase: 'demoting' });
  await store.clearSwitchover();
  assert.equal((await store.read()).switchover, null);
  assert.equal(await store.requestSwitchover({ ...req, to: 'c' }), true);
});

test('proxy records live on their lease, are listed by name, and stay out of the view and the watch', async (t) => {
  const store = newStore(t);
  const changes: ClusterChange[] = [];
  const w = store.watch((c) => changes.push(c));
  t.after(() => w.close());
  await new Promise((r) => setTimeout(r, 200)); // let the stream open
  const record = (name: string, holding: string | null) => ({
    name,
    readWrite: '127.0.0.1:6432',
    readOnly: '127.0.0.1:6433',
    admin: '127.0.0.1:6434',
    startedAt: new Date().toISOString(),
    holding,
  });
  const lease = await store.grantLease(30);
  await store.putProxy(record('p2', null), lease);
  await store.putProxy(record('p1', 'x'), lease);
  const client = new EtcdClient({ endpoints: [etcd.endpoint] });
  await client.put(store.keys.proxy('broken'), '"a string"');
  assert.deepEqual((await store.listProxies()).map((p) => [p.name, p.holding]), [['p1', 'x'], ['p2', null]]);
  const view = await store.read();
  assert.deepEqual([view.members, view.leader, view.switchover], [[], null, null]);
  await store.deleteProxy('p2');
  assert.deepEqual((await store.listProxies()).map((p) => p.name), ['p1']);
  await store.revokeLease(lease);
  assert.deepEqual(await store.listProxies(), []);
  await store.initialize('1'); // a change the watch does report, after all the proxy ones
  await until(() => changes.length >= 1, 2000);
  assert.deepEqual(changes, [{ kind: 'initialize', deleted: false }]);
});

test('watch sees the leader key vanish when its lease expires', async (t) => {
  const store = newStore(t);
  const changes: ClusterChange[] = [];
  const errors: Error[] = [];
  const lease = await store.grantLease(2);
  assert.equal(await store.acquireLeader('a', lease), true);
  const w = store.watch((c) => changes.push(c), (e) => errors.push(e));
  t.after(() => w.close());
  // No keepalive: etcd expires the lease after ~2 s (plus its own lease checking slack).
  const granted = Date.now();
  await until(() => changes.some((c) => c.kind === 'leader' && c.deleted), 6000);
  assert.ok(Date.now() - granted < 6000);
  assert.equal((await store.read()).leader, null);
  assert.deepEqual(errors, []);
});

test('watch reports member changes by name and ignores unknown keys', async (t) => {
  const store = newStore(t);
  const changes: ClusterChange[] = [];
  const w = store.watch((c) => changes.push(c));
  t.after(() => w.close());
  await new Promise((r) => setTimeout(r, 200)); // let the stream open
  const lease = await store.grantLease(30);
  t.after(() => store.revokeLease(lease));
  const client = new EtcdClient({ endpoints: [etcd.endpoint] });
  await client.put(store.keys.prefix + 'unknown', '1');
  await store.putMember(member('m1'), lease);
  await store.deleteMember('m1');
  await store.initialize('1');
  await until(() => changes.length >= 3, 2000);
  assert.deepEqual(
    changes.map((c) => (c.kind === 'member' ? { kind: c.kind, name: c.name, deleted: c.deleted, record: c.record } : c)),
    [
      { kind: 'member', name: 'm1', deleted: false, record: member('m1') },
      { kind: 'member', name: 'm1', deleted: true, record: null },
      { kind: 'initialize', deleted: false },
    ],
  );
  const [put, del] = changes as Extract<ClusterChange, { kind: 'member' }>[];
  assert.ok(BigInt(del!.revision) > BigInt(put!.revision), `revisions ${put!.revision} then ${del!.revision}`);
});

test('a member change applied from the watch gives the view a fresh read gives', async (t) => {
  const store = newStore(t);
  const lease = await store.grantLease(30);
  t.after(() => store.revokeLease(lease));
  await store.putMember(member('m1'), lease);
  let view = await store.read();
  // Watching from the revision after the read: changes made before the watch opens still arrive.
  const changes: ClusterChange[] = [];
  await store.putMember({ ...member('m2'), receivedLsn: 5 }, lease);
  await store.putMember({ ...member('m1'), receivedLsn: 200 }, lease);
  const w = store.watch((c) => changes.push(c), undefined, (BigInt(view.revision) + 1n).toString());
  t.after(() => w.close());
  await store.deleteMember('m2');
  // Not a member object: read() skips it, and so does the patched view.
  await new EtcdClient({ endpoints: [etcd.endpoint] }).put(store.keys.member('m3'), '[1]');
  await until(() => changes.length >= 4, 2000);
  for (const c of changes) {
    assert.equal(c.kind, 'member');
    if (c.kind === 'member') view = withMemberChange(view, c);
  }
  // A change the view already has (replayed) leaves it as it is.
  assert.equal(withMemberChange(view, changes[0] as Extract<ClusterChange, { kind: 'member' }>), view);
  const fresh = await store.read();
  assert.deepEqual(view.members, fresh.members);
  assert.deepEqual(view.members.map((m) => [m.name, m.receivedLsn]), [['m1', 200]]);
});

test('watch resumes from the current revision after compaction', async (t) => {
  const client = new EtcdClient({ endpoints: [etcd.endpoint] });
  const prefix = `/compact-test-${clusterSeq++}/`;
  const first = await client.put(prefix + 'k', '1');
  const rev = await client.put(prefix + 'k', '2');
  const compact = await fetch(`${etcd.endpoint}/v3/kv/compaction`, {
    method: 'POST',
    body: JSON.stringify({ revision: rev, physical: true }),
  });
  assert.equal(compact.status, 200);
  const events: WatchEvent[] = [];
  const errors: Error[] = [];
  const w = client.watchPrefix(prefix, first, (ev) => events.push(...ev), (e) => errors.push(e));
  t.after(() => w.close());
  await until(() => errors.length > 0, 3000);
  assert.ok(errors[0] instanceof WatchCompactedError);
  await new Promise((r) => setTimeout(r, 200));
  await client.put(prefix + 'k', '3');
  await until(() => events.length > 0, 3000);
  assert.deepEqual(events.map((e) => e.kv.value), ['3']);
});

test('an unreachable endpoint gives StoreUnavailableError quickly', async (t) => {
  const dead = `http://127.0.0.1:${await freePort()}`;
  const store = newStore(t, [dead]);
  const start = Date.now();
  await assert.rejects(store.read(), (err: unknown) => {
    assert.ok(err instanceof StoreUnavailableError);
    assert.match(err.message, new RegExp(dead.replace(/[.:/]/g, '\\$&')));
    assert.match(err.hint ?? '', /etcd\.hosts/);
    return true;
  });
  assert.ok(Date.now() - start < 1000, 'connection refused should not wait for the timeout');
});

test('a working second endpoint is used when the first is dead', async (t) => {
  const dead = `http://127.0.0.1:${await freePort()}`;
  const store = newStore(t, [dead, etcd.endpoint]);
  assert.equal(await store.initialize('42'), true);
  assert.equal((await store.read()).initialize, '42');
  const lease = await store.grantLease(5);
  assert.equal((await store.keepAlive(lease)).ttl, 5);
  await store.revokeLease(lease);
});

test('the watch fails over to a working endpoint', async (t) => {
  const dead = `http://127.0.0.1:${await freePort()}`;
  const store = newStore(t, [dead, etcd.endpoint]);
  const changes: ClusterChange[] = [];
  const w = store.watch((c) => changes.push(c));
  t.after(() => w.close());
  await new Promise((r) => setTimeout(r, 300));
  await store.initialize('1');
  await until(() => changes.length > 0, 3000);
  assert.deepEqual(changes, [{ kind: 'initialize', deleted: false }]);
});

/** A TCP relay to etcd that the test can cut and restore, to break the watch stream. */
async function relay(target: string): Promise<{ endpoint: string; cut(): Promise<void>; restore(): Promise<void> }> {
  const { hostname, port } = new URL(target);
  const own = await freePort();
  const sockets = new Set<net.Socket>();
  let server: net.Server | null = null;
  const restore = () =>
    new Promise<void>((resolve) => {
      server = net.createServer((client) => {
        const upstream = net.connect(Number(port), hostname);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('error', () => s.destroy());
          s.on('close', () => sockets.delete(s));
        }
        client.pipe(upstream).pipe(client);
      });
      server.listen(own, '127.0.0.1', resolve);
    });
  const cut = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server?.close(() => resolve());
    });
  await restore();
  return { endpoint: `http://127.0.0.1:${own}`, cut, restore };
}

test('a broken watch reconnects and delivers what changed while it was down', async (t) => {
  const r = await relay(etcd.endpoint);
  t.after(() => r.cut());
  const store = newStore(t, [r.endpoint]);
  const direct = new EtcdStore({ endpoints: [etcd.endpoint], cluster: store.cluster });
  const changes: ClusterChange[] = [];
  const errors: Error[] = [];
  const w = store.watch((c) => changes.push(c), (e) => errors.push(e));
  t.after(() => w.close());
  await new Promise((res) => setTimeout(res, 200));
  await direct.initialize('1');
  await until(() => changes.length === 1, 2000);

  await r.cut();
  await direct.putSync({ leader: 'a', members: [] });
  await until(() => errors.length > 0, 2000);
  assert.ok(errors[0] instanceof StoreUnavailableError);
  await r.restore();
  await until(() => changes.length === 2, 5000);
  assert.deepEqual(changes, [
    { kind: 'initialize', deleted: false },
    { kind: 'sync', deleted: false },
  ]);
});
