// withMemberChange: a view kept current from member watch events equals the view etcd would give.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { sameClusterState, withMemberChange, type MemberChange } from '../../src/dcs/member-change.js';
import type { ClusterView } from '../../src/dcs/types.js';
import { cluster, member } from '../helpers/observation.js';

const NAMES = ['a', 'b', 'c', 'd'];

/** A put (with a distinct received LSN) or a delete of one member, at a revision set later. */
const changeArb = fc.record({
  name: fc.constantFrom(...NAMES),
  put: fc.boolean(),
  lsn: fc.integer({ min: 0, max: 1e6 }),
});

test('changes applied in revision order give the members a fresh read would give, sorted by name', () => {
  fc.assert(
    fc.property(fc.array(changeArb, { maxLength: 30 }), fc.integer({ min: 0, max: 30 }), (steps, readAt) => {
      // etcd's state after each revision: revision 10 + i holds step i.
      const state = new Map<string, number>();
      let v: ClusterView = { ...cluster(), members: [], revision: '9' };
      const stateAt: Map<string, number>[] = [];
      steps.forEach((s, i) => {
        if (s.put) state.set(s.name, s.lsn);
        else state.delete(s.name);
        stateAt[i] = new Map(state);
      });
      // The view was read at some revision; the watch replays from the revision after it and may
      // also repeat changes the read already had (they must change nothing).
      const readIndex = Math.min(readAt, steps.length) - 1;
      if (readIndex >= 0) {
        v = {
          ...v,
          revision: String(10 + readIndex),
          members: [...stateAt[readIndex]!].map(([n, lsn]) => member(n, { receivedLsn: lsn })).sort((x, y) => x.name.localeCompare(y.name)),
        };
      }
      steps.forEach((s, i) => {
        const change: MemberChange = {
          kind: 'member',
          name: s.name,
          deleted: !s.put,
          record: s.put ? member(s.name, { receivedLsn: s.lsn }) : null,
          revision: String(10 + i),
        };
        const next = withMemberChange(v, change);
        if (i <= readIndex) assert.equal(next, v, 'a change the view already has left it alone');
        v = next;
      });
      assert.deepEqual(
        v.members.map((m) => [m.name, m.receivedLsn]),
        [...state].sort(([x], [y]) => x.localeCompare(y)),
      );
      const last = steps.length - 1;
      assert.equal(v.revision, String(last > readIndex ? 10 + last : 10 + readIndex), 'the revision of the newest change in the view');
      const fresh: ClusterView = {
        ...cluster(),
        members: [...state].sort(([x], [y]) => x.localeCompare(y)).map(([n, lsn]) => member(n, { receivedLsn: lsn })),
        revision: '999',
      };
      assert.ok(sameClusterState(v, fresh), 'the kept view is the state a fresh read gives, whatever their revisions');
    }),
    { numRuns: 2000 },
  );
});

test('an unreadable member value (record null) takes the member out, as read() skips it', () => {
  const v: ClusterView = { ...cluster(), members: [member('a'), member('b')], revision: '5' };
  const next = withMemberChange(v, { kind: 'member', name: 'a', deleted: false, record: null, revision: '6' });
  assert.deepEqual(next.members.map((m) => m.name), ['b']);
  assert.equal(next.revision, '6');
  assert.deepEqual(v.members.map((m) => m.name), ['a', 'b'], 'the old view is not changed in place');
});

test('sameClusterState: revisions aside, any difference in the state counts', () => {
  const v: ClusterView = { ...cluster(), members: [member('a'), member('b')], revision: '5' };
  assert.ok(sameClusterState(v, { ...v, revision: '7' }));
  assert.ok(!sameClusterState(v, { ...v, leader: { name: 'b', modRevision: '6' } }), 'another leader');
  assert.ok(!sameClusterState(v, { ...v, switchover: { kind: 'switchover', from: 'a', to: 'b', requestedAt: 'x', phase: 'requested', deadline: 0, reason: 'test' } }), 'a switchover');
  assert.ok(!sameClusterState(v, { ...v, members: [member('a'), member('b', { receivedLsn: 9 })] }), 'a member moved on');
  assert.ok(!sameClusterState(v, { ...v, members: [member('a')] }), 'a member gone');
});
