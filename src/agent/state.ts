// The agent's own memory between loops: what etcd and PostgreSQL cannot tell us.
import type { LeaseId } from '../dcs/store.js';
import type { CloneStatus } from '../dcs/types.js';

export interface AgentMemory {
  lease: LeaseId | null;
  /** Instant (ms) until which our lease is certainly still valid on the server; null: no lease. */
  leaseValidUntil: number | null;
  restarts: number[];
  appliedSyncNames: string;
  pendingSync: { member: string; sinceLsn: number } | null;
  lastLeaderLsn: number | null;
  notStreamingSince: number | null;
  /** Last problem worth showing an operator, published in the member record. */
  problem: string | null;
  /** A running clone: shown as the member state 'creating replica' and published with its progress. */
  clone: CloneStatus | null;
  lastLoopAt: number | null;
  /** Set by an operator's restart request, so it does not count towards max_restarts. */
  manualRestart: boolean;
  /** When this member last handed leadership over after max_restarts (it then sits out an election). */
  handedOverAt: number | null;
  /** Leader: since when the synchronous standby in `sync` has been missing from pg_stat_replication. */
  syncMissingSince: number | null;
}

export function freshMemory(): AgentMemory {
  return {
    lease: null,
    leaseValidUntil: null,
    restarts: [],
    appliedSyncNames: '',
    pendingSync: null,
    lastLeaderLsn: null,
    notStreamingSince: null,
    problem: null,
    clone: null,
    lastLoopAt: null,
    manualRestart: false,
    handedOverAt: null,
    syncMissingSince: null,
  };
}
