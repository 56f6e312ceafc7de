// One client connection relayed to one server connection. The startup phase is parsed message by
// message (to answer SSL/GSSENC requests, route cancels, and swap the server's BackendKeyData for
// one the proxy issues); after the first ReadyForQuery bytes are forwarded as they come, with a
// scanner that only tracks message boundaries and the transaction status.
// An idle session whose state the proxy can rebuild can be moved to another server: the proxy logs
// in there on the client's behalf, prepares its statements and makes its settings again
// (session-replay.ts), and the client never notices (see move()). Read-write sessions follow the
// leader; read-only ones leave a member that no longer takes them (router.ts readSessionMove).
// Once active, a plain-TCP session is handed to the native relay when it is built (native/relay):
// the bytes then flow without entering JavaScript until the relay hands the session back (handOff,
// onHandback, takeBack); counters and transaction status live in a Float64Array both sides share.
import net from 'node:net';
import tls from 'node:tls';
import type { MemberRecord } from '../dcs/types.js';
import type { Logger } from '../util/log.js';
import { parseBackendKeyData, StartupReader, type StartupPacket } from './protocol.js';
import { encodeBackendKeyData, encodeCancel, encodeErrorResponse, encodeParameterStatus } from './protocol-encode.js';
import { resumeNodeReading, socketFd, STATE, stopNodeReading, type Handover, type NativeRelay, type RelayHandle } from './native-relay.js';
import { FrameError, FrameScanner } from './scanner.js';
import { countAnswered, countSent } from './in-flight.js';
import { ReplayFailed } from './server-replay.js';
import { serverPosition } from './read-position.js';
import type { ReportedParameters } from './server-replies.js';
import { openMoveTarget, type MoveTarget } from './session-move.js';
import { formatLsn } from '../util/lsn.js';
import { SessionReplayLog } from './session-replay.js';
import { connectServer } from './server-connect.js';
import { describeAddress, type ServerAddress } from './server-address.js';
import { UnsolicitedSorter } from './unsolicited.js';

export type ListenerKind = 'rw' | 'ro';

export class RouteRefused extends Error {
  constructor(
    message: string,
    readonly code = '57P03', // cannot_connect_now
  ) {
    super(message);
  }
}

export interface SessionHooks {
  /** Picks the member for a new session; may wait (switchover, no leader) up to the pause timeout, or `maxWaitMs`. */
  route(kind: ListenerKind, maxWaitMs?: number): Promise<MemberRecord>;
  /** The WAL position a member last published (replayed, or written by the leader), or null. */
  publishedPosition(member: string): number | null;
  register(s: Session): { pid: number; secret: number };
  unregister(s: Session): void;
  cancel(pid: number, secret: number): Promise<void>;
  /** Where to reach a member's server: its Unix socket when it is on this host, else host:port. */
  addressOf(m: MemberRecord): ServerAddress;
  /** The password the proxy may use to log in as `user` when moving a session; null: cannot move. */
  credentials(user: string): string | null;
  /** A switchover runs: a movable session's next transaction waits for the new leader (see holdForSwitchover). */
  holdingTransactions(): boolean;
  /** How long a session may wait for a leader (new sessions and moving ones). */
  pauseTimeoutMs: number;
  tls: tls.SecureContext | null;
  maxMessageLength: number;
  connectTimeoutMs: number;
  /** How long a client has, from connecting, to send its startup message. */
  startupTimeoutMs: number;
  /** The native relay, or null to relay in TypeScript. */
  nativeRelay: NativeRelay | null;
  log: Logger;
}

let nextId = 1;
/** Bytes held back from the server (a login, a move, a switchover) kept in memory before the client is paused. */
const HELD_LIMIT = 1 << 20;
/** After a read-only session moved or could not move, how long before it is tried again (unless its
 * server goes away): members that settle after a switchover do not bounce a session between them. */
const READ_MOVE_RETRY_MS = 10_000;

export class Session {
  readonly id = nextId++;
  readonly startedAt = Date.now();
  member: MemberRecord | null = null;
  /** The server connection's address (SHOW SERVERS): a Unix socket path or host:port. */
  serverAddress = '';
  user = '';
  database = '';
  state: 'startup' | 'active' | 'closed' = 'startup';
  moves = 0;
  /** Times the native relay gave the session to TypeScript (a message it does not decide alone). */
  handbacks = 0;
  /** A read-only session is not moved again before this time (READ_MOVE_RETRY_MS). */
  moveRetryAt = 0;
  /** Why this session cannot be moved to another server, once it did something that ties it to one. */
  pinned: string | null = null;
  /** What a move runs again on the new server (sessions that are not pinned). */
  readonly replayLog = new SessionReplayLog();
  /** Counters and status, shared with the native relay while it has the session. */
  private readonly shared = new Float64Array(new ArrayBuffer(STATE.length * 8)); // off the V8 heap: the native relay keeps a pointer to it
  private relay: RelayHandle | null = null;
  private handOffQueued = false;
  /** The native relay saw the end of a socket: the session stays in TypeScript until it closes. */
  private ending = false;
  private clientScan: FrameScanner | null = null;
  proxyKey: { pid: number; secret: number } | null = null;
  private params: Record<string, string> = {};
  private terminating = false;
  private moving = false;
  private connecting = false;
  private startupBuf: Buffer = Buffer.alloc(0);
  private held: Buffer[] = [];
  /** Client bytes of a transaction held during a switchover, not yet scanned (they may never pin:
   * they run on the new leader). */
  private heldTx: Buffer[] = [];
  private heldTxTimer: NodeJS.Timeout | null = null;
  private startupTimer: NodeJS.Timeout | null = null;
  /** The client was paused because its held bytes passed HELD_LIMIT. */
  private pausedForHold = false;
  /** Why this read-only session leaves its member at its next idle moment (leaveWhenIdle), or null. */
  private leaveReason: string | null = null;
  private serverKey: { pid: number; secret: number } | null = null;
  private server: net.Socket | null = null;
  /** The server a moving read-only session leaves, kept until another has taken over. */
  private leaving: net.Socket | null = null;
  /** What the server sends between transactions, sorted into the client's and the server's goodbye. */
  private unsolicited = new UnsolicitedSorter();
  private serverScan: FrameScanner | null = null;

  constructor(
    private client: net.Socket,
    readonly kind: ListenerKind,
    private readonly hooks: SessionHooks,
  ) {
    client.setNoDelay(true);
    client.on('error', () => this.close());
    client.on('close', () => this.close());
  }

  get txStatus(): 'I' | 'T' | 'E' | null {
    const c = this.shared[STATE.tx]!;
    return c ? (String.fromCharCode(c) as 'I' | 'T' | 'E') : null;
  }
  set txStatus(s: 'I' | 'T' | 'E' | null) {
    this.shared[STATE.tx] = s ? s.charCodeAt(0) : 0;
  }
  /** The server owes the client an answer (in-flight.ts). */
  get busy(): boolean {
    return this.shared[STATE.busy] === 1;
  }
  get queries(): number {
    return this.shared[STATE.queries]!;
  }
  get bytesToServer(): number {
    return this.shared[STATE.toServer]!;
  }
  get bytesToClient(): number {
    return this.shared[STATE.toClient]!;
  }
  private count(slot: number, n: number): void {
    this.shared[slot] = this.shared[slot]! + n;
  }
  /** Relayed by the native relay right now. */
  get native(): boolean {
    return this.relay !== null;
  }

  get clientAddress(): string {
    return `${this.client.remoteAddress ?? '?'}:${this.client.remotePort ?? '?'}`;
  }

  start(): void {
    // Once, from accept (a client that negotiates TLS comes here again); cleared by its startup message or a close.
    this.startupTimer ??= setTimeout(
      () => this.fail('08P01', `baton proxy: no startup message within ${this.hooks.startupTimeoutMs / 1000} s of connecting (startup_timeout)`),
      this.hooks.startupTimeoutMs,
    );
    const reader = new StartupReader();
    const onData = (chunk: Buffer) => {
      let got: { packet: StartupPacket; rest: Buffer } | null;
      try {
        got = reader.push(chunk);
      } catch (err) {
        return this.fail('08P01', (err as Error).message);
      }
      if (!got) return;
      this.client.off('data', onData);
      this.client.pause();
      void this.onStartupPacket(got.packet, got.rest);
    };
    this.client.on('data', onData);
  }

  private async onStartupPacket(p: StartupPacket, rest: Buffer): Promise<void> {
    if (p.kind === 'ssl' || p.kind === 'gssenc') {
      // Bytes sent before the answer were not encrypted, and may have been injected by a
      // man-in-the-middle to pass as the encrypted session's: refused, as PostgreSQL does (CVE-2021-23214).
      if (rest.length) return this.fail('08P01', `baton proxy: received unencrypted data after ${p.kind === 'ssl' ? 'SSL' : 'GSSAPI encryption'} request`);
      if (p.kind === 'ssl' && this.hooks.tls && !(this.client instanceof tls.TLSSocket)) {
        this.client.write('S');
        const secure = new tls.TLSSocket(this.client, { isServer: true, secureContext: this.hooks.tls });
        secure.on('error', () => this.close());
        secure.on('close', () => this.close());
        this.client = secure;
      } else {
        this.client.write('N');
      }
      this.client.resume();
      return this.start();
    }
    clearTimeout(this.startupTimer ?? undefined);
    if (p.kind === 'cancel') {
      await this.hooks.cancel(p.pid, p.secret).catch(() => undefined);
      this.client.destroy();
      return;
    }
    this.params = p.params;
    this.user = p.params.user ?? '';
    this.database = p.params.database ?? this.user;
    try {
      this.member = await this.hooks.route(this.kind);
    } catch (err) {
      const code = err instanceof RouteRefused ? err.code : '57P03';
      return this.fail(code, `baton proxy: ${(err as Error).message}`);
    }
    if (this.state === 'closed') return;
    this.proxyKey = this.hooks.register(this);
    this.attachClient();
    this.connecting = true; // client bytes are held until a server has taken the startup
    if (rest.length) this.forwardClientData(rest); // scanned like every later byte, so message boundaries hold
    this.client.resume();
    await this.connectFirst(p.raw, Date.now() + this.hooks.pauseTimeoutMs);
  }

  /** Connects to the routed member and hands it the client's startup. A member that refuses (down,
   * starting up, shutting down) is not the client's problem while the pause lasts: route again. */
  private async connectFirst(startup: Buffer, deadline: number): Promise<void> {
    for (;;) {
      const m = this.member!;
      const r = await connectServer(m, this.hooks.addressOf(m), startup, this.hooks.connectTimeoutMs);
      if (this.isClosed()) {
        if ('server' in r) r.server.destroy();
        return;
      }
      if ('server' in r) {
        this.serverAddress = describeAddress(r.address);
        r.server.on('error', (err) => this.serverLost(r.server, err.message));
        this.attachServer(r.server, true);
        this.onServerData(r.server, r.first);
        this.connecting = false;
        this.sendHeld();
        return;
      }
      if (Date.now() >= deadline) {
        return this.fail('08006', `baton proxy: ${r.retry}; gave up after ${this.hooks.pauseTimeoutMs / 1000} s (pause_timeout)`);
      }
      await new Promise((res) => setTimeout(res, 100));
      try {
        this.member = await this.hooks.route(this.kind);
      } catch (err) {
        return this.fail(err instanceof RouteRefused ? err.code : '57P03', `baton proxy: ${(err as Error).message}`);
      }
    }
  }

  private attachClient(): void {
    this.clientScan = new FrameScanner(this.hooks.maxMessageLength, {
      onMessage: (type, _length, body) => {
        if (type === 0x58 /* X: Terminate */) this.terminating = true;
        if (!this.pinned) this.pinned = this.replayLog.clientMessage(type, body, this.busy);
        if (this.state === 'active') countSent(this.shared, type);
      },
    });
    this.client.on('data', (chunk: Buffer) => this.onClientData(chunk));
    this.client.on('drain', () => {
      this.server?.resume();
      this.scheduleHandOff();
    });
  }

  private onClientData(chunk: Buffer): void {
    this.leaveIfIdle(); // before the chunk is counted: what it starts runs on the session's next server
    if (this.heldTx.length > 0 || (this.hooks.holdingTransactions() && this.idleReadWrite())) return this.holdTx(chunk);
    this.forwardClientData(chunk);
  }

  private forwardClientData(chunk: Buffer): void {
    try {
      this.clientScan!.scan(chunk);
    } catch (err) {
      if (err instanceof FrameError) return this.fail('08P01', `baton proxy: ${err.message}`);
      throw err;
    }
    this.fromClient(chunk);
    this.scheduleHandOff();
  }

  private fromClient(chunk: Buffer): void {
    if (this.moving || this.connecting) {
      this.held.push(chunk);
      this.pauseIfHoldingTooMuch();
      return;
    }
    this.count(STATE.toServer, chunk.length);
    if (this.server && !this.server.write(chunk)) this.client.pause();
  }

  /** The proxy holds new transactions for a switchover: bytes must reach onClientData, so the
   * session leaves the native relay (and handOff refuses it until the hold ends). */
  holdForSwitchover(): void {
    this.takeBack();
  }

  private holdTx(chunk: Buffer): void {
    this.heldTx.push(chunk);
    this.pauseIfHoldingTooMuch();
    // Bounded like every other wait: a switchover that never finishes lets the transaction run where the session is.
    this.heldTxTimer ??= setTimeout(() => {
      this.hooks.log.warn({ session: this.id, member: this.member?.name }, 'held transaction released after pause_timeout');
      this.releaseHeld();
    }, this.hooks.pauseTimeoutMs);
  }

  /** Sends what the hold kept back to the session's server (after a move: the new leader). */
  releaseHeld(): void {
    if (this.heldTxTimer) clearTimeout(this.heldTxTimer);
    this.heldTxTimer = null;
    if (this.moving || this.connecting || this.state !== 'active' || this.heldTx.length === 0) return;
    const chunks = this.heldTx;
    this.heldTx = [];
    for (const chunk of chunks) if (this.state === 'active') this.forwardClientData(chunk);
    this.resumeAfterHold();
  }

  /** A client that pipelines or streams COPY data while its bytes are held (a login, a move, a
   * switchover) waits in TCP, not in the proxy's memory. */
  private pauseIfHoldingTooMuch(): void {
    if (this.pausedForHold || this.heldBytes <= HELD_LIMIT) return;
    this.pausedForHold = true;
    this.client.pause();
  }

  private resumeAfterHold(): void {
    if (!this.pausedForHold) return;
    this.pausedForHold = false;
    // The server may have pushed back on what was just forwarded: its 'drain' resumes the client then.
    if (this.server && !this.server.writableNeedDrain) this.client.resume();
  }

  /** For SHOW CLIENTS: what a move would carry (the settings the native relay keeps now included). */
  get carriedState(): string | null {
    if (this.pinned !== null) return null;
    return this.replayLog.summary(this.relay ? this.hooks.nativeRelay!.keptSettings(this.relay) : []);
  }

  /** Bytes held back from the server right now (a moving session's, or a transaction held for a switchover). */
  get heldBytes(): number {
    let n = 0;
    for (const c of this.held) n += c.length;
    for (const c of this.heldTx) n += c.length;
    return n;
  }

  /** Wires a server connection: `startup` when the server has yet to answer the client's startup. */
  private attachServer(server: net.Socket, startup: boolean): void {
    this.server = server;
    this.unsolicited = new UnsolicitedSorter();
    server.on('drain', () => {
      this.client.resume();
      this.scheduleHandOff();
    });
    server.on('close', () => this.serverLost(server, 'server closed the connection'));
    server.on('data', (chunk: Buffer) => this.onServerData(server, chunk));
  }

  private onServerData(server: net.Socket, chunk: Buffer): void {
    if (server !== this.server) return;
    if (this.state === 'active') {
      // Unsolicited data on an idle movable session is the client's, except the server's goodbye:
      // the session will move, and the client must not hear that its connection ends. A session
      // holding its next transaction hears from the proxy instead (see fail()).
      if (!this.busy && (this.canMove() || this.heldTx.length > 0)) {
        const { pass } = this.unsolicited.sort(chunk);
        if (pass.length) this.toClient(pass);
      } else {
        const pass = this.unsolicited.flush(chunk);
        if (pass.length) this.toClient(pass);
      }
      this.leaveIfIdle();
      return this.scheduleHandOff();
    }
    this.startupBuf = this.startupBuf.length ? Buffer.concat([this.startupBuf, chunk]) : chunk;
    this.startupBuf = this.startupFromServer(this.startupBuf);
  }

  private beginActive(): void {
    this.state = 'active';
    this.serverScan = new FrameScanner(Number.MAX_SAFE_INTEGER, {
      onMessage: (type, _length, body) => {
        if (type !== 0x5a /* Z: see onReadyForQuery */ && this.followsReplies()) this.pinned = this.replayLog.serverMessage(type, body);
      },
      onReadyForQuery: (s) => {
        if (this.followsReplies()) this.pinned = this.replayLog.readyForQuery(s);
        this.txStatus = s as 'I' | 'T' | 'E';
        countAnswered(this.shared);
        this.count(STATE.queries, 1);
      },
    });
    this.scheduleHandOff();
  }

  /** The replay log follows a batch: its replies must be matched to its requests here. */
  private followsReplies(): boolean {
    return this.pinned === null && this.replayLog.following;
  }

  private scheduleHandOff(): void {
    if (this.handOffQueued || this.relay || this.ending || !this.hooks.nativeRelay || this.client instanceof tls.TLSSocket) return;
    this.handOffQueued = true;
    setImmediate(() => {
      this.handOffQueued = false;
      this.handOff();
    });
  }

  /** Gives the session to the native relay when nothing is in flight in Node's sockets. */
  private handOff(): void {
    const native = this.hooks.nativeRelay;
    const server = this.server;
    if (!native || this.relay || this.ending || this.state !== 'active' || this.moving || this.connecting || this.terminating) return;
    if (!server || !this.serverScan || !this.clientScan || this.held.length > 0 || this.heldTx.length > 0 || this.hooks.holdingTransactions()) return;
    if (this.leaveReason !== null) return; // TypeScript watches for the idle moment to leave at
    if (!this.unsolicited.atBoundary) return; // the rest of a message is on its way: scheduled again when it comes
    if (this.pinned === null && this.replayLog.needsTypeScript) return; // scheduled again by the reply that ends the batch
    if (this.client.writableLength || server.writableLength || this.client.readableLength || server.readableLength) return;
    const clientFd = socketFd(this.client);
    const serverFd = socketFd(server);
    if (clientFd === null || serverFd === null) return;
    stopNodeReading(this.client);
    stopNodeReading(server);
    this.clientScan.saveTo(this.shared, STATE.clientScan);
    this.serverScan.saveTo(this.shared, STATE.serverScan);
    try {
      const checkPins = this.pinned === null;
      this.shared[STATE.resetAllIsNoop] = this.replayLog.holdsSettings ? 0 : 1;
      this.relay = native.attach(clientFd, serverFd, this.shared, checkPins, this.hooks.maxMessageLength, (h) => this.onHandback(h));
    } catch (err) {
      this.hooks.log.warn({ session: this.id, member: this.member?.name, err: (err as Error).message }, 'native relay refused the session; relaying in TypeScript');
      resumeNodeReading(this.client);
      resumeNodeReading(server);
    }
  }

  /** The native relay gave the session back with what it had not dealt with. */
  private onHandback(h: Handover): void {
    this.relay = null;
    this.handbacks++;
    if (h.ended) this.ending = true;
    this.resumeFrom(h);
    this.scheduleHandOff();
  }

  /** Takes the session back from the native relay before TypeScript touches its sockets. */
  private takeBack(): void {
    if (!this.relay) return;
    const h = this.hooks.nativeRelay!.detach(this.relay);
    this.relay = null;
    if (h) this.resumeFrom(h);
  }

  private resumeFrom(h: Handover): void {
    const server = this.server!;
    if (h.unnamedParse !== undefined) this.replayLog.unnamedParse = h.unnamedParse;
    // Before any byte of fromClient or fromServer: the replies in them may be the pending setting's.
    if (this.pinned === null && h.keptSettings) this.pinned = this.replayLog.keptByRelay(h.keptSettings);
    if (this.pinned === null && h.pendingSetting) {
      const alone = this.shared[STATE.syncs] === 1 && this.shared[STATE.unsynced] === 0;
      this.pinned = this.replayLog.sentByRelay(h.pendingSetting, h.pendingSettingFailed === true, alone);
    }
    this.clientScan!.loadFrom(this.shared, STATE.clientScan);
    this.serverScan!.loadFrom(this.shared, STATE.serverScan);
    resumeNodeReading(this.client);
    resumeNodeReading(server);
    if (h.toServer && !server.write(h.toServer)) this.client.pause();
    if (h.toClient && !this.client.write(h.toClient)) server.pause();
    if (h.fromClient) this.onClientData(h.fromClient);
    if (h.fromServer && this.state !== 'closed') this.onServerData(server, h.fromServer);
  }

  /** Forwards complete startup-phase messages, swapping BackendKeyData; returns what is left over. */
  private startupFromServer(buf: Buffer): Buffer {
    let at = 0;
    while (this.state === 'startup' && buf.length - at >= 5) {
      const type = buf[at]!;
      const len = buf.readInt32BE(at + 1);
      if (len < 4 || len > this.hooks.maxMessageLength) {
        this.fail('08P01', `baton proxy: invalid message from server (length ${len})`);
        return Buffer.alloc(0);
      }
      if (buf.length - at < len + 1) break;
      const frame = buf.subarray(at, at + len + 1);
      at += len + 1;
      if (type === 0x4b /* K */) {
        this.serverKey = parseBackendKeyData(frame);
        this.toClient(encodeBackendKeyData(this.proxyKey!.pid, this.proxyKey!.secret));
      } else {
        this.toClient(frame);
        if (type === 0x5a /* Z */) {
          this.txStatus = String.fromCharCode(frame[5]!) as 'I' | 'T' | 'E';
          this.beginActive();
        }
      }
    }
    const rest = buf.subarray(at);
    if (this.state === 'active' && rest.length) {
      this.toClient(rest);
      return Buffer.alloc(0);
    }
    return rest;
  }

  private toClient(chunk: Buffer): void {
    if (this.serverScan) {
      try {
        this.serverScan.scan(chunk);
      } catch (err) {
        return this.fail('08P01', `baton proxy: ${(err as Error).message}`);
      }
    }
    this.count(STATE.toClient, chunk.length);
    if (!this.client.write(chunk)) this.server?.pause();
  }

  /** A read-write session between transactions: its next one may be held for a switchover. A session
   * that cannot move is held too, so that it is closed with nothing of that transaction run, rather
   * than cut off in the middle of it when the old leader stops. */
  private idleReadWrite(): boolean {
    return this.kind === 'rw' && this.idle();
  }

  /** Between transactions, with nothing in flight either way. */
  private idle(): boolean {
    return this.state === 'active' && !this.busy && !this.moving && !this.terminating && this.txStatus === 'I' && !this.replayLog.following;
  }

  /** A session that would move once idle when its member goes away or (read-only) stops qualifying (for SHOW STATS). */
  get movable(): boolean {
    return this.pinned === null && this.hooks.credentials(this.user) !== null;
  }

  /** Idle, outside a transaction, with no state the proxy cannot rebuild, and the proxy may log in as this user. */
  canMove(): boolean {
    return this.idle() && this.movable;
  }

  /** A read-only session that must leave its member moves now if idle, else as soon as it is: it is
   * relayed in TypeScript until then, which sees the ReadyForQuery that ends what it runs (a client
   * querying all the time is idle only between two queries). null: it may stay after all. */
  leaveWhenIdle(reason: string | null): void {
    if (reason === null) {
      if (this.leaveReason === null) return;
      this.leaveReason = null;
      return this.scheduleHandOff();
    }
    if (this.kind !== 'ro' || !this.movable) return;
    this.leaveReason = reason;
    this.takeBack();
    this.leaveIfIdle();
  }

  /** A pending leave goes ahead once the session is idle, and is dropped once it can no longer move. */
  private leaveIfIdle(): void {
    const reason = this.leaveReason;
    if (reason === null || this.state !== 'active' || this.moving) return;
    if (!this.movable) {
      this.leaveReason = null;
      return this.scheduleHandOff();
    }
    if (!this.canMove()) return;
    this.leaveReason = null;
    void this.move(reason);
  }

  /** Re-attaches this idle session to another server; the client sees nothing but a pause. A
   * read-write session goes to the current leader. A read-only one goes where a new read-only session
   * would, to a server that has replayed at least what its old one had (the client never reads back in
   * time), and stays where it is when no server will do. */
  async move(reason: string): Promise<void> {
    if (!this.canMove()) return;
    this.takeBack();
    // The native relay may have forwarded a query since canMove() looked: such a session stays put.
    if (!this.canMove()) {
      if (this.kind === 'ro') return this.scheduleHandOff(); // looked at again when next idle
      return this.fail('57P01', `baton proxy: the leader changed (${reason}) as a query started; reconnect to continue`);
    }
    this.moving = true;
    const from = this.member?.name;
    const old = this.server;
    this.server = null;
    // A read-only session keeps its server until another has taken over.
    if (this.kind === 'ro' && old && !old.destroyed) this.leaving = old;
    else old?.destroy();
    const floor = this.kind === 'ro' ? await this.readFloor(from) : null;
    const deadline = Date.now() + this.hooks.pauseTimeoutMs;
    let lastError = 'no attempt';
    // The leader may be restarting in place or still being elected: try until the pause timeout.
    while (!this.isClosed() && Date.now() < deadline) {
      let opened: MoveTarget;
      try {
        const password = this.hooks.credentials(this.user) ?? '';
        opened = await openMoveTarget({ kind: this.kind, from, keepsServer: this.leaving !== null, params: this.params, password, replayLog: this.replayLog, floor }, this.hooks);
      } catch (err) {
        // The same statements would fail the same way on any server: the session cannot follow.
        if (err instanceof ReplayFailed && !this.leaving) {
          this.moving = false;
          return this.fail('08006', `baton proxy: ${this.whyMoving(reason)} and the session could not follow: restoring ${err.entry} failed: ${err.serverError}`);
        }
        lastError = err instanceof ReplayFailed ? `restoring ${err.entry} failed: ${err.serverError}` : (err as Error).message;
        if (this.leaving && !this.leaving.destroyed) return this.stay(reason, lastError);
        this.leaving = null;
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      const { member: target, login } = opened;
      if (this.isClosed()) {
        login.socket.destroy();
        return;
      }
      this.leaving?.destroy();
      this.leaving = null;
      this.member = target;
      this.serverAddress = describeAddress(login.address);
      this.serverKey = login.key;
      this.replayLog.moved();
      this.moves++;
      this.moveRetryAt = Date.now() + READ_MOVE_RETRY_MS;
      login.socket.on('error', (err) => this.serverLost(login.socket, err.message));
      this.attachServer(login.socket, false);
      this.moving = false;
      this.tellReported(login.reported);
      const heldBytes = this.heldBytes;
      this.sendHeld();
      const replayed = this.replayLog.replay.length;
      const fields = { session: this.id, from, to: target.name, reason, heldBytes, replayed, unnamedStatement: this.replayLog.unnamedParse !== null };
      if (this.kind === 'rw') this.hooks.log.info(fields, 'session moved to the leader');
      else this.hooks.log.info({ ...fields, floor: floor === null ? null : formatLsn(floor) }, 'read-only session moved');
      return;
    }
    this.moving = false;
    this.fail('08006', `baton proxy: ${this.whyMoving(reason)} and the session could not follow: ${lastError}`);
  }

  private whyMoving(reason: string): string {
    return this.kind === 'rw' ? `the leader changed (${reason})` : `the read-only session had to leave ${this.member?.name ?? 'its server'} (${reason})`;
  }

  /** What a moving read-only session may have read: its server's position now, or, when that server
   * cannot say, the position its member last published. */
  private async readFloor(member: string | undefined): Promise<number | null> {
    if (this.leaving) {
      try {
        // A notice or a changed value the old server sends meanwhile is the client's: it is still on that server.
        return await serverPosition(this.leaving, this.hooks.connectTimeoutMs, (m) => this.toClient(m.frame));
      } catch (err) {
        // Its answer may still come: that connection cannot go back to the client.
        this.leaving.destroy();
        this.leaving = null;
        this.hooks.log.info({ session: this.id, member, err: (err as Error).message }, 'cannot ask the WAL position of a moving read-only session; using the one its member published');
      }
    }
    return member ? this.hooks.publishedPosition(member) : null;
  }

  /** A moved session's client hears what its new server reports (in_hot_standby when a read-only
   * session went from the leader to a replica, a server_version after a minor upgrade), as a server
   * tells of a value that changed. All of them: what the native relay passed on is not seen here, so
   * the proxy cannot know which values the client has. */
  private tellReported(reported: ReportedParameters): void {
    if (reported.size === 0) return;
    this.toClient(Buffer.concat([...reported].map(([name, value]) => encodeParameterStatus(name, value))));
  }

  /** A read-only session that could not move goes on on its server, and is tried again later. */
  private stay(reason: string, why: string): void {
    this.server = this.leaving;
    this.leaving = null;
    this.moving = false;
    this.moveRetryAt = Date.now() + READ_MOVE_RETRY_MS;
    this.hooks.log.info({ session: this.id, member: this.member?.name, reason, why }, 'read-only session stays on its server for now');
    this.sendHeld();
    this.scheduleHandOff();
  }

  /** After a move, or a read-only session's attempt: what the client sent meanwhile goes to the server. */
  private sendHeld(): void {
    const held = this.held;
    this.held = [];
    for (const chunk of held) this.fromClient(chunk);
    this.releaseHeld();
    if (this.heldTx.length === 0 && this.held.length === 0) this.resumeAfterHold();
  }

  /** For SHOW CLIENTS and SHOW SERVERS: the state, `moving` while the session changes servers, or
   * `leaving` while a read-only session waits for the end of what it runs to move (leaveWhenIdle). */
  get phase(): string {
    return this.moving ? 'moving' : this.leaveReason !== null && this.state === 'active' ? 'leaving' : this.state;
  }

  /** On its way to a new leader (waiting for it, or logging in). */
  get isMoving(): boolean {
    return this.moving;
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  /** Ends the session with an error the client can read (when the stream is at a message boundary). */
  fail(code: string, message: string, severity: 'FATAL' | 'ERROR' = 'FATAL'): void {
    if (this.state === 'closed') return;
    this.takeBack();
    if (this.heldTx.length > 0) message += '; what the client sent since the switchover began was held and not run';
    const clean = !this.serverScan || this.serverScan.atBoundary();
    if (clean && this.client.writable) this.client.write(encodeErrorResponse({ severity, code, message }));
    this.hooks.log.info({ session: this.id, member: this.member?.name, code, reason: message, pinned: this.pinned }, 'closing client session');
    this.close();
  }

  private serverLost(server: net.Socket, reason: string): void {
    if (this.state === 'closed' || server !== this.server) return;
    if (this.terminating) return this.close(); // the client said goodbye first
    if (this.canMove()) {
      void this.move(`lost ${this.member?.name ?? 'the server'}: ${reason}`);
      return;
    }
    this.fail('08006', `baton proxy: lost the connection to ${this.member?.name ?? 'the server'}: ${reason}${this.pinned ? ` (the session could not move to another member: ${this.pinned})` : ''}`);
  }

  /** Cancels the running query on the server, as a client's CancelRequest would. */
  async cancelOnServer(): Promise<void> {
    const key = this.serverKey;
    const m = this.member;
    if (!key || !m) return;
    await new Promise<void>((resolve) => {
      const s = net.connect({ host: m.host, port: m.port }, () => s.end(encodeCancel(key.pid, key.secret)));
      s.setTimeout(this.hooks.connectTimeoutMs, () => s.destroy());
      s.on('close', () => resolve());
      s.on('error', () => resolve());
    });
  }

  close(): void {
    if (this.state === 'closed') return;
    this.takeBack();
    const wasBusy = this.state === 'active' && this.busy && !this.moving;
    this.state = 'closed';
    if (this.heldTxTimer) clearTimeout(this.heldTxTimer);
    if (this.startupTimer) clearTimeout(this.startupTimer);
    // A client that vanished mid-query would otherwise leave the query running on the server.
    if (wasBusy) void this.cancelOnServer();
    this.client.end();
    this.client.destroy();
    this.server?.destroy();
    this.leaving?.destroy();
    this.hooks.unregister(this);
  }
}

