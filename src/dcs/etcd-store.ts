// ClusterStore on etcd v3. Values are JSON, except the leader key, which holds the member name
// as plain text so it can be compared in a transaction.
import { silentLogger, type Logger } from '../util/log.js';
import { EtcdClient, type KeyValue } from './etcd-client.js';
import { ClusterKeys } from './keys.js';
import type { ClusterChange, ClusterStore, KeepAliveResult, LeaseId, Watch } from './store.js';
import {
  DEFAULT_DYNAMIC_CONFIG,
  type ClusterView,
  type DynamicConfig,
  type HistoryEntry,
  type MemberRecord,
  type ProxyRecord,
  type SwitchoverRequest,
  type SyncState,
} from './types.js';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export class EtcdStore implements ClusterStore {
  readonly cluster: string;
  readonly keys: ClusterKeys;
  private readonly client: EtcdClient;
  private readonly log: Logger;
  private readonly watches = new Set<Watch>();

  constructor(opts: { endpoints: string[]; cluster: string; requestTimeoutMs?: number; logger?: Logger }) {
    this.cluster = opts.cluster;
    this.keys = new ClusterKeys(opts.cluster);
    this.log = opts.logger ?? silentLogger();
    this.client = new EtcdClient({ endpoints: opts.endpoints, requestTimeoutMs: opts.requestTimeoutMs, logger: this.log });
  }

  grantLease(ttlSeconds: number): Promise<LeaseId> {
    return this.client.grantLease(ttlSeconds);
  }

  async keepAlive(lease: LeaseId): Promise<KeepAliveResult> {
    const sentAt = Date.now();
    const ttl = await this.client.keepAlive(lease);
    return { ttl, sentAt };
  }

  revokeLease(lease: LeaseId): Promise<void> {
    return this.client.revokeLease(lease);
  }

  async read(): Promise<ClusterView> {
    const { kvs, revision } = await this.client.range(this.keys.prefix, { prefix: true });
    const view: ClusterView = {
      initialize: null,
      config: { ...DEFAULT_DYNAMIC_CONFIG },
      leader: null,
      members: [],
      sync: null,
      switchover: null,
      history: [],
      revision,
    };
    for (const kv of kvs) {
      const parsed = this.keys.parse(kv.key);
      if (!parsed) continue;
      if (parsed.kind === 'leader') {
        if (kv.value) view.leader = { name: kv.value, modRevision: kv.modRevision };
        continue;
      }
      const value = this.parseJson(kv);
      if (value === undefined) continue;
      switch (parsed.kind) {
        case 'initialize':
          if (typeof value === 'string') view.initialize = value;
          else this.warnShape(kv, 'a string');
          break;
        case 'config':
          if (isObject(value)) view.config = { ...DEFAULT_DYNAMIC_CONFIG, ...(value as Partial<DynamicConfig>) };
          else this.warnShape(kv, 'an object');
          break;
        case 'member': {
          const m = this.memberRecord(kv, value, parsed.name!);
          if (m) view.members.push(m);
          break;
        }
        case 'sync':
          if (isObject(value)) view.sync = value as unknown as SyncState;
          else this.warnShape(kv, 'an object');
          break;
        case 'switchover':
          if (isObject(value)) view.switchover = value as unknown as SwitchoverRequest;
          else this.warnShape(kv, 'an object');
          break;
        case 'history':
          if (isObject(value) && typeof value.timeline === 'number') view.history.push(value as unknown as HistoryEntry);
          else this.warnShape(kv, 'an object with a numeric timeline');
          break;
      }
    }
    view.members.sort((a, b) => a.name.localeCompare(b.name));
    view.history.sort((a, b) => a.timeline - b.timeline);
    return view;
  }

  watch(onChange: (change: ClusterChange) => void, onError?: (err: Error) => void, fromRevision?: string): Watch {
    const handle = this.client.watchPrefix(
      this.keys.prefix,
      fromRevision ?? null,
      (events) => {
        for (const e of events) {
          const parsed = this.keys.parse(e.kv.key);
          if (!parsed) continue;
          const deleted = e.type === 'delete';
          if (parsed.kind === 'member') {
            const value = deleted ? undefined : this.parseJson(e.kv);
            const record = value === undefined ? null : this.memberRecord(e.kv, value, parsed.name!);
            onChange({ kind: 'member', name: parsed.name!, deleted, record, revision: e.kv.modRevision });
          } else onChange({ kind: parsed.kind, deleted });
        }
      },
      (err) => {
        this.log.debug({ err: err.message }, 'watch error');
        onError?.(err);
      },
    );
    const watch: Watch = {
      close: () => {
        handle.close();
        this.watches.delete(watch);
      },
    };
    this.watches.add(watch);
    return watch;
  }

  initialize(systemId: string): Promise<boolean> {
    return this.createIfAbsent(this.keys.initialize, JSON.stringify(systemId));
  }

  acquireLeader(name: string, lease: LeaseId): Promise<boolean> {
    return this.createIfAbsent(this.keys.leader, name, lease);
  }

  async releaseLeader(name: string): Promise<boolean> {
    const key = this.keys.leader;
    const r = await this.client.txn([{ key, target: 'value', value: name }], [{ delete: { key } }]);
    return r.succeeded;
  }

  async isLeader(name: string, lease: LeaseId): Promise<boolean> {
    const { kvs } = await this.client.range(this.keys.leader);
    const kv = kvs[0];
    return kv !== undefined && kv.value === name && kv.lease === lease;
  }

  async putMember(member: MemberRecord, lease: LeaseId): Promise<void> {
    await this.client.put(this.keys.member(member.name), JSON.stringify(member), { lease });
  }

  async deleteMember(name: string): Promise<void> {
    await this.client.deleteRange(this.keys.member(name));
  }

  async putConfig(config: DynamicConfig): Promise<void> {
    await this.client.put(this.keys.config, JSON.stringify(config));
  }

  async putSync(sync: SyncState | null): Promise<void> {
    if (sync === null) await this.client.deleteRange(this.keys.sync);
    else await this.client.put(this.keys.sync, JSON.stringify(sync));
  }

  requestSwitchover(req: SwitchoverRequest): Promise<boolean> {
    return this.createIfAbsent(this.keys.switchover, JSON.stringify(req));
  }

  async updateSwitchover(req: SwitchoverRequest): Promise<void> {
    await this.client.put(this.keys.switchover, JSON.stringify(req));
  }

  async clearSwitchover(): Promise<void> {
    await this.client.deleteRange(this.keys.switchover);
  }

  async appendHistory(entry: HistoryEntry): Promise<void> {
    await this.client.put(this.keys.history(entry.timeline), JSON.stringify(entry));
  }

  async putProxy(record: ProxyRecord, lease: LeaseId): Promise<void> {
    await this.client.put(this.keys.proxy(record.name), JSON.stringify(record), { lease });
  }

  async deleteProxy(name: string): Promise<void> {
    await this.client.deleteRange(this.keys.proxy(name));
  }

  async listProxies(): Promise<ProxyRecord[]> {
    const { kvs } = await this.client.range(this.keys.proxiesPrefix, { prefix: true });
    const out: ProxyRecord[] = [];
    for (const kv of kvs) {
      const value = this.parseJson(kv);
      if (value === undefined) continue;
      if (isObject(value) && typeof value.name === 'string') out.push(value as unknown as ProxyRecord);
      else this.warnShape(kv, 'an object with a name');
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  async close(): Promise<void> {
    for (const w of [...this.watches]) w.close();
    this.client.close();
  }

  private async createIfAbsent(key: string, value: string, lease?: LeaseId): Promise<boolean> {
    const r = await this.client.txn(
      [{ key, target: 'create', revision: 0 }],
      [{ put: { key, value, ...(lease ? { lease } : {}) } }],
    );
    return r.succeeded;
  }

  /** A member's record from its key's value; the key is authoritative for the name. */
  private memberRecord(kv: KeyValue, value: unknown, name: string): MemberRecord | null {
    if (isObject(value)) return { ...(value as unknown as MemberRecord), name };
    this.warnShape(kv, 'an object');
    return null;
  }

  /** The parsed value, or undefined (with a warning) when the key holds something that is not JSON. */
  private parseJson(kv: KeyValue): unknown {
    try {
      return JSON.parse(kv.value) as unknown;
    } catch (err) {
      this.log.warn({ key: kv.key, err: (err as Error).message }, `skipping ${kv.key}: value is not valid JSON`);
      return undefined;
    }
  }

  private warnShape(kv: KeyValue, expected: string): void {
    this.log.warn({ key: kv.key }, `skipping ${kv.key}: value is not ${expected}`);
  }
}
