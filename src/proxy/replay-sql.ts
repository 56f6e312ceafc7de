// Which statements leave session state the proxy can rebuild on another server by running them again
// (settings), or that undo state it keeps (DISCARD ALL, DEALLOCATE); transaction-scoped settings
// (SET LOCAL, set_config(..., true)) pin nothing already in session-state.ts and are skipped here.
// Everything else that session-state.ts calls pinning stays pinning. Conservative
// on purpose: a statement this does not recognise exactly (quoted values holding a ';', SET XML
// OPTION...) pins the session.
import { RISKY, sqlPinReason, stripComments, TRANSACTION_SCOPED_SET } from './session-state.js';

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
/** The defaults of later transactions, as JDBC's setTransactionIsolation sends them. */
const TX_MODE = String.raw`(?:ISOLATION\s+LEVEL\s+(?:SERIALIZABLE|REPEATABLE\s+READ|READ\s+COMMITTED|READ\s+UNCOMMITTED)|READ\s+WRITE|READ\s+ONLY|(?:NOT\s+)?DEFERRABLE)`;
const SESSION_CHARACTERISTICS = new RegExp(String.raw`^SET\s+SESSION\s+CHARACTERISTICS\s+AS\s+TRANSACTION\s+(${TX_MODE}(?:(?:\s*,\s*|\s+)${TX_MODE})*)$`, 'i');
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
const DEALLOCATE = new RegExp(String.raw`^DEALLOCATE\s+(?:PREPARE\s+)?(?:(ALL)|(${IDENT})|"((?:[^"]|"")+)")$`, 'i');

function statements(sql: string): string[] {
  const text = sql.includes('--') || sql.includes('/*') ? stripComments(sql) : sql;
  return text
    .split(';')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** The parameters that SET SESSION CHARACTERISTICS AS TRANSACTION <modes> sets. */
function characteristicsNames(modes: string): string[] {
  return [
    ...(/ISOLATION/i.test(modes) ? ['default_transaction_isolation'] : []),
    ...(/READ\s+(?:WRITE|ONLY)/i.test(modes) ? ['default_transaction_read_only'] : []),
    ...(/DEFERRABLE/i.test(modes) ? ['default_transaction_deferrable'] : []),
  ];
}

function settingNames(statement: string): string[] | null {
  const setConfig = SET_CONFIG.exec(statement);
  if (setConfig) return [setConfig[1]!.toLowerCase()];
  if (RISKY.test(statement)) return null;
  if (SET_TIME_ZONE.test(statement)) return ['timezone'];
  if (SET_ROLE.test(statement)) return ['role'];
  if (SET_SESSION_AUTHORIZATION.test(statement)) return ['session_authorization'];
  const characteristics = SESSION_CHARACTERISTICS.exec(statement);
  if (characteristics) return characteristicsNames(characteristics[1]!);
  const set = SET_PARAM.exec(statement);
  if (set) return [set[1]!.toLowerCase()];
  const reset = RESET.exec(statement);
  if (reset) return [reset[1]!.toUpperCase() === 'ALL' ? '*' : reset[1]!.toLowerCase()];
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
    const set = settingNames(p);
    // Anything else may have effects (an INSERT): such a Query is never run again, so it may hold
    // no lasting setting.
    if (set === null) return sqlPinReason(sql) === null ? { kind: 'settings', names: [] } : null;
    names.push(...set);
  }
  return { kind: 'settings', names };
}
