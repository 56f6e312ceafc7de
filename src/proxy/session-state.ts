// Whether a message may leave state in the server session that a new server connection would not
// have (prepared statements, settings, temporary tables, LISTEN, advisory locks, cursors). The rule is
// a whitelist: anything not understood counts. Named prepared statements and settings can still be
// carried to a new leader (session-replay.ts); the rest makes the session "pinned": it cannot be
// moved and is closed instead.

const SAFE_FIRST_WORDS = new Set([
  'SELECT', 'INSERT', 'UPDATE', 'DELETE', 'MERGE', 'WITH', 'VALUES', 'TABLE', 'COPY', 'SHOW', 'EXPLAIN',
  'BEGIN', 'START', 'COMMIT', 'END', 'ROLLBACK', 'ABORT', 'SAVEPOINT', 'RELEASE',
  'CREATE', 'ALTER', 'DROP', 'TRUNCATE', 'GRANT', 'REVOKE', 'COMMENT', 'VACUUM', 'ANALYZE', 'REINDEX', 'CLUSTER',
]);

/** Substrings that suggest session state even inside an otherwise safe statement (any case). */
export const RISKY = /temp|set_config|advisory|listen|dblink|declare|prepare/i;
const FIRST_WORD = /^\s*([A-Za-z]+)/;

export function stripComments(sql: string): string {
  return sql.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/--[^\n]*/g, ' ');
}

function statementPinReason(statement: string): string | null {
  const word = FIRST_WORD.exec(statement)?.[1]?.toUpperCase();
  return word && !SAFE_FIRST_WORDS.has(word) ? `${word} changes session state` : null;
}

/** Why this SQL text pins a session, or null when it leaves no session state behind. It runs on every
 * query of an unpinned read-write session, so the common case (no comment, one statement) skips the
 * comment stripping and the split. */
export function sqlPinReason(sql: string): string | null {
  const text = sql.includes('--') || sql.includes('/*') ? stripComments(sql) : sql;
  const risky = RISKY.exec(text);
  if (risky) return `statement mentions "${risky[0].toLowerCase()}"`;
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
