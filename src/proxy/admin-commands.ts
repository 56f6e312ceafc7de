// The admin console's commands: parse a simple-query string, ask the backend, render result sets as
// protocol messages (text columns). Kept apart from the connection handling in admin.ts.
import { encodeCommandComplete, encodeDataRow, encodeEmptyQueryResponse, encodeErrorResponse, encodeRowDescription } from './protocol-encode.js';

export interface PoolNodeRow {
  node_id: number;
  hostname: string;
  port: number;
  status: 'up' | 'down' | 'waiting';
  /** Share of read sessions this node gets, e.g. 0.333333. */
  lb_weight: number;
  role: 'primary' | 'standby';
  select_cnt: number;
  load_balance_node: boolean;
  /** Bytes behind the primary. */
  replication_delay: number;
}

export type AdminRow = Record<string, string | number | null>;

/** What the admin console shows and controls; implemented by the proxy. */
export interface AdminBackend {
  poolNodes(): PoolNodeRow[];
  clients(): AdminRow[];
  servers(): AdminRow[];
  stats(): AdminRow[];
  relay(): AdminRow[];
  routing(): AdminRow[];
  pause(): void | Promise<void>;
  resume(): void | Promise<void>;
  /** The settings in force, secrets left out. */
  config(): AdminRow[];
  /** Reads the configuration file again; which settings applied and which need a restart. */
  reload(): { applied: string[]; needRestart: string[] };
}

export const POOL_NODES_COLUMNS = [
  'node_id',
  'hostname',
  'port',
  'status',
  'lb_weight',
  'role',
  'select_cnt',
  'load_balance_node',
  'replication_delay',
] as const;

/**
 * Columns always shown (in this order) by SHOW CLIENTS / SERVERS / STATS; they match the rows
 * proxy.ts produces. A key a row lacks is shown as NULL; keys beyond these are appended, in the
 * order first seen, so the proxy can add detail without changing the console.
 */
export const CLIENT_COLUMNS = [
  'id', // proxy session id
  'listener', // 'read-write' or 'read-only'
  'client', // client address:port
  'user',
  'database',
  'member', // member the session is relayed to, or NULL while routing
  'state',
  'tx_status', // 'I', 'T' or 'E' from the last ReadyForQuery
  'queries',
  'connected_at', // ISO timestamp
] as const;

export const SERVER_COLUMNS = [
  'session', // the client session this server connection serves
  'member',
  'address', // host:port
  'state',
  'tx_status',
  'bytes_to_server',
  'bytes_to_client',
] as const;

/** One row per member (plus '(routing)' for sessions not yet placed). */
/** can_move / cannot_move: sessions that would move when their member goes away (read-write: a leader change; read-only: also the
 * member no longer taking read-only sessions), and those that would be closed or stay (pinned, or no auth_users password). */
export const STATS_COLUMNS = ['member', 'sessions', 'active', 'can_move', 'cannot_move', 'queries', 'bytes_to_server', 'bytes_to_client', 'select_cnt'] as const;

/** One row per native relay thread, or one row for the TypeScript relay. */
export const RELAY_COLUMNS = ['thread', 'kind', 'sessions', 'load_pct', 'io'] as const;

/** Per listener: where a new session would go now, or what it would wait for (or why it is refused). */
export const ROUTING_COLUMNS = ['listener', 'member', 'waits_for', 'refused'] as const;

export const HELP: [string, string][] = [
  ['SHOW POOL_NODES', 'members, their status, role, load-balance share, selects routed and replication delay'],
  ['SHOW CLIENTS', 'client sessions connected to the proxy'],
  ['SHOW SERVERS', 'server connections the proxy holds to members'],
  ['SHOW STATS', 'sessions (and read-write ones that can or cannot follow a leader change), queries and bytes per member'],
  ['SHOW RELAY', 'relay threads: sessions each carries and how busy it was over the last 100 ms'],
  ['SHOW ROUTING', 'where a new session on each listener would go now, or what it would wait for'],
  ['PAUSE', 'hold new transactions (bounded wait) until RESUME'],
  ['RESUME', 'let held and new transactions proceed'],
  ['SHOW CONFIG', 'the settings in force (passwords left out), and whether RELOAD can change each'],
  ['RELOAD', 'read the configuration file again: apply what can change while running, list what needs a restart'],
  ['SHOW HELP', 'this list'],
];

export class AdminCommandError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

export function renderValue(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return JSON.stringify(v);
}

/** RowDescription, DataRows and CommandComplete 'SELECT n' for a result set. */
export function resultSet(columns: readonly string[], rows: (string | null)[][], tag = `SELECT ${rows.length}`): Buffer[] {
  const out = [encodeRowDescription([...columns])];
  for (const row of rows) out.push(encodeDataRow(row));
  out.push(encodeCommandComplete(tag));
  return out;
}

/** A result set from records: the fixed columns, then any extra keys in the order first seen. */
export function recordsResult(fixedColumns: readonly string[], records: AdminRow[]): Buffer[] {
  const columns = [...fixedColumns];
  const known = new Set(columns);
  for (const r of records) {
    for (const k of Object.keys(r)) {
      if (!known.has(k)) {
        known.add(k);
        columns.push(k);
      }
    }
  }
  return resultSet(
    columns,
    records.map((r) => columns.map((c) => renderValue(r[c]))),
  );
}

export function poolNodesResult(nodes: PoolNodeRow[]): Buffer[] {
  return resultSet(
    POOL_NODES_COLUMNS,
    nodes.map((n) => [
      String(n.node_id),
      n.hostname,
      String(n.port),
      n.status,
      Number.isFinite(n.lb_weight) ? n.lb_weight.toFixed(6) : null,
      n.role,
      String(n.select_cnt),
      n.load_balance_node ? 'true' : 'false',
      String(n.replication_delay),
    ]),
  );
}

/** Normalises one statement: whitespace collapsed, upper case. */
export function normaliseCommand(statement: string): string {
  return statement.trim().replace(/\s+/g, ' ').toUpperCase();
}

async function runOne(statement: string, backend: AdminBackend): Promise<Buffer[]> {
  switch (normaliseCommand(statement)) {
    case 'SHOW POOL_NODES':
      return poolNodesResult(backend.poolNodes());
    case 'SHOW CLIENTS':
      return recordsResult(CLIENT_COLUMNS, backend.clients());
    case 'SHOW SERVERS':
      return recordsResult(SERVER_COLUMNS, backend.servers());
    case 'SHOW STATS':
      return recordsResult(STATS_COLUMNS, backend.stats());
    case 'SHOW RELAY':
      return recordsResult(RELAY_COLUMNS, backend.relay());
    case 'SHOW ROUTING':
      return recordsResult(ROUTING_COLUMNS, backend.routing());
    case 'SHOW HELP':
    case 'HELP':
      return resultSet(['command', 'description'], HELP);
    case 'PAUSE':
      await backend.pause();
      return [encodeCommandComplete('PAUSE')];
    case 'RESUME':
      await backend.resume();
      return [encodeCommandComplete('RESUME')];
    case 'SHOW CONFIG':
      return recordsResult(['setting', 'value', 'reload'], backend.config());
    case 'RELOAD': {
      const { applied, needRestart } = backend.reload();
      const rows: (string | null)[][] = [...applied.map((k) => [k, 'applied']), ...needRestart.map((k) => [k, 'changed in the file; applies after a restart'])];
      return resultSet(['setting', 'outcome'], rows, 'RELOAD');
    }
    default:
      throw new AdminCommandError(`unknown admin command: ${statement.trim()}; try SHOW HELP`, '42601');
  }
}

/**
 * Runs a simple-query string (one or more commands separated by ';') and returns the messages to
 * send before ReadyForQuery. Like PostgreSQL, it stops at the first error.
 */
export async function executeAdminQuery(sql: string, backend: AdminBackend): Promise<Buffer[]> {
  const statements = sql.split(';').filter((s) => s.trim() !== '');
  if (statements.length === 0) return [encodeEmptyQueryResponse()];
  const out: Buffer[] = [];
  for (const statement of statements) {
    try {
      out.push(...(await runOne(statement, backend)));
    } catch (err) {
      const code = err instanceof AdminCommandError ? err.code : 'XX000';
      const message = err instanceof Error ? err.message : String(err);
      out.push(encodeErrorResponse({ severity: 'ERROR', code, message: message.replaceAll('\0', '') }));
      break;
    }
  }
  return out;
}
