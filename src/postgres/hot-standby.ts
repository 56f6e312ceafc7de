// The settings a hot standby must hold at no less than its primary's values: PostgreSQL refuses to
// start a standby below them ("insufficient parameter settings"), and pauses replay when the primary
// raises one above them. The primary's values reach the standby's control file with the WAL, which
// is where pg_controldata reads them.

export const HOT_STANDBY_PARAMETERS = ['max_connections', 'max_worker_processes', 'max_wal_senders', 'max_prepared_transactions', 'max_locks_per_transaction'] as const;

export type HotStandbyParameter = (typeof HOT_STANDBY_PARAMETERS)[number];

/** How pg_controldata names each (the primary's value, on a standby). */
export const CONTROL_DATA_FIELD: Record<HotStandbyParameter, string> = {
  max_connections: 'max_connections setting',
  max_worker_processes: 'max_worker_processes setting',
  max_wal_senders: 'max_wal_senders setting',
  max_prepared_transactions: 'max_prepared_xacts setting',
  max_locks_per_transaction: 'max_locks_per_xact setting',
};

/** Each setting a standby would run with below its primary's value, as "name = value (the primary's: n)". */
export function hotStandbyShortfalls(standby: Partial<Record<HotStandbyParameter, number>>, primary: Partial<Record<HotStandbyParameter, number>>): string[] {
  const short: string[] = [];
  for (const name of HOT_STANDBY_PARAMETERS) {
    const mine = standby[name];
    const theirs = primary[name];
    if (mine !== undefined && theirs !== undefined && mine < theirs) short.push(`${name} = ${mine} (the primary's: ${theirs})`);
  }
  return short;
}
