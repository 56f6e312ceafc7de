// The proxy's record in etcd (proxies/<name>, on its own lease): lets operators see the proxies,
// and lets a leader handing over wait until every proxy holds new transactions (`holding`).
import type { ClusterStore, LeaseId } from '../dcs/store.js';
import type { ProxyRecord } from '../dcs/types.js';
import type { Logger } from '../util/log.js';

export class ProxyRegistration {
  private lease: LeaseId | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** Writes run one at a time, in order; a failed one is retried by the next renewal. */
  private chain: Promise<void> = Promise.resolve();
  private dirty = true;
  private stopped = false;

  constructor(
    private readonly store: ClusterStore,
    private readonly record: ProxyRecord,
    private readonly ttlSeconds: number,
    private readonly log: Logger,
  ) {}

  /** Registers (or logs why not: a proxy routes without being registered) and keeps the lease alive. */
  start(): Promise<void> {
    this.timer = setInterval(() => void this.renew(), Math.max(500, (this.ttlSeconds * 1000) / 3));
    return this.enqueue(() => this.write());
  }

  /** Records which switchover this proxy holds new transactions for (null: none). */
  setHolding(requestedAt: string | null): Promise<void> {
    if (this.record.holding === requestedAt) return this.chain;
    this.record.holding = requestedAt;
    this.dirty = true;
    return this.enqueue(() => this.write());
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    this.chain = this.chain.then(step).catch((err: Error) => {
      this.dirty = true;
      this.log.warn({ err: err.message, proxy: this.record.name }, 'cannot update the proxy record in etcd; retrying with the next renewal');
    });
    return this.chain;
  }

  private async write(): Promise<void> {
    if (this.stopped) return;
    this.lease ??= await this.store.grantLease(this.ttlSeconds);
    await this.store.putProxy(this.record, this.lease);
    this.dirty = false;
  }

  private renew(): Promise<void> {
    return this.enqueue(async () => {
      if (this.stopped) return;
      if (this.lease && (await this.store.keepAlive(this.lease)).ttl === 0) {
        this.log.warn({ proxy: this.record.name }, 'the proxy lease expired in etcd; registering again');
        this.lease = null;
        this.dirty = true;
      }
      if (this.dirty || !this.lease) await this.write();
    });
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.chain;
    this.stopped = true;
    if (!this.lease) return;
    try {
      await this.store.revokeLease(this.lease); // deletes the record with it
    } catch (err) {
      this.log.warn({ err: (err as Error).message, proxy: this.record.name }, 'could not remove the proxy record; it expires with its lease');
    }
  }
}
