// `baton replication`: pg_stat_replication and the replication slots of every member in one table,
// so a cascade (a member being cloned from a replica) and WAL held by a slot show up alongside.
import type pg from 'pg';
import type { ClusterView, MemberRecord } from '../dcs/types.js';
import { slotName } from '../postgres/conf.js';
import type { StatReplicationRow } from '../postgres/queries.js';
import { formatBytes, formatLsn, parseLsn } from '../util/lsn.js';
import { withMember, type SqlCredentials } from './member-sql.js';
import { renderTable } from './table.js';

export interface ReplicationLink {
  upstream: string;
  /** The downstream's application_name (Baton sets it to the member name); for a slot alone, the member it is named after. */
  member: string;
  state: string;
  syncState: string | null;
  sentLsn: number | null;
  writeLsn: number | null;
  flushLsn: number | null;
  replayLsn: number | null;
  /** Upstream's position minus the downstream's replay position. */
  lagBytes: number | null;
  /** pg_stat_replication.replay_lag: how long ago the last replayed commit was made on the upstream. */
  lagSeconds: number | null;
  slot: string | null;
  /** WAL the slot keeps on the upstream. */
  slotRetainedBytes: number | null;
}

interface SenderRow extends StatReplicationRow {
  lag_bytes: string | null;
  replay_lag_s: number | null;
  slot_name: string | null;
  retained: string | null;
}

interface SlotRow {
  slot_name: string;
  active: boolean;
  retained: string | null;
}

// What an upstream can send: its own WAL position (primary) or what it has received (cascading standby).
const POSITION = `CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
                       ELSE pg_current_wal_lsn() END`;

const SENDERS_SQL = `
SELECT r.application_name, r.state, r.sync_state, r.sent_lsn::text, r.write_lsn::text, r.flush_lsn::text,
       r.replay_lsn::text, pg_wal_lsn_diff(${POSITION}, r.replay_lsn)::text AS lag_bytes,
       extract(epoch FROM r.replay_lag)::float8 AS replay_lag_s,
       s.slot_name, pg_wal_lsn_diff(${POSITION}, s.restart_lsn)::text AS retained
  FROM pg_stat_replication r LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid
 ORDER BY r.application_name`;

const SLOTS_SQL = `
SELECT slot_name, active, pg_wal_lsn_diff(${POSITION}, restart_lsn)::text AS retained
  FROM pg_replication_slots WHERE slot_type = 'physical' ORDER BY slot_name`;

const num = (s: string | null): number | null => (s === null ? null : Number(s));
const lsn = (s: string | null): number | null => (s === null ? null : parseLsn(s));

/** A row with no walsender behind it: a slot nobody uses, or a replica no upstream reports. */
function notStreaming(upstream: string, member: string, state: string, slot: string | null, slotRetainedBytes: number | null): ReplicationLink {
  const none = { syncState: null, sentLsn: null, writeLsn: null, flushLsn: null, replayLsn: null, lagBytes: null, lagSeconds: null };
  return { upstream, member, state, ...none, slot, slotRetainedBytes };
}

async function linksFrom(upstream: MemberRecord, db: pg.Client, members: MemberRecord[]): Promise<ReplicationLink[]> {
  const senders = (await db.query<SenderRow>(SENDERS_SQL)).rows;
  const slots = (await db.query<SlotRow>(SLOTS_SQL)).rows;
  const links: ReplicationLink[] = senders.map((r) => ({
    upstream: upstream.name,
    member: r.application_name,
    state: r.state ?? 'unknown',
    syncState: r.sync_state,
    sentLsn: lsn(r.sent_lsn),
    writeLsn: lsn(r.write_lsn),
    flushLsn: lsn(r.flush_lsn),
    replayLsn: lsn(r.replay_lsn),
    lagBytes: num(r.lag_bytes),
    lagSeconds: r.replay_lag_s,
    slot: r.slot_name,
    slotRetainedBytes: num(r.retained),
  }));
  for (const s of slots.filter((x) => !x.active)) {
    const owner = members.find((m) => slotName(m.name) === s.slot_name)?.name ?? '?';
    links.push(notStreaming(upstream.name, owner, 'slot only (not connected)', s.slot_name, num(s.retained)));
  }
  return links;
}

/** Every member's walsenders and slots; a member that cannot be reached is reported, not fatal. */
export async function gatherReplication(
  view: ClusterView,
  cred: SqlCredentials,
): Promise<{ links: ReplicationLink[]; unreachable: { member: string; error: string }[] }> {
  const running = view.members.filter((m) => m.state === 'running' || m.state === 'streaming' || m.state === 'recovering');
  const results = await Promise.all(
    running.map((m) =>
      withMember(m, cred, (db) => linksFrom(m, db, view.members)).then(
        (links) => ({ links, error: null }),
        (err: unknown) => ({ links: [] as ReplicationLink[], error: { member: m.name, error: (err as Error).message } }),
      ),
    ),
  );
  const links = results.flatMap((r) => r.links);
  // Replicas that no upstream reports at all: shown, so a missing member is not just a missing row.
  for (const m of view.members) {
    if (m.name === view.leader?.name || links.some((l) => l.member === m.name && l.state !== 'slot only (not connected)')) continue;
    links.push(notStreaming('-', m.name, `not streaming (${m.state})`, null, null));
  }
  return { links, unreachable: results.flatMap((r) => (r.error ? [r.error] : [])) };
}

export function replicationTable(links: ReplicationLink[]): string {
  const l = (n: number | null) => (n === null ? '' : formatLsn(n));
  return renderTable(
    ['Upstream', 'Member', 'State', 'Sync', 'Sent', 'Write', 'Flush', 'Replay', 'Lag', 'Lag (s)', 'Slot', 'Slot retains'],
    links.map((x) => [
      x.upstream,
      x.member,
      x.state,
      x.syncState ?? '',
      l(x.sentLsn),
      l(x.writeLsn),
      l(x.flushLsn),
      l(x.replayLsn),
      x.lagBytes === null ? '' : formatBytes(x.lagBytes),
      x.lagSeconds === null ? '' : x.lagSeconds.toFixed(3),
      x.slot ?? '',
      x.slotRetainedBytes === null ? '' : formatBytes(x.slotRetainedBytes),
    ]),
  );
}
