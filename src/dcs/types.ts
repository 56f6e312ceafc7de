// The cluster state Baton keeps in etcd under /baton/<cluster>/, as plain data.
// LSNs are byte positions as JS numbers (exact up to 8 PiB of WAL).

export type Role = 'primary' | 'replica' | 'unknown';

export type MemberState =
  | 'starting'
  | 'running' // primary accepting connections
  | 'streaming' // replica with a live walreceiver
  | 'recovering' // replica without a live walreceiver
  | 'stopped'
  | 'crashed'
  | 'creating replica'
  | 'rewinding'
  | 'stopping'
  | 'start failed';

export interface MemberTags {
  nofailover: boolean;
  noloadbalance: boolean;
  weight: number;
  priority: number;
  clonefrom: boolean;
}

export interface MemberRecord {
  name: string;
  role: Role;
  state: MemberState;
  /** PostgreSQL address clients and peers use. */
  host: string;
  port: number;
  /** Base URL of this member's REST API, e.g. http://127.0.0.1:8008 */
  apiUrl: string;
  timeline: number | null;
  /** Primary: current write LSN. Replica: last received (flushed) LSN. */
  receivedLsn: number | null;
  replayedLsn: number | null;
  /** Replica: bytes behind the leader's last published LSN, as seen by this member. */
  lagBytes: number | null;
  tags: MemberTags;
  agentPid: number;
  postmasterPid: number | null;
  /** Who this replica streams from, if anyone. */
  upstream: string | null;
  systemId: string | null;
  updatedAt: string;
  /** Set when the agent sees something an operator should know (e.g. why it cannot start). */
  problem: string | null;
  /** While the member is being cloned: from whom and how far (absent otherwise). */
  clone?: CloneStatus;
  /** PostgreSQL's Unix socket on the member's host, and the token written beside it: a proxy on the
   * same host that finds the same token there reaches the server through the socket, not TCP. */
  localSocket?: { path: string; token: string };
}

export interface CloneStatus {
  source: string;
  doneBytes: number;
  /** pg_basebackup's estimate of the whole copy. */
  totalBytes: number;
  startedAt: string;
}

export interface SyncState {
  leader: string;
  /** Members that hold every commit acknowledged to a client. Only these may be promoted automatically. */
  members: string[];
}

export type SwitchoverKind = 'switchover' | 'failover';

export interface SwitchoverRequest {
  kind: SwitchoverKind;
  /** The leader to move away from (switchover); null for a forced failover. */
  from: string | null;
  /** The member that should become leader; null lets the leader choose the best candidate. */
  to: string | null;
  requestedAt: string;
  /** requested -> demoting (old leader shutting down) -> handover (key released to `to`) */
  phase: 'requested' | 'demoting' | 'handover';
  /** After this instant (ms since epoch) the request is void and normal elections apply. */
  deadline: number;
  reason: string;
}

/** A running `baton proxy`, under proxies/<name> with the proxy's own lease. */
export interface ProxyRecord {
  name: string;
  /** Listener addresses, host:port. */
  readWrite: string;
  readOnly: string;
  admin: string;
  startedAt: string;
  /** requestedAt of the switchover for which this proxy holds new transactions on its read-write
   * sessions (the old leader waits for this before it shuts down); null when not holding. */
  holding: string | null;
}

export interface HistoryEntry {
  timeline: number;
  /** LSN at which the new timeline starts (or the promoted member's position). */
  lsn: number;
  at: string;
  leader: string;
  previousLeader: string | null;
  reason: string;
}

/** Settings that live in etcd (`config` key) and can be changed while the cluster runs. */
export interface DynamicConfig {
  /** Leader lease TTL in seconds. */
  ttl: number;
  /** HA loop safety-net interval in seconds (watch events drive reactions). */
  loopWait: number;
  maximumLagOnFailover: number;
  synchronousMode: boolean;
  synchronousModeStrict: boolean;
  maxRestarts: number;
  /** Seconds within which max_restarts counts restarts. */
  restartWindow: number;
  paused: boolean;
  /** Members put in standby (maintenance) by an operator: never leader. */
  standbyMembers: string[];
  /** Seconds a leader handing over waits for open transactions to finish before its fast shutdown;
   * 0 stops at once. */
  switchoverDrainTimeout: number;
}

export const DEFAULT_DYNAMIC_CONFIG: DynamicConfig = {
  ttl: 3,
  loopWait: 1,
  maximumLagOnFailover: 1024 * 1024,
  synchronousMode: true,
  synchronousModeStrict: false,
  maxRestarts: 3,
  restartWindow: 60,
  paused: false,
  standbyMembers: [],
  switchoverDrainTimeout: 5,
};

export interface LeaderKey {
  name: string;
  /** etcd mod revision of the leader key, to compare in transactions. */
  modRevision: string;
}

/** Everything under /baton/<cluster>/, read in one range request. */
export interface ClusterView {
  initialize: string | null;
  config: DynamicConfig;
  leader: LeaderKey | null;
  members: MemberRecord[];
  sync: SyncState | null;
  switchover: SwitchoverRequest | null;
  history: HistoryEntry[];
  /** etcd revision the view was read at. */
  revision: string;
}
