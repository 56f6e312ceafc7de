// Whether a message may leave state in the server session that a new server connection would not
// have (prepared statements, settings, temporary tables, LISTEN, advisory locks, cursors held open).
// The rule is a whitelist: anything not understood counts. What ends with its transaction counts for
// nothing, since a session only moves between transactions: SET LOCAL, set_config(..., true), LOCK,
// transaction-level advisory locks and cursors declared without WITH HOLD. So does undoing what an
// unpinned session cannot hold (UNLISTEN, releasing advisory locks), as connection pools do when a
// connection is given back (asyncpg: pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *). Named prepared statements
// and settings can still be carried to a new leader (session-replay.ts); the rest makes the session
// "pinned": it cannot be moved and is closed instead.

const SAFE_FIRST_WORDS = new Set([
  'SELECT', 'INSERT', 'UPDATE', 'DELETE', 'MERGE', 'WITH', 'VALUES', 'TABLE', 'COPY', 'SHOW', 'EXPLAIN',
  'BEGIN', 'START', 'COMMIT', 'END', 'ROLLBACK', 'ABORT', 'SAVEPOINT', 'RELEASE',
  'CREATE', 'ALTER', 'DROP', 'TRUNCATE', 'GRANT', 'REVOKE', 'COMMENT', 'VACUUM', 'ANALYZE', 'REINDEX', 'CLUSTER',
  // Locks and cursors that end with the transaction (DECLARE itself is judged below).
  'LOCK', 'FETCH', 'MOVE', 'CLOSE',
  // Undoes what only a pinned session can have.
  'UNLISTEN',
]);

/** Substrings that suggest session state even inside an otherwise safe statement (any case). */
export const RISKY = /temp|set_config|advisory|listen|dblink|declare|prepare/i;
const RISKY_ALL = new RegExp(RISKY.source, 'gi');
const FIRST_WORD = /^\s*([A-Za-z]+)/;
/** SET forms whose effect ends with the transaction (outside a transaction block they do nothing):
 * row-level-security apps send `SET LOCAL app.tenant = ...` with every request. */
export const TRANSACTION_SCOPED_SET = /^\s*SET\s+(?:LOCAL|TRANSACTION|CONSTRAINTS)\b/i;
/** A cursor that outlives its transaction (DECLARE ... WITH HOLD); without it, it closes at COMMIT. */
const WITH_HOLD = /\bWITH\s+HOLD\b/i;
const CALL_OPEN = /\s*\(/y;
const SPACE = /\s/;
const XACT_LOCK_OR_UNLOCK = /_(?:xact_lock|unlock)/iy;
const UN = /un/iy;

export function stripComments(sql: string): string {
  return sql.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/--[^\n]*/g, ' ');
}

function statementPinReason(statement: string): string | null {
  const word = FIRST_WORD.exec(statement)?.[1]?.toUpperCase();
  if (!word || SAFE_FIRST_WORDS.has(word)) return null;
  if (word === 'SET' && TRANSACTION_SCOPED_SET.test(statement)) return null;
  if (word === 'DECLARE' && !WITH_HOLD.test(statement)) return null;
  return `${word} changes session state`;
}

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

/** Whether the set_config whose name ends at `at` is a call with `true` as its third argument: a
 * setting for the transaction only, as PostgREST sends the request's claims. Its arguments are still
 * searched for risky words like any other text. */
function isLocalSetConfig(text: string, at: number): boolean {
  CALL_OPEN.lastIndex = at;
  if (!CALL_OPEN.exec(text)) return false;
  const args = callArguments(text, CALL_OPEN.lastIndex - 1);
  return args?.length === 3 && args[2]!.trim().toLowerCase() === 'true';
}

/** Whether a risky word at `at` leaves nothing beyond the transaction in a session that is not pinned:
 * a transaction-local set_config call; a transaction-level advisory lock (pg_advisory_xact_lock,
 * pg_try_advisory_xact_lock and their _shared forms) or an advisory unlock (pg_advisory_unlock,
 * _unlock_shared, _unlock_all: an unpinned session holds no session-level lock); UNLISTEN (it
 * listens to nothing); a DECLARE that starts its statement (statementPinReason then looks for WITH HOLD). */
function leavesNothing(word: string, text: string, at: number): boolean {
  const end = at + word.length;
  if (word === 'set_config') return isLocalSetConfig(text, end);
  if (word === 'advisory') {
    XACT_LOCK_OR_UNLOCK.lastIndex = end;
    return XACT_LOCK_OR_UNLOCK.test(text);
  }
  if (word === 'listen') {
    if (at < 2) return false;
    UN.lastIndex = at - 2;
    return UN.test(text);
  }
  if (word === 'declare') return startsStatement(text, at);
  return false;
}

/** Whether only spaces stand between `at` and the start of the text or the ';' before it. */
function startsStatement(text: string, at: number): boolean {
  let i = at - 1;
  while (i >= 0 && SPACE.test(text[i]!)) i--;
  return i < 0 || text[i] === ';';
}

/** The first risky word in the text that leaves something beyond the transaction (leavesNothing). */
function riskyWord(text: string): string | null {
  if (!RISKY.test(text)) return null;
  for (const m of text.matchAll(RISKY_ALL)) {
    const word = m[0].toLowerCase();
    if (!leavesNothing(word, text, m.index)) return word;
  }
  return null;
}

/** Why this SQL text pins a session, or null when it leaves no session state beyond its transaction.
 * It runs on every query of an unpinned read-write session, so the common case (no comment, one
 * statement) skips the comment stripping and the split. */
export function sqlPinReason(sql: string): string | null {
  const text = sql.includes('--') || sql.includes('/*') ? stripComments(sql) : sql;
  const risky = riskyWord(text);
  if (risky) return `statement mentions "${risky}"`;
  if (!text.includes(';')) return statementPinReason(text);
  for (const statement of text.split(';')) {
    const reason = statementPinReason(statement);
    if (reason) return reason;
  }
  return null;
}

export function cstring(body: Buffer, from: number): { text: string; next: number } | null {
  const end = body.indexOf(0, from);
  if (end < 0) return null;
  return { text: body.toString('utf8', from, end), next: end + 1 };
}

/** Why a frontend message pins the session, or null. `body` is the message body after the length,
 * or null when it was not available in one piece (then Query and Parse pin, to be safe). */
export function messagePinReason(type: number, body: Buffer | null): string | null {
  switch (type) {
    case 0x51 /* Q: Query */: {
      if (!body) return 'a query too large to inspect';
      return sqlPinReason(body.toString('utf8', 0, Math.max(0, body.length - 1)));
    }
    case 0x50 /* P: Parse */: {
      if (!body) return 'a statement too large to inspect';
      const name = cstring(body, 0);
      if (!name) return 'malformed Parse message';
      if (name.text !== '') return `named prepared statement "${name.text}"`;
      const sql = cstring(body, name.next);
      return sql ? sqlPinReason(sql.text) : 'malformed Parse message';
    }
    case 0x46 /* F: FunctionCall */:
      return 'function call';
    default:
      return null;
  }
}
