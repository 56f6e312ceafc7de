// What decide() looks at: the local PostgreSQL, the etcd view, and the agent's own memory.
import type { ClusterView, MemberTags } from '../dcs/types.js';
import type { LocalStatus } from '../postgres/types.js';

export interface LocalPostgres extends LocalStatus {
  /** A data directory exists (PG_VERSION). */
  hasData: boolean;
  /** From pg_controldata when stopped: the last state was a primary ("in production" or "shut down"). */
  stoppedAsPrimary: boolean;
}

export interface ReplicaSeen {
  name: string;
  state: string;
  syncState: string;
  flushLsn: number | null;
}

export interface PeerPosition {
  name: string;
  /** Fresh from the peer's API when it answered; otherwise its last published position. */
  receivedLsn: number | null;
  running: boolean;
}

export interface Observation {
  now: number;
  self: { name: string; tags: MemberTags; host: string; port: number; cloneFrom: string | null };
  /** null when etcd could not be read. */
  cluster: ClusterView | null;
  /** The lease is confirmed valid on the server until this instant (ms); null = no valid lease. */
  leaseValidUntil: number | null;
  pg: LocalPostgres;
  /** Instants of in-place restarts of our primary, newest last. */
  restarts: number[];
  /** Leader only: pg_stat_replication. */
  replicas: ReplicaSeen[];
  /** synchronous_standby_names currently applied by this agent. */
  appliedSyncNames: string;
  /** Leader only: a synchronous standby named in synchronous_standby_names, waiting to be confirmed,
   * with the WAL position at the moment it was named. */
  pendingSync: { member: string; sinceLsn: number } | null;
  /** The leader's last published WAL position (kept after the leader's own keys expire). */
  lastLeaderLsn: number | null;
  /** Leader: since when the synchronous standby named in `sync` has not been streaming. */
  syncMissingSince: number | null;
  /** Leader: the synchronous standby does not stream *and* its agent's REST API does not answer
   * (its host or agent is gone, not just its PostgreSQL restarting). */
  syncStandbyAgentDown: boolean;
  /** When this member last handed leadership over after max_restarts, if it did. */
  handedOverAt: number | null;
  /** Positions of peers, gathered only when the leader key is absent. */
  peers: PeerPosition[];
  /** The leader we last followed had a higher timeline than ours and we do not stream: rewind needed. */
  notStreamingSince: number | null;
}
