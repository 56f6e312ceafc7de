// The Baton-level view of etcd: what the agent, the CLI and the proxy need, in domain terms.
// The etcd implementation is EtcdStore (etcd-store.ts); the key layout is in keys.ts.
import type {
  ClusterView,
  DynamicConfig,
  HistoryEntry,
  MemberRecord,
  ProxyRecord,
  SwitchoverRequest,
  SyncState,
} from './types.js';

export type LeaseId = string;

export interface KeepAliveResult {
  /** Remaining TTL in seconds granted by the server; 0 means the lease no longer exists. */
  ttl: number;
  /** Date.now() just before the request was sent: the fencing deadline counts from here. */
  sentAt: number;
}

export type ClusterChange =
  | { kind: 'leader'; deleted: boolean }
  /** `record`: the member's new record (null when deleted or unreadable); `revision`: the etcd
   * revision of the change, so a view read at that revision or later already has it. */
  | { kind: 'member'; name: string; deleted: boolean; record: MemberRecord | null; revision: string }
  | { kind: 'config' | 'sync' | 'switchover' | 'history' | 'initialize'; deleted: boolean };

export interface Watch {
  close(): void;
}

export interface ClusterStore {
  readonly cluster: string;

  grantLease(ttlSeconds: number): Promise<LeaseId>;
  keepAlive(lease: LeaseId): Promise<KeepAliveResult>;
  revokeLease(lease: LeaseId): Promise<void>;

  read(): Promise<ClusterView>;
  /** Calls onChange for every change under the cluster prefix; reconnects by itself, and calls
   * onChange({kind:'initialize'...}) never spuriously. onError reports connection trouble.
   * fromRevision: the first revision to report (say a view's revision + 1, so nothing between
   * reading it and watching is missed); by default, changes after the watch starts. */
  watch(onChange: (change: ClusterChange) => void, onError?: (err: Error) => void, fromRevision?: string): Watch;

  /** Create-if-absent; returns false when another member initialized the cluster first. */
  initialize(systemId: string): Promise<boolean>;
  /** Create-if-absent, attached to the lease. */
  acquireLeader(name: string, lease: LeaseId): Promise<boolean>;
  /** Deletes the leader key only if it still names `name`. */
  releaseLeader(name: string): Promise<boolean>;
  /** True if the leader key names `name` and is attached to `lease` (used to confirm ownership). */
  isLeader(name: string, lease: LeaseId): Promise<boolean>;

  putMember(member: MemberRecord, lease: LeaseId): Promise<void>;
  deleteMember(name: string): Promise<void>;

  /** Writes the whole dynamic config; if expectedModRevision is given, only if unchanged. */
  putConfig(config: DynamicConfig): Promise<void>;
  putSync(sync: SyncState | null): Promise<void>;
  /** Create-if-absent; false when one is already pending. */
  requestSwitchover(req: SwitchoverRequest): Promise<boolean>;
  updateSwitchover(req: SwitchoverRequest): Promise<void>;
  clearSwitchover(): Promise<void>;
  appendHistory(entry: HistoryEntry): Promise<void>;

  /** Attached to the proxy's lease: the key goes when the proxy does. */
  putProxy(record: ProxyRecord, lease: LeaseId): Promise<void>;
  deleteProxy(name: string): Promise<void>;
  /** Live proxies (their leases keep the keys), by name. */
  listProxies(): Promise<ProxyRecord[]>;

  close(): Promise<void>;
}
