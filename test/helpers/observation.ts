// Builders for decide() inputs: an Observation, a ClusterView and MemberRecords with sensible
// defaults (a healthy, initialized cluster; a running replica) that tests override field by field.
import type { Action, Decision } from '../../src/agent/actions.js';
import type { LocalPostgres, Observation } from '../../src/agent/observation.js';
import {
  DEFAULT_DYNAMIC_CONFIG,
  type ClusterView,
  type DynamicConfig,
  type MemberRecord,
  type MemberTags,
  type SwitchoverRequest,
} from '../../src/dcs/types.js';

export const NOW = 1_700_000_000_000;
export const SYSTEM_ID = '7300000000000000001';

export function tags(over: Partial<MemberTags> = {}): MemberTags {
  return { nofailover: false, noloadbalance: false, weight: 1, priority: 0, clonefrom: false, ...over };
}

export type MemberOverrides = Partial<Omit<MemberRecord, 'tags'>> & { tags?: Partial<MemberTags> };

export function member(name: string, over: MemberOverrides = {}): MemberRecord {
  const { tags: t, ...rest } = over;
  return {
    name,
    role: 'replica',
    state: 'streaming',
    host: `${name}.db`,
    port: 5432,
    apiUrl: `http://${name}.db:8008`,
    timeline: 1,
    receivedLsn: 1000,
    replayedLsn: 1000,
    lagBytes: 0,
    agentPid: 100,
    postmasterPid: 200,
    upstream: null,
    systemId: SYSTEM_ID,
    updatedAt: new Date(NOW).toISOString(),
    problem: null,
    ...rest,
    tags: tags(t ?? {}),
  };
}

/** A member record for a running primary. */
export function primary(name: string, over: MemberOverrides = {}): MemberRecord {
  return member(name, { role: 'primary', state: 'running', ...over });
}

export function ref(m: MemberRecord) {
  return { name: m.name, host: m.host, port: m.port };
}

export type ClusterOverrides = Partial<Omit<ClusterView, 'config' | 'leader'>> & {
  config?: Partial<DynamicConfig>;
  /** Name of the leader key holder, or null. */
  leader?: string | null;
};

export function cluster(over: ClusterOverrides = {}): ClusterView {
  const { config, leader, ...rest } = over;
  return {
    initialize: SYSTEM_ID,
    leader: leader ? { name: leader, modRevision: '10' } : null,
    members: [],
    sync: null,
    switchover: null,
    history: [],
    revision: '42',
    ...rest,
    config: { ...DEFAULT_DYNAMIC_CONFIG, standbyMembers: [], ...config },
  };
}

export function switchover(over: Partial<SwitchoverRequest> = {}): SwitchoverRequest {
  return {
    kind: 'switchover',
    from: null,
    to: null,
    requestedAt: new Date(NOW).toISOString(),
    phase: 'requested',
    deadline: NOW + 30_000,
    reason: 'test',
    ...over,
  };
}

/** Local PostgreSQL: a running, streaming replica. */
export function replicaPg(over: Partial<LocalPostgres> = {}): LocalPostgres {
  return {
    hasData: true,
    running: true,
    accepting: true,
    inRecovery: true,
    timeline: 1,
    receivedLsn: 1000,
    replayedLsn: 1000,
    streaming: true,
    upstream: null,
    systemId: SYSTEM_ID,
    slots: [],
    stoppedAsPrimary: false,
    ...over,
  };
}

/** Local PostgreSQL: a running primary. */
export function primaryPg(over: Partial<LocalPostgres> = {}): LocalPostgres {
  return replicaPg({ inRecovery: false, streaming: false, ...over });
}

/** Local PostgreSQL: a stopped data directory (last a replica unless told otherwise). */
export function stoppedPg(over: Partial<LocalPostgres> = {}): LocalPostgres {
  return replicaPg({ running: false, accepting: false, inRecovery: null, streaming: false, receivedLsn: null, ...over });
}

export type ObservationOverrides = Partial<Omit<Observation, 'self' | 'pg'>> & {
  self?: Partial<Observation['self']>;
  pg?: Partial<LocalPostgres>;
};

/** Member "a" running as a streaming replica of an initialized cluster, with a valid lease. */
export function observation(over: ObservationOverrides = {}): Observation {
  const { self, pg, ...rest } = over;
  const name = self?.name ?? 'a';
  return {
    now: NOW,
    cluster: cluster(),
    leaseValidUntil: NOW + 10_000,
    restarts: [],
    replicas: [],
    appliedSyncNames: '',
    pendingSync: null,
    lastLeaderLsn: null,
    handedOverAt: null,
    syncMissingSince: null,
    syncStandbyAgentDown: false,
    peers: [],
    notStreamingSince: null,
    ...rest,
    self: { name, tags: tags(), host: `${name}.db`, port: 5432, cloneFrom: null, ...self },
    pg: replicaPg(pg),
  };
}

export function types(d: Decision | Action[]): string[] {
  return (Array.isArray(d) ? d : d.actions).map((a) => a.type);
}

export function actionOf<T extends Action['type']>(d: Decision | Action[], type: T): Extract<Action, { type: T }> | undefined {
  return (Array.isArray(d) ? d : d.actions).find((a): a is Extract<Action, { type: T }> => a.type === type);
}
