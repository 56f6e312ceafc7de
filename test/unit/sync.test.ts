// decideSync: the leader's management of the synchronous standby, row by row, plus the ordering
// invariants as property tests.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Action } from '../../src/agent/actions.js';
import { quoteSyncName } from '../../src/agent/candidates.js';
import type { Observation, ReplicaSeen } from '../../src/agent/observation.js';
import { decideSync, SYNC_RECONNECT_GRACE_MS } from '../../src/agent/sync.js';
import type { ClusterView, MemberRecord, SyncState } from '../../src/dcs/types.js';
import { cluster, member, NOW, observation, primary, primaryPg, types } from '../helpers/observation.js';

const q = quoteSyncName;

function run(
  over: { cluster?: Parameters<typeof cluster>[0] } & Omit<Parameters<typeof observation>[0] & {}, 'cluster'> = {},
): Action[] {
  const { cluster: cOver, ...oOver } = over;
  const c = cluster({
    leader: 'a',
    members: [primary('a'), member('b'), member('c'), member('d')],
    sync: { leader: 'a', members: ['b'] },
    ...cOver,
    config: { synchronousMode: true, ...cOver?.config },
  });
  const o = observation({ pg: primaryPg(), cluster: c, appliedSyncNames: q('b'), ...oOver });
  return decideSync(o, c);
}

const row = (name: string, flushLsn: number | null = 1000, syncState = 'async', state = 'streaming'): ReplicaSeen => ({
  name,
  state,
  syncState,
  flushLsn,
});

describe('decideSync', () => {
  test('synchronous mode off: clear sync and synchronous_standby_names', () => {
    const a = run({ cluster: { config: { synchronousMode: false } }, replicas: [row('b', 1000, 'sync')] });
    assert.deepEqual(a, [
      { type: 'put_sync', members: [] },
      { type: 'set_sync_names', names: '', pendingMember: null },
    ]);
  });

  test('synchronous mode off and already clear: nothing', () => {
    assert.deepEqual(run({ cluster: { config: { synchronousMode: false }, sync: null }, appliedSyncNames: '' }), []);
  });

  test('synchronous mode off, sync key present but names clear: only the sync key', () => {
    assert.deepEqual(run({ cluster: { config: { synchronousMode: false } }, appliedSyncNames: '' }), [{ type: 'put_sync', members: [] }]);
  });

  test('sync written under another leader: reset it first', () => {
    const a = run({ cluster: { sync: { leader: 'old', members: ['b'] } }, replicas: [row('b', 1000, 'sync')] });
    assert.deepEqual(a[0], { type: 'put_sync', members: [] });
    // b is not trusted as our synchronous standby: it must be confirmed afresh.
    assert.ok(!a.some((x) => x.type === 'put_sync' && x.members.length > 0));
    assert.deepEqual(a.slice(1), [{ type: 'set_sync_names', names: q('b'), pendingMember: 'b' }]);
  });

  test('no sync key: write an empty one first', () => {
    const a = run({ cluster: { sync: null }, appliedSyncNames: '', replicas: [] });
    assert.deepEqual(a, [{ type: 'put_sync', members: [] }]);
  });

  test('current synchronous standby streaming: keep it', () => {
    assert.deepEqual(run({ replicas: [row('b', 900, 'sync'), row('c', 5000)] }), []);
  });

  test('current synchronous standby streaming but names differ: re-apply the names', () => {
    const a = run({ appliedSyncNames: '', replicas: [row('b', 900, 'sync'), row('c', 5000)] });
    assert.deepEqual(a, [{ type: 'set_sync_names', names: q('b'), pendingMember: null }]);
  });

  for (const [label, replicas, clusterOver] of [
    ['not in pg_stat_replication', [row('c', 1000)], {}],
    ['not streaming', [row('b', 1000, 'sync', 'catchup'), row('c', 1000)], {}],
    ['tagged nofailover', [row('b', 1000, 'sync'), row('c', 1000)], { members: [primary('a'), member('b', { tags: { nofailover: true } }), member('c')] }],
    ['put in standby', [row('b', 1000, 'sync'), row('c', 1000)], { config: { standbyMembers: ['b'] } }],
  ] as [string, ReplicaSeen[], Parameters<typeof cluster>[0]][]) {
    test(`current synchronous standby ${label}: out of sync before out of synchronous_standby_names`, () => {
      // Missing for longer than the reconnect grace (the grace itself is tested below).
      const a = run({ replicas, cluster: clusterOver, syncMissingSince: NOW - SYNC_RECONNECT_GRACE_MS - 1 });
      assert.deepEqual(a, [
        { type: 'put_sync', members: [] },
        { type: 'set_sync_names', names: q('c'), pendingMember: 'c' },
      ]);
    });
  }

  test('a live synchronous standby that stopped streaming a moment ago keeps its place (commits wait for it)', () => {
    for (const since of [NOW, NOW - SYNC_RECONNECT_GRACE_MS + 1]) {
      assert.deepEqual(run({ replicas: [row('c', 1000)], syncMissingSince: since }), []);
    }
  });

  test('no grace for a standby whose agent is gone or whose PostgreSQL is stopped', () => {
    const replaced = [
      { type: 'put_sync', members: [] },
      { type: 'set_sync_names', names: q('c'), pendingMember: 'c' },
    ];
    assert.deepEqual(run({ replicas: [row('c', 1000)], syncMissingSince: NOW, cluster: { members: [primary('a'), member('c')] } }), replaced);
    assert.deepEqual(
      run({ replicas: [row('c', 1000)], syncMissingSince: NOW, cluster: { members: [primary('a'), member('b', { state: 'stopped' }), member('c')] } }),
      replaced,
    );
  });

  test('no grace for a standby that does not stream and whose agent does not answer: replaced at once', () => {
    const replaced = [
      { type: 'put_sync', members: [] },
      { type: 'set_sync_names', names: q('c'), pendingMember: 'c' },
    ];
    // Its key is still there (the lease has not expired yet) and says streaming.
    for (const since of [NOW, NOW - 1000]) {
      assert.deepEqual(run({ replicas: [row('c', 1000)], syncMissingSince: since, syncStandbyAgentDown: true }), replaced);
    }
    // The agent answers: its PostgreSQL is only restarting, so it keeps its place for the grace.
    assert.deepEqual(run({ replicas: [row('c', 1000)], syncMissingSince: NOW, syncStandbyAgentDown: false }), []);
    // No other candidate: out of sync, and (not strict) commits stop waiting.
    assert.deepEqual(run({ replicas: [], syncMissingSince: NOW, syncStandbyAgentDown: true }), [
      { type: 'put_sync', members: [] },
      { type: 'set_sync_names', names: '', pendingMember: null },
    ]);
  });

  test('current synchronous standby gone, no candidate: out of sync, then clear names', () => {
    assert.deepEqual(run({ replicas: [], syncMissingSince: NOW - SYNC_RECONNECT_GRACE_MS }), [
      { type: 'put_sync', members: [] },
      { type: 'set_sync_names', names: '', pendingMember: null },
    ]);
  });

  test('pending member reported sync with flush at or past sinceLsn: into sync', () => {
    for (const flush of [2000, 2500]) {
      const a = run({
        cluster: { sync: { leader: 'a', members: [] } },
        appliedSyncNames: q('c'),
        pendingSync: { member: 'c', sinceLsn: 2000 },
        replicas: [row('b', 9000), row('c', flush, 'sync')],
      });
      assert.deepEqual(a, [{ type: 'put_sync', members: ['c'] }]);
    }
  });

  test('pending member reported sync but flush behind sinceLsn: not yet in sync', () => {
    const a = run({
      cluster: { sync: { leader: 'a', members: [] } },
      appliedSyncNames: q('c'),
      pendingSync: { member: 'c', sinceLsn: 2000 },
      replicas: [row('c', 1999, 'sync')],
    });
    assert.deepEqual(a, []);
  });

  test('pending member with unknown flush position, or not yet reported sync: not in sync', () => {
    for (const r of [row('c', null, 'sync'), row('c', 5000, 'potential'), row('c', 5000, 'async')]) {
      const a = run({
        cluster: { sync: { leader: 'a', members: [] } },
        appliedSyncNames: q('c'),
        pendingSync: { member: 'c', sinceLsn: 2000 },
        replicas: [r],
      });
      assert.deepEqual(a, []);
    }
  });

  test('pending member whose names are not applied: apply them, still pending', () => {
    const a = run({
      cluster: { sync: { leader: 'a', members: [] } },
      appliedSyncNames: '',
      pendingSync: { member: 'c', sinceLsn: 2000 },
      replicas: [row('c', 1000, 'potential')],
    });
    assert.deepEqual(a, [{ type: 'set_sync_names', names: q('c'), pendingMember: 'c' }]);
  });

  test('pending member no longer streaming: pick the best candidate instead', () => {
    const a = run({
      cluster: { sync: { leader: 'a', members: [] } },
      appliedSyncNames: q('c'),
      pendingSync: { member: 'c', sinceLsn: 2000 },
      replicas: [row('c', 5000, 'sync', 'catchup'), row('d', 100)],
    });
    assert.deepEqual(a, [{ type: 'set_sync_names', names: q('d'), pendingMember: 'd' }]);
  });

  test('pick the best streaming candidate: most flushed, then priority, then name', () => {
    const members: MemberRecord[] = [
      primary('a'),
      member('b', { tags: { nofailover: true } }),
      member('c'),
      member('d', { tags: { priority: 3 } }),
      member('e'),
      member('f'),
    ];
    const base = { cluster: { sync: { leader: 'a', members: [] }, members, config: { standbyMembers: ['e'] } }, appliedSyncNames: '' };
    const pick = (replicas: ReplicaSeen[]) => {
      const a = run({ ...base, replicas });
      assert.equal(a.length, 1);
      const only = a[0]!;
      assert.equal(only.type, 'set_sync_names');
      return only.type === 'set_sync_names' ? only.pendingMember : null;
    };
    // b (nofailover), e (standby), z (no member record) and f (not streaming) are never candidates.
    const excluded = [row('b', 9000), row('e', 9000), row('z', 9000), row('f', 9000, 'async', 'startup')];
    assert.equal(pick([...excluded, row('c', 2000), row('d', 1000)]), 'c');
    assert.equal(pick([...excluded, row('c', 1000), row('d', 1000)]), 'd');
    assert.equal(pick([...excluded, row('c', 1000), row('f', 1000)]), 'c');
  });

  test('no candidate: empty synchronous_standby_names (non-strict) or "*" (strict)', () => {
    const none = { cluster: { sync: { leader: 'a', members: [] } }, replicas: [row('b', 1000, 'async', 'catchup')] };
    assert.deepEqual(run({ ...none, appliedSyncNames: q('b') }), [{ type: 'set_sync_names', names: '', pendingMember: null }]);
    assert.deepEqual(run({ ...none, appliedSyncNames: '' }), []);
    const strict = { ...none, cluster: { ...none.cluster, config: { synchronousModeStrict: true } } };
    assert.deepEqual(run({ ...strict, appliedSyncNames: q('b') }), [{ type: 'set_sync_names', names: '*', pendingMember: null }]);
    assert.deepEqual(run({ ...strict, appliedSyncNames: '*' }), []);
  });
});

// ---------------------------------------------------------------------------------------------

const NAMES = ['b', 'c', 'd'];
const arbName = fc.constantFrom(...NAMES);
const arbLsn = fc.constantFrom(0, 1000, 2000, 3000);

const arbSyncCase = fc
  .record({
    synchronousMode: fc.boolean(),
    strict: fc.boolean(),
    standbyMembers: fc.subarray(NAMES),
    nofailover: fc.subarray(NAMES),
    sync: fc.option(fc.record({ leader: fc.constantFrom('a', 'a', 'old'), members: fc.subarray(NAMES, { maxLength: 1 }) })),
    replicas: fc.array(
      fc.record({
        name: fc.constantFrom(...NAMES, 'zz'),
        state: fc.constantFrom('streaming', 'streaming', 'catchup'),
        syncState: fc.constantFrom('sync', 'async', 'potential'),
        flushLsn: fc.option(arbLsn),
      }),
      { maxLength: 4 },
    ),
    appliedSyncNames: fc.constantFrom('', '*', ...NAMES.map(q)),
    pendingSync: fc.option(fc.record({ member: arbName, sinceLsn: arbLsn })),
    syncMissingSince: fc.option(fc.constantFrom(NOW, NOW - SYNC_RECONNECT_GRACE_MS - 1)),
    syncStandbyAgentDown: fc.boolean(),
  })
  .map((r): [Observation, ClusterView] => {
    const c = cluster({
      leader: 'a',
      members: [primary('a'), ...NAMES.map((n) => member(n, { tags: { nofailover: r.nofailover.includes(n) } }))],
      sync: r.sync as SyncState | null,
      config: { synchronousMode: r.synchronousMode, synchronousModeStrict: r.strict, standbyMembers: r.standbyMembers },
    });
    const o = observation({
      pg: primaryPg(),
      cluster: c,
      replicas: r.replicas,
      appliedSyncNames: r.appliedSyncNames,
      pendingSync: r.pendingSync,
      syncMissingSince: r.syncMissingSince,
      syncStandbyAgentDown: r.syncStandbyAgentDown,
    });
    return [o, c];
  });

/** Who is in `sync` after each action, starting from what the cluster says (for this leader). */
function syncMembersAlong(o: Observation, c: ClusterView, actions: Action[]): Set<string>[] {
  let current = new Set(c.sync?.leader === o.self.name ? c.sync.members : []);
  return actions.map((a) => {
    if (a.type === 'put_sync') current = new Set(a.members);
    return current;
  });
}

function namedIn(names: string): string[] {
  return NAMES.filter((n) => names.includes(q(n)));
}

describe('decideSync: properties', () => {
  test('(5) never adds a member to sync in the plan that changes synchronous_standby_names to name it', () => {
    fc.assert(
      fc.property(arbSyncCase, ([o, c]) => {
        const actions = decideSync(o, c);
        const before = new Set(c.sync?.leader === o.self.name ? c.sync.members : []);
        const added = actions.flatMap((a) => (a.type === 'put_sync' ? a.members.filter((m) => !before.has(m)) : []));
        const namesNaming = actions.flatMap((a) => (a.type === 'set_sync_names' && a.names !== o.appliedSyncNames ? namedIn(a.names) : []));
        for (const m of added) assert.ok(!namesNaming.includes(m), `${m} added to sync and named in one plan: ${JSON.stringify(actions)}`);
      }),
      { numRuns: 5000 },
    );
  });

  test('a member enters sync only when reported synchronous with flush at or past sinceLsn', () => {
    fc.assert(
      fc.property(arbSyncCase, ([o, c]) => {
        const before = new Set(c.sync?.leader === o.self.name ? c.sync.members : []);
        for (const a of decideSync(o, c)) {
          if (a.type !== 'put_sync') continue;
          for (const m of a.members) {
            if (before.has(m)) continue;
            const r = o.replicas.find((x) => x.name === m && x.state === 'streaming');
            assert.equal(o.pendingSync?.member, m);
            assert.ok(r && r.syncState === 'sync' && r.flushLsn !== null && r.flushLsn >= o.pendingSync!.sinceLsn);
          }
        }
      }),
      { numRuns: 5000 },
    );
  });

  test('a member in sync is never dropped from synchronous_standby_names while still in sync', () => {
    fc.assert(
      fc.property(arbSyncCase, ([o, c]) => {
        const actions = decideSync(o, c);
        const inSync = syncMembersAlong(o, c, actions);
        actions.forEach((a, i) => {
          if (a.type !== 'set_sync_names') return;
          for (const m of inSync[i]!) {
            assert.ok(a.names.includes(q(m)), `${m} still in sync when names become ${JSON.stringify(a.names)}: ${JSON.stringify(actions)}`);
          }
        });
      }),
      { numRuns: 5000 },
    );
  });

  test('a sync key written under another leader is reset before anything else', () => {
    fc.assert(
      fc.property(arbSyncCase, ([o, c]) => {
        fc.pre(c.config.synchronousMode && (c.sync === null || c.sync.leader !== o.self.name));
        assert.deepEqual(decideSync(o, c)[0], { type: 'put_sync', members: [] });
      }),
      { numRuns: 2000 },
    );
  });

  test('synchronous mode off: only clearing actions', () => {
    fc.assert(
      fc.property(arbSyncCase, ([o, c]) => {
        fc.pre(!c.config.synchronousMode);
        for (const a of decideSync(o, c)) {
          if (a.type === 'put_sync') assert.deepEqual(a.members, []);
          else if (a.type === 'set_sync_names') assert.deepEqual(a, { type: 'set_sync_names', names: '', pendingMember: null });
          else assert.fail(`unexpected ${a.type}`);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('decisions are well typed', () => {
    fc.assert(
      fc.property(arbSyncCase, ([o, c]) => {
        for (const t of types(decideSync(o, c))) assert.ok(t === 'put_sync' || t === 'set_sync_names');
      }),
    );
  });
});
