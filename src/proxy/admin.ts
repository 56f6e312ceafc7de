// The admin console: a tiny PostgreSQL server on its own port that psql can talk to (simple query
// protocol only). Commands and rendering are in admin-commands.ts.
import { randomInt } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from '../util/log.js';
import { executeAdminQuery, type AdminBackend } from './admin-commands.js';
import { MessageReader, ProtocolError, StartupReader, parseQuery, parseSaslInitialResponse, parseSaslResponse, type Message } from './protocol.js';
import { encodeAuthenticationOk, encodeAuthenticationSasl, encodeBackendKeyData, encodeErrorResponse, encodeParameterStatus, encodeReadyForQuery } from './protocol-encode.js';
import { scramMechanisms, scramServerFinal, scramServerFirst, scramVerifier, type ScramExchange, type ScramVerifier } from './scram.js';
import { tlsServerEndPoint } from './tls-binding.js';

export type { AdminBackend, AdminRow, PoolNodeRow } from './admin-commands.js';
export { CLIENT_COLUMNS, POOL_NODES_COLUMNS, SERVER_COLUMNS, STATS_COLUMNS } from './admin-commands.js';

export interface AdminConsoleOptions {
  host: string;
  port: number;
  /** The password clients must prove they know (SCRAM-SHA-256: it never crosses the network); null accepts anyone. */
  password: string | null;
  /** The proxy's certificate: an SSLRequest is answered 'S' and TLS terminated; null answers 'N'. */
  tls?: tls.SecureContext | null;
  backend: AdminBackend;
  logger: Logger;
  cluster: string;
}

export interface AdminConsole {
  port: number;
  close(): Promise<void>;
}

/** Time a client has to complete startup and authentication (PostgreSQL's authentication_timeout). */
const AUTH_TIMEOUT_MS = 30_000;
/** Queries to the console are short; anything larger is a broken or hostile client. */
const MAX_ADMIN_MESSAGE = 1024 * 1024;

const SERVER_PARAMS: [string, string][] = [
  ['server_version', '15.0 (baton admin)'],
  ['server_encoding', 'UTF8'],
  ['client_encoding', 'UTF8'],
  ['DateStyle', 'ISO'],
  ['integer_datetimes', 'on'],
  ['standard_conforming_strings', 'on'],
];

/** Extended-query and copy messages: answered with one error, then ignored until Sync. */
const EXTENDED = new Set(['P', 'B', 'E', 'D', 'C', 'H', 'd', 'c', 'f'].map((c) => c.charCodeAt(0)));
const T_QUERY = 0x51; // Q
const T_TERMINATE = 0x58; // X
const T_SYNC = 0x53; // S
const T_FUNCTION_CALL = 0x46; // F
const T_PASSWORD = 0x70; // p

export function startAdminConsole(opts: AdminConsoleOptions): Promise<AdminConsole> {
  const log = opts.logger.child({ component: 'proxy-admin' });
  const sockets = new Set<net.Socket>();
  const verifierOf = verifierCache();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    serveConnection(socket, opts, log, verifierOf);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      server.on('error', (err) => log.error({ err }, 'admin console listener error'));
      const address = server.address() as net.AddressInfo;
      log.info({ cluster: opts.cluster, host: opts.host, port: address.port }, 'admin console listening');
      resolve({
        port: address.port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            for (const s of sockets) s.destroy();
          }),
      });
    });
  });
}

type Phase = 'startup' | 'sasl-initial' | 'sasl-final' | 'ready' | 'closed';

/** The verifier of the password in force, derived again only when the password changes (a reload). */
function verifierCache(): (password: string) => ScramVerifier {
  let cached: { password: string; verifier: ScramVerifier } | null = null;
  return (password) => {
    if (cached?.password !== password) cached = { password, verifier: scramVerifier(password) };
    return cached.verifier;
  };
}

/** The channel binding data of a TLS connection's own certificate. */
function bindingOf(socket: tls.TLSSocket): Buffer | null {
  const cert = socket.getCertificate();
  return cert && 'raw' in cert ? tlsServerEndPoint(cert.raw) : null;
}

function serveConnection(raw: net.Socket, opts: AdminConsoleOptions, parentLog: Logger, verifierOf: (password: string) => ScramVerifier): void {
  /** The client's stream: the TCP socket, or the TLS socket over it once an SSLRequest was accepted. */
  let socket: net.Socket = raw;
  const log = parentLog.child({ client: `${socket.remoteAddress}:${socket.remotePort}` });
  const startup = new StartupReader();
  const reader = new MessageReader(MAX_ADMIN_MESSAGE);
  let phase: Phase = 'startup';
  let user = '';
  let scram: ScramExchange | null = null;
  /** The tls-server-end-point data of this connection once it is TLS; null in cleartext or for a
   * certificate that names no hash to bind with. */
  let binding: Buffer | null = null;
  let busy = false; // a message is being handled (commands may be async)
  let skipToSync = false; // an extended-protocol error was sent; discard until Sync

  raw.setNoDelay(true);
  const authTimer = setTimeout(() => fatal('08P01', 'authentication timed out'), AUTH_TIMEOUT_MS);
  authTimer.unref();

  raw.on('error', (err) => log.debug({ err }, 'admin client socket error'));
  raw.on('close', () => {
    phase = 'closed';
    clearTimeout(authTimer);
  });

  function send(...bufs: Buffer[]): void {
    if (phase !== 'closed' && !socket.destroyed) socket.write(bufs.length === 1 ? (bufs[0] as Buffer) : Buffer.concat(bufs));
  }

  function fatal(code: string, message: string): void {
    if (phase === 'closed') return;
    log.info({ code, reason: message }, 'admin client refused');
    send(encodeErrorResponse({ severity: 'FATAL', code, message: message.replaceAll('\0', '') }));
    close();
  }

  function close(): void {
    phase = 'closed';
    clearTimeout(authTimer);
    socket.end();
    // Do not wait forever for a peer that keeps its side open.
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  function ready(): void {
    clearTimeout(authTimer);
    phase = 'ready';
    const msgs = [encodeAuthenticationOk()];
    for (const [name, value] of SERVER_PARAMS) msgs.push(encodeParameterStatus(name, value));
    msgs.push(encodeBackendKeyData(randomInt(1, 2 ** 31 - 1), randomInt(0, 2 ** 31 - 1)));
    msgs.push(encodeReadyForQuery('I'));
    send(...msgs);
    log.debug({ user }, 'admin client connected');
  }

  function onStartupData(chunk: Buffer): void {
    const got = startup.push(chunk);
    if (!got) return;
    const { packet, rest } = got;
    switch (packet.kind) {
      case 'ssl':
      case 'gssenc': {
        // Sent before the answer, so never encrypted: refused, as PostgreSQL does (CVE-2021-23214).
        if (rest.length > 0) return fatal('08P01', `received unencrypted data after ${packet.kind === 'ssl' ? 'SSL' : 'GSSAPI encryption'} request`);
        const context = packet.kind === 'ssl' && socket === raw ? opts.tls : null;
        send(Buffer.from(context ? 'S' : 'N'));
        if (context) {
          raw.off('data', onData);
          socket = new tls.TLSSocket(raw, { isServer: true, secureContext: context });
          socket.on('error', (err) => log.debug({ err }, 'admin client TLS error'));
          socket.on('data', onData);
        }
        return;
      }
      case 'cancel':
        close(); // nothing here runs long enough to cancel
        return;
      case 'startup':
        user = packet.params.user ?? '';
        if (opts.password === null) ready();
        else {
          phase = 'sasl-initial';
          binding = socket instanceof tls.TLSSocket ? bindingOf(socket) : null;
          send(encodeAuthenticationSasl(10, scramMechanisms(binding).map((m) => `${m}\0`).join('') + '\0'));
        }
        if (rest.length > 0) reader.push(rest);
        return;
    }
  }

  async function handle(msg: Message): Promise<void> {
    if (phase === 'sasl-initial' || phase === 'sasl-final') {
      if (msg.type !== T_PASSWORD) return fatal('08P01', `expected a SASL response, got '${String.fromCharCode(msg.type)}'`);
      if (phase === 'sasl-initial') {
        const { mechanism, data } = parseSaslInitialResponse(msg.frame);
        scram = scramServerFirst(mechanism, data, verifierOf(opts.password ?? ''), binding);
        phase = 'sasl-final';
        return send(encodeAuthenticationSasl(11, scram.serverFirst));
      }
      const final = scram ? scramServerFinal(scram, parseSaslResponse(msg.frame)) : null;
      if (!final) return fatal('28P01', `password authentication failed for user "${user}"`);
      send(encodeAuthenticationSasl(12, final));
      return ready();
    }
    if (skipToSync && msg.type !== T_SYNC && msg.type !== T_TERMINATE) return;
    switch (msg.type) {
      case T_QUERY: {
        const replies = await executeAdminQuery(parseQuery(msg.frame), opts.backend);
        return send(...replies, encodeReadyForQuery('I'));
      }
      case T_SYNC:
        skipToSync = false;
        return send(encodeReadyForQuery('I'));
      case T_TERMINATE:
        return close();
      case T_FUNCTION_CALL:
        return send(extendedError(), encodeReadyForQuery('I'));
      default:
        if (EXTENDED.has(msg.type)) {
          skipToSync = true;
          return send(extendedError());
        }
        return fatal('08P01', `invalid frontend message type ${msg.type} ('${String.fromCharCode(msg.type)}')`);
    }
  }

  async function drain(): Promise<void> {
    if (busy) return;
    busy = true;
    try {
      while (phase === 'sasl-initial' || phase === 'sasl-final' || phase === 'ready') {
        const msg = reader.next();
        if (!msg) break;
        await handle(msg);
      }
    } catch (err) {
      if (err instanceof ProtocolError) fatal(err.code, err.message);
      else {
        log.error({ err }, 'admin console failure');
        fatal('XX000', err instanceof Error ? err.message : String(err));
      }
    } finally {
      busy = false;
    }
  }

  function onData(chunk: Buffer): void {
    if (phase === 'closed') return;
    try {
      if (phase === 'startup') onStartupData(chunk);
      else reader.push(chunk);
    } catch (err) {
      if (err instanceof ProtocolError) return fatal(err.code, err.message);
      log.error({ err }, 'admin console failure');
      return fatal('XX000', err instanceof Error ? err.message : String(err));
    }
    void drain();
  }
  raw.on('data', onData);
}

function extendedError(): Buffer {
  return encodeErrorResponse({
    severity: 'ERROR',
    code: '0A000',
    message: 'the admin console speaks the simple query protocol only',
    hint: 'use psql, or a client in simple query mode',
  });
}
