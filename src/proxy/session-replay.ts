// The session state a read-write session may carry to a new leader: its named prepared statements
// (Parse) and its settings (SET/RESET), kept in the order they took effect so that they can be run
// again there (server-replay.ts) before the session moves. A message enters the log only once the
// server has confirmed it (ParseComplete; a Query ending without an error), so a statement that
// failed on the old server is not created on the new one. To match replies to requests the
// TypeScript relay follows every message of a batch, from the first sent while the session was
// idle to the ReadyForQuery that ends it (the session stays out of the native relay meanwhile).
// Anything it cannot follow exactly pins the session, as before this log existed.
import { queryEffect, type QueryEffect } from './replay-sql.js';
import { cstring, messagePinReason, sqlPinReason } from './session-state.js';

export interface ReplayEntry {
  kind: 'prepare' | 'settings';
  /** The statement name (prepare) or the parameters set ("*": RESET ALL). */
  names: string[];
  /** The frontend message to send again: a Parse (followed by a Sync when replayed) or a Query. */
  frame: Buffer;
}

/** A frontend message waiting for its reply, as the server will answer them: in order. */
type Pending =
  | { kind: 'parse'; add: ReplayEntry | null }
  | { kind: 'close'; name: string | null }
  | { kind: 'sync' }
  | { kind: 'query'; effect: QueryEffect | null; entry: ReplayEntry | null; failed: boolean };

/** Kept per session at most; beyond it the session pins (a client preparing without bound). */
export const REPLAY_LIMITS = { entries: 1000, bytes: 1 << 20 };

const PARSE_COMPLETE = 0x31; // '1'
const CLOSE_COMPLETE = 0x33; // '3'
const ERROR_RESPONSE = 0x45; // 'E'

function frameOf(type: number, body: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame[0] = type;
  frame.writeInt32BE(4 + body.length, 1);
  body.copy(frame, 5);
  return frame;
}

export class SessionReplayLog {
  private entries: ReplayEntry[] = [];
  private bytes = 0;
  private pending: Pending[] = [];

  /** A batch is being followed: its replies must be seen here, so the session stays in TypeScript. */
  get following(): boolean {
    return this.pending.length > 0;
  }

  /** For SHOW CLIENTS: "2 prepared statements, 1 setting", or null when there is nothing to carry. */
  summary(): string | null {
    const prepared = this.entries.filter((e) => e.kind === 'prepare').length;
    const settings = this.entries.length - prepared;
    const parts = [
      ...(prepared ? [`${prepared} prepared statement${prepared === 1 ? '' : 's'}`] : []),
      ...(settings ? [`${settings} setting${settings === 1 ? '' : 's'}`] : []),
    ];
    return parts.length ? parts.join(', ') : null;
  }

  /** What to run on a new server, in order. */
  get replay(): readonly ReplayEntry[] {
    return this.entries;
  }

  /**
   * A frontend message on its way to the server. `busy`: the server has not answered everything sent
   * before it (then a batch that began elsewhere, in the native relay, cannot be followed).
   * Returns why the session is now pinned, or null.
   */
  clientMessage(type: number, body: Buffer | null, busy: boolean): string | null {
    const pin = messagePinReason(type, body);
    if (!this.following && busy) {
      if (pin) return pin;
      if (type === 0x43 /* C: Close */ && body?.[0] === 0x53 && this.entries.length > 0) return 'a prepared statement closed in a pipeline the proxy could not follow';
      return null;
    }
    switch (type) {
      case 0x50 /* P: Parse */: {
        if (!pin) return this.expect({ kind: 'parse', add: null });
        const name = body && cstring(body, 0);
        const sql = body && name ? cstring(body, name.next) : null;
        if (!body || !name || name.text === '' || !sql) return pin;
        const sqlPins = sqlPinReason(sql.text);
        if (sqlPins) return sqlPins;
        return this.expect({ kind: 'parse', add: { kind: 'prepare', names: [name.text], frame: frameOf(type, body) } });
      }
      case 0x43 /* C: Close */: {
        const name = body && body[0] === 0x53 /* S */ ? cstring(body, 1) : null;
        return this.expect({ kind: 'close', name: name && name.text !== '' ? name.text : null });
      }
      case 0x53 /* S: Sync */:
        return this.expect({ kind: 'sync' });
      case 0x51 /* Q: Query */: {
        if (!pin) return this.expect({ kind: 'query', effect: null, entry: null, failed: false });
        const effect = body && queryEffect(body.toString('utf8', 0, Math.max(0, body.length - 1)));
        if (!body || !effect) return pin;
        const entry = effect.kind === 'settings' ? { kind: 'settings' as const, names: effect.names, frame: frameOf(type, body) } : null;
        return this.expect({ kind: 'query', effect, entry, failed: false });
      }
      default:
        return pin; // a FunctionCall pins; Bind, Execute, Describe, Flush and COPY data get no reply we follow
    }
  }

  private expect(p: Pending): null {
    this.pending.push(p);
    return null;
  }

  /**
   * A backend message of a followed batch (its type; ReadyForQuery goes to readyForQuery). Returns
   * why the session is now pinned (the replies did not match the requests), or null.
   */
  serverMessage(type: number): string | null {
    const front = this.pending[0];
    if (!front) return null;
    switch (type) {
      case PARSE_COMPLETE:
        if (front.kind !== 'parse') return this.lost('ParseComplete');
        this.pending.shift();
        return front.add ? this.add(front.add) : null;
      case CLOSE_COMPLETE:
        if (front.kind !== 'close') return this.lost('CloseComplete');
        this.pending.shift();
        if (front.name !== null) this.forget(front.name);
        return null;
      case ERROR_RESPONSE:
        // A failed Query is answered up to its ReadyForQuery; in a pipeline, the server skips to the Sync.
        if (front.kind === 'query') front.failed = true;
        else while (this.pending[0] && this.pending[0].kind !== 'sync' && this.pending[0].kind !== 'query') this.pending.shift();
        return null;
      default:
        return null;
    }
  }

  /** A ReadyForQuery of a followed batch, with its transaction status. Returns a pin reason or null. */
  readyForQuery(status: string): string | null {
    const front = this.pending.shift();
    if (!front || front.kind === 'sync') return null;
    if (front.kind !== 'query') return this.lost('ReadyForQuery');
    if (front.failed || !front.effect) return null;
    // A setting made inside a transaction block lasts only if that transaction commits.
    if (front.effect.kind === 'settings' && status !== 'I') return 'a setting changed inside a transaction block';
    return this.apply(front.effect, front.entry);
  }

  private lost(what: string): string {
    this.pending = [];
    return `a ${what} the proxy could not match to a request (its session state is unknown)`;
  }

  private apply(effect: QueryEffect, entry: ReplayEntry | null): string | null {
    if (effect.kind === 'discard-all') {
      this.entries = [];
      this.bytes = 0;
      return null;
    }
    if (effect.kind === 'deallocate') {
      if (effect.name === null) this.keep((e) => e.kind !== 'prepare');
      else this.forget(effect.name);
      return null;
    }
    return entry ? this.add(entry) : null;
  }

  private add(entry: ReplayEntry): string | null {
    if (entry.kind === 'settings' && entry.names.length === 1) {
      // A parameter set again since the last Parse replaces its earlier setting; before a Parse it
      // stays, since the statement may have been parsed under it (search_path).
      const name = entry.names[0]!;
      let lastParse = this.entries.length - 1;
      while (lastParse >= 0 && this.entries[lastParse]!.kind !== 'prepare') lastParse--;
      this.keep((e, i) => i < lastParse || e.kind !== 'settings' || !(e.names.length === 1 && (e.names[0] === name || name === '*')));
    }
    this.entries.push(entry);
    this.bytes += entry.frame.length;
    if (this.entries.length > REPLAY_LIMITS.entries || this.bytes > REPLAY_LIMITS.bytes) {
      return `more session state than the proxy keeps to carry it to a new leader (${this.entries.length} statements and settings, ${this.bytes} bytes)`;
    }
    return null;
  }

  private forget(name: string): void {
    this.keep((e) => !(e.kind === 'prepare' && e.names[0] === name));
  }

  private keep(test: (e: ReplayEntry, i: number) => boolean): void {
    this.entries = this.entries.filter(test);
    this.bytes = this.entries.reduce((n, e) => n + e.frame.length, 0);
  }
}
