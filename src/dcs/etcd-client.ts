// A small client for etcd v3's JSON gateway (grpc-gateway): keys and values travel as base64,
// int64s as decimal strings, and fields holding their zero value are left out of responses
// (`succeeded: false`, `kvs: []`, `count: 0`, event type PUT all arrive as missing fields).
import { BatonError, StoreUnavailableError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/log.js';
import { JsonPoster } from './json-post.js';

const HINT = 'is etcd running? check etcd.hosts in the config';

export interface KeyValue {
  key: string;
  value: string;
  createRevision: string;
  modRevision: string;
  version: string;
  /** Lease ID, or null when the key has no lease. */
  lease: string | null;
}

export interface WatchEvent {
  type: 'put' | 'delete';
  kv: KeyValue;
}

export type Compare =
  | { key: string; target: 'create' | 'mod' | 'version'; revision: string | number; result?: CompareResult }
  | { key: string; target: 'value'; value: string; result?: CompareResult }
  | { key: string; target: 'lease'; lease: string; result?: CompareResult };
export type CompareResult = 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL';

export type TxnOp =
  | { put: { key: string; value: string; lease?: string } }
  | { delete: { key: string; prefix?: boolean } }
  | { range: { key: string; prefix?: boolean } };

export interface TxnResult {
  succeeded: boolean;
  revision: string;
  /** kvs of each range op in the branch that ran, in order (empty arrays for other ops). */
  ranges: KeyValue[][];
}

export interface WatchHandle {
  close(): void;
}

/** etcd answered, but with an error (e.g. "requested lease not found"). */
export class EtcdRequestError extends BatonError {
  constructor(
    message: string,
    /** gRPC status code from the gateway's error body. */
    readonly code: number,
    readonly httpStatus: number,
  ) {
    super(message);
  }
}

/** etcd's watch was canceled because the revision to resume from was compacted away. */
export class WatchCompactedError extends BatonError {}

// The gateway's JSON shapes, as far as this client reads them.
interface RawKv {
  key?: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  version?: string;
  lease?: string;
}
interface RawHeader {
  revision?: string;
}
interface RawWatchResult {
  header?: RawHeader;
  created?: boolean;
  canceled?: boolean;
  compact_revision?: string;
  cancel_reason?: string;
  events?: { type?: 'PUT' | 'DELETE'; kv?: RawKv }[];
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined): string => (s ? Buffer.from(s, 'base64').toString('utf8') : '');

/** The range_end that makes a request cover every key starting with prefix. */
export function prefixEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, 'utf8');
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = bytes.subarray(0, i + 1);
      end[i]! += 1;
      return end.toString('base64');
    }
  }
  return Buffer.from([0]).toString('base64'); // all 0xff: to the end of the keyspace
}

function decodeKv(raw: RawKv): KeyValue {
  return {
    key: unb64(raw.key),
    value: unb64(raw.value),
    createRevision: raw.create_revision ?? '0',
    modRevision: raw.mod_revision ?? '0',
    version: raw.version ?? '0',
    lease: raw.lease && raw.lease !== '0' ? raw.lease : null,
  };
}

function rangeBody(key: string, prefix?: boolean): Record<string, string> {
  return prefix ? { key: b64(key), range_end: prefixEnd(key) } : { key: b64(key) };
}

function encodeCompare(c: Compare): Record<string, string> {
  const out: Record<string, string> = { key: b64(c.key), target: c.target.toUpperCase(), result: c.result ?? 'EQUAL' };
  if (c.target === 'value') out.value = b64(c.value);
  else if (c.target === 'lease') out.lease = c.lease;
  else out[{ create: 'create_revision', mod: 'mod_revision', version: 'version' }[c.target]] = String(c.revision);
  return out;
}

function encodeOp(op: TxnOp): Record<string, unknown> {
  if ('put' in op) {
    const { key, value, lease } = op.put;
    return { request_put: { key: b64(key), value: b64(value), ...(lease ? { lease } : {}) } };
  }
  if ('delete' in op) return { request_delete_range: rangeBody(op.delete.key, op.delete.prefix) };
  return { request_range: rangeBody(op.range.key, op.range.prefix) };
}

/** Errors after which the request surely never reached etcd, so another endpoint may take it. */
function neverSent(err: unknown): boolean {
  const code = (err as { cause?: { code?: unknown } } | undefined)?.cause?.code;
  return ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'].includes(
    String(code),
  );
}

function describeCause(err: unknown): string {
  if (err instanceof Error && err.name === 'TimeoutError') return 'timed out';
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  if (cause?.code) return String(cause.code);
  return err instanceof Error ? err.message : String(err);
}

export class EtcdClient {
  readonly endpoints: string[];
  private current = 0;
  private readonly timeoutMs: number;
  private readonly log: Logger;
  private readonly poster = new JsonPoster();

  constructor(opts: { endpoints: string[]; requestTimeoutMs?: number; logger?: Logger }) {
    if (opts.endpoints.length === 0) throw new BatonError('no etcd endpoints given', HINT);
    this.endpoints = opts.endpoints.map((e) => e.replace(/\/+$/, ''));
    this.timeoutMs = opts.requestTimeoutMs ?? 2000;
    this.log = opts.logger ?? silentLogger();
  }

  /**
   * POSTs to the current endpoint, moving on to the next ones when it cannot be reached.
   * A request that may have reached etcd (timeout, reset) is retried elsewhere only when
   * repeating it is harmless; a txn is not, so its caller gets the error instead.
   */
  async call<T>(path: string, body: unknown, idempotent = true): Promise<T> {
    const n = this.endpoints.length;
    const failures: string[] = [];
    let lastErr: unknown;
    const first = this.current;
    for (let i = 0; i < n; i++) {
      const index = (first + i) % n;
      const endpoint = this.endpoints[index]!;
      let status: number;
      let text: string;
      try {
        ({ status, text } = await this.poster.post(endpoint + path, JSON.stringify(body), this.timeoutMs));
      } catch (err) {
        lastErr = err;
        failures.push(`${endpoint} (${describeCause(err)})`);
        this.current = (index + 1) % n;
        this.log.debug({ endpoint, path, err: describeCause(err) }, 'etcd request failed');
        if (!idempotent && !neverSent(err)) break;
        continue;
      }
      this.current = index;
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new EtcdRequestError(`etcd at ${endpoint} sent non-JSON for ${path}: ${text.slice(0, 200)}`, -1, status);
      }
      if (status < 200 || status >= 300) {
        const e = parsed as { message?: string; error?: string; code?: number };
        throw new EtcdRequestError(`etcd ${path}: ${e.message ?? e.error ?? `HTTP ${status}`}`, e.code ?? -1, status);
      }
      return parsed as T;
    }
    throw new StoreUnavailableError(`cannot reach etcd for ${path}: tried ${failures.join(', ')}`, HINT, {
      cause: lastErr,
    });
  }

  /** Closes kept-alive connections (watches close through their handles). */
  close(): void {
    this.poster.close();
  }

  async range(key: string, opts: { prefix?: boolean } = {}): Promise<{ kvs: KeyValue[]; revision: string }> {
    const r = await this.call<{ header?: RawHeader; kvs?: RawKv[] }>('/v3/kv/range', rangeBody(key, opts.prefix));
    return { kvs: (r.kvs ?? []).map(decodeKv), revision: r.header?.revision ?? '0' };
  }

  /** Returns the revision of the write. */
  async put(key: string, value: string, opts: { lease?: string } = {}): Promise<string> {
    const body = { key: b64(key), value: b64(value), ...(opts.lease ? { lease: opts.lease } : {}) };
    const r = await this.call<{ header?: RawHeader }>('/v3/kv/put', body);
    return r.header?.revision ?? '0';
  }

  /** Returns how many keys were deleted. */
  async deleteRange(key: string, opts: { prefix?: boolean } = {}): Promise<number> {
    const r = await this.call<{ deleted?: string }>('/v3/kv/deleterange', rangeBody(key, opts.prefix));
    return Number(r.deleted ?? '0');
  }

  async txn(compare: Compare[], success: TxnOp[], failure: TxnOp[] = []): Promise<TxnResult> {
    const body = { compare: compare.map(encodeCompare), success: success.map(encodeOp), failure: failure.map(encodeOp) };
    const r = await this.call<{
      header?: RawHeader;
      succeeded?: boolean;
      responses?: { response_range?: { kvs?: RawKv[] } }[];
    }>('/v3/kv/txn', body, false);
    return {
      succeeded: r.succeeded === true,
      revision: r.header?.revision ?? '0',
      ranges: (r.responses ?? []).map((x) => (x.response_range?.kvs ?? []).map(decodeKv)),
    };
  }

  async grantLease(ttlSeconds: number): Promise<string> {
    const r = await this.call<{ ID?: string; error?: string }>('/v3/lease/grant', { TTL: ttlSeconds });
    if (!r.ID) throw new EtcdRequestError(`etcd did not grant a lease: ${r.error ?? 'no ID in reply'}`, -1, 200);
    return r.ID;
  }

  /** Remaining TTL in seconds; 0 when the lease no longer exists. */
  async keepAlive(id: string): Promise<number> {
    const r = await this.call<{ result?: { TTL?: string } }>('/v3/lease/keepalive', { ID: id });
    return Number(r.result?.TTL ?? '0');
  }

  /** Revoking a lease that is already gone is not an error. */
  async revokeLease(id: string): Promise<void> {
    try {
      await this.call('/v3/lease/revoke', { ID: id });
    } catch (err) {
      if (err instanceof EtcdRequestError && /lease not found/.test(err.message)) return;
      throw err;
    }
  }

  /**
   * Streams events for every key under prefix, from startRevision (null: from now on).
   * Reconnects after errors (100 ms backoff doubling to 2 s), resuming after the last revision
   * seen. If that revision was compacted it resumes from the current one and reports a
   * WatchCompactedError, since events were missed and the caller should re-read.
   */
  watchPrefix(
    prefix: string,
    startRevision: string | null,
    onEvents: (events: WatchEvent[], revision: string) => void,
    onError: (err: Error) => void,
  ): WatchHandle {
    let closed = false;
    let abortStream: (() => void) | null = null;
    let next: bigint | null = startRevision === null ? null : BigInt(startRevision);
    let backoff = 100;
    let wake: (() => void) | null = null;

    const streamOnce = async (endpoint: string): Promise<void> => {
      const create: Record<string, unknown> = { ...rangeBody(prefix, true) };
      if (next !== null) create.start_revision = next.toString();
      // Only the connection and the headers are bounded by the request timeout; the body lives on.
      const stream = this.poster.openStream(endpoint + '/v3/watch', JSON.stringify({ create_request: create }), this.timeoutMs);
      abortStream = stream.abort;
      if (closed) stream.abort();
      const res = await stream.response;
      if (res.statusCode !== 200) {
        let text = '';
        for await (const chunk of res) text += String(chunk);
        throw new Error(`watch on ${endpoint}: HTTP ${res.statusCode ?? '?'} ${text}`);
      }
      res.setEncoding('utf8');
      let buf = '';
      for await (const chunk of res as AsyncIterable<string>) {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line && !handleMessage(line)) {
            stream.abort();
            return;
          }
        }
      }
      throw new Error(`watch stream from ${endpoint} ended`);
    };

    /** Returns false when the stream must be reopened. */
    const handleMessage = (line: string): boolean => {
      const msg = JSON.parse(line) as { result?: RawWatchResult; error?: { message?: string } };
      if (msg.error) throw new Error(`watch: ${msg.error.message ?? JSON.stringify(msg.error)}`);
      const r = msg.result ?? {};
      const headerRev = r.header?.revision ?? '0';
      if (r.created) {
        backoff = 100;
        if (next === null) next = BigInt(headerRev) + 1n;
      }
      if (r.canceled) {
        if (r.compact_revision && r.compact_revision !== '0') {
          this.log.warn({ prefix, from: next?.toString(), compacted: r.compact_revision }, 'watch revision compacted');
          next = null;
          if (!closed) onError(new WatchCompactedError(`watch on ${prefix} missed events: revision compacted to ${r.compact_revision}`));
          return false;
        }
        throw new Error(`watch canceled by etcd: ${r.cancel_reason ?? 'no reason given'}`);
      }
      if (r.events?.length) {
        const events = r.events.map((e) => ({ type: e.type === 'DELETE' ? 'delete' : 'put', kv: decodeKv(e.kv ?? {}) }) as const);
        const last = events.reduce((m, e) => (BigInt(e.kv.modRevision) > m ? BigInt(e.kv.modRevision) : m), 0n);
        if (last > 0n) next = last + 1n;
        if (!closed) onEvents(events, headerRev);
      }
      return true;
    };

    const loop = async () => {
      while (!closed) {
        const endpoint = this.endpoints[this.current]!;
        try {
          await streamOnce(endpoint);
        } catch (err) {
          if (closed) return;
          this.current = (this.current + 1) % this.endpoints.length;
          this.log.debug({ endpoint, err: describeCause(err) }, 'watch stream failed, reconnecting');
          onError(
            new StoreUnavailableError(`etcd watch on ${endpoint} failed: ${describeCause(err)}`, HINT, { cause: err }),
          );
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, backoff);
            wake = () => {
              clearTimeout(t);
              resolve();
            };
          });
          wake = null;
          backoff = Math.min(backoff * 2, 2000);
        }
      }
    };
    void loop();

    return {
      close: () => {
        closed = true;
        abortStream?.();
        wake?.();
      },
    };
  }
}
