// `baton proxy`: listeners for read-write and read-only sessions, routing from etcd watch events,
// new sessions held (bounded) while a switchover or failover is under way, and during a switchover
// the next transaction of every movable read-write session; routed cancels; its record in etcd.
import net from 'node:net';
import os from 'node:os';
import fs from 'node:fs';
import tls from 'node:tls';
import crypto from 'node:crypto';
import type { ClusterChange, ClusterStore, Watch } from '../dcs/store.js';
import { sameClusterState, withMemberChange } from '../dcs/member-change.js';
import type { ClusterView, MemberRecord } from '../dcs/types.js';
import { BatonError, ConfigError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { loadProxyConfig, type ProxyConfig } from './config.js';
import { configRows, planReload, type ReloadPlan } from './config-reload.js';
import { publishedPosition, readCandidates, readSessionMove, readTarget, replayLag, writeTarget, type Target } from './router.js';
import { RouteRefused, Session, type ListenerKind, type SessionHooks } from './session.js';
import { startAdminConsole, type AdminBackend, type PoolNodeRow } from './admin.js';
import { loadNativeRelay, type NativeRelay, type RelayMode } from './native-relay.js';
import { ProxyRegistration } from './registration.js';
import { serverAddress } from './server-address.js';

/** The watch can die without a word (a half-open connection): when it has been quiet this long, or the
 * last read failed, the proxy reads the whole view again. */
const SAFETY_POLL_MS = 1000;

/** The TLS context for a proxy's certificate, and a digest of the files it came from (a reload
 * compares it, so new files at the same paths count as a change); null without one. Throws if the
 * files cannot be read or do not make a certificate and its key. */
function secureContext(t: ProxyConfig['tls']): { context: tls.SecureContext; digest: string } | null {
  if (!t) return null;
  try {
    const cert = fs.readFileSync(t.cert);
    const key = fs.readFileSync(t.key);
    return { context: tls.createSecureContext({ cert, key }), digest: crypto.createHash('sha256').update(cert).update(key).digest('hex') };
  } catch (err) {
    throw new ConfigError(`tls: cannot use ${t.cert} and ${t.key}: ${(err as Error).message}`, 'check the certificate and key files and their permissions');
  }
}

/** The native relay when the config allows it and it is built; `native` without it is an error. */
function chooseRelay(mode: RelayMode, threads: number, log: Logger): NativeRelay | null {
  if (mode === 'js') return null;
  const { relay, error } = loadNativeRelay();
  if (!relay && mode === 'native') throw new ConfigError(`relay: native is set but ${error}`, 'run make build (it needs g++, make and python3), or set relay: auto');
  if (!relay) {
    log.warn({ reason: error }, 'relaying in TypeScript (slower): the native relay is not built');
    return null;
  }
  log.info({ threads: relay.threads(threads) }, 'native relay');
  return relay;
}

export class BatonProxy {
  view: ClusterView | null = null;
  readonly sessions = new Set<Session>();
  private readonly byKey = new Map<string, Session>();
  private readonly selectCount = new Map<string, number>();
  private paused = false;
  private changeWaiters: (() => void)[] = [];
  private servers: net.Server[] = [];
  private closeAdmin: (() => Promise<void>) | null = null;
  private watch: Watch | null = null;
  private poll: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  private refreshAgain = false;
  /** When the watch last delivered a change, and whether the last read of the view failed. */
  private lastWatchChangeAt = 0;
  private lastReadFailed = false;
  /** requestedAt of the switchover whose new transactions are held, or null. */
  private holdingFor: string | null = null;
  private registration: ProxyRegistration | null = null;
  private readonly hooks: SessionHooks;
  ports = { readWrite: 0, readOnly: 0, admin: 0 };

  /** The settings in force: those of the file it started with, and the live ones of its last reload. */
  cfg: ProxyConfig;
  /** Of the certificate and key files in use, to see a rotated certificate at the same paths. */
  private tlsDigest: string | null;

  constructor(
    cfg: ProxyConfig,
    private readonly store: ClusterStore,
    private readonly log: Logger,
    /** Where cfg came from, read again by reloadConfig(); undefined: nothing to reload. */
    private readonly configFile?: string,
  ) {
    this.cfg = cfg;
    const certificate = secureContext(cfg.tls);
    this.tlsDigest = certificate?.digest ?? null;
    this.hooks = {
      route: (kind, maxWaitMs) => this.route(kind, maxWaitMs),
      publishedPosition: (member) => publishedPosition(this.view, member),
      register: (s) => this.register(s),
      unregister: (s) => this.unregister(s),
      cancel: (pid, secret) => this.cancel(pid, secret),
      credentials: (user) => this.cfg.authUsers[user] ?? null,
      addressOf: (m) => serverAddress(m, this.cfg.useLocalSocket),
      holdingTransactions: () => this.holdingFor !== null,
      pauseTimeoutMs: cfg.pauseTimeoutMs,
      tls: certificate?.context ?? null,
      maxMessageLength: cfg.maxMessageLength,
      connectTimeoutMs: cfg.connectTimeoutMs,
      startupTimeoutMs: cfg.startupTimeoutMs,
      nativeRelay: chooseRelay(cfg.relay, cfg.relayThreads, log),
      log,
    };
  }

  async start(): Promise<void> {
    await this.refresh();
    this.openWatch();
    this.poll = setInterval(() => this.safetyPoll(), SAFETY_POLL_MS);
    this.ports.readWrite = await this.listen('rw', this.cfg.readWrite.host, this.cfg.readWrite.port);
    this.ports.readOnly = await this.listen('ro', this.cfg.readOnly.host, this.cfg.readOnly.port);
    const cfgNow = (): ProxyConfig => this.cfg;
    const hooks = this.hooks;
    const admin = await startAdminConsole({
      host: this.cfg.admin.host,
      port: this.cfg.admin.port,
      // Read at each login, so that a reload's new password and certificate apply to the next one.
      get password() {
        return cfgNow().adminPassword;
      },
      get tls() {
        return hooks.tls;
      },
      backend: this.adminBackend(),
      logger: this.log,
      cluster: this.cfg.cluster,
    });
    this.ports.admin = admin.port;
    this.closeAdmin = admin.close;
    this.registration = new ProxyRegistration(
      this.store,
      {
        name: this.cfg.name ?? `${os.hostname()}-${this.ports.readWrite}`,
        readWrite: `${this.cfg.readWrite.host}:${this.ports.readWrite}`,
        readOnly: `${this.cfg.readOnly.host}:${this.ports.readOnly}`,
        admin: `${this.cfg.admin.host}:${this.ports.admin}`,
        startedAt: new Date().toISOString(),
        holding: this.holdingFor,
      },
      this.view?.config.ttl ?? 3,
      this.log,
    );
    await this.registration.start();
    this.log.info({ ports: this.ports }, 'proxy listening');
  }

  private listen(kind: ListenerKind, host: string, port: number): Promise<number> {
    const server = net.createServer((socket) => {
      const s = new Session(socket, kind, this.hooks);
      this.sessions.add(s);
      s.start();
    });
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      const refused = (err: NodeJS.ErrnoException): void =>
        reject(
          err.code === 'EADDRINUSE'
            ? new BatonError(`proxy ${kind === 'rw' ? 'read-write' : 'read-only'} port ${host}:${port} is already in use`, 'change listen in the proxy config')
            : err,
        );
      server.once('error', refused);
      server.listen(port, host, () => {
        // From now on an error is an accept that failed (out of memory, say): logged, and the listener goes on.
        server.off('error', refused);
        server.on('error', (err) => this.log.error({ err: err.message, listener: kind }, 'proxy listener error'));
        const a = server.address();
        resolve(typeof a === 'object' && a ? a.port : port);
      });
    });
  }

  /** Members publish their positions every loop while the leader takes writes: those changes are
   * applied from the watch event itself. Anything else (leader, switchover, sync, config) reads the
   * whole view again. A member change that arrives while a read is under way reads again after it:
   * patching the older view would drop what that read was sent for. */
  private onChange(change: ClusterChange): void {
    this.lastWatchChangeAt = Date.now();
    if (change.kind !== 'member' || !this.view || this.refreshing) {
      void this.refresh();
      return;
    }
    // The leader key is not a member record: no session has to leave its member, but a session
    // waiting for a route may find one now (a leader now running, a replica back within the lag).
    this.view = withMemberChange(this.view, change);
    this.wake();
    this.moveReadSessions();
  }

  /** From the revision after the current view, so no change between reading it and watching is lost. */
  private openWatch(): void {
    this.watch?.close();
    const from = this.view ? (BigInt(this.view.revision) + 1n).toString() : undefined;
    this.watch = this.store.watch(
      (change) => this.onChange(change),
      (err) => {
        this.lastReadFailed = true;
        this.log.warn({ err: err.message }, 'etcd watch interrupted; reconnecting');
      },
      from,
    );
  }

  /** etcd sends a live watch's events in order and without gaps, so while the watch delivers (the
   * agents publish positions every second under writes) reading the view again adds nothing: under
   * load this skips a read a second, CPU that the relay threads wait for. */
  private safetyPoll(): void {
    this.moveReadSessions(); // also the sessions that were busy when the view last changed
    if (!this.lastReadFailed && Date.now() - this.lastWatchChangeAt < SAFETY_POLL_MS) return;
    const before = this.view;
    const readAt = Date.now();
    void this.refresh().then(() => {
      // The read found a change, and the watch delivered nothing since: its stream is dead without
      // having said so (a half-open connection). A new one starts after this view.
      if (!before || !this.view || this.lastReadFailed || this.lastWatchChangeAt >= readAt || sameClusterState(before, this.view)) return;
      this.log.warn({ revision: this.view.revision }, 'the etcd watch missed a change; opening it again');
      this.openWatch();
    });
  }

  /** Re-reads the view (coalescing bursts of watch events) and closes sessions on a demoted leader. */
  refresh(): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false;
        try {
          this.apply(await this.store.read());
          this.lastReadFailed = false;
        } catch (err) {
          this.lastReadFailed = true;
          this.log.warn({ err: (err as Error).message }, 'cannot read the cluster state from etcd; routing on the last view');
        }
      } while (this.refreshAgain);
    })().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private apply(view: ClusterView): void {
    const before = this.view?.leader?.name ?? null;
    this.view = view;
    const leader = view.leader?.name ?? null;
    if (before !== leader) {
      this.log.info({ from: before, to: leader }, 'leader changed');
    }
    for (const s of this.sessions) {
      // Sessions still starting route again by themselves if their member turns them away.
      if (s.kind !== 'rw' || !s.member || s.state !== 'active' || s.isMoving) continue;
      // Invariant 4: read-write sessions stay only on the member holding the leader key.
      if (leader !== null && s.member.name !== leader) {
        if (s.canMove()) void s.move(`${leader} is the leader now`);
        else s.fail('57P01', `baton proxy: ${s.member.name} is no longer the leader (now ${leader}); reconnect to continue${s.pinned ? ` (the session could not move: ${s.pinned})` : ''}`);
      }
    }
    this.holdFor(view.switchover?.requestedAt ?? null);
    this.wake();
    this.moveReadSessions();
  }

  /** Read-only sessions leave a member that no longer takes new ones (router.ts): at once when idle,
   * else at the end of what they are running (Session.leaveWhenIdle). Every scan decides anew, so a
   * member that qualifies again keeps its sessions; PAUSE holds moves too, as it holds new sessions. */
  private moveReadSessions(): void {
    const now = Date.now();
    const verdicts = new Map<string, string | null>(); // per member: the same for all its sessions
    for (const s of this.sessions) {
      if (s.kind !== 'ro' || !s.member || s.state !== 'active' || s.isMoving) continue;
      if (this.paused || now < s.moveRetryAt) {
        s.leaveWhenIdle(null);
        continue;
      }
      const name = s.member.name;
      if (!verdicts.has(name)) verdicts.set(name, readSessionMove(this.view, this.cfg, name));
      s.leaveWhenIdle(verdicts.get(name) ?? null);
    }
  }

  /** While a switchover runs, the next transaction of every movable read-write session waits for the
   * new leader; the proxy's record says so once every session is out of the native relay, and the
   * old leader waits for that before it shuts down (src/agent/drain.ts). */
  private holdFor(requestedAt: string | null): void {
    if (requestedAt === this.holdingFor) return;
    this.holdingFor = requestedAt;
    if (requestedAt) {
      for (const s of this.sessions) if (s.kind === 'rw') s.holdForSwitchover();
      this.log.info({ switchover: requestedAt }, 'holding new transactions for the switchover');
    } else {
      for (const s of this.sessions) s.releaseHeld();
      this.log.info('switchover over: held transactions released');
    }
    void this.registration?.setHolding(requestedAt);
  }

  /** Lets sessions waiting for a route look again. */
  private wake(): void {
    const waiters = this.changeWaiters;
    this.changeWaiters = [];
    for (const w of waiters) w();
  }

  private waitForChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.changeWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  private target(kind: ListenerKind): Target {
    if (this.paused) return { wait: 'the proxy is paused (RESUME on the admin console)' };
    if (kind === 'rw') return writeTarget(this.view);
    return readTarget(this.view, this.cfg, (n) => this.selectCount.get(n) ?? 0);
  }

  async route(kind: ListenerKind, maxWaitMs = this.cfg.pauseTimeoutMs): Promise<MemberRecord> {
    const deadline = Date.now() + maxWaitMs;
    for (;;) {
      const t = this.target(kind);
      if ('member' in t) {
        if (kind === 'ro') this.selectCount.set(t.member.name, (this.selectCount.get(t.member.name) ?? 0) + 1);
        return t.member;
      }
      if ('refuse' in t) throw new RouteRefused(t.refuse);
      const left = deadline - Date.now();
      if (left <= 0) throw new RouteRefused(maxWaitMs === this.cfg.pauseTimeoutMs ? `${t.wait}; gave up after ${this.cfg.pauseTimeoutMs / 1000} s (pause_timeout)` : t.wait);
      await this.waitForChange(Math.min(left, 250));
    }
  }

  private register(s: Session): { pid: number; secret: number } {
    for (;;) {
      const key = { pid: crypto.randomInt(1, 2 ** 31 - 1), secret: crypto.randomInt(-(2 ** 31), 2 ** 31 - 1) };
      const k = `${key.pid}:${key.secret}`;
      if (!this.byKey.has(k)) {
        this.byKey.set(k, s);
        return key;
      }
    }
  }

  private unregister(s: Session): void {
    this.sessions.delete(s);
    if (s.proxyKey) this.byKey.delete(`${s.proxyKey.pid}:${s.proxyKey.secret}`);
  }

  private async cancel(pid: number, secret: number): Promise<void> {
    const s = this.byKey.get(`${pid}:${secret}`);
    if (!s) {
      this.log.info({ pid }, 'cancel request with an unknown key ignored');
      return;
    }
    await s.cancelOnServer();
  }

  adminBackend(): AdminBackend {
    return {
      poolNodes: () => this.poolNodes(),
      clients: () =>
        [...this.sessions].map((s) => ({
          id: s.id,
          listener: s.kind === 'rw' ? 'read-write' : 'read-only',
          client: s.clientAddress,
          user: s.user,
          database: s.database,
          member: s.member?.name ?? null,
          state: s.phase,
          tx_status: s.txStatus,
          queries: s.queries,
          moves: s.moves,
          pinned: s.pinned,
          carried_state: s.carriedState,
          relay: s.native ? 'native' : 'typescript',
          handbacks: s.handbacks,
          held_bytes: s.heldBytes,
          connected_at: new Date(s.startedAt).toISOString(),
        })),
      servers: () =>
        [...this.sessions]
          .filter((s) => s.member)
          .map((s) => ({
            session: s.id,
            member: s.member!.name,
            address: s.serverAddress,
            state: s.phase,
            tx_status: s.txStatus,
            bytes_to_server: s.bytesToServer,
            bytes_to_client: s.bytesToClient,
          })),
      stats: () => this.stats(),
      relay: () => this.relayRows(),
      routing: () => this.routingRows(),
      pause: () => {
        this.paused = true;
        this.moveReadSessions();
        this.log.warn('paused by the admin console: new sessions wait');
      },
      resume: () => {
        this.paused = false;
        this.wake();
        this.moveReadSessions();
        this.log.warn('resumed by the admin console');
      },
      reload: () => this.reloadConfig(),
      config: () => configRows(this.cfg),
    };
  }

  private poolNodes(): PoolNodeRow[] {
    const v = this.view;
    if (!v) return [];
    const members = [...v.members].sort((a, b) => (a.name < b.name ? -1 : 1));
    const eligible = new Set(readCandidates(v, this.cfg).map((m) => m.name));
    const totalWeight = members.filter((m) => !m.tags.noloadbalance).reduce((n, m) => n + m.tags.weight, 0) || 1;
    const next = readTarget(v, this.cfg, (n) => this.selectCount.get(n) ?? 0);
    return members.map((m, i) => ({
      node_id: i,
      hostname: m.host,
      port: m.port,
      status: m.state === 'running' || m.state === 'streaming' ? 'up' : 'down',
      lb_weight: m.tags.noloadbalance ? 0 : m.tags.weight / totalWeight,
      role: m.name === v.leader?.name ? 'primary' : 'standby',
      select_cnt: this.selectCount.get(m.name) ?? 0,
      load_balance_node: 'member' in next && next.member.name === m.name && (eligible.has(m.name) || m.name === v.leader?.name),
      replication_delay: m.name === v.leader?.name ? 0 : (replayLag(v, m) ?? 0),
    }));
  }

  private stats(): Record<string, string | number | null>[] {
    const rows = new Map<string, { sessions: number; active: number; canMove: number; cannotMove: number; queries: number; in: number; out: number }>();
    for (const s of this.sessions) {
      const name = s.member?.name ?? '(routing)';
      const r = rows.get(name) ?? { sessions: 0, active: 0, canMove: 0, cannotMove: 0, queries: 0, in: 0, out: 0 };
      r.sessions++;
      if (s.busy) r.active++;
      if (s.movable) r.canMove++;
      else r.cannotMove++;
      r.queries += s.queries;
      r.in += s.bytesToServer;
      r.out += s.bytesToClient;
      rows.set(name, r);
    }
    return [...rows].map(([member, r]) => ({
      member,
      sessions: r.sessions,
      active: r.active,
      can_move: r.canMove,
      cannot_move: r.cannotMove,
      queries: r.queries,
      bytes_to_server: r.in,
      bytes_to_client: r.out,
      select_cnt: this.selectCount.get(member) ?? 0,
    }));
  }

  /** Per listener, where a new session would go now (target() has no side effects, route() counts). */
  private routingRows(): Record<string, string | null>[] {
    return (['rw', 'ro'] as const).map((kind) => {
      const t = this.target(kind);
      return {
        listener: kind === 'rw' ? 'read-write' : 'read-only',
        member: 'member' in t ? t.member.name : null,
        waits_for: 'wait' in t ? t.wait : null,
        refused: 'refuse' in t ? t.refuse : null,
      };
    });
  }

  /** Native relay threads (sessions they carry, load), then the sessions relayed in TypeScript. */
  private relayRows(): Record<string, string | number | null>[] {
    const native = this.hooks.nativeRelay;
    const rows: Record<string, string | number | null>[] = (native?.threadLoads() ?? []).map((t, i) => ({
      thread: String(i),
      kind: 'native',
      sessions: t.sessions,
      load_pct: (t.load / 10).toFixed(1),
      io: t.io ?? null,
    }));
    const inTypeScript = [...this.sessions].filter((s) => !s.native).length;
    rows.push({ thread: 'main', kind: 'typescript', sessions: inTypeScript, load_pct: null, io: null });
    return rows;
  }

  /** Reads the configuration file again and applies what can change while running (SIGHUP, RELOAD);
   * the rest waits for a restart. A file that does not parse, or a certificate that cannot be read,
   * changes nothing and throws the reason. */
  reloadConfig(): ReloadPlan {
    if (!this.configFile) throw new BatonError('this proxy was started without a configuration file: nothing to reload', 'restart it to change its settings');
    const plan = planReload(this.cfg, loadProxyConfig(this.configFile));
    // Read again even when the paths are the same: a rotated certificate is new files in place.
    const certificate = secureContext(plan.next.tls);
    if ((certificate?.digest ?? null) !== this.tlsDigest && !plan.applied.includes('tls')) plan.applied.push('tls');
    this.tlsDigest = certificate?.digest ?? null;
    this.cfg = plan.next;
    Object.assign(this.hooks, {
      pauseTimeoutMs: plan.next.pauseTimeoutMs,
      connectTimeoutMs: plan.next.connectTimeoutMs,
      startupTimeoutMs: plan.next.startupTimeoutMs,
      maxMessageLength: plan.next.maxMessageLength,
      tls: certificate?.context ?? null,
    });
    this.log.info({ applied: plan.applied, needRestart: plan.needRestart, file: this.configFile }, 'configuration reloaded');
    if (plan.needRestart.length) this.log.warn({ needRestart: plan.needRestart }, 'these settings changed in the file but apply only after a restart');
    // A new lag limit or fallback may send waiting sessions somewhere, and read-only ones elsewhere.
    this.wake();
    this.moveReadSessions();
    return plan;
  }

  async stop(): Promise<void> {
    if (this.poll) clearInterval(this.poll);
    this.poll = null;
    this.watch?.close();
    await this.registration?.stop();
    for (const s of [...this.sessions]) s.fail('57P01', 'baton proxy is shutting down');
    await Promise.all(this.servers.map((srv) => new Promise((r) => srv.close(() => r(undefined)))));
    await this.closeAdmin?.();
    await this.store.close();
  }
}
