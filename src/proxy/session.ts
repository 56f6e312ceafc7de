// One client connection relayed to one server connection. The startup phase is parsed message by
// message (to answer SSL/GSSENC requests, route cancels, and swap the server's BackendKeyData for
// one the proxy issues); after the first ReadyForQuery bytes are forwarded as they come, with a
// scanner that only tracks message boundaries and the transaction status.
// An idle read-write session with no session state can be moved to a new leader: the proxy logs in
// there on the client's behalf and the client never notices (see move()).
import net from 'node:net';
import tls from 'node:tls';
import type { MemberRecord } from '../dcs/types.js';
import type { Logger } from '../util/log.js';
import { parseBackendKeyData, StartupReader, type StartupPacket } from './protocol.js';
import { encodeBackendKeyData, encodeCancel, encodeErrorResponse } from './protocol-encode.js';
import { FrameError, FrameScanner } from './scanner.js';
import { loginToServer } from './server-login.js';
import { connectServer, isFatal } from './server-connect.js';
import { messagePinReason } from './session-state.js';

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
  /** Picks the member for a new session; may wait (switchover, no leader) up to the pause timeout. */
  route(kind: ListenerKind): Promise<MemberRecord>;
  register(s: Session): { pid: number; secret: number };
  unregister(s: Session): void;
  cancel(pid: number, secret: number): Promise<void>;
  /** The password the proxy may use to log in as `user` when moving a session; null: cannot move. */
  credentials(user: string): string | null;
  /** A switchover runs or the leader just changed: unsolicited server messages on idle sessions are the old leader going away. */
  leaderInFlux(): boolean;
  /** How long a session may wait for a leader (new sessions and moving ones). */
  pauseTimeoutMs: number;
  tls: tls.SecureContext | null;
  maxMessageLength: number;
  connectTimeoutMs: number;
  log: Logger;
}

let nextId = 1;

export class Session {
  readonly id = nextId++;
  readonly startedAt = Date.now();
  member: MemberRecord | null = null;
  user = '';
  database = '';
  txStatus: 'I' | 'T' | 'E' | null = null;
  state: 'startup' | 'active' | 'closed' = 'startup';
  queries = 0;
  moves = 0;
  /** The client sent something the server has not answered with ReadyForQuery yet. */
  busy = false;
  /** Why this session cannot be moved to another server, once it did something that ties it to one. */
  pinned: string | null = null;
  bytesToServer = 0;
  bytesToClient = 0;
  proxyKey: { pid: number; secret: number } | null = null;
  private params: Record<string, string> = {};
  private terminating = false;
  private moving = false;
  private connecting = false;
  private startupBuf: Buffer = Buffer.alloc(0);
  private held: Buffer[] = [];
  private serverKey: { pid: number; secret: number } | null = null;
  private server: net.Socket | null = null;
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

  get clientAddress(): string {
    return `${this.client.remoteAddress ?? '?'}:${this.client.remotePort ?? '?'}`;
  }

  start(): void {
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
      if (rest.length) this.client.unshift(rest);
      return this.start();
    }
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
    if (rest.length) this.fromClient(rest);
    this.client.resume();
    await this.connectFirst(p.raw, Date.now() + this.hooks.pauseTimeoutMs);
  }

  /** Connects to the routed member and hands it the client's startup. A member that refuses (down,
   * starting up, shutting down) is not the client's problem while the pause lasts: route again. */
  private async connectFirst(startup: Buffer, deadline: number): Promise<void> {
    for (;;) {
      const m = this.member!;
      const r = await connectServer(m, startup, this.hooks.connectTimeoutMs);
      if (this.isClosed()) {
        if ('server' in r) r.server.destroy();
        return;
      }
      if ('server' in r) {
        r.server.on('error', (err) => this.serverLost(r.server, err.message));
        this.attachServer(r.server, true);
        this.onServerData(r.server, r.first);
        this.connecting = false;
        const held = this.held;
        this.held = [];
        for (const chunk of held) this.fromClient(chunk);
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
    const scan = new FrameScanner(this.hooks.maxMessageLength, {
      onMessage: (type, _length, body) => {
        if (type === 0x58 /* X: Terminate */) this.terminating = true;
        if (this.kind === 'rw' && !this.pinned) this.pinned = messagePinReason(type, body);
      },
    });
    this.client.on('data', (chunk: Buffer) => {
      try {
        scan.scan(chunk);
      } catch (err) {
        if (err instanceof FrameError) return this.fail('08P01', `baton proxy: ${err.message}`);
        throw err;
      }
      this.fromClient(chunk);
    });
    this.client.on('drain', () => this.server?.resume());
  }

  private fromClient(chunk: Buffer): void {
    if (this.state === 'active') this.busy = true;
    if (this.moving || this.connecting) {
      this.held.push(chunk);
      return;
    }
    this.bytesToServer += chunk.length;
    if (this.server && !this.server.write(chunk)) this.client.pause();
  }

  /** Wires a server connection: `startup` when the server has yet to answer the client's startup. */
  private attachServer(server: net.Socket, startup: boolean): void {
    this.server = server;
    server.on('drain', () => this.client.resume());
    server.on('close', () => this.serverLost(server, 'server closed the connection'));
    server.on('data', (chunk: Buffer) => this.onServerData(server, chunk));
  }

  private onServerData(server: net.Socket, chunk: Buffer): void {
    if (server !== this.server) return;
    if (this.state === 'active') {
      // Unsolicited data on an idle movable session is the server saying goodbye when it is a
      // FATAL error, or while the leader changes: keep it from the client, whose session will move.
      if (!this.busy && this.canMove() && (isFatal(chunk) || this.hooks.leaderInFlux())) return;
      return this.toClient(chunk);
    }
    this.startupBuf = this.startupBuf.length ? Buffer.concat([this.startupBuf, chunk]) : chunk;
    this.startupBuf = this.startupFromServer(this.startupBuf);
  }

  private beginActive(): void {
    this.state = 'active';
    this.serverScan = new FrameScanner(Number.MAX_SAFE_INTEGER, {
      onReadyForQuery: (s) => {
        this.txStatus = s as 'I' | 'T' | 'E';
        this.busy = false;
        this.queries++;
      },
    });
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
    this.bytesToClient += chunk.length;
    if (!this.client.write(chunk)) this.server?.pause();
  }

  /** Idle, outside a transaction, with no session state, and the proxy may log in as this user. */
  canMove(): boolean {
    return (
      this.kind === 'rw' &&
      this.state === 'active' &&
      !this.busy &&
      !this.moving &&
      !this.terminating &&
      this.txStatus === 'I' &&
      this.pinned === null &&
      this.hooks.credentials(this.user) !== null
    );
  }

  /** Re-attaches this idle session to the current leader; the client sees nothing but a pause. */
  async move(reason: string): Promise<void> {
    if (!this.canMove()) return;
    this.moving = true;
    const old = this.server;
    this.server = null;
    old?.destroy();
    const from = this.member?.name;
    const deadline = Date.now() + this.hooks.pauseTimeoutMs;
    let lastError = 'no attempt';
    // The leader may be restarting in place or still being elected: try until the pause timeout.
    while (!this.isClosed() && Date.now() < deadline) {
      try {
        const target = await this.hooks.route('rw');
        const login = await loginToServer({
          host: target.host,
          port: target.port,
          params: this.params,
          password: this.hooks.credentials(this.user) ?? '',
          timeoutMs: this.hooks.connectTimeoutMs,
        });
        if (this.isClosed()) {
          login.socket.destroy();
          return;
        }
        this.member = target;
        this.serverKey = login.key;
        this.moves++;
        login.socket.on('error', (err) => this.serverLost(login.socket, err.message));
        this.attachServer(login.socket, false);
        this.moving = false;
        const held = this.held;
        this.held = [];
        for (const chunk of held) this.fromClient(chunk);
        this.hooks.log.info({ session: this.id, from, to: target.name, reason, heldBytes: held.reduce((n, c) => n + c.length, 0) }, 'session moved to the leader');
        return;
      } catch (err) {
        lastError = (err as Error).message;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    this.moving = false;
    this.fail('08006', `baton proxy: the leader changed (${reason}) and the session could not follow: ${lastError}`);
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
    const wasBusy = this.state === 'active' && this.busy && !this.moving;
    this.state = 'closed';
    // A client that vanished mid-query would otherwise leave the query running on the server.
    if (wasBusy) void this.cancelOnServer();
    this.client.end();
    this.client.destroy();
    this.server?.destroy();
    this.hooks.unregister(this);
  }
}

