// SQL the agent runs against the local instance: status, replication, slots, promotion.
import pg from 'pg';
import { parseLsn } from '../util/lsn.js';
import type { Logger } from '../util/log.js';
import { PostgresError } from '../util/errors.js';
import type { LocalSlot, LocalStatus, ReplicationRow } from './types.js';

type Queryable = Pick<pg.Pool, 'query'> | Pick<pg.Client, 'query'>;

/** The agent's pool: two connections, short timeouts (a hung server must not stall the agent's loop). */
export function createPool(config: pg.PoolConfig, log: Logger): pg.Pool {
  const pool = new pg.Pool({
    ...config,
    application_name: 'baton',
    max: 2,
    connectionTimeoutMillis: 1000,
    idleTimeoutMillis: 5000,
    statement_timeout: 2000,
    query_timeout: 3000,
    allowExitOnIdle: true,
  });
  // Idle connections die with the server; the pool drops them, we only note it.
  pool.on('error', (err) => log.debug({ err: err.message }, 'idle connection lost'));
  return pool;
}

function lsnOrNull(text: string | null | undefined): number | null {
  return text ? parseLsn(text) : null;
}

interface StatusRow {
  in_recovery: boolean;
  current_lsn: string | null;
  receive_lsn: string | null;
  replay_lsn: string | null;
  walfile: string | null;
  checkpoint_tli: number | null;
  system_id: string;
  wr_status: string | null;
  received_tli: number | null;
  sender_host: string | null;
  sender_port: number | null;
  slots: LocalSlot[] | null;
}

// pg_current_wal_lsn() and pg_walfile_name() fail during recovery; CASE keeps them from running there.
const STATUS_SQL = `
SELECT r.in_recovery,
       CASE WHEN NOT r.in_recovery THEN pg_current_wal_lsn()::text END AS current_lsn,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       CASE WHEN NOT r.in_recovery THEN pg_walfile_name(pg_current_wal_lsn()) END AS walfile,
       (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_tli,
       (SELECT system_identifier::text FROM pg_control_system()) AS system_id,
       w.status AS wr_status, w.received_tli, w.sender_host, w.sender_port,
       (SELECT coalesce(json_agg(json_build_object('name', slot_name, 'active', active)), '[]')
          FROM pg_replication_slots WHERE slot_type = 'physical') AS slots
FROM (SELECT pg_is_in_recovery() AS in_recovery) r
LEFT JOIN pg_stat_wal_receiver w ON true`;

export function notRunningStatus(running: boolean): LocalStatus {
  return {
    running,
    accepting: false,
    inRecovery: null,
    timeline: null,
    receivedLsn: null,
    replayedLsn: null,
    streaming: false,
    upstream: null,
    systemId: null,
    slots: [],
  };
}

/**
 * Status of a running, connectable instance. Timeline: a primary's comes from the name of its current WAL
 * file (pg_control_checkpoint() lags behind a promotion until the next checkpoint); a replica's from its
 * walreceiver, else its last restartpoint. A primary's replayedLsn is its current LSN.
 */
export async function queryStatus(db: Queryable): Promise<LocalStatus> {
  const res = await db.query<StatusRow>(STATUS_SQL);
  const row = res.rows[0];
  if (!row) throw new PostgresError('status query returned no row');
  const streaming = row.wr_status === 'streaming';
  let timeline: number | null;
  let receivedLsn: number | null;
  let replayedLsn: number | null;
  if (row.in_recovery) {
    timeline = row.received_tli ?? row.checkpoint_tli;
    replayedLsn = lsnOrNull(row.replay_lsn);
    receivedLsn = lsnOrNull(row.receive_lsn) ?? replayedLsn;
  } else {
    timeline = row.walfile ? parseInt(row.walfile.slice(0, 8), 16) : row.checkpoint_tli;
    receivedLsn = lsnOrNull(row.current_lsn);
    replayedLsn = receivedLsn;
  }
  return {
    running: true,
    accepting: true,
    inRecovery: row.in_recovery,
    timeline,
    receivedLsn,
    replayedLsn,
    streaming,
    upstream: streaming && row.sender_host ? `${row.sender_host}:${row.sender_port ?? ''}` : null,
    systemId: row.system_id,
    slots: row.slots ?? [],
  };
}

/** The columns of pg_stat_replication that Baton reads, with the LSNs selected as text. */
export interface StatReplicationRow {
  application_name: string;
  state: string | null;
  sync_state: string | null;
  sent_lsn: string | null;
  write_lsn: string | null;
  flush_lsn: string | null;
  replay_lsn: string | null;
}

interface ReplRow extends StatReplicationRow {
  client_addr: string | null;
}

export async function queryReplication(db: Queryable): Promise<ReplicationRow[]> {
  const res = await db.query<ReplRow>(`
    SELECT application_name, host(client_addr) AS client_addr, state, sync_state,
           sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text
    FROM pg_stat_replication ORDER BY application_name`);
  return res.rows.map((r) => ({
    applicationName: r.application_name,
    clientAddr: r.client_addr,
    state: r.state ?? 'unknown',
    syncState: r.sync_state ?? 'unknown',
    sentLsn: lsnOrNull(r.sent_lsn),
    writeLsn: lsnOrNull(r.write_lsn),
    flushLsn: lsnOrNull(r.flush_lsn),
    replayLsn: lsnOrNull(r.replay_lsn),
  }));
}

/** Creates the physical slot (reserving WAL now) unless it exists; true when created. */
export async function ensureSlot(db: Queryable, name: string): Promise<boolean> {
  try {
    const res = await db.query<{ created: string | null }>(
      `SELECT (pg_create_physical_replication_slot($1, true)).slot_name AS created
       WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`,
      [name],
    );
    return res.rows.length > 0;
  } catch (err) {
    if ((err as { code?: string }).code === '42710') return false; // created concurrently
    throw err;
  }
}

/** Drops the slot if it exists; true when dropped. Fails when a walsender is using it. */
export async function dropSlot(db: Queryable, name: string): Promise<boolean> {
  const res = await db.query(
    'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1',
    [name],
  );
  return (res.rowCount ?? 0) > 0;
}

export async function queryCurrentLsn(db: Queryable): Promise<number> {
  const res = await db.query<{ lsn: string | null }>(`
    SELECT (CASE WHEN pg_is_in_recovery()
                 THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
                 ELSE pg_current_wal_lsn() END)::text AS lsn`);
  const lsn = res.rows[0]?.lsn;
  if (!lsn) throw new PostgresError('no WAL position available');
  return parseLsn(lsn);
}

export async function queryInRecovery(db: Queryable): Promise<boolean> {
  const res = await db.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
  return res.rows[0]?.r === true;
}

/** A transaction open on a client backend (or a statement running outside one). */
export interface OpenTransaction {
  pid: number;
  /** xact_start, ms since the epoch (the server's clock, the agent's host). */
  startedAt: number;
}

/** Client backends inside a transaction, other than the asking one. */
export async function queryOpenTransactions(db: Queryable): Promise<OpenTransaction[]> {
  const r = await db.query<{ pid: number; started_at: number }>(
    `SELECT pid, (extract(epoch FROM xact_start) * 1000)::float8 AS started_at FROM pg_stat_activity
      WHERE backend_type = 'client backend' AND xact_start IS NOT NULL AND pid <> pg_backend_pid()`,
  );
  return r.rows.map((row) => ({ pid: row.pid, startedAt: row.started_at }));
}

/** Settings the server read from its files but can only take at a restart (postmaster context):
 * those pending from an earlier reload, and those in the files now that differ from what runs. */
export async function settingsPendingRestart(c: Queryable): Promise<string[]> {
  const r = await c.query<{ name: string }>(
    `SELECT name FROM pg_settings WHERE pending_restart
     UNION
     SELECT f.name FROM pg_file_settings f JOIN pg_settings s USING (name)
      WHERE s.context = 'postmaster' AND NOT f.applied AND f.error IS NOT NULL
     ORDER BY 1`,
  );
  return r.rows.map((row) => row.name);
}
