// Who may lead: eligibility and ranking of members, shared by elections, switchovers and sync choice.
import type { ClusterView, MemberRecord } from '../dcs/types.js';
import type { UpstreamRef } from './actions.js';

export function memberRef(m: MemberRecord): UpstreamRef {
  return { name: m.name, host: m.host, port: m.port };
}

export function findMember(c: ClusterView, name: string | null | undefined): MemberRecord | undefined {
  return name ? c.members.find((m) => m.name === name) : undefined;
}

/** Members allowed to be promoted automatically in synchronous mode: those in `sync`, and the leader
 * that `sync` was written for (it holds every commit it acknowledged). */
export function syncEligibleNames(c: ClusterView): Set<string> {
  if (!c.sync) return new Set();
  return new Set([c.sync.leader, ...c.sync.members]);
}

/** Why a member may not lead, or null when it may. Lag is judged on `receivedLsn`, the member's
 * freshest known position, against the leader's last published one. */
export function ineligibility(
  c: ClusterView,
  name: string,
  tags: { nofailover: boolean },
  receivedLsn: number | null,
  lastLeaderLsn: number | null,
): string | null {
  if (tags.nofailover) return 'tagged nofailover';
  if (c.config.standbyMembers.includes(name)) return 'in standby (maintenance); run "baton node unstandby" to allow it to lead';
  if (c.config.synchronousMode) {
    // In synchronous mode, members of `sync` hold every acknowledged commit: lag does not matter.
    if (!syncEligibleNames(c).has(name)) return 'not a synchronous standby: it may lack acknowledged commits';
    return null;
  }
  if (lastLeaderLsn !== null && receivedLsn !== null && lastLeaderLsn - receivedLsn > c.config.maximumLagOnFailover) {
    return `lag ${lastLeaderLsn - receivedLsn} bytes exceeds maximum_lag_on_failover ${c.config.maximumLagOnFailover}`;
  }
  if (receivedLsn === null) return 'WAL position unknown';
  return null;
}

export interface Ranked {
  name: string;
  receivedLsn: number;
  priority: number;
}

/** Most up to date first; then higher priority; then name, so every member computes the same order. */
export function compareCandidates(a: Ranked, b: Ranked): number {
  if (a.receivedLsn !== b.receivedLsn) return b.receivedLsn - a.receivedLsn;
  if (a.priority !== b.priority) return b.priority - a.priority;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Replicas that can take over in a planned switchover: streaming, not excluded by tags or standby. */
export function switchoverTargets(c: ClusterView, leader: string): MemberRecord[] {
  return c.members
    .filter(
      (m) =>
        m.name !== leader &&
        m.role === 'replica' &&
        m.state === 'streaming' &&
        !m.tags.nofailover &&
        !c.config.standbyMembers.includes(m.name),
    )
    .sort((a, b) => {
      const sync = syncEligibleNames(c);
      const sa = sync.has(a.name) ? 0 : 1;
      const sb = sync.has(b.name) ? 0 : 1;
      if (sa !== sb) return sa - sb;
      return compareCandidates(
        { name: a.name, receivedLsn: a.receivedLsn ?? 0, priority: a.tags.priority },
        { name: b.name, receivedLsn: b.receivedLsn ?? 0, priority: b.tags.priority },
      );
    });
}

/** Why `target` cannot take over a switchover from `leader`, or null. */
export function switchoverTargetProblem(c: ClusterView, leader: string, target: string): string | null {
  const m = findMember(c, target);
  if (!m) return `member "${target}" is not in the cluster`;
  if (target === leader) return `"${target}" is already the leader`;
  if (m.tags.nofailover) return `"${target}" is tagged nofailover`;
  if (c.config.standbyMembers.includes(target)) return `"${target}" is in standby; run "baton node unstandby ${target}" first`;
  if (m.role !== 'replica' || m.state !== 'streaming') return `"${target}" is not a streaming replica (state: ${m.state})`;
  return null;
}

export function quoteSyncName(name: string): string {
  return `FIRST 1 ("${name.replace(/"/g, '""')}")`;
}
