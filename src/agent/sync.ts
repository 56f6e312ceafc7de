// Synchronous replication on the leader: one synchronous standby, named in synchronous_standby_names
// and recorded in the `sync` key. Invariant 2 orders the steps:
//  - a member enters `sync` only after PostgreSQL reports it synchronous AND its flush position has
//    passed the WAL position at the moment it was named (so it also holds commits acknowledged before);
//  - a member leaves `sync` before it leaves synchronous_standby_names.
import type { ClusterView } from '../dcs/types.js';
import type { Action } from './actions.js';
import { compareCandidates, findMember, quoteSyncName } from './candidates.js';
import type { Observation, ReplicaSeen } from './observation.js';

/** How long a live synchronous standby may be disconnected before another replaces it. */
export const SYNC_RECONNECT_GRACE_MS = 5000;

export function decideSync(o: Observation, c: ClusterView): Action[] {
  const me = o.self.name;
  const strict = c.config.synchronousModeStrict;
  const noStandbyNames = strict ? '*' : '';

  if (!c.config.synchronousMode) {
    const actions: Action[] = [];
    if (c.sync !== null) actions.push({ type: 'put_sync', members: [] });
    if (o.appliedSyncNames !== '') actions.push({ type: 'set_sync_names', names: '', pendingMember: null });
    return actions;
  }

  const actions: Action[] = [];
  // A `sync` written under another leader says nothing about who holds our commits.
  const current = c.sync?.leader === me ? (c.sync.members[0] ?? null) : null;
  if (c.sync === null || c.sync.leader !== me) actions.push({ type: 'put_sync', members: [] });

  const streaming = o.replicas.filter((r) => r.state === 'streaming' && isCandidate(c, r.name));
  const byName = (name: string | null) => (name ? streaming.find((r) => r.name === name) : undefined);

  if (current !== null) {
    if (byName(current)) {
      const wanted = quoteSyncName(current);
      if (o.appliedSyncNames !== wanted) actions.push({ type: 'set_sync_names', names: wanted, pendingMember: null });
      return actions;
    }
    // Not streaming right now. A live standby gets a moment to reconnect (after a restart of this
    // primary, say): keeping it in `sync` is safe, as commits wait for it meanwhile, and dropping it
    // at once would leave no member that may take over should this primary fail again. A standby
    // whose agent does not answer either is not coming back soon: waiting for its key to expire
    // would only hold every commit for a lease.
    const missingFor = o.syncMissingSince === null ? 0 : o.now - o.syncMissingSince;
    const rec = findMember(c, current);
    const alive = rec && isCandidate(c, current) && rec.state !== 'stopped' && !o.syncStandbyAgentDown;
    if (alive && missingFor < SYNC_RECONNECT_GRACE_MS) return actions;
    // The synchronous standby is gone: take it out of `sync` first, then out of synchronous_standby_names.
    actions.push({ type: 'put_sync', members: [] });
  }

  const pending = o.pendingSync && byName(o.pendingSync.member) ? o.pendingSync : null;
  if (pending) {
    const row = byName(pending.member)!;
    if (row.syncState === 'sync' && row.flushLsn !== null && row.flushLsn >= pending.sinceLsn) {
      actions.push({ type: 'put_sync', members: [pending.member] });
    } else if (o.appliedSyncNames !== quoteSyncName(pending.member)) {
      actions.push({ type: 'set_sync_names', names: quoteSyncName(pending.member), pendingMember: pending.member });
    }
    return actions;
  }

  const best = pickBest(c, streaming);
  if (best) {
    actions.push({ type: 'set_sync_names', names: quoteSyncName(best.name), pendingMember: best.name });
  } else if (o.appliedSyncNames !== noStandbyNames) {
    actions.push({ type: 'set_sync_names', names: noStandbyNames, pendingMember: null });
  }
  return actions;
}

function isCandidate(c: ClusterView, name: string): boolean {
  const m = findMember(c, name);
  return !!m && !m.tags.nofailover && !c.config.standbyMembers.includes(name);
}

function pickBest(c: ClusterView, rows: ReplicaSeen[]): ReplicaSeen | undefined {
  return [...rows].sort((a, b) =>
    compareCandidates(
      { name: a.name, receivedLsn: a.flushLsn ?? 0, priority: findMember(c, a.name)?.tags.priority ?? 0 },
      { name: b.name, receivedLsn: b.flushLsn ?? 0, priority: findMember(c, b.name)?.tags.priority ?? 0 },
    ),
  )[0];
}
