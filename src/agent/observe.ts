// The edge that gathers an Observation: etcd, the local PostgreSQL, and peers when electing.
import fs from 'node:fs';
import type { ClusterView } from '../dcs/types.js';
import { cloneMarker } from './executor.js';
import type { ClusterStore } from '../dcs/store.js';
import type { PostgresInstance } from '../postgres/instance.js';
import { notRunningStatus } from '../postgres/queries.js';
import type { MemberConfig } from '../config/load.js';
import type { Logger } from '../util/log.js';
import type { LocalPostgres, Observation, ReplicaSeen } from './observation.js';
import type { AgentMemory } from './state.js';
import { agentAnswers, peerPositions } from './peers.js';

export async function readCluster(store: ClusterStore, log: Logger): Promise<ClusterView | null> {
  try {
    return await store.read();
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'cannot read cluster state from etcd');
    return null;
  }
}

export async function observeLocal(pg: PostgresInstance, cloneInterrupted = false): Promise<LocalPostgres> {
  // A data directory left by an interrupted clone is no data: the next clone replaces it.
  const hasData = pg.hasDataDir() && !cloneInterrupted;
  if (hasData && pg.isRunning()) return { ...(await pg.status()), hasData, stoppedAsPrimary: false };
  const stopped: LocalPostgres = { ...notRunningStatus(false), hasData, stoppedAsPrimary: false };
  if (!hasData) return stopped;
  try {
    const cd = await pg.controlData();
    return {
      ...stopped,
      timeline: cd.timeline,
      receivedLsn: cd.checkpointLsn,
      systemId: cd.systemId,
      stoppedAsPrimary: (cd.state === 'in production' || cd.state === 'shut down') && !pg.hasStandbySignal(),
    };
  } catch {
    return stopped;
  }
}

export async function observe(
  cfg: MemberConfig,
  store: ClusterStore,
  pg: PostgresInstance,
  mem: AgentMemory,
  log: Logger,
): Promise<Observation> {
  const [cluster, local] = await Promise.all([readCluster(store, log), observeLocal(pg, mem.clone === null && fs.existsSync(cloneMarker(cfg)))]);
  const now = Date.now();
  const isLeader = cluster?.leader?.name === cfg.name;
  let replicas: ReplicaSeen[] = [];
  if (isLeader && local.running && local.inRecovery === false) {
    replicas = (await pg.replication()).map((r) => ({
      name: r.applicationName,
      state: r.state,
      syncState: r.syncState,
      flushLsn: r.flushLsn,
    }));
  }
  const syncStandby = isLeader && cluster?.sync?.leader === cfg.name ? (cluster.sync.members[0] ?? null) : null;
  const syncMissing = syncStandby !== null && !replicas.some((r) => r.name === syncStandby && r.state === 'streaming');
  if (syncMissing) mem.syncMissingSince ??= now;
  else mem.syncMissingSince = null;
  // Asked only while the standby is missing: a dead agent means there is nothing to wait for.
  const syncRec = syncMissing ? cluster?.members.find((m) => m.name === syncStandby) : undefined;
  const syncStandbyAgentDown = syncRec !== undefined && !(await agentAnswers(syncRec.apiUrl));
  if (cluster) {
    const leaderRec = cluster.members.find((m) => m.name === cluster.leader?.name);
    if (leaderRec?.receivedLsn != null) mem.lastLeaderLsn = leaderRec.receivedLsn;
  }
  if (local.running && local.inRecovery && !local.streaming) mem.notStreamingSince ??= now;
  else mem.notStreamingSince = null;

  const electing = cluster !== null && cluster.leader === null && local.running;
  return {
    now,
    self: { name: cfg.name, tags: cfg.tags, host: cfg.pg.connect.host, port: cfg.pg.connect.port, cloneFrom: cfg.pg.cloneFrom },
    cluster,
    leaseValidUntil: mem.leaseValidUntil,
    pg: local,
    restarts: mem.restarts,
    replicas,
    appliedSyncNames: mem.appliedSyncNames,
    pendingSync: mem.pendingSync,
    lastLeaderLsn: mem.lastLeaderLsn,
    handedOverAt: mem.handedOverAt,
    syncMissingSince: mem.syncMissingSince,
    syncStandbyAgentDown,
    peers: electing ? await peerPositions(cluster.members, cfg.name) : [],
    notStreamingSince: mem.notStreamingSince,
  };
}
