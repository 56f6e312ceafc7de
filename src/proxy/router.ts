// Where a new session goes, decided from the etcd view alone (pure, unit-tested).
// Read-write: the member that holds the leader key and reports itself a running primary.
// Read-only: streaming replicas whose replay is within the lag limit, balanced by weight; a
// read-only session on a member that no longer qualifies leaves it once a replica does.
import type { ClusterView, MemberRecord } from '../dcs/types.js';

export interface RouterSettings {
  /** Bytes of replay lag beyond which a replica gets no new read-only sessions. */
  maxReplicationLag: number;
  /** When no replica qualifies, send read-only sessions to the leader. */
  readOnlyFallbackToLeader: boolean;
}

export type Target = { member: MemberRecord } | { wait: string } | { refuse: string };

/** The leader's current WAL position as last published. */
export function leaderLsn(view: ClusterView): number | null {
  return view.members.find((m) => m.name === view.leader?.name)?.receivedLsn ?? null;
}

/** Bytes the member's replay is behind the leader's last published position (null when unknown). */
export function replayLag(view: ClusterView, m: MemberRecord): number | null {
  const top = leaderLsn(view);
  const replayed = m.replayedLsn ?? m.receivedLsn;
  if (top === null || replayed === null) return null;
  return Math.max(0, top - replayed);
}

export function writeTarget(view: ClusterView | null): Target {
  if (!view) return { wait: 'the proxy cannot read the cluster state from etcd' };
  if (view.switchover) return { wait: `a ${view.switchover.kind} is in progress` };
  const leader = view.members.find((m) => m.name === view.leader?.name);
  if (!view.leader) return { wait: 'the cluster has no leader' };
  if (!leader || leader.role !== 'primary' || leader.state !== 'running') {
    return { wait: `leader ${view.leader.name} is not running as primary yet` };
  }
  return { member: leader };
}

/** Replicas that may take new read-only sessions, with their weights. */
export function readCandidates(view: ClusterView, s: RouterSettings): MemberRecord[] {
  return view.members.filter((m) => {
    if (m.name === view.leader?.name || m.role !== 'replica' || m.state !== 'streaming') return false;
    if (m.tags.noloadbalance || m.tags.weight <= 0) return false;
    const lag = replayLag(view, m);
    return lag !== null && lag <= s.maxReplicationLag;
  });
}

/** Smooth weighted choice: the candidate whose (sessions so far + 1) / weight is lowest, so
 * select counts follow the weights exactly over time; ties by name. */
export function readTarget(view: ClusterView | null, s: RouterSettings, selectCount: (name: string) => number): Target {
  if (!view) return { wait: 'the proxy cannot read the cluster state from etcd' };
  const candidates = readCandidates(view, s);
  if (candidates.length === 0) {
    if (s.readOnlyFallbackToLeader) {
      const w = writeTarget(view);
      if ('member' in w) return w;
      return { wait: `no replica within ${s.maxReplicationLag} bytes of lag, and ${'wait' in w ? w.wait : w.refuse}` };
    }
    return { refuse: `no replica is streaming within the lag limit (${s.maxReplicationLag} bytes)` };
  }
  let best = candidates[0]!;
  let bestScore = Infinity;
  for (const m of candidates) {
    const score = (selectCount(m.name) + 1) / m.tags.weight;
    if (score < bestScore || (score === bestScore && m.name < best.name)) {
      best = m;
      bestScore = score;
    }
  }
  return { member: best };
}

/** Why a read-only session on `member` should leave it, or null: it stays. It leaves when a new
 * read-only session would go elsewhere: its member is the leader now, lagging, not streaming, excluded
 * by its tags or gone, and a replica qualifies (or, with the fallback, the leader does). With nowhere
 * better to go it stays, as an existing session is not refused. */
export function readSessionMove(view: ClusterView | null, s: RouterSettings, member: string): string | null {
  if (!view) return null;
  const candidates = readCandidates(view, s);
  if (candidates.some((m) => m.name === member)) return null;
  const m = view.members.find((x) => x.name === member);
  const leader = view.leader?.name;
  if (candidates.length === 0 && (!s.readOnlyFallbackToLeader || member === leader || !('member' in writeTarget(view)))) return null;
  if (!m) return `${member} left the cluster`;
  if (m.name === leader) return `${member} is the leader and a replica takes read-only sessions`;
  if (m.tags.noloadbalance || m.tags.weight <= 0) return `${member} takes no read-only sessions (noloadbalance or weight 0)`;
  if (m.role !== 'replica' || m.state !== 'streaming') return `${member} is ${m.state}, not a streaming replica`;
  const lag = replayLag(view, m);
  if (lag === null) return `${member}'s replay position is unknown`;
  return `${member}'s replay is ${lag} bytes behind, past max_replication_lag (${s.maxReplicationLag})`;
}

/** The WAL position a member last published: the leader's written position, a replica's replayed one. */
export function publishedPosition(view: ClusterView | null, member: string): number | null {
  const m = view?.members.find((x) => x.name === member);
  if (!m) return null;
  return m.name === view?.leader?.name ? m.receivedLsn : (m.replayedLsn ?? m.receivedLsn);
}
