// `baton check consistency`: do the members hold the same rows? Compared at one point of the WAL even
// while clients write:
//   1. On the leader, LOCK every table IN SHARE MODE (reads go on; writes wait, briefly), open a
//      REPEATABLE READ snapshot, and commit a barrier record (pg_logical_emit_message).
//   2. Each replica replays past the barrier, then its replay is paused.
//   3. The lock is released: no table changed between the barrier and the pauses, so the leader's
//      snapshot and every paused replica show the same table contents.
//   4. Per table: row count and an order-independent checksum (sum of 64-bit row hashes) on each member.
//   5. Replay resumes on every replica paused here, whatever happened.
import crypto from 'node:crypto';
import type pg from 'pg';
import type { ClusterView, MemberRecord } from '../dcs/types.js';
import { BatonError } from '../util/errors.js';
import { formatLsn, parseLsn } from '../util/lsn.js';
import { connectMember, type SqlCredentials } from '../cli/member-sql.js';

export interface TableDigest {
  rows: number;
  /** Sum of hashtextextended(row::text) over the rows, as a decimal string. */
  sum: string;
}

export interface TableComparison {
  table: string;
  /** Member name -> digest. */
  digests: Record<string, TableDigest>;
  same: boolean;
}

export interface DatabaseReport {
  database: string;
  barrierLsn: number;
  /** Replica -> the LSN at which its replay was paused. */
  pausedAt: Record<string, number>;
  /** How long writes to these tables waited for the barrier. */
  writesHeldMs: number;
  tables: TableComparison[];
}

export interface ConsistencyOptions {
  /** Members to compare (default: the leader and every streaming replica). */
  members: MemberRecord[];
  databases?: string[];
  timeoutMs: number;
  progress: (line: string) => void;
}

const TABLES_SQL = `
SELECT format('%I.%I', n.nspname, c.relname) AS name, c.relkind::text AS kind
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
 ORDER BY 1`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > timeoutMs) throw new BatonError(`${what} within ${timeoutMs / 1000} s`);
    await sleep(20);
  }
}

/** LOCK ... IN SHARE MODE with a short lock_timeout, retried: a long wait would hold writers queued behind it. */
async function lockTables(db: pg.Client, tables: string[], timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  for (let attempt = 1; ; attempt++) {
    await db.query('BEGIN');
    // After a few tries wait past deadlock_timeout, which makes an autovacuum in the way give up.
    await db.query(`SET LOCAL lock_timeout = '${attempt <= 10 ? 200 : 1500}ms'`);
    try {
      await db.query(`LOCK TABLE ${tables.join(', ')} IN SHARE MODE`);
      return;
    } catch (err) {
      await db.query('ROLLBACK');
      if ((err as { code?: string }).code !== '55P03' || Date.now() - t0 > timeoutMs) {
        throw new BatonError(`could not lock the tables on the leader: ${(err as Error).message}`, 'long transactions or DDL hold them; try again');
      }
    }
  }
}

async function digest(db: pg.Client, table: string): Promise<TableDigest> {
  const r = await db.query<{ n: string; s: string }>(
    `SELECT count(*)::text AS n, coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text AS s FROM ONLY ${table} AS t`,
  );
  return { rows: Number(r.rows[0]!.n), sum: r.rows[0]!.s };
}

async function checkDatabase(database: string, leader: MemberRecord, members: MemberRecord[], cred: SqlCredentials, o: ConsistencyOptions): Promise<DatabaseReport> {
  const replicas = members.filter((m) => m.name !== leader.name);
  const conns: pg.Client[] = [];
  const open = async (m: MemberRecord) => {
    const c = await connectMember(m, cred, database);
    conns.push(c);
    return c;
  };
  const paused: { name: string; db: pg.Client }[] = [];
  try {
    const lock = await open(leader);
    const snap = await open(leader);
    const barrierDb = await open(leader);
    const replicaDbs = await Promise.all(replicas.map(async (m) => ({ m, db: await open(m) })));
    const tables = (await snap.query<{ name: string; kind: string }>(TABLES_SQL)).rows;
    const t0 = Date.now();
    if (tables.length) await lockTables(lock, tables.map((t) => t.name), o.timeoutMs);
    const locked = Date.now();
    await snap.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await snap.query('SELECT 1'); // takes the snapshot, after every writer to these tables has finished
    // A transactional message commits, so the WAL is flushed and sent at once (a bare record could
    // wait in the WAL buffers while the writers, whose commits would flush it, are held).
    const barrier = parseLsn(
      (await barrierDb.query<{ lsn: string }>(`SELECT pg_logical_emit_message(true, 'baton', 'consistency barrier')::text AS lsn`)).rows[0]!.lsn,
    );
    o.progress(`${database}: barrier at ${formatLsn(barrier)} (${tables.length} tables locked after ${locked - t0} ms)`);
    const pausedAt: Record<string, number> = {};
    await Promise.all(
      replicaDbs.map(async ({ m, db }) => {
        const state = async () => (await db.query<{ s: string }>('SELECT pg_get_wal_replay_pause_state() AS s')).rows[0]!.s;
        if ((await state()) !== 'not paused') throw new BatonError(`replay on ${m.name} is already paused by someone else`, 'resume it (SELECT pg_wal_replay_resume()) or leave it out with --members');
        await until(`${m.name} did not replay up to the barrier ${formatLsn(barrier)}`, o.timeoutMs, async () =>
          (await db.query<{ ok: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [formatLsn(barrier)])).rows[0]!.ok,
        );
        await db.query('SELECT pg_wal_replay_pause()');
        paused.push({ name: m.name, db });
        await until(`replay on ${m.name} did not pause`, o.timeoutMs, async () => (await state()) === 'paused');
        pausedAt[m.name] = parseLsn((await db.query<{ lsn: string }>('SELECT pg_last_wal_replay_lsn()::text AS lsn')).rows[0]!.lsn);
      }),
    );
    if (tables.length) await lock.query('COMMIT');
    const writesHeldMs = Date.now() - locked;
    o.progress(`${database}: replicas paused (${Object.entries(pausedAt).map(([n, l]) => `${n} at ${formatLsn(l)}`).join(', ') || 'none'}); writes held ${writesHeldMs} ms; computing checksums`);
    const sources = [{ m: leader, db: snap }, ...replicaDbs].filter((s) => members.some((x) => x.name === s.m.name));
    const perMember = await Promise.all(
      sources.map(async ({ m, db }) => {
        const out: Record<string, TableDigest> = {};
        for (const t of tables.filter((x) => x.kind === 'r')) out[t.name] = await digest(db, t.name);
        return [m.name, out] as const;
      }),
    );
    const comparisons = tables
      .filter((t) => t.kind === 'r')
      .map((t) => {
        const digests: Record<string, TableDigest> = {};
        for (const [name, d] of perMember) digests[name] = d[t.name]!;
        const values = Object.values(digests);
        const same = values.every((d) => d.rows === values[0]!.rows && d.sum === values[0]!.sum);
        return { table: t.name, digests, same };
      });
    await snap.query('COMMIT');
    return { database, barrierLsn: barrier, pausedAt, writesHeldMs, tables: comparisons };
  } finally {
    for (const p of paused) {
      await p.db.query('SELECT pg_wal_replay_resume()').catch((err: unknown) =>
        o.progress(`WARNING: could not resume replay on ${p.name}: ${(err as Error).message}; run SELECT pg_wal_replay_resume() there`),
      );
    }
    await Promise.all(conns.map((c) => c.end().catch(() => undefined)));
  }
}

export async function checkConsistency(view: ClusterView, cred: SqlCredentials, o: ConsistencyOptions): Promise<DatabaseReport[]> {
  const leader = view.members.find((m) => m.name === view.leader?.name && m.state === 'running');
  if (!leader) throw new BatonError('the cluster has no running leader to take a barrier on', 'see "baton status"');
  const notStreaming = o.members.filter((m) => m.name !== leader.name && m.state !== 'streaming');
  if (notStreaming.length) {
    throw new BatonError(`cannot compare ${notStreaming.map((m) => `${m.name} (${m.state})`).join(', ')}: not streaming`, 'leave them out with --members, or wait for them to stream');
  }
  let databases = o.databases;
  if (!databases) {
    const db = await connectMember(leader, cred);
    try {
      databases = (await db.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1')).rows.map((r) => r.datname);
    } finally {
      await db.end().catch(() => undefined);
    }
  }
  const reports: DatabaseReport[] = [];
  for (const d of databases) reports.push(await checkDatabase(d, leader, o.members, cred, o));
  return reports;
}

/** A short, stable label for a checksum, for the table. */
export function shortSum(sum: string): string {
  return crypto.createHash('sha256').update(sum).digest('hex').slice(0, 8);
}
