// Where the proxy sends new sessions: the leader for writes; lag-aware, weighted replicas for reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readSessionMove, readTarget, replayLag, writeTarget, type RouterSettings, type Target } from '../../src/proxy/router.js';
import { cluster, member, primary, switchover } from '../helpers/observation.js';

const settings: RouterSettings = { maxReplicationLag: 1000, readOnlyFallbackToLeader: true };
const name = (t: Target) => ('member' in t ? t.member.name : 'wait' in t ? `wait: ${t.wait}` : `refuse: ${t.refuse}`);

function view(...replicas: ReturnType<typeof member>[]) {
  return cluster({ leader: 'p', members: [primary('p', { receivedLsn: 5000 }), ...replicas] });
}

test('writes go to the leader only when it holds the key and runs as primary', () => {
  assert.equal(name(writeTarget(view())), 'p');
  assert.match(name(writeTarget(null)), /^wait: .*etcd/);
  assert.match(name(writeTarget(cluster({ members: [primary('p')] }))), /^wait: .*no leader/);
  assert.match(name(writeTarget(cluster({ leader: 'p', members: [member('p')] }))), /^wait: leader p is not running as primary/);
  assert.match(name(writeTarget({ ...view(), switchover: switchover() })), /^wait: a switchover is in progress/);
});

test('reads follow the weights exactly over time', () => {
  const v = view(member('a', { replayedLsn: 5000, tags: { weight: 3 } }), member('b', { replayedLsn: 5000, tags: { weight: 1 } }));
  const counts = new Map<string, number>();
  for (let i = 0; i < 400; i++) {
    const t = readTarget(v, settings, (n) => counts.get(n) ?? 0);
    assert.ok('member' in t);
    counts.set(t.member.name, (counts.get(t.member.name) ?? 0) + 1);
  }
  assert.deepEqual(Object.fromEntries(counts), { a: 300, b: 100 });
});

test('reads skip noloadbalance, zero weight, non-streaming and lagging replicas, and the leader', () => {
  const v = view(
    member('lb', { replayedLsn: 5000, tags: { noloadbalance: true } }),
    member('zero', { replayedLsn: 5000, tags: { weight: 0 } }),
    member('down', { state: 'stopped', replayedLsn: 5000 }),
    member('lagging', { replayedLsn: 3999 }),
    member('unknown', { replayedLsn: null, receivedLsn: null }),
    member('ok', { replayedLsn: 4000 }),
  );
  for (let i = 0; i < 5; i++) assert.equal(name(readTarget(v, settings, () => i)), 'ok');
  assert.equal(replayLag(v, v.members.find((m) => m.name === 'lagging')!), 1001);
});

test('replay lag, not receive lag, decides: a replica that receives but does not replay is lagging', () => {
  const v = view(member('paused', { receivedLsn: 5000, replayedLsn: 1000 }));
  assert.equal(name(readTarget(v, { ...settings, readOnlyFallbackToLeader: false }, () => 0)), 'refuse: no replica is streaming within the lag limit (1000 bytes)');
});

test('no replica qualifies: fall back to the leader, or refuse, as configured', () => {
  const v = view(member('lagging', { replayedLsn: 0 }));
  assert.equal(name(readTarget(v, settings, () => 0)), 'p');
  assert.match(name(readTarget(v, { ...settings, readOnlyFallbackToLeader: false }, () => 0)), /^refuse: /);
  assert.match(name(readTarget(cluster({ members: [member('x')] }), settings, () => 0)), /^wait: no replica .* no leader/);
  assert.match(name(readTarget(null, settings, () => 0)), /^wait: .*etcd/);
});

test('ties go to the smaller name, so every proxy starts the same way', () => {
  const v = view(member('b', { replayedLsn: 5000 }), member('a', { replayedLsn: 5000 }));
  assert.equal(name(readTarget(v, settings, () => 0)), 'a');
});

test('a read-only session leaves a member that no longer takes read-only sessions, once a replica does', () => {
  const members = [
    member('lb', { replayedLsn: 5000, tags: { noloadbalance: true } }),
    member('zero', { replayedLsn: 5000, tags: { weight: 0 } }),
    member('down', { state: 'stopped', replayedLsn: 5000 }),
    member('lagging', { replayedLsn: 3999 }),
    member('unknown', { replayedLsn: null, receivedLsn: null }),
  ];
  const reasons: Record<string, RegExp> = {
    p: /^p is the leader/,
    lb: /noloadbalance/,
    zero: /weight 0/,
    down: /^down is stopped, not a streaming replica/,
    lagging: /^lagging's replay is 1001 bytes behind, past max_replication_lag \(1000\)/,
    unknown: /unknown/,
    gone: /^gone left the cluster/,
  };
  const withOk = view(...members, member('ok', { replayedLsn: 4000 }));
  for (const [on, reason] of Object.entries(reasons)) {
    assert.match(readSessionMove(withOk, settings, on) ?? 'stays', reason, on);
    assert.match(readSessionMove(withOk, { ...settings, readOnlyFallbackToLeader: false }, on) ?? 'stays', reason, `${on}, no fallback to the leader`);
    // With no replica to take it, a session goes to the leader as a new one would, or stays.
    assert.equal(readSessionMove(view(...members), settings, on) === null, on === 'p', `${on} without a qualifying replica, fallback to the leader`);
    assert.equal(readSessionMove(view(...members), { ...settings, readOnlyFallbackToLeader: false }, on), null, `${on} without a qualifying replica or fallback`);
  }
  assert.equal(name(readTarget(withOk, settings, () => 0)), 'ok', 'where they go');
  assert.equal(readSessionMove(withOk, settings, 'ok'), null, 'a qualifying replica keeps its sessions');
  assert.equal(readSessionMove(null, settings, 'p'), null, 'no view: nothing moves');
});

test('a read-only session moves exactly when a new one would be placed elsewhere, even one preferring its member', () => {
  const states = [{}, { replayedLsn: 3000 }, { state: 'stopped' as const }, { tags: { noloadbalance: true } }];
  for (const fallback of [true, false])
    for (const a of states)
      for (const b of states)
        for (const leaderRunning of [true, false]) {
          const leader = leaderRunning ? primary('p', { receivedLsn: 5000 }) : member('p', { state: 'stopped', receivedLsn: 5000 });
          const v = cluster({ leader: 'p', members: [leader, member('a', { replayedLsn: 5000, ...a }), member('b', { replayedLsn: 5000, ...b })] });
          const s = { ...settings, readOnlyFallbackToLeader: fallback };
          for (const on of ['p', 'a', 'b', 'gone']) {
            const fresh = readTarget(v, s, (n) => (n === on ? -1e9 : 0));
            const elsewhere = 'member' in fresh && fresh.member.name !== on;
            assert.equal(readSessionMove(v, s, on) !== null, elsewhere, JSON.stringify({ fallback, a, b, leaderRunning, on }));
          }
        }
});
