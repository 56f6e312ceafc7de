// The agent: one per PostgreSQL instance. Watches etcd and its postmaster, runs decide() on every
// change (and every loop_wait as a safety net), carries the plan out, publishes its state.
import { loadMemberConfig, type MemberConfig } from '../config/load.js';
import { planMemberReload } from '../config/reload.js';
import type { ClusterStore } from '../dcs/store.js';
import type { ClusterView, DynamicConfig, MemberRecord, MemberState } from '../dcs/types.js';
import { DEFAULT_DYNAMIC_CONFIG } from '../dcs/types.js';
import type { PostgresInstance } from '../postgres/instance.js';
import type { Logger } from '../util/log.js';
import { decide } from './decide.js';
import type { Action } from './actions.js';
import { AbortPlan, execute, type ExecutorContext } from './executor.js';
import type { Observation } from './observation.js';
import { observe } from './observe.js';
import { freshMemory, type AgentMemory } from './state.js';
import { startApi } from './api.js';
import type { HealthSnapshot } from './health.js';
import { apiActions } from './api-actions.js';
import { preflight } from './preflight.js';

export interface MemberReloadResult {
  /** File keys applied now. */
  applied: string[];
  /** File keys that changed but apply when the agent restarts. */
  needRestart: string[];
  /** bootstrap.dcs keys that changed: read only when the cluster was created. */
  bootstrapOnly: string[];
  /** PostgreSQL settings waiting for a restart of PostgreSQL. */
  pendingRestart: string[];
}

const STATE_CHANGING = new Set<Action['type']>([
  'bootstrap', 'clone', 'start_primary', 'start_replica', 'stop', 'acquire_leader', 'release_leader', 'promote', 'demote_for_switchover',
]);

/** Renewals are confirmed this long before the lease could expire on the server. */
const FENCE_MARGIN_MS = 500;

export class Agent {
  readonly mem: AgentMemory = freshMemory();
  private config: DynamicConfig;
  private view: ClusterView | null = null;
  private lastObservation: Observation | null = null;
  private lastSummary = '';
  private running = false;
  private rerun = false;
  private stopped = false;
  private timers: NodeJS.Timeout[] = [];
  private loopTimer: NodeJS.Timeout | null = null;
  private closeWatch: (() => void) | null = null;
  private closeApi: (() => Promise<void>) | null = null;
  private record: MemberRecord | null = null;
  private lastPublished = '';
  private readonly ctx: ExecutorContext;

  constructor(
    readonly cfg: MemberConfig,
    readonly store: ClusterStore,
    readonly pg: PostgresInstance,
    readonly log: Logger,
  ) {
    this.config = { ...DEFAULT_DYNAMIC_CONFIG, ...cfg.initialDynamicConfig };
    this.ctx = {
      cfg,
      store,
      pg,
      mem: this.mem,
      log,
      memberHosts: () => [...new Set([cfg.pg.connect.host, ...(this.view?.members.map((m) => m.host) ?? [])])],
      apiUrlOf: (name) => this.view?.members.find((m) => m.name === name)?.apiUrl ?? null,
      publish: (state) => this.publish(state),
    };
  }

  get apiUrl(): string {
    return `http://${this.cfg.api.connect.host}:${this.cfg.api.connect.port}`;
  }

  /** Refuses to start (throws) when the configuration clashes with what is running; then runs until stop(). */
  async start(): Promise<void> {
    await preflight(this.cfg, this.store, this.pg, this.log, () => this.stopped);
    const cfg = this.cfg;
    const api = await startApi({
      host: this.cfg.api.listen.host,
      port: this.cfg.api.listen.port,
      // Read at each request, so that a reloaded token applies to the next one.
      get token() {
        return cfg.api.token;
      },
      member: this.cfg.name,
      cluster: this.cfg.cluster,
      logger: this.log,
      snapshot: () => this.snapshot(),
      clusterView: () => this.store.read(),
      actions: apiActions(this),
    });
    this.closeApi = api.close;
    await this.renewLease();
    this.pg.onExit((code, signal) => {
      this.log.warn({ code, signal }, 'postmaster exited');
      this.trigger();
    });
    const watch = this.store.watch(
      (change) => {
        // Members publish every loop; reacting to each other's records would make every publish
        // wake every agent, which publishes again. The loop reads them; only their departure is urgent.
        if (change.kind === 'member' && !change.deleted) return;
        this.trigger();
      },
      (err) => this.log.warn({ err: err.message }, 'etcd watch interrupted; reconnecting'),
    );
    this.closeWatch = () => watch.close();
    // Frequent renewals keep the last confirmed one recent: a dead leader's lease then runs out
    // close to ttl after its death, which bounds failover time.
    this.every(() => Math.max(200, Math.floor((this.config.ttl * 1000) / 10)), () => this.renewLease());
    this.every(() => 100, () => this.fenceIfLeaseLost());
    this.log.info({ api: this.apiUrl }, 'agent started');
    this.trigger();
  }

  /** Runs the HA loop as soon as possible; calls during a run coalesce into one more run. */
  trigger(): void {
    if (this.stopped) return;
    if (this.running) {
      this.rerun = true;
      return;
    }
    if (this.loopTimer) clearTimeout(this.loopTimer);
    this.loopTimer = null;
    void this.loop();
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      do {
        this.rerun = false;
        await this.runOnce();
      } while (this.rerun && !this.stopped);
    } finally {
      this.running = false;
      if (!this.stopped) this.loopTimer = setTimeout(() => this.trigger(), this.config.loopWait * 1000);
    }
  }

  private async runOnce(): Promise<void> {
    try {
      const o = await observe(this.cfg, this.store, this.pg, this.mem, this.log);
      this.lastObservation = o;
      if (o.cluster) {
        this.view = o.cluster;
        this.config = o.cluster.config;
      }
      const decision = decide(o);
      if (decision.summary !== this.lastSummary) {
        this.log.info({ decision: decision.summary, actions: decision.actions.map((a) => a.type) }, 'decision');
        this.lastSummary = decision.summary;
      }
      await execute(this.ctx, decision.actions);
      // The observation predates these actions: look again at once, so what is published (and what
      // proxies route on) is the new state rather than the old one for a whole loop_wait.
      if (decision.actions.some((a) => STATE_CHANGING.has(a.type))) this.rerun = true;
    } catch (err) {
      if (err instanceof AbortPlan) this.log.warn({ reason: err.message }, 'plan stopped');
      else this.log.error({ err }, 'HA loop step failed');
    }
    this.mem.lastLoopAt = Date.now();
    await this.publish();
  }

  private async renewLease(): Promise<void> {
    const ttl = this.config.ttl;
    try {
      if (!this.mem.lease) {
        const sentAt = Date.now();
        this.mem.lease = await this.store.grantLease(ttl);
        this.mem.leaseValidUntil = sentAt + ttl * 1000 - FENCE_MARGIN_MS;
        this.log.info({ lease: this.mem.lease, ttl }, 'lease granted');
        this.trigger();
        return;
      }
      const r = await this.store.keepAlive(this.mem.lease);
      if (r.ttl > 0) {
        this.mem.leaseValidUntil = Math.max(this.mem.leaseValidUntil ?? 0, r.sentAt + r.ttl * 1000 - FENCE_MARGIN_MS);
      } else {
        this.log.warn({ lease: this.mem.lease }, 'lease expired on the server');
        this.mem.lease = null;
        this.mem.leaseValidUntil = null;
        this.fenceIfLeaseLost();
        this.trigger();
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot renew the lease');
    }
  }

  /** One writer: a primary whose lease may have expired stops accepting writes at once,
   * without waiting for the HA loop (which may be blocked on an unreachable etcd). */
  private fenceIfLeaseLost(): void {
    const valid = this.mem.leaseValidUntil !== null && Date.now() < this.mem.leaseValidUntil;
    const o = this.lastObservation;
    // The view's leader covers a promotion the last observation has not seen yet.
    const mayWrite = o?.pg.inRecovery === false || this.view?.leader?.name === this.cfg.name;
    const actingPrimary = mayWrite && this.pg.isRunning();
    if (valid || !actingPrimary || this.fencing) return;
    this.fencing = true;
    this.log.error('leader lease not confirmed in time: stopping PostgreSQL (fencing)');
    this.pg
      .stop('immediate')
      .catch((err: unknown) => this.log.error({ err }, 'fencing stop failed'))
      .finally(() => {
        this.fencing = false;
        if (this.lastObservation) this.lastObservation.pg.running = false;
        this.trigger();
      });
  }
  private fencing = false;

  private every(intervalMs: () => number, fn: () => unknown): void {
    const tick = () => {
      if (this.stopped) return;
      Promise.resolve(fn()).finally(() => {
        if (!this.stopped) this.timers.push(setTimeout(tick, intervalMs()));
      });
    };
    this.timers.push(setTimeout(tick, intervalMs()));
  }

  memberState(o: Observation | null, override?: MemberState): MemberState {
    if (override) return override;
    if (this.mem.clone) return 'creating replica';
    if (!o || !o.pg.running) return 'stopped';
    if (!o.pg.accepting) return 'starting';
    if (o.pg.inRecovery === false) return 'running';
    return o.pg.streaming ? 'streaming' : 'recovering';
  }

  async publish(override?: MemberState): Promise<void> {
    const o = this.lastObservation;
    const role = o?.pg.inRecovery === false ? 'primary' : o?.pg.inRecovery === true ? 'replica' : (this.record?.role ?? 'unknown');
    const receivedLsn = o?.pg.receivedLsn ?? null;
    this.record = {
      name: this.cfg.name,
      role,
      state: this.memberState(o, override),
      host: this.cfg.pg.connect.host,
      port: this.cfg.pg.connect.port,
      apiUrl: this.apiUrl,
      timeline: o?.pg.timeline ?? null,
      receivedLsn,
      replayedLsn: o?.pg.replayedLsn ?? null,
      lagBytes: role === 'replica' && this.mem.lastLeaderLsn !== null && receivedLsn !== null
        ? Math.max(0, this.mem.lastLeaderLsn - receivedLsn)
        : role === 'primary' ? 0 : null,
      tags: this.cfg.tags,
      agentPid: process.pid,
      postmasterPid: this.pg.postmasterPid(),
      upstream: o?.pg.upstream ?? null,
      systemId: o?.pg.systemId ?? null,
      updatedAt: new Date().toISOString(),
      problem: this.mem.problem,
      ...(this.mem.clone ? { clone: { ...this.mem.clone } } : {}),
      localSocket: this.pg.localSocket(),
    };
    if (!this.mem.lease) return;
    // Skip a write that would change nothing but the timestamp (the lease shows liveness);
    // a new lease always needs one.
    const fingerprint = JSON.stringify({ ...this.record, updatedAt: null, lease: this.mem.lease });
    if (fingerprint === this.lastPublished) return;
    try {
      await this.store.putMember(this.record, this.mem.lease);
      this.lastPublished = fingerprint;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot publish member state');
    }
  }

  snapshot(): HealthSnapshot {
    const now = Date.now();
    const isLeader =
      this.view?.leader?.name === this.cfg.name && this.mem.leaseValidUntil !== null && now < this.mem.leaseValidUntil;
    return {
      self: this.record,
      isLeader,
      postgresRunning: this.pg.isRunning(),
      leaderLsn: this.mem.lastLeaderLsn,
      syncMembers: this.view?.sync?.members ?? [],
      lastLoopAt: this.mem.lastLoopAt,
      now,
      ttlSeconds: this.config.ttl,
      maximumLagOnFailover: this.config.maximumLagOnFailover,
      cluster: this.cfg.cluster,
      paused: this.config.paused,
    };
  }

  /**
   * SIGHUP or POST /reload: reads the configuration file again and applies what can change while
   * running (tags, postgresql.parameters, restapi.token, postgresql.clone_from); the rest waits for
   * a restart, which the result names. Throws a ConfigError when the file is wrong or PostgreSQL
   * refuses a parameter: then nothing changes. Reloads run one at a time.
   */
  reloadConfig(): Promise<MemberReloadResult> {
    const run = this.reloading.then(() => this.reloadOnce());
    this.reloading = run.catch(() => undefined);
    return run;
  }
  private reloading: Promise<unknown> = Promise.resolve();

  private async reloadOnce(): Promise<MemberReloadResult> {
    const plan = planMemberReload(this.cfg, loadMemberConfig(this.cfg.file));
    const parametersChanged = plan.applied.some((k) => k.startsWith('postgresql.parameters.'));
    const { pendingRestart } = parametersChanged
      ? await this.pg.setParameters(plan.next.pg.parameters)
      : { pendingRestart: [] as string[] };
    // The same object the executor, observe() and the API read: they see the new values from now on.
    this.cfg.tags = plan.next.tags;
    this.cfg.pg.parameters = plan.next.pg.parameters;
    this.cfg.pg.cloneFrom = plan.next.pg.cloneFrom;
    this.cfg.api.token = plan.next.api.token;
    const result: MemberReloadResult = {
      applied: plan.applied,
      needRestart: plan.needRestart,
      bootstrapOnly: plan.bootstrapOnly,
      pendingRestart,
    };
    this.log.info(result, plan.applied.length > 0 ? 'configuration reloaded' : 'configuration reloaded: nothing to apply');
    if (plan.needRestart.length > 0) this.log.warn({ settings: plan.needRestart }, 'these settings changed in the file but apply only when the agent restarts');
    if (plan.bootstrapOnly.length > 0) this.log.warn({ settings: plan.bootstrapOnly }, 'bootstrap.dcs is read only when the cluster is created; these changes have no effect');
    if (pendingRestart.length > 0) this.log.warn({ settings: pendingRestart }, 'PostgreSQL takes these settings only at a restart (baton node restart, or POST /restart)');
    // Publish the new tags now rather than at the next loop.
    this.trigger();
    return result;
  }

  /** Graceful stop: a leader hands its key over at once rather than letting the lease run out. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    if (this.loopTimer) clearTimeout(this.loopTimer);
    this.closeWatch?.();
    while (this.running) await new Promise((r) => setTimeout(r, 20));
    this.log.info('agent stopping: stopping PostgreSQL');
    try {
      await this.pg.stop('fast');
    } catch (err) {
      this.log.error({ err }, 'stopping PostgreSQL failed');
    }
    try {
      if (this.view?.leader?.name === this.cfg.name) await this.store.releaseLeader(this.cfg.name);
      if (this.mem.lease) await this.store.revokeLease(this.mem.lease);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not clean up keys in etcd; they expire with the lease');
    }
    await this.closeApi?.();
    await this.pg.close();
    await this.store.close();
  }
}
