// One client connection relayed to one server connection. The startup phase is parsed message by
// message (to answer SSL/GSSENC requests, route cancels, and swap the server's BackendKeyData for
// one the proxy issues); after the first ReadyForQuery bytes are forwarded as they come, with a
// scanner that only tracks message boundaries and the transaction status.
import net from 'node:net';
import tls from 'node:tls';
import type { MemberRecord } from '../dcs/types.js';
import type { Logger } from '../util/log.js';
import {
  encodeBackendKeyData,
  encodeCancel,
  encodeErrorResponse,
  parseBackendKeyData,
  ProtocolError,
  StartupReader,
  type StartupPacket,
} from './protocol.js';
import { FrameError, FrameScanner } from './scanner.js';

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
  /** The client sent something the server has not answered with ReadyForQuery yet. */
  busy = false;
  private terminating = false;
  bytesToServer = 0;
  bytesToClient = 0;
  proxyKey: { pid: number; secret: number } | null = null;
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
    const server = net.connect({ host: this.member.host, port: this.member.port });
    server.setNoDelay(true);
    server.setTimeout(this.hooks.connectTimeoutMs, () => {
      this.fail('08006', `baton proxy: connecting to ${this.member?.name} (${this.member?.host}:${this.member?.port}) timed out`);
    });
    this.server = server;
    server.on('connect', () => {
      server.setTimeout(0);
      server.write(p.raw);
      if (rest.length) this.toServer(rest);
      this.relay();
    });
    server.on('error', (err) => this.serverLost(err.message));
    server.on('close', () => this.serverLost('server closed the connection'));
  }

  private relay(): void {
    const server = this.server!;
    const clientScan = new FrameScanner(this.hooks.maxMessageLength, {
      onMessage: (type) => {
        if (type === 0x58 /* X: Terminate */) this.terminating = true;
      },
    });
    this.client.on('data', (chunk: Buffer) => {
      try {
        clientScan.scan(chunk);
      } catch (err) {
        if (err instanceof FrameError) return this.fail('08P01', `baton proxy: ${err.message}`);
        throw err;
      }
      if (this.state === 'active') this.busy = true;
      this.toServer(chunk);
    });
    this.client.on('drain', () => server.resume());
    server.on('drain', () => this.client.resume());
    let startupBuf: Buffer = Buffer.alloc(0);
    server.on('data', (chunk: Buffer) => {
      if (this.state === 'active') return this.toClient(chunk);
      startupBuf = startupBuf.length ? Buffer.concat([startupBuf, chunk]) : chunk;
      startupBuf = this.startupFromServer(startupBuf);
    });
    this.client.resume();
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
          this.state = 'active';
          this.serverScan = new FrameScanner(Number.MAX_SAFE_INTEGER, {
            onReadyForQuery: (s) => {
              this.txStatus = s as 'I' | 'T' | 'E';
              this.busy = false;
              this.queries++;
            },
          });
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

  private toServer(chunk: Buffer): void {
    this.bytesToServer += chunk.length;
    if (this.server && !this.server.write(chunk)) this.client.pause();
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

  /** Ends the session with an error the client can read (when the stream is at a message boundary). */
  fail(code: string, message: string, severity: 'FATAL' | 'ERROR' = 'FATAL'): void {
    if (this.state === 'closed') return;
    const clean = !this.serverScan || this.serverScan.atBoundary();
    if (clean && this.client.writable) this.client.write(encodeErrorResponse({ severity, code, message }));
    this.hooks.log.info({ session: this.id, member: this.member?.name, code, reason: message }, 'closing client session');
    this.close();
  }

  private serverLost(reason: string): void {
    if (this.state === 'closed') return;
    if (this.terminating) {
      this.close(); // the client said goodbye first
      return;
    }
    this.fail('08006', `baton proxy: lost the connection to ${this.member?.name ?? 'the server'}: ${reason}`);
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
    const wasBusy = this.state === 'active' && this.busy;
    this.state = 'closed';
    // A client that vanished mid-query would otherwise leave the query running on the server.
    if (wasBusy) void this.cancelOnServer();
    this.client.end();
    this.client.destroy();
    this.server?.destroy();
    this.hooks.unregister(this);
  }
}

export { ProtocolError };
