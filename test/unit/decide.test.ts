// Every row of the decision table in decide(), plus property tests of the safety invariants.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { decide } from '../../src/agent/decide.js';
import { quoteSyncName, syncEligibleNames } from '../../src/agent/candidates.js';
import type { Observation, PeerPosition, ReplicaSeen } from '../../src/agent/observation.js';
import { decideSync } from '../../src/agent/sync.js';
import type {
  ClusterView,
  DynamicConfig,
  HistoryEntry,
  MemberRecord,
  MemberState,
  SwitchoverRequest,
  SyncState,
} from '../../src/dcs/types.js';
import {
  NOW,
  SYSTEM_ID,
  actionOf,
  cluster,
  member,
  observation,
  primary,
  primaryPg,
  ref,
  replicaPg,
  stoppedPg,
  switchover,
  tags,
  types,
} from '../helpers/observation.js';

const history = (leader: string, previousLeader: string | null = null): HistoryEntry => ({
  timeline: 2,
  lsn: 500,
  at: new Date(NOW - 60_000).toISOString(),
  leader,
  previousLeader,
  reason: 'test',
});

function reportProblem(o: Observation): string | null | undefined {
  return actionOf(decide(o), 'report')?.problem;
}

describe('decide: etcd unreachable', () => {
  test('running primary with a valid lease keeps running', () => {
    const d = decide(observation({ cluster: null, pg: primaryPg(), leaseValidUntil: NOW + 1 }));
    assert.deepEqual(d.actions, [{ type: 'report', problem: 'etcd unreachable' }]);
  });

  test('running primary without a lease stops immediately', () => {
    const d = decide(observation({ cluster: null, pg: primaryPg(), leaseValidUntil: null }));
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'immediate', reason: 'leader lease not confirmed' }]);
  });

  test('running primary whose lease ends now stops immediately', () => {
    const d = decide(observation({ cluster: null, pg: primaryPg(), leaseValidUntil: NOW }));
    assert.deepEqual(types(d), ['stop']);
    assert.equal(actionOf(d, 'stop')?.mode, 'immediate');
  });

  test('replica keeps running even without a lease', () => {
    const d = decide(observation({ cluster: null, pg: replicaPg(), leaseValidUntil: null }));
    assert.deepEqual(d.actions, [{ type: 'report', problem: 'etcd unreachable' }]);
  });

  test('stopped PostgreSQL stays as it is', () => {
    const d = decide(observation({ cluster: null, pg: stoppedPg({ stoppedAsPrimary: true }), leaseValidUntil: null }));
    assert.deepEqual(types(d), ['report']);
  });
});

describe('decide: cluster not initialized', () => {
  const uninit = cluster({ initialize: null });

  test('another member holds the bootstrap lock (leader key): wait for it, whatever the local data', () => {
    const locked = cluster({ initialize: null, leader: 'b' });
    for (const pg of [{ hasData: false, running: false }, stoppedPg({ stoppedAsPrimary: true })]) {
      const d = decide(observation({ cluster: locked, pg }));
      assert.deepEqual(types(d), ['report']);
      assert.match(d.summary, /waiting for b to bootstrap/);
    }
  });

  test('we hold the bootstrap lock: carry on bootstrapping', () => {
    const d = decide(observation({ cluster: cluster({ initialize: null, leader: 'a' }), pg: { hasData: false, running: false } }));
    assert.deepEqual(types(d), ['bootstrap']);
  });

  test('no data directory: bootstrap', () => {
    const d = decide(observation({ cluster: uninit, pg: { hasData: false, running: false, accepting: false, inRecovery: null, systemId: null } }));
    assert.deepEqual(d.actions, [{ type: 'bootstrap' }]);
  });

  test('data directory last stopped as primary: bootstrap', () => {
    const d = decide(observation({ cluster: uninit, pg: stoppedPg({ stoppedAsPrimary: true }) }));
    assert.deepEqual(d.actions, [{ type: 'bootstrap' }]);
  });

  test('running primary: bootstrap', () => {
    const d = decide(observation({ cluster: uninit, pg: primaryPg() }));
    assert.deepEqual(d.actions, [{ type: 'bootstrap' }]);
  });

  test('stopped replica data directory: wait', () => {
    const d = decide(observation({ cluster: uninit, pg: stoppedPg() }));
    assert.deepEqual(types(d), ['report']);
    assert.match(d.summary, /replica/);
  });

  test('running replica: wait', () => {
    const d = decide(observation({ cluster: uninit, pg: replicaPg() }));
    assert.deepEqual(types(d), ['report']);
  });
});

describe('decide: system identifier', () => {
  test('data directory of another cluster: wait with a problem naming both ids', () => {
    const c = cluster({ leader: 'b', members: [primary('b')] });
    const problem = reportProblem(observation({ cluster: c, pg: replicaPg({ systemId: '999' }) }));
    assert.ok(problem);
    assert.match(problem, /999/);
    assert.match(problem, new RegExp(SYSTEM_ID));
  });

  test('unknown local system id is not a mismatch', () => {
    const c = cluster({ leader: 'b', members: [primary('b')] });
    const d = decide(observation({ cluster: c, pg: replicaPg({ systemId: null }) }));
    assert.deepEqual(types(d), ['follow', 'report']);
  });

});

describe('decide: no data directory', () => {
  const noData = { hasData: false, running: false, accepting: false, inRecovery: null, systemId: null, receivedLsn: null };


  test('no leader: wait', () => {
    const d = decide(observation({ cluster: cluster({ members: [member('b')] }), pg: noData }));
    assert.deepEqual(types(d), ['report']);
  });

  test('leader not running: wait', () => {
    const c = cluster({ leader: 'b', members: [primary('b', { state: 'starting' })] });
    assert.deepEqual(types(decide(observation({ cluster: c, pg: noData }))), ['report']);
  });

  test('leader without a member record: wait', () => {
    const c = cluster({ leader: 'b', members: [member('c')] });
    assert.deepEqual(types(decide(observation({ cluster: c, pg: noData }))), ['report']);
  });

  test('clone from the leader', () => {
    const b = primary('b');
    const c = cluster({ leader: 'b', members: [b, member('c')] });
    const d = decide(observation({ cluster: c, pg: noData }));
    assert.deepEqual(d.actions, [{ type: 'clone', from: ref(b) }]);
  });

  test('clone from a streaming member tagged clonefrom', () => {
    const cm = member('c', { tags: { clonefrom: true } });
    const c = cluster({ leader: 'b', members: [primary('b'), cm] });
    const d = decide(observation({ cluster: c, pg: noData }));
    assert.deepEqual(d.actions, [{ type: 'clone', from: ref(cm) }]);
  });

  test('a clonefrom member that is not streaming, or is this member, is not used', () => {
    const b = primary('b');
    const c = cluster({
      leader: 'b',
      members: [member('a', { tags: { clonefrom: true } }), b, member('c', { state: 'recovering', tags: { clonefrom: true } })],
    });
    const d = decide(observation({ cluster: c, pg: noData }));
    assert.deepEqual(d.actions, [{ type: 'clone', from: ref(b) }]);
  });

  test('clone_from names the source: a streaming replica is used even without the tag', () => {
    const cm = member('c');
    const c = cluster({ leader: 'b', members: [primary('b'), cm, member('d', { tags: { clonefrom: true } })] });
    const d = decide(observation({ cluster: c, pg: noData, self: { cloneFrom: 'c' } }));
    assert.deepEqual(d.actions, [{ type: 'clone', from: ref(cm) }]);
  });

  test('clone_from names a missing or non-streaming member: wait and say why, never fall back to the leader', () => {
    for (const [members, why] of [
      [[primary('b')], /not a member/],
      [[primary('b'), member('c', { state: 'stopped' })], /c, which is stopped/],
      [[primary('b'), member('c', { state: 'creating replica' })], /creating replica/],
    ] as const) {
      const d = decide(observation({ cluster: cluster({ leader: 'b', members: [...members] }), pg: noData, self: { cloneFrom: 'c' } }));
      assert.deepEqual(types(d), ['report']);
      assert.match(actionOf(d, 'report')?.problem ?? '', why);
    }
  });
});

describe('decide: PostgreSQL stopped while holding the leader key', () => {
  const leaderCluster = (config: Partial<DynamicConfig> = {}) =>
    cluster({ leader: 'a', members: [primary('a', { state: 'stopped' }), member('b')], config });
  const pg = stoppedPg({ stoppedAsPrimary: true });

  test('paused: not restarted', () => {
    const d = decide(observation({ cluster: leaderCluster({ paused: true }), pg }));
    assert.deepEqual(d.actions, [{ type: 'report', problem: 'PostgreSQL down (paused)' }]);
  });

  test('restarts in place while under max_restarts within restart_window', () => {
    const d = decide(observation({ cluster: leaderCluster(), pg, restarts: [NOW - 20_000, NOW - 5_000] }));
    assert.deepEqual(d.actions, [{ type: 'start_primary', reason: 'restart 3/3 within 60s' }]);
  });

  test('restarts older than restart_window are not counted', () => {
    const restarts = [NOW - 300_000, NOW - 120_000, NOW - 60_001, NOW - 1_000];
    const d = decide(observation({ cluster: leaderCluster(), pg, restarts }));
    assert.deepEqual(d.actions, [{ type: 'start_primary', reason: 'restart 2/3 within 60s' }]);
  });

  test('a restart exactly at the start of the window counts', () => {
    const restarts = [NOW - 60_000, NOW - 30_000, NOW - 1_000];
    assert.deepEqual(types(decide(observation({ cluster: leaderCluster(), pg, restarts }))), ['release_leader', 'report']);
  });

  test('max_restarts reached: release the leader key and report', () => {
    const d = decide(observation({ cluster: leaderCluster({ maxRestarts: 2 }), pg, restarts: [NOW - 10_000, NOW - 5_000] }));
    assert.deepEqual(types(d), ['release_leader', 'report']);
    assert.equal(actionOf(d, 'release_leader')?.reason, 'max_restarts (2) reached');
    assert.ok(actionOf(d, 'report')?.problem);
  });

  test('without a confirmed lease: does not start a primary', () => {
    for (const leaseValidUntil of [null, NOW, NOW - 1]) {
      const d = decide(observation({ cluster: leaderCluster(), pg, leaseValidUntil }));
      assert.ok(!types(d).includes('start_primary'), `leaseValidUntil=${leaseValidUntil}: ${d.summary}`);
      assert.ok(actionOf(d, 'report')?.problem);
    }
  });
});

describe('decide: PostgreSQL stopped, another member leads', () => {
  const b = primary('b', { timeline: 2 });
  const c = cluster({ leader: 'b', members: [b, member('a', { state: 'stopped' })] });

  test('leader not running: wait', () => {
    const c2 = cluster({ leader: 'b', members: [primary('b', { state: 'stopped' })] });
    assert.deepEqual(types(decide(observation({ cluster: c2, pg: stoppedPg() }))), ['report']);
  });

  test('leader without a member record: wait', () => {
    const c2 = cluster({ leader: 'b', members: [] });
    assert.deepEqual(types(decide(observation({ cluster: c2, pg: stoppedPg() }))), ['report']);
  });

  test('rejoin without rewind', () => {
    const d = decide(observation({ cluster: c, pg: stoppedPg({ timeline: 2 }) }));
    assert.deepEqual(d.actions, [{ type: 'start_replica', upstream: ref(b), rewindFrom: null }]);
  });

  test('unknown timeline: rejoin without rewind', () => {
    const d = decide(observation({ cluster: c, pg: stoppedPg({ timeline: null }) }));
    assert.deepEqual(d.actions, [{ type: 'start_replica', upstream: ref(b), rewindFrom: null }]);
  });

  test('stopped as primary: rejoin through pg_rewind', () => {
    const d = decide(observation({ cluster: c, pg: stoppedPg({ timeline: 2, stoppedAsPrimary: true }) }));
    assert.deepEqual(d.actions, [{ type: 'start_replica', upstream: ref(b), rewindFrom: ref(b) }]);
  });

  test('timeline behind the leader: rejoin through pg_rewind', () => {
    const d = decide(observation({ cluster: c, pg: stoppedPg({ timeline: 1 }) }));
    assert.deepEqual(d.actions, [{ type: 'start_replica', upstream: ref(b), rewindFrom: ref(b) }]);
  });
});

describe('decide: PostgreSQL stopped, no leader', () => {
  test('a member that handed leadership over after max_restarts sits out the election for restart_window', () => {
    const c = cluster({ members: [member('b')], config: { restartWindow: 60 } });
    const recent = decide(observation({ cluster: c, pg: stoppedPg({ stoppedAsPrimary: true }), handedOverAt: NOW - 10_000 }));
    assert.deepEqual(types(recent), ['report']);
    assert.match(recent.summary, /handed leadership over/);
    const later = decide(observation({ cluster: c, pg: stoppedPg({ stoppedAsPrimary: true }), handedOverAt: NOW - 61_000 }));
    assert.deepEqual(types(later), ['start_replica']);
  });

  test('it rejoins a new leader at once, window or not', () => {
    const c = cluster({ leader: 'b', members: [primary('b', { timeline: 2 })], config: { restartWindow: 60 } });
    const d = decide(observation({ cluster: c, pg: stoppedPg({ stoppedAsPrimary: true }), handedOverAt: NOW - 1000 }));
    assert.deepEqual(types(d), ['start_replica']);
  });

  const c = (over: Parameters<typeof cluster>[0] = {}) => cluster({ members: [member('a', { state: 'stopped' }), member('b')], ...over });

  test('paused: not started', () => {
    const d = decide(observation({ cluster: c({ config: { paused: true } }), pg: stoppedPg() }));
    assert.deepEqual(types(d), ['report']);
  });

  test('handover to another member: wait', () => {
    const sw = switchover({ from: 'x', to: 'b', phase: 'handover' });
    const d = decide(observation({ cluster: c({ switchover: sw }), pg: stoppedPg() }));
    assert.deepEqual(types(d), ['report']);
    assert.match(d.summary, /waiting for b/);
  });

  test('handover to this member, or an expired handover: start as a replica', () => {
    for (const sw of [
      switchover({ from: 'x', to: 'a', phase: 'handover' }),
      switchover({ from: 'x', to: 'b', phase: 'handover', deadline: NOW - 1 }),
    ]) {
      const d = decide(observation({ cluster: c({ switchover: sw }), pg: stoppedPg() }));
      assert.deepEqual(d.actions, [{ type: 'start_replica', upstream: null, rewindFrom: null }]);
    }
  });

  test('start as a replica without an upstream', () => {
    const d = decide(observation({ cluster: c(), pg: stoppedPg({ stoppedAsPrimary: true }) }));
    assert.deepEqual(d.actions, [{ type: 'start_replica', upstream: null, rewindFrom: null }]);
  });
});

describe('decide: running as leader', () => {
  const a = primary('a', { receivedLsn: 5000 });
  const b = member('b', { receivedLsn: 4000 });
  const cm = member('c', { receivedLsn: 4500 });
  const leaderCluster = (over: Parameters<typeof cluster>[0] = {}) =>
    cluster({ leader: 'a', members: [a, b, cm], sync: { leader: 'a', members: ['b'] }, ...over });
  const replicas: ReplicaSeen[] = [
    { name: 'b', state: 'streaming', syncState: 'sync', flushLsn: 4000 },
    { name: 'c', state: 'streaming', syncState: 'async', flushLsn: 4500 },
  ];
  const leaderObs = (over: Parameters<typeof observation>[0] = {}) =>
    observation({ cluster: leaderCluster(), pg: primaryPg({ receivedLsn: 5000 }), replicas, appliedSyncNames: quoteSyncName('b'), ...over });

  test('lease not confirmed: stop immediately', () => {
    for (const leaseValidUntil of [null, NOW, NOW - 1000]) {
      const d = decide(leaderObs({ leaseValidUntil }));
      assert.deepEqual(d.actions, [{ type: 'stop', mode: 'immediate', reason: 'leader lease not confirmed' }]);
    }
  });

  test('in recovery: promote, naming the previous leader from history', () => {
    const d = decide(leaderObs({ cluster: leaderCluster({ history: [history('z')] }), pg: replicaPg() }));
    assert.deepEqual(d.actions, [{ type: 'promote', reason: 'holds the leader key', previousLeader: 'z' }]);
    const d2 = decide(leaderObs({ pg: replicaPg() }));
    assert.deepEqual(d2.actions, [{ type: 'promote', reason: 'holds the leader key', previousLeader: null }]);
  });

  test('not accepting connections yet: wait', () => {
    const d = decide(leaderObs({ pg: primaryPg({ accepting: false }) }));
    assert.deepEqual(types(d), ['report']);
  });

  test('healthy: ensure slots for the other members, sync actions, then report', () => {
    const o = leaderObs();
    const d = decide(o);
    assert.deepEqual(d.actions[0], { type: 'ensure_slots', names: ['b', 'c'] });
    assert.deepEqual(d.actions.at(-1), { type: 'report', problem: null });
    assert.deepEqual(d.actions.slice(1, -1), decideSync(o, o.cluster!));
    assert.deepEqual(types(d), ['ensure_slots', 'report']); // sync standby b streaming and applied: nothing to do
  });

  test('healthy: sync actions are included when there is work to do', () => {
    const o = leaderObs({ cluster: leaderCluster({ sync: null }) });
    const d = decide(o);
    const syncActions = decideSync(o, o.cluster!);
    assert.ok(syncActions.length > 0);
    assert.deepEqual(d.actions, [{ type: 'ensure_slots', names: ['b', 'c'] }, ...syncActions, { type: 'report', problem: null }]);
  });

  test('expired switchover request: clear it', () => {
    const d = decide(leaderObs({ cluster: leaderCluster({ switchover: switchover({ from: 'a', to: 'b', deadline: NOW - 1 }) }) }));
    assert.deepEqual(d.actions, [{ type: 'clear_switchover', reason: 'deadline passed' }]);
  });

  test('leader put in standby: start a switchover to the best target', () => {
    const d = decide(leaderObs({ cluster: leaderCluster({ config: { standbyMembers: ['a'] } }) }));
    // b is the synchronous standby: preferred over c although c has received more.
    assert.deepEqual(d.actions, [{ type: 'start_switchover', target: 'b', reason: 'a put in standby' }]);
  });

  test('leader put in standby with no eligible replica: report', () => {
    const c = leaderCluster({
      config: { standbyMembers: ['a', 'c'] },
      members: [a, member('b', { tags: { nofailover: true } }), cm],
    });
    const d = decide(leaderObs({ cluster: c }));
    assert.deepEqual(types(d), ['report']);
    assert.ok(actionOf(d, 'report')?.problem);
  });

  test('failover request while the leader is healthy: clear it', () => {
    const d = decide(leaderObs({ cluster: leaderCluster({ switchover: switchover({ kind: 'failover', to: 'b' }) }) }));
    assert.deepEqual(types(d), ['clear_switchover']);
  });

  test('switchover requested from another member: clear it', () => {
    const d = decide(leaderObs({ cluster: leaderCluster({ switchover: switchover({ from: 'b', to: 'c' }) }) }));
    assert.deepEqual(d.actions, [{ type: 'clear_switchover', reason: 'b is not the leader' }]);
  });

  const ineligible: [string, Parameters<typeof cluster>[0], string, RegExp][] = [
    ['unknown', {}, 'zz', /not in the cluster/],
    ['this leader', {}, 'a', /already the leader/],
    ['nofailover', { members: [a, member('b', { tags: { nofailover: true } }), cm] }, 'b', /nofailover/],
    ['in standby', { config: { standbyMembers: ['b'] } }, 'b', /in standby/],
    ['not streaming', { members: [a, member('b', { state: 'recovering' }), cm] }, 'b', /not a streaming replica/],
    ['not a replica', { members: [a, member('b', { role: 'unknown' }), cm] }, 'b', /not a streaming replica/],
  ];
  for (const [label, over, target, reason] of ineligible) {
    test(`switchover to an ineligible target (${label}): clear it with the reason`, () => {
      const d = decide(leaderObs({ cluster: leaderCluster({ ...over, switchover: switchover({ from: 'a', to: target }) }) }));
      assert.deepEqual(types(d), ['clear_switchover']);
      assert.match(actionOf(d, 'clear_switchover')!.reason, reason);
    });
  }

  test('switchover to a named target: demote for it', () => {
    for (const from of ['a', null]) {
      const d = decide(leaderObs({ cluster: leaderCluster({ switchover: switchover({ from, to: 'c' }) }) }));
      assert.deepEqual(d.actions, [{ type: 'demote_for_switchover', target: ref(cm) }]);
    }
  });

  test('switchover without a target: the best target, preferring synchronous standbys', () => {
    const d = decide(leaderObs({ cluster: leaderCluster({ switchover: switchover({ from: 'a' }) }) }));
    assert.deepEqual(d.actions, [{ type: 'demote_for_switchover', target: ref(b) }]);
  });

  test('switchover without a target and no synchronous standby: the most advanced replica', () => {
    const d = decide(leaderObs({ cluster: leaderCluster({ sync: { leader: 'a', members: [] }, switchover: switchover({ from: 'a' }) }) }));
    assert.deepEqual(d.actions, [{ type: 'demote_for_switchover', target: ref(cm) }]);
  });

  test('switchover without a target and no eligible replica: clear it', () => {
    const c = leaderCluster({ members: [a, member('b', { state: 'stopped' })], switchover: switchover({ from: 'a' }) });
    const d = decide(leaderObs({ cluster: c }));
    assert.deepEqual(d.actions, [{ type: 'clear_switchover', reason: 'no eligible replica' }]);
  });

  test('own switchover already past the requested phase: carry on leading', () => {
    const d = decide(leaderObs({ cluster: leaderCluster({ switchover: switchover({ from: 'a', to: 'b', phase: 'demoting' }) }) }));
    assert.deepEqual(types(d), ['ensure_slots', 'report']);
  });
});

describe('decide: follower', () => {
  const b = primary('b', { timeline: 3 });
  const c = cluster({ leader: 'b', members: [member('a'), b] });

  test('running primary while another member leads: stop immediately', () => {
    const d = decide(observation({ cluster: c, pg: primaryPg() }));
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'immediate', reason: 'b is the leader' }]);
  });

  test('leader record missing: wait', () => {
    const d = decide(observation({ cluster: cluster({ leader: 'b', members: [member('a')] }), pg: replicaPg() }));
    assert.deepEqual(types(d), ['report']);
  });

  test('follow the leader', () => {
    const d = decide(observation({ cluster: c, pg: replicaPg({ timeline: 3 }) }));
    assert.deepEqual(d.actions, [{ type: 'follow', upstream: ref(b) }, { type: 'report', problem: null }]);
  });

  test('not streaming for more than 10 s on an older timeline: stop fast to rewind', () => {
    const d = decide(observation({ cluster: c, pg: replicaPg({ timeline: 2, streaming: false }), notStreamingSince: NOW - 10_001 }));
    assert.deepEqual(d.actions, [{ type: 'stop', mode: 'fast', reason: 'timeline behind the leader and not streaming' }]);
  });

  test('not streaming for only 10 s, or on the same timeline, or unknown timeline: keep following', () => {
    const cases: Parameters<typeof observation>[0][] = [
      { pg: replicaPg({ timeline: 2, streaming: false }), notStreamingSince: NOW - 10_000 },
      { pg: replicaPg({ timeline: 3, streaming: false }), notStreamingSince: NOW - 60_000 },
      { pg: replicaPg({ timeline: null, streaming: false }), notStreamingSince: NOW - 60_000 },
      { pg: replicaPg({ timeline: 2 }), notStreamingSince: null },
    ];
    for (const over of cases) assert.deepEqual(types(decide(observation({ cluster: c, ...over }))), ['follow', 'report']);
  });
});

describe('decide: no leader', () => {
  // a (this member), b and c are running replicas; async mode unless told otherwise.
  const members = [member('a'), member('b'), member('c')];
  const noLeader = (over: Parameters<typeof cluster>[0] = {}) =>
    cluster({ members, history: [history('old')], ...over, config: { synchronousMode: false, ...over.config } });
  const peers = (...p: [string, number | null, boolean?][]): PeerPosition[] =>
    p.map(([name, receivedLsn, running = true]) => ({ name, receivedLsn, running }));
  const obs = (over: Parameters<typeof observation>[0] = {}) =>
    observation({
      cluster: noLeader(),
      pg: replicaPg({ receivedLsn: 1000 }),
      lastLeaderLsn: 1000,
      peers: peers(['b', 900], ['c', 800]),
      ...over,
    });
  const TAKE_OVER = ['acquire_leader', 'promote'];

  test('paused: wait', () => {
    const d = decide(obs({ cluster: noLeader({ config: { paused: true } }) }));
    assert.deepEqual(d.actions, [{ type: 'report', problem: 'no leader (paused)' }]);
  });

  test('switchover handover to this member: acquire the key, then promote', () => {
    const d = decide(obs({ cluster: noLeader({ switchover: switchover({ from: 'old', to: 'a', phase: 'handover' }) }), peers: peers(['b', 5000]) }));
    assert.deepEqual(types(d), TAKE_OVER);
    assert.equal(actionOf(d, 'promote')?.previousLeader, 'old');
  });

  test('switchover handover to another member: wait', () => {
    const d = decide(obs({ cluster: noLeader({ switchover: switchover({ from: 'old', to: 'b', phase: 'handover' }) }) }));
    assert.deepEqual(types(d), ['report']);
  });

  test('forced failover to another member: wait even when this member is best', () => {
    const d = decide(obs({ cluster: noLeader({ switchover: switchover({ kind: 'failover', to: 'c' }) }) }));
    assert.deepEqual(types(d), ['report']);
  });

  test('forced failover to this member: take over even when not in the synchronous set', () => {
    const c = noLeader({
      config: { synchronousMode: true },
      sync: { leader: 'old', members: ['b'] },
      switchover: switchover({ kind: 'failover', to: 'a' }),
    });
    const d = decide(obs({ cluster: c, peers: peers(['b', 5000]) }));
    assert.deepEqual(types(d), TAKE_OVER);
    assert.equal(actionOf(d, 'promote')?.previousLeader, 'old');
  });

  test('forced failover to this member already running as primary: acquire the key only', () => {
    const d = decide(obs({ cluster: noLeader({ switchover: switchover({ kind: 'failover', to: 'a' }) }), pg: primaryPg() }));
    assert.deepEqual(d.actions, [{ type: 'acquire_leader' }]);
  });

  test('expired handover to another member: normal election', () => {
    const c = noLeader({ switchover: switchover({ from: 'old', to: 'b', phase: 'handover', deadline: NOW - 1 }) });
    assert.deepEqual(types(decide(obs({ cluster: c }))), TAKE_OVER);
  });

  test('running primary: acquire the key only', () => {
    const d = decide(obs({ pg: primaryPg(), peers: peers(['b', 5000]) }));
    assert.deepEqual(d.actions, [{ type: 'acquire_leader' }]);
  });

  test('running primary in synchronous mode, written the sync key: acquire the key only', () => {
    const c = noLeader({ config: { synchronousMode: true }, sync: { leader: 'a', members: ['b'] } });
    assert.deepEqual(decide(obs({ cluster: c, pg: primaryPg() })).actions, [{ type: 'acquire_leader' }]);
  });

  test('running primary in synchronous mode but outside the synchronous set: does not take the key', () => {
    const c = noLeader({ config: { synchronousMode: true }, sync: { leader: 'b', members: ['c'] } });
    const d = decide(obs({ cluster: c, pg: primaryPg() }));
    assert.deepEqual(types(d), ['report']);
    assert.match(actionOf(d, 'report')?.problem ?? '', /outside the synchronous set/);
  });

  test('running primary in synchronous mode with no sync key yet (interrupted bootstrap): acquire the key', () => {
    const c = noLeader({ config: { synchronousMode: true }, sync: null, history: [] });
    assert.deepEqual(decide(obs({ cluster: c, pg: primaryPg() })).actions, [{ type: 'acquire_leader' }]);
  });

  test('not accepting connections: wait', () => {
    assert.deepEqual(types(decide(obs({ pg: replicaPg({ accepting: false }) }))), ['report']);
  });

  const ineligible: [string, Parameters<typeof observation>[0], RegExp][] = [
    ['nofailover', { self: { tags: tags({ nofailover: true }) } }, /nofailover/],
    ['standby member', { cluster: noLeader({ config: { standbyMembers: ['a'] } }) }, /standby/],
    [
      'not in the synchronous set',
      { cluster: noLeader({ config: { synchronousMode: true }, sync: { leader: 'old', members: ['b'] } }) },
      /not a synchronous standby/,
    ],
    ['no sync key in synchronous mode', { cluster: noLeader({ config: { synchronousMode: true }, sync: null }) }, /not a synchronous standby/],
    ['lag over maximum_lag_on_failover', { cluster: noLeader({ config: { maximumLagOnFailover: 100 } }), lastLeaderLsn: 1101 }, /lag 101 bytes/],
    ['unknown WAL position', { pg: replicaPg({ receivedLsn: null }) }, /WAL position unknown/],
  ];
  for (const [label, over, why] of ineligible) {
    test(`ineligible (${label}): wait with a problem`, () => {
      const d = decide(obs({ peers: [], ...over }));
      assert.deepEqual(types(d), ['report']);
      assert.match(actionOf(d, 'report')!.problem ?? '', why);
    });
  }

  test('lag exactly maximum_lag_on_failover is allowed', () => {
    const d = decide(obs({ cluster: noLeader({ config: { maximumLagOnFailover: 100 } }), lastLeaderLsn: 1100, peers: [] }));
    assert.deepEqual(types(d), TAKE_OVER);
  });

  test('in the synchronous set, lag does not matter', () => {
    const c = noLeader({ config: { synchronousMode: true, maximumLagOnFailover: 0 }, sync: { leader: 'old', members: ['a'] } });
    assert.deepEqual(types(decide(obs({ cluster: c, lastLeaderLsn: 99_999 }))), TAKE_OVER);
  });

  test('a better peer: wait', () => {
    const c = noLeader({ members: [member('a'), member('b', { tags: { priority: 5 } }), member('c')] });
    const cases: [string, Parameters<typeof observation>[0]][] = [
      ['higher LSN', { peers: peers(['b', 1001]) }],
      ['equal LSN, higher priority', { cluster: c, peers: peers(['b', 1000]) }],
      ['equal everything, smaller name', { self: { name: 'b' }, peers: peers(['a', 1000], ['c', 1000]) }],
    ];
    for (const [label, over] of cases) {
      const d = decide(obs(over));
      assert.deepEqual(types(d), ['report'], label);
      assert.match(d.summary, /better candidate/, label);
    }
  });

  test('peers that are not running, ineligible or unknown do not block', () => {
    const c = noLeader({
      members: [member('a'), member('b', { tags: { nofailover: true } }), member('c'), member('d')],
      config: { standbyMembers: ['d'] },
    });
    const d = decide(
      obs({
        cluster: c,
        peers: peers(['b', 9000], ['c', 9000, false], ['d', 9000], ['e', 9000], ['a', 9000]),
      }),
    );
    assert.deepEqual(types(d), TAKE_OVER);
  });

  test('peers outside the synchronous set do not block in synchronous mode', () => {
    const c = noLeader({ config: { synchronousMode: true }, sync: { leader: 'old', members: ['a'] } });
    assert.deepEqual(types(decide(obs({ cluster: c, peers: peers(['b', 9000]) }))), TAKE_OVER);
  });

  test('peers lagging over maximum_lag_on_failover do not block', () => {
    const c = noLeader({ config: { maximumLagOnFailover: 100 }, members: [member('a'), member('b', { tags: { priority: 9 } })] });
    // b: same LSN as a would win on priority, but b's position is unknown or lags too much.
    for (const p of [peers(['b', null]), peers(['b', 899])]) {
      assert.deepEqual(types(decide(obs({ cluster: c, lastLeaderLsn: 1000, peers: p }))), TAKE_OVER);
    }
  });

  test('best candidate: acquire the key, then promote', () => {
    const d = decide(obs());
    assert.deepEqual(d.actions, [
      { type: 'acquire_leader' },
      { type: 'promote', reason: 'leader old gone', previousLeader: 'old' },
    ]);
  });

  test('best candidate without history: previous leader from the sync key', () => {
    const c = noLeader({ history: [], config: { synchronousMode: true }, sync: { leader: 'old2', members: ['a'] } });
    assert.equal(actionOf(decide(obs({ cluster: c })), 'promote')?.previousLeader, 'old2');
    const d = decide(obs({ cluster: noLeader({ history: [] }) }));
    assert.deepEqual(d.actions, [{ type: 'acquire_leader' }, { type: 'promote', reason: 'no leader', previousLeader: null }]);
  });
});

// ---------------------------------------------------------------------------------------------
// Property tests over random observations.

const NAMES = ['a', 'b', 'c', 'd'] as const;
const arbName = fc.constantFrom(...NAMES);
const arbLsn = fc.constantFrom(0, 100, 200, 1000, 1100, 5000);
const arbSubset = fc.subarray([...NAMES]);
const STATES: MemberState[] = ['starting', 'running', 'streaming', 'recovering', 'stopped', 'crashed', 'creating replica', 'rewinding'];

const arbMember = (name: string): fc.Arbitrary<MemberRecord> =>
  fc.record({
    role: fc.constantFrom('primary', 'replica', 'unknown' as const),
    state: fc.constantFrom(...STATES),
    timeline: fc.option(fc.integer({ min: 1, max: 3 })),
    receivedLsn: fc.option(arbLsn),
    nofailover: fc.boolean(),
    priority: fc.integer({ min: 0, max: 2 }),
    clonefrom: fc.boolean(),
  }).map((r) =>
    member(name, {
      role: r.role,
      state: r.state,
      timeline: r.timeline,
      receivedLsn: r.receivedLsn,
      tags: { nofailover: r.nofailover, priority: r.priority, clonefrom: r.clonefrom },
    }),
  );

const arbMembers: fc.Arbitrary<MemberRecord[]> = arbSubset.chain((names) =>
  names.length === 0 ? fc.constant([]) : fc.tuple(...names.map(arbMember)),
);

const arbConfig: fc.Arbitrary<Partial<DynamicConfig>> = fc.record({
  synchronousMode: fc.boolean(),
  synchronousModeStrict: fc.boolean(),
  paused: fc.boolean(),
  maxRestarts: fc.integer({ min: 0, max: 3 }),
  restartWindow: fc.constantFrom(10, 60),
  maximumLagOnFailover: fc.constantFrom(0, 100, 1_000_000),
  standbyMembers: arbSubset,
});

const arbSwitchover: fc.Arbitrary<SwitchoverRequest | null> = fc.option(
  fc.record({
    kind: fc.constantFrom('switchover', 'failover' as const),
    from: fc.option(arbName),
    to: fc.option(fc.constantFrom<string>(...NAMES, 'zz')),
    phase: fc.constantFrom('requested', 'demoting', 'handover' as const),
    deadline: fc.constantFrom(NOW - 1, NOW, NOW + 30_000),
  }).map((s) => switchover(s)),
);

const arbSync: fc.Arbitrary<SyncState | null> = fc.option(fc.record({ leader: arbName, members: arbSubset }));

const arbCluster: fc.Arbitrary<ClusterView> = fc
  .record({
    initialize: fc.constantFrom<string | null>(SYSTEM_ID, SYSTEM_ID, SYSTEM_ID, SYSTEM_ID, '999', null),
    leader: fc.option(arbName, { freq: 2 }),
    members: arbMembers,
    sync: arbSync,
    switchover: arbSwitchover,
    history: fc.array(arbName, { maxLength: 2 }).map((ls) => ls.map((l) => history(l))),
    config: arbConfig,
  })
  .map((r) => cluster(r));

// Mostly true, so that random observations reach the branches of a running, initialized member.
const likely = fc.constantFrom(true, true, true, false);

const arbPg = fc
  .record({
    hasData: likely,
    running: likely,
    accepting: likely,
    inRecovery: fc.option(fc.boolean(), { freq: 8 }),
    timeline: fc.option(fc.integer({ min: 1, max: 3 })),
    receivedLsn: fc.option(arbLsn),
    streaming: fc.boolean(),
    systemId: fc.constantFrom<string | null>(SYSTEM_ID, SYSTEM_ID, SYSTEM_ID, null, '999'),
    stoppedAsPrimary: fc.boolean(),
  })
  .map((p) => replicaPg({ ...p, running: p.hasData && p.running, accepting: p.hasData && p.running && p.accepting }));

const arbReplicas: fc.Arbitrary<ReplicaSeen[]> = fc.array(
  fc.record({
    name: fc.constantFrom<string>(...NAMES, 'zz'),
    state: fc.constantFrom('streaming', 'streaming', 'catchup', 'startup'),
    syncState: fc.constantFrom('sync', 'async', 'potential', 'quorum'),
    flushLsn: fc.option(arbLsn),
  }),
  { maxLength: 4 },
);

const arbPeers: fc.Arbitrary<PeerPosition[]> = fc.array(
  fc.record({ name: fc.constantFrom<string>(...NAMES, 'zz'), receivedLsn: fc.option(arbLsn), running: fc.boolean() }),
  { maxLength: 5 },
);

const arbAppliedNames = fc.constantFrom('', '*', ...NAMES.map(quoteSyncName));

function arbObservation(
  opts: { cluster?: fc.Arbitrary<ClusterView | null>; pg?: fc.Arbitrary<Observation['pg']> } = {},
): fc.Arbitrary<Observation> {
  return fc
    .record({
      self: arbName,
      nofailover: fc.boolean(),
      priority: fc.integer({ min: 0, max: 2 }),
      cluster: opts.cluster ?? fc.option(arbCluster, { freq: 8 }),
      leaseValidUntil: fc.option(fc.constantFrom(NOW - 1000, NOW, NOW + 1, NOW + 10_000)),
      pg: opts.pg ?? arbPg,
      restarts: fc.array(fc.integer({ min: NOW - 200_000, max: NOW }), { maxLength: 4 }).map((r) => r.sort((x, y) => x - y)),
      replicas: arbReplicas,
      appliedSyncNames: arbAppliedNames,
      pendingSync: fc.option(fc.record({ member: fc.constantFrom<string>(...NAMES, 'zz'), sinceLsn: arbLsn })),
      lastLeaderLsn: fc.option(arbLsn),
      peers: arbPeers,
      notStreamingSince: fc.option(fc.constantFrom(NOW - 60_000, NOW - 10_000, NOW)),
    })
    .map(({ self, nofailover, priority, ...rest }) =>
      observation({ ...rest, self: { name: self, tags: tags({ nofailover, priority }) } }),
    );
}

const RUNS = { numRuns: 3000 };

describe('decide: safety properties', () => {
  test('every decision is well formed', () => {
    fc.assert(
      fc.property(arbObservation(), (o) => {
        const d = decide(o);
        assert.equal(typeof d.summary, 'string');
        assert.ok(d.summary.length > 0);
        assert.ok(d.actions.length > 0);
      }),
      RUNS,
    );
  });

  test('(1) promote only after acquire_leader in the same plan, or when already holding the leader key', () => {
    fc.assert(
      fc.property(arbObservation(), (o) => {
        const t = types(decide(o));
        const i = t.indexOf('promote');
        if (i < 0) return;
        const holds = o.cluster?.leader?.name === o.self.name;
        assert.ok(holds || t.slice(0, i).includes('acquire_leader'), `plan ${t.join(',')}`);
      }),
      RUNS,
    );
  });

  test('(2) in synchronous mode, without a forced failover or handover, only sync-eligible members acquire the leader key', () => {
    const syncCluster = arbCluster.map((c) => ({ ...c, config: { ...c.config, synchronousMode: true } }));
    fc.assert(
      fc.property(arbObservation({ cluster: syncCluster }), (o) => {
        const c = o.cluster!;
        const sw = c.switchover && o.now <= c.switchover.deadline ? c.switchover : null;
        fc.pre(!(sw && (sw.kind === 'failover' || sw.phase === 'handover')));
        // Exempt: a running primary when no `sync` key exists at all (no synchronous commit was ever
        // confirmed), so that a bootstrap interrupted before taking the key can still take it.
        fc.pre(!(c.sync === null && o.pg.running && o.pg.inRecovery === false));
        if (types(decide(o)).includes('acquire_leader')) {
          assert.ok(syncEligibleNames(c).has(o.self.name), `${o.self.name} not in ${JSON.stringify(c.sync)}`);
        }
      }),
      RUNS,
    );
  });

  // For (3) and (4): a member of an initialized cluster whose data directory belongs to it.
  const ownCluster = arbCluster.map((c) => ({ ...c, initialize: c.initialize ?? SYSTEM_ID }));
  const runningPrimaryPg = arbPg.map((p) => ({ ...p, hasData: true, running: true, inRecovery: false, systemId: p.systemId === '999' ? SYSTEM_ID : p.systemId }));

  test('(3) a running primary while another member holds the leader key always stops', () => {
    const withOtherLeader = fc
      .tuple(ownCluster, fc.constantFrom('b', 'c', 'd'))
      .map(([c, leader]) => ({ ...c, leader: { name: leader, modRevision: '1' } }));
    fc.assert(
      fc.property(arbObservation({ cluster: withOtherLeader, pg: runningPrimaryPg }), (o) => {
        fc.pre(o.self.name !== o.cluster!.leader!.name);
        const d = decide(o);
        assert.ok(types(d).includes('stop'), d.summary);
      }),
      RUNS,
    );
  });

  test('(4) a running primary holding the leader key without a valid lease stops, and does nothing else', () => {
    const arb = arbObservation({ pg: runningPrimaryPg, cluster: fc.option(ownCluster, { freq: 4 }) }).map((o) => ({
      ...o,
      cluster: o.cluster && { ...o.cluster, leader: { name: o.self.name, modRevision: '1' } },
      leaseValidUntil: o.leaseValidUntil === null || o.leaseValidUntil > o.now ? null : o.leaseValidUntil,
    }));
    fc.assert(
      fc.property(arb, (o) => {
        const d = decide(o);
        assert.deepEqual(types(d), ['stop'], d.summary);
      }),
      RUNS,
    );
  });

  test('(6) members observing the same leaderless cluster and the same positions: at most one acquires the key', () => {
    const arbElection = fc.record({
      members: fc.tuple(...NAMES.map((n) => arbMember(n))),
      positions: fc.tuple(...NAMES.map(() => fc.option(arbLsn, { freq: 6 }))),
      running: fc.tuple(...NAMES.map(() => fc.boolean())),
      accepting: fc.tuple(...NAMES.map(() => fc.boolean())),
      config: arbConfig,
      sync: arbSync,
      switchover: arbSwitchover,
      lastLeaderLsn: fc.option(arbLsn),
    });
    fc.assert(
      fc.property(arbElection, (e) => {
        const c = cluster({ members: e.members, config: e.config, sync: e.sync, switchover: e.switchover, leader: null });
        const acquiring = NAMES.filter((name, i) => {
          const rec = e.members[i]!;
          const o = observation({
            self: { name, tags: rec.tags },
            cluster: c,
            pg: e.running[i] ? replicaPg({ receivedLsn: e.positions[i]!, accepting: e.accepting[i]! }) : stoppedPg(),
            lastLeaderLsn: e.lastLeaderLsn,
            peers: NAMES.map((p, j) => ({ name: p, receivedLsn: e.positions[j]!, running: e.running[j]! })).filter(
              (p) => p.name !== name,
            ),
          });
          return types(decide(o)).includes('acquire_leader');
        });
        assert.ok(acquiring.length <= 1, `both ${acquiring.join(' and ')} acquire`);
      }),
      RUNS,
    );
  });
});

describe('decide: slots a replica keeps and drops', () => {
  // This replica is 'a' (a.db:5432); the leader is 'b'.
  const here = 'a.db:5432';
  const run = (members: MemberRecord[], slots: { name: string; active: boolean }[]) => {
    const c = cluster({ leader: 'b', members: [primary('b'), member('a'), ...members] });
    return decide(observation({ cluster: c, pg: { slots } }));
  };

  test('the slot of a member cloned from here is dropped once it streams from the leader', () => {
    const d = run([member('new', { upstream: 'b.db:5432' })], [{ name: 'new', active: false }]);
    assert.deepEqual(actionOf(d, 'drop_slots')?.names, ['new']);
  });

  test('kept while the member is being cloned, streams from here, or the slot is in use', () => {
    for (const [m, active] of [
      [member('new', { state: 'creating replica', upstream: null }), false],
      [member('new', { upstream: here }), false],
      [member('new', { upstream: 'b.db:5432' }), true],
      [member('new', { state: 'recovering', upstream: null }), false],
    ] as const) {
      assert.equal(actionOf(run([m], [{ name: 'new', active }]), 'drop_slots'), undefined, JSON.stringify({ m, active }));
    }
  });

  test("slots not named after a member (an operator's own) and a leader's slots are never dropped here", () => {
    assert.equal(actionOf(run([], [{ name: 'backup_tool', active: false }]), 'drop_slots'), undefined);
    // On the leader, slots are ensured, never dropped.
    const c = cluster({ leader: 'a', members: [primary('a'), member('c', { upstream: 'b.db:5432' })] });
    const d = decide(observation({ cluster: c, leaseValidUntil: NOW + 5000, pg: { inRecovery: false, streaming: false, slots: [{ name: 'c', active: false }] } }));
    assert.equal(actionOf(d, 'drop_slots'), undefined);
  });
});
