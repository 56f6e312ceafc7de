// Which statements leave session state the proxy can rebuild on another server by running them again
// (settings), that undo state it keeps (DISCARD ALL, DEALLOCATE), or that leave none beyond their
// transaction (SET LOCAL, set_config(..., true), as PostgREST and row-level-security apps send them
// on every request). Everything else that session-state.ts calls pinning stays pinning. Conservative
// on purpose: a statement this does not recognise exactly (quoted values holding a ';', SET SESSION
// CHARACTERISTICS...) pins the session.
import { RISKY, sqlPinReason, stripComments } from './session-state.js';

/** What running a simple Query does to the state the proxy keeps for replay. */
export type QueryEffect =
  /** Settings (SET/RESET of configuration parameters, lower-cased names; "*" for RESET ALL): the
   * statement is replayed as it was sent. No names: nothing outlasts the transaction (the Query only
   * cleared what an unpinned session cannot hold, or set things for its transaction); not replayed. */
  | { kind: 'settings'; names: string[] }
  /** DISCARD ALL: the server session is back to a fresh one. */
  | { kind: 'discard-all' }
  /** DEALLOCATE: a protocol-level prepared statement (null: all of them) is gone. */
  | { kind: 'deallocate'; name: string | null };

const IDENT = String.raw`[A-Za-z_][A-Za-z0-9_$]*`;
/** SET [SESSION] <parameter> {TO | =} ..., where <parameter> is not a keyword of another SET form. */
const SET_PARAM = new RegExp(
  String.raw`^SET\s+(?:SESSION\s+)?(?!(?:LOCAL|ROLE|TRANSACTION|CONSTRAINTS|SESSION|AUTHORIZATION|CHARACTERISTICS|TIME)\b)(${IDENT}(?:\.${IDENT})?)\s*(?:=|TO\b)`,
  'i',
);
const SET_TIME_ZONE = /^SET\s+(?:SESSION\s+)?TIME\s+ZONE\s/i;
/** The role and session user: settings too, run again under the same login. */
const SET_ROLE = /^(?:SET\s+(?:SESSION\s+)?ROLE\s|RESET\s+ROLE$)/i;
const SET_SESSION_AUTHORIZATION = /^(?:SET\s+(?:SESSION\s+)?SESSION\s+AUTHORIZATION\s|RESET\s+SESSION\s+AUTHORIZATION$)/i;
const RESET = new RegExp(String.raw`^RESET\s+(?!(?:ROLE|SESSION)\b)(ALL|${IDENT}(?:\.${IDENT})?)$`, 'i');
const DISCARD_ALL = /^DISCARD\s+ALL$/i;
/** set_config(name, value, false): a session-level setting, as Django sends its time zone. */
const SET_CONFIG = /^SELECT\s+(?:pg_catalog\.)?set_config\s*\(\s*'([A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?)'\s*,\s*'(?:[^'\\]|'')*'\s*,\s*false\s*\)$/i;
/** Statements that only take away state a session without pinned state cannot have, as connection
 * pools send them when a connection is given back (asyncpg's reset; DISCARD forms). */
const CLEARS_NOTHING_KEPT = [
  /^SELECT\s+(?:pg_catalog\.)?pg_advisory_unlock_all\s*\(\s*\)$/i,
  /^CLOSE\s+ALL$/i,
  /^UNLISTEN\s+\*$/i,
  /^DISCARD\s+(?:PLANS|SEQUENCES|TEMP|TEMPORARY)$/i,
];
/** SET forms whose effect ends with the transaction (outside one they do nothing). */
const TRANSACTION_SCOPED_SET = /^SET\s+(?:LOCAL|TRANSACTION|CONSTRAINTS)\b/i;
const DEALLOCATE = new RegExp(String.raw`^DEALLOCATE\s+(?:PREPARE\s+)?(?:(ALL)|(${IDENT})|"((?:[^"]|"")+)")$`, 'i');

/** The arguments of the call whose '(' is at `open`, split at its top-level commas; null when the
 * parentheses or quotes do not balance. */
function callArguments(text: string, open: number): string[] | null {
  const args: string[] = [];
  let depth = 0;
  let start = open + 1;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === "'" || c === '"') {
      const close = text.indexOf(c, i + 1);
      if (close < 0) return null;
      i = close; // a doubled quote inside a literal reads as two literals side by side: the same here
    } else if (c === '(') depth++;
    else if (c === ')' && --depth === 0) {
      args.push(text.slice(start, i));
      return args;
    } else if (c === ',' && depth === 1) {
      args.push(text.slice(start, i));
      start = i + 1;
    }
  }
  return null;
}

/** The text with the name of every transaction-local set_config call (third argument true) blanked
 * out, so that the pin rule does not count it; its arguments stay for the rule to see. */
function hideLocalSetConfig(text: string): string {
  const call = /set_config\s*\(/gi;
  let out = text;
  for (let m = call.exec(text); m; m = call.exec(text)) {
    const args = callArguments(text, m.index + m[0].length - 1);
    if (args?.length === 3 && args[2]!.trim().toLowerCase() === 'true') out = `${out.slice(0, m.index)}${'_'.repeat(10)}${out.slice(m.index + 10)}`;
  }
  return out;
}

/** Why SQL leaves state in the session beyond its own transaction, or null: sqlPinReason, except that
 * SET LOCAL, SET TRANSACTION, SET CONSTRAINTS and set_config(..., true) leave none. */
export function lastingPinReason(sql: string): string | null {
  const text = hideLocalSetConfig(stripComments(sql));
  return sqlPinReason(
    text
      .split(';')
      .filter((s) => !TRANSACTION_SCOPED_SET.test(s.trim()))
      .join(';'),
  );
}

function statements(sql: string): string[] {
  const text = sql.includes('--') || sql.includes('/*') ? stripComments(sql) : sql;
  return text
    .split(';')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function settingName(statement: string): string | null {
  const setConfig = SET_CONFIG.exec(statement);
  if (setConfig) return setConfig[1]!.toLowerCase();
  if (RISKY.test(statement)) return null;
  if (SET_TIME_ZONE.test(statement)) return 'timezone';
  if (SET_ROLE.test(statement)) return 'role';
  if (SET_SESSION_AUTHORIZATION.test(statement)) return 'session_authorization';
  const set = SET_PARAM.exec(statement);
  if (set) return set[1]!.toLowerCase();
  const reset = RESET.exec(statement);
  if (reset) return reset[1]!.toUpperCase() === 'ALL' ? '*' : reset[1]!.toLowerCase();
  return null;
}

/** The effect of a simple Query's SQL on replayable state, or null when it is none of the forms above. */
export function queryEffect(sql: string): QueryEffect | null {
  const parts = statements(sql);
  if (parts.length === 0) return null;
  if (parts.length === 1) {
    if (DISCARD_ALL.test(parts[0]!)) return { kind: 'discard-all' };
    const d = DEALLOCATE.exec(parts[0]!);
    if (d) return { kind: 'deallocate', name: d[1] ? null : d[2] ? d[2].toLowerCase() : d[3]!.replace(/""/g, '"') };
  }
  const names: string[] = [];
  for (const p of parts) {
    if (CLEARS_NOTHING_KEPT.some((re) => re.test(p)) || TRANSACTION_SCOPED_SET.test(p)) continue;
    const name = settingName(p);
    // Anything else may have effects (an INSERT): such a Query is never run again, so it may hold
    // no lasting setting.
    if (name === null) return lastingPinReason(sql) === null ? { kind: 'settings', names: [] } : null;
    names.push(name);
  }
  return { kind: 'settings', names };
}
