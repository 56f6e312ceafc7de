// The session state a read-write session may carry to a new leader: its named prepared statements
// (Parse) and its settings (SET/RESET, by simple Query or, as JDBC sends them, by an unnamed Parse,
// Bind and Execute), kept in the order they took effect so that they can be run again there
// (server-replay.ts) before the session moves. A message enters the log only once the server has
// confirmed it (ParseComplete; CommandComplete and a ReadyForQuery 'I' without an error), so a
// statement that failed on the old server is not created on the new one. A setting made inside a
// transaction block enters it when that transaction commits (read from the CommandComplete tags,
// the session staying in TypeScript until then), and not at all when it rolls back. To match replies to
// requests the TypeScript relay follows every message of a batch, from the first sent while the
// session was idle to the ReadyForQuery that ends it (the session stays out of the native relay
// meanwhile). Anything it cannot follow exactly pins the session, as before this log existed. The
// native relay keeps plain `SET name = value` Queries itself (scan.h, kept_t) and hands them over
// with the session: keptByRelay and sentByRelay take them in.
import { queryEffect, type QueryEffect } from './replay-sql.js';
import { encodeMessage, encodeQuery } from './protocol-encode.js';
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
  /** add: a named statement to keep; sets: an unnamed statement that is a setting. */
  | { kind: 'parse'; unnamed: boolean; add: ReplayEntry | null; sets: ReplayEntry | null }
  /** Names are null when the message was not whole in the chunk at hand. */
  | { kind: 'bind'; portal: string | null; statement: string | null }
  | { kind: 'execute'; portal: string | null }
  | { kind: 'close'; name: string | null }
  | { kind: 'sync' }
  | { kind: 'query'; effect: QueryEffect | null; entry: ReplayEntry | null; failed: boolean };

/** Kept per session at most; beyond it the session pins (a client preparing without bound). */
export const REPLAY_LIMITS = { entries: 1000, bytes: 1 << 20 };
/** An unnamed Parse message larger than this is not kept (UNNAMED_PARSE_MAX in scan.h). */
export const UNNAMED_PARSE_LIMIT = 65536;

const PARSE_COMPLETE = 0x31; // '1'
const BIND_COMPLETE = 0x32; // '2'
const CLOSE_COMPLETE = 0x33; // '3'
const ERROR_RESPONSE = 0x45; // 'E'
const COMMAND_COMPLETE = 0x43; // 'C'
const EMPTY_QUERY = 0x49; // 'I'
const PORTAL_SUSPENDED = 0x73; // 's'

const frameOf = (type: number, body: Buffer): Buffer => encodeMessage(String.fromCharCode(type), body);

/** The parameter a Query frame the native relay kept sets, as queryEffect reads it; null if it is not
 * exactly one (the relay's reading and this one disagree: a bug, which pins rather than guesses). */
function relaySettingNames(frame: Buffer): string[] | null {
  const effect = frame.length > 5 && frame[0] === 0x51 ? queryEffect(frame.toString('utf8', 5, frame.length - 1)) : null;
  return effect?.kind === 'settings' && effect.names.length === 1 ? effect.names : null;
}
const UNREADABLE_RELAY_SETTING = 'a setting the native relay kept that the proxy reads otherwise';

/** Settings that change what later statements may do: never folded into a later one. */
const isBarrier = (name: string): boolean => name === 'role' || name === 'session_authorization';

export class SessionReplayLog {
  private entries: ReplayEntry[] = [];
  private bytes = 0;
  private pending: Pending[] = [];
  /** As the server has them so far (from its replies, since it may skip what the client sent): the
   * unnamed statement and the unnamed portal run this setting. */
  private unnamedStatementSets: ReplayEntry | null = null;
  private unnamedPortalSets: ReplayEntry | null = null;
  /** The batch up to the next Sync: settings it executed (confirmed), and whether it ran anything else. */
  private batchSettings: ReplayEntry[] = [];
  private batchRanOther = false;
  /** An error ended the batch early: its settings are undone with an implicit transaction, and
   * survive a failed block only by a rollback to a savepoint made after them. */
  private batchFailed = false;
  /** Settings confirmed inside the open transaction block (null: none), which last only if it
   * commits; the session stays in TypeScript until it ends, so that every reply is seen. */
  private txSettings: ReplayEntry[] | null = null;
  /** How the transaction ended, from a CommandComplete tag seen since a setting awaits its end. */
  private txEnd: 'commit' | 'rollback' | null = null;
  /**
   * The last unnamed Parse the client sent (null: none, a Query or Close destroyed it, or it was over
   * UNNAMED_PARSE_LIMIT), prepared again after a move: a client may Bind it in a later round trip
   * (pgx's describe-exec mode, PQprepare(conn, "")). If it failed, the client knows and parses again
   * before binding; preparing it again is then harmless. The native relay keeps its own while it has
   * the session (scan.c) and hands it over.
   */
  unnamedParse: Buffer | null = null;

  /** A batch is being followed: its replies must be seen here. */
  get following(): boolean {
    return this.pending.length > 0;
  }

  /** The session must stay in TypeScript: a batch is followed, a later Bind could run a setting
   * (the unnamed statement is one) that the native relay would not show, or a setting waits for the
   * end of its transaction block. */
  get needsTypeScript(): boolean {
    return this.pending.length > 0 || this.unnamedStatementSets !== null || this.unnamedPortalSets !== null || this.txSettings !== null;
  }

  /** Settings (the role included) are kept: a RESET ALL would change what a move replays. */
  get holdsSettings(): boolean {
    return this.entries.some((e) => e.kind === 'settings');
  }

  /** For SHOW CLIENTS: "2 prepared statements, 1 setting", or null when there is nothing to carry;
   * with the settings the native relay keeps for the session now (keptByRelay would add them). */
  summary(relayKept: readonly Buffer[] = []): string | null {
    let entries = this.entries;
    if (relayKept.length > 0) {
      const copy = new SessionReplayLog();
      copy.entries = [...this.entries];
      copy.bytes = this.bytes;
      copy.keptByRelay(relayKept);
      entries = copy.entries;
    }
    const prepared = entries.filter((e) => e.kind === 'prepare').length;
    const settings = entries.length - prepared;
    const parts = [
      ...(prepared ? [`${prepared} prepared statement${prepared === 1 ? '' : 's'}`] : []),
      ...(settings ? [`${settings} setting${settings === 1 ? '' : 's'}`] : []),
    ];
    return parts.length ? parts.join(', ') : null;
  }

  /** Settings the native relay passed and the server confirmed while it had the session, in the
   * order they took effect (Handover.keptSettings). Returns a pin reason or null. */
  keptByRelay(frames: readonly Buffer[]): string | null {
    for (const frame of frames) {
      const names = relaySettingNames(frame);
      if (!names) return UNREADABLE_RELAY_SETTING;
      const reason = this.add({ kind: 'settings', names, frame });
      if (reason) return reason;
    }
    return null;
  }

  /** A setting the native relay sent and handed over unanswered (Handover.pendingSetting): `failed`,
   * its ErrorResponse has passed; `alone`, nothing was sent after it, so the replies still to come
   * are its own and this log follows them. Returns a pin reason or null. */
  sentByRelay(frame: Buffer, failed: boolean, alone: boolean): string | null {
    if (!alone) return 'a setting sent in a pipeline the proxy could not follow';
    const names = relaySettingNames(frame);
    if (!names) return UNREADABLE_RELAY_SETTING;
    return this.expect({ kind: 'query', effect: { kind: 'settings', names }, entry: { kind: 'settings', names, frame }, failed });
  }

  /** The session is on a new server, which has no unnamed statement or portal. */
  moved(): void {
    this.unnamedStatementSets = null;
    this.unnamedPortalSets = null;
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
    this.trackUnnamedParse(type, body);
    const pin = messagePinReason(type, body);
    if (!this.following && busy) {
      if (pin) return pin;
      if (type === 0x43 /* C: Close */ && body?.[0] === 0x53 && this.entries.length > 0) return 'a prepared statement closed in a pipeline the proxy could not follow';
      if ((this.unnamedStatementSets || this.unnamedPortalSets) && (type === 0x42 /* B */ || type === 0x45) /* E */) return 'a setting run in a pipeline the proxy could not follow';
      return null;
    }
    switch (type) {
      case 0x50 /* P: Parse */: {
        const name = body && cstring(body, 0);
        const sql = body && name ? cstring(body, name.next) : null;
        if (!body || !name || !sql) return pin;
        if (name.text === '') {
          if (!pin) return this.expect({ kind: 'parse', unnamed: true, add: null, sets: null });
          const effect = queryEffect(sql.text);
          if (effect?.kind !== 'settings') return pin;
          // Run by a later Bind and Execute of the unnamed portal, which this log must then see.
          const sets: ReplayEntry | null = effect.names.length ? { kind: 'settings', names: effect.names, frame: encodeQuery(sql.text) } : null;
          return this.expect({ kind: 'parse', unnamed: true, add: null, sets });
        }
        const sqlPins = sqlPinReason(sql.text);
        if (sqlPins) return sqlPins;
        return this.expect({ kind: 'parse', unnamed: false, add: { kind: 'prepare', names: [name.text], frame: frameOf(type, body) }, sets: null });
      }
      case 0x42 /* B: Bind */: {
        const portal = body && cstring(body, 0);
        const statement = body && portal ? cstring(body, portal.next) : null;
        return this.expect({ kind: 'bind', portal: portal?.text ?? null, statement: statement?.text ?? null });
      }
      case 0x45 /* E: Execute */: {
        const portal = body && cstring(body, 0);
        return this.expect({ kind: 'execute', portal: portal?.text ?? null });
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
        const entry = effect.kind === 'settings' && effect.names.length > 0 ? { kind: 'settings' as const, names: effect.names, frame: frameOf(type, body) } : null;
        return this.expect({ kind: 'query', effect, entry, failed: false });
      }
      default:
        return pin; // a FunctionCall pins; Describe, Flush and COPY data get no reply we follow
    }
  }

  private trackUnnamedParse(type: number, body: Buffer | null): void {
    if (type === 0x51 /* Q */) this.unnamedParse = null;
    else if (type === 0x43 /* C: Close */ && (!body || (body[0] === 0x53 && body[1] === 0))) this.unnamedParse = null;
    else if (type === 0x50 /* P */ && (!body || body[0] === 0)) this.unnamedParse = body && body.length + 5 <= UNNAMED_PARSE_LIMIT ? frameOf(type, body) : null;
  }

  private expect(p: Pending): null {
    this.pending.push(p);
    return null;
  }

  /**
   * A backend message of a followed batch (its type, and its body when whole in the chunk at hand;
   * ReadyForQuery goes to readyForQuery). Returns why the session is now pinned (the replies did not
   * match the requests, or a transaction holding a setting ended in a way this log does not follow), or null.
   */
  serverMessage(type: number, body: Buffer | null = null): string | null {
    const front = this.pending[0];
    if (!front) return null;
    if (type === COMMAND_COMPLETE && (this.txSettings !== null || this.batchSettings.length > 0)) {
      const reason = this.transactionControl(body);
      if (reason) return reason;
    }
    switch (type) {
      case PARSE_COMPLETE:
        if (front.kind !== 'parse') return this.lost('ParseComplete');
        this.pending.shift();
        if (front.unnamed) this.unnamedStatementSets = front.sets;
        return front.add ? this.add(front.add) : null;
      case BIND_COMPLETE: {
        if (front.kind !== 'bind') return this.lost('BindComplete');
        this.pending.shift();
        const sets = front.statement === '' ? this.unnamedStatementSets : null;
        if (front.statement === null && this.unnamedStatementSets) return 'a Bind the proxy could not read while the unnamed statement is a setting';
        if (sets && front.portal !== '') return 'a setting bound to a named portal';
        if (front.portal === '') this.unnamedPortalSets = sets;
        else if (front.portal === null && this.unnamedPortalSets) return 'a Bind the proxy could not read while the unnamed portal is a setting';
        return null;
      }
      case CLOSE_COMPLETE:
        if (front.kind !== 'close') return this.lost('CloseComplete');
        this.pending.shift();
        if (front.name !== null) this.forget(front.name);
        return null;
      case COMMAND_COMPLETE:
      case EMPTY_QUERY:
      case PORTAL_SUSPENDED:
        if (front.kind === 'query') return null; // one per statement of the Query
        if (front.kind !== 'execute') return this.lost('CommandComplete');
        this.pending.shift();
        if (front.portal === null && this.unnamedPortalSets) return 'an Execute the proxy could not read while the unnamed portal is a setting';
        if (front.portal === '' && this.unnamedPortalSets) this.batchSettings.push(this.unnamedPortalSets);
        else this.batchRanOther = true;
        return null;
      case ERROR_RESPONSE:
        // A failed Query is answered up to its ReadyForQuery; in a pipeline, the server skips to the
        // Sync, and the implicit transaction up to it is rolled back.
        if (front.kind === 'query') {
          front.failed = true;
          return null;
        }
        // A failed unnamed Parse has dropped the earlier unnamed statement first, as PostgreSQL does.
        if (front.kind === 'parse' && front.unnamed) this.unnamedStatementSets = null;
        // Up to the Sync, the server discards what it receives (a Query included).
        while (this.pending[0] && this.pending[0].kind !== 'sync') this.pending.shift();
        this.batchFailed = true;
        return this.pending.length === 0 ? this.lost('ErrorResponse without a Sync to come') : null;
      default:
        return null;
    }
  }

  /** A ReadyForQuery of a followed batch, with its transaction status. Returns a pin reason or null. */
  readyForQuery(status: string): string | null {
    const front = this.pending.shift();
    // The transaction ended (portals with it) unless the status says it is still open.
    if (status === 'I') this.unnamedPortalSets = null;
    if (front?.kind === 'sync') return this.endBatch(status);
    if (!front) return null;
    if (front.kind !== 'query') return this.lost('ReadyForQuery');
    // A simple Query drops the unnamed statement and portal.
    this.unnamedStatementSets = null;
    this.unnamedPortalSets = null;
    // DISCARD ALL (never inside a transaction block) and DEALLOCATE are not undone by a rollback.
    if (!front.failed && front.effect && front.effect.kind !== 'settings') this.apply(front.effect);
    return this.settle(status, !front.failed && front.entry ? [front.entry] : [], false);
  }

  /** The end of a batch up to a Sync: the settings it executed, and whether anything else ran in it. */
  private endBatch(status: string): string | null {
    const settings = this.batchFailed && status === 'I' ? [] : this.batchSettings;
    const ranOther = this.batchRanOther;
    this.batchSettings = [];
    this.batchRanOther = false;
    this.batchFailed = false;
    return this.settle(status, settings, ranOther);
  }

  /**
   * After each request (a Query, or a batch up to its Sync): `fresh`, the settings it executed, which
   * hold at once outside a transaction block (if nothing else ran with them: a ROLLBACK in the same
   * batch would have undone them), and inside one wait for its end with those made before them in
   * it: kept at COMMIT, dropped at ROLLBACK. A rollback to a savepoint or a chained transaction
   * after a setting pins the session rather than be modelled.
   */
  private settle(status: string, fresh: ReplayEntry[], mixed: boolean): string | null {
    const end = this.txEnd;
    this.txEnd = null;
    const held = this.txSettings;
    if (held !== null && status === 'I') {
      this.txSettings = null;
      if (end === null) return 'a transaction block that changed a setting ended in a way the proxy could not read';
      if (fresh.length > 0) return 'a setting changed in a batch with other statements';
      return end === 'commit' ? this.addAll(held) : null;
    }
    if (status !== 'I' && end !== null) return 'a transaction chained or rolled back to a savepoint after a setting changed in it';
    if (fresh.length === 0) return null;
    if (status === 'I') return mixed ? 'a setting changed in a batch with other statements' : this.addAll(fresh);
    // In a failed block ('E': a batch's settings before its error) they wait too: the block can only
    // be rolled back, which drops them, or rolled back to a savepoint, which pins above.
    this.txSettings = [...(held ?? []), ...fresh];
    return null;
  }

  /** A CommandComplete while a setting waits for its transaction to end (or its batch to). ROLLBACK
   * TO SAVEPOINT is tagged ROLLBACK too: one that leaves the block open is caught at the
   * ReadyForQuery, and one followed by another end in the same request here. SAVEPOINT and RELEASE
   * alone undo nothing. */
  private transactionControl(body: Buffer | null): string | null {
    const tag = body ? cstring(body, 0)?.text : undefined;
    if (tag === undefined) return 'a CommandComplete the proxy could not read while a setting waits for its transaction to end';
    if (tag !== 'COMMIT' && tag !== 'ROLLBACK') return null; // PREPARE TRANSACTION pinned the session when sent (sqlPinReason)
    // A batch's own settings are settled at its Sync, by then perhaps behind an error that rolled back
    // only what followed this end: such a batch is not modelled (it pinned at its Sync before, too).
    if (this.batchSettings.length > 0) return 'a setting changed in a batch with other statements';
    if (this.txEnd !== null) return 'a transaction ended twice in one request after a setting changed in it (a rollback to a savepoint, then the end of the block?)';
    this.txEnd = tag === 'COMMIT' ? 'commit' : 'rollback';
    return null;
  }

  private addAll(settings: readonly ReplayEntry[]): string | null {
    for (const s of settings) {
      const reason = this.add(s);
      if (reason) return reason;
    }
    return null;
  }

  private lost(what: string): string {
    this.pending = [];
    return `a ${what} the proxy could not match to a request (its session state is unknown)`;
  }

  private apply(effect: Exclude<QueryEffect, { kind: 'settings' }>): void {
    if (effect.kind === 'discard-all') {
      this.entries = [];
      this.bytes = 0;
    } else if (effect.name === null) this.keep((e) => e.kind !== 'prepare');
    else this.forget(effect.name);
  }

  private add(entry: ReplayEntry): string | null {
    // RESET ALL with no setting kept changes nothing a move would replay (the native relay passes it then, too).
    if (entry.kind === 'settings' && entry.names.length === 1 && entry.names[0] === '*' && !this.holdsSettings) return null;
    if (entry.kind === 'settings' && entry.names.length === 1 && !entry.names.some(isBarrier)) {
      // A parameter set again since the last Parse or role change replaces its earlier setting;
      // before one it stays, since a statement may have been parsed under it (search_path) and a
      // role may have been needed to set it.
      const name = entry.names[0]!;
      let barrier = this.entries.length - 1;
      while (barrier >= 0 && this.entries[barrier]!.kind !== 'prepare' && !this.entries[barrier]!.names.some(isBarrier)) barrier--;
      this.keep((e, i) => i <= barrier || e.kind !== 'settings' || !(e.names.length === 1 && (e.names[0] === name || name === '*')));
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
