// Patroni-compatible health endpoints, as a pure function of what the agent knows right now.
// Every answer is 200 or 503, except 400 for a query parameter we cannot parse: silently ignoring
// a typo in a load balancer's check would route traffic by the wrong rule.
import type { MemberRecord, MemberTags } from '../dcs/types.js';

export interface HealthSnapshot {
  /** This member's last published record (role, state, lsns, tags, timeline). */
  self: MemberRecord | null;
  /** Holds the leader key right now (and is not fenced). */
  isLeader: boolean;
  postgresRunning: boolean;
  /** The leader's last published WAL position. */
  leaderLsn: number | null;
  /** From the sync key. */
  syncMembers: string[];
  /** Date.now() of the last completed HA loop. */
  lastLoopAt: number | null;
  now: number;
  /** Lease TTL in seconds. */
  ttlSeconds: number;
  /** Bytes. */
  maximumLagOnFailover: number;
  cluster: string;
  paused: boolean;
}

export interface HealthResult {
  status: 200 | 400 | 503;
  body: object;
}

type Check =
  | 'primary'
  | 'leader'
  | 'replica'
  | 'read-only'
  | 'sync'
  | 'read-only-sync'
  | 'async'
  | 'health'
  | 'liveness'
  | 'readiness';

const PATHS: ReadonlyMap<string, Check> = new Map<string, Check>([
  ['/', 'primary'],
  ['/primary', 'primary'],
  ['/read-write', 'primary'],
  ['/master', 'primary'],
  ['/leader', 'leader'],
  ['/replica', 'replica'],
  ['/read-only', 'read-only'],
  ['/sync', 'sync'],
  ['/synchronous', 'sync'],
  ['/read-only-sync', 'read-only-sync'],
  ['/async', 'async'],
  ['/asynchronous', 'async'],
  ['/health', 'health'],
  ['/liveness', 'liveness'],
  ['/readiness', 'readiness'],
]);

/** Health paths, for routers that need to know which paths healthCheck answers. */
export const HEALTH_PATHS: readonly string[] = [...PATHS.keys()];

function normalizePath(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed === '' ? '/' : trimmed;
}

export function isHealthPath(path: string): boolean {
  return PATHS.has(normalizePath(path));
}

// PostgreSQL memory units are powers of 1024 ("kB" = 1024 bytes).
const UNITS: ReadonlyMap<string, number> = new Map([
  ['', 1],
  ['b', 1],
  ['kb', 1024],
  ['mb', 1024 ** 2],
  ['gb', 1024 ** 3],
  ['tb', 1024 ** 4],
]);

export const LAG_FORMS = 'a byte count (123) or a size with a unit: B, kB, MB, GB, TB (16MB, 1kB, 1GB)';

/** Bytes from "123", "16MB", "1kB", "1GB" (units case-insensitive); null when not a valid size. */
export function parseLagParam(s: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(s);
  if (!m) return null;
  const multiplier = UNITS.get(m[2]!.toLowerCase());
  if (multiplier === undefined) return null;
  const bytes = Math.floor(Number(m[1]) * multiplier);
  return Number.isSafeInteger(bytes) ? bytes : null;
}

interface Params {
  maxLag: number | null;
  replicationState: 'streaming' | 'recovering' | null;
  tags: Array<[string, string]>;
  mode: 'write' | 'apply';
}

class BadParam {
  constructor(
    readonly parameter: string,
    readonly message: string,
  ) {}
}

const REPLICA_CHECKS: ReadonlySet<Check> = new Set<Check>(['replica', 'read-only', 'sync', 'read-only-sync', 'async']);

/** Reads only the parameters the check uses, so unrelated ones are ignored as Patroni does. */
function parseParams(check: Check, query: URLSearchParams): Params | BadParam {
  const params: Params = { maxLag: null, replicationState: null, tags: [], mode: 'write' };
  const usesLag = REPLICA_CHECKS.has(check) || check === 'readiness';
  const lag = query.get('lag');
  if (usesLag && lag !== null) {
    params.maxLag = parseLagParam(lag);
    if (params.maxLag === null) return new BadParam('lag', `invalid lag ${JSON.stringify(lag)}: use ${LAG_FORMS}`);
  }
  if (check === 'readiness') {
    const mode = query.get('mode');
    if (mode !== null) {
      if (mode !== 'write' && mode !== 'apply') {
        return new BadParam('mode', `invalid mode ${JSON.stringify(mode)}: use "write" (received WAL) or "apply" (replayed WAL)`);
      }
      params.mode = mode;
    }
  }
  if (!REPLICA_CHECKS.has(check)) return params;
  const state = query.get('replication_state');
  if (state !== null) {
    if (state === 'streaming') params.replicationState = 'streaming';
    else if (state === 'recovering' || state === 'in archive recovery') params.replicationState = 'recovering';
    else {
      return new BadParam(
        'replication_state',
        `invalid replication_state ${JSON.stringify(state)}: use "streaming" or "in archive recovery" (alias "recovering")`,
      );
    }
  }
  for (const [key, value] of query) {
    if (key.startsWith('tag_')) params.tags.push([key.slice('tag_'.length), value]);
  }
  return params;
}

function isPrimaryLeader(snap: HealthSnapshot): boolean {
  return snap.postgresRunning && snap.isLeader && snap.self?.role === 'primary';
}

function isRunningReplica(snap: HealthSnapshot): boolean {
  const self = snap.self;
  return (
    snap.postgresRunning &&
    self !== null &&
    self.role === 'replica' &&
    (self.state === 'streaming' || self.state === 'recovering')
  );
}

/** Bytes behind the leader's published position; null when either side is unknown. */
function lagOf(snap: HealthSnapshot, mode: 'write' | 'apply'): number | null {
  const own = mode === 'apply' ? snap.self?.replayedLsn : snap.self?.receivedLsn;
  if (own === null || own === undefined || snap.leaderLsn === null) return null;
  // The leader publishes its position once per loop, so a replica can be slightly ahead of it.
  return Math.max(0, snap.leaderLsn - own);
}

function lagWithin(snap: HealthSnapshot, maxLag: number | null, mode: 'write' | 'apply'): boolean {
  if (maxLag === null) return true;
  const lag = lagOf(snap, mode);
  return lag !== null && lag <= maxLag;
}

function tagsMatch(tags: MemberTags, wanted: Array<[string, string]>): boolean {
  const own = tags as unknown as Record<string, unknown>;
  return wanted.every(([key, value]) => Object.hasOwn(own, key) && String(own[key]) === value);
}

function isSync(snap: HealthSnapshot): boolean {
  return snap.self !== null && snap.syncMembers.includes(snap.self.name);
}

function replicaOk(snap: HealthSnapshot, p: Params): boolean {
  const self = snap.self;
  if (self === null || !isRunningReplica(snap) || self.tags.noloadbalance) return false;
  if (p.replicationState !== null && self.state !== p.replicationState) return false;
  return lagWithin(snap, p.maxLag, 'write') && tagsMatch(self.tags, p.tags);
}

function liveness(snap: HealthSnapshot): boolean {
  if (snap.lastLoopAt === null) return false;
  const limitMs = snap.ttlSeconds * 1000 * (snap.isLeader ? 1 : 2);
  return snap.now - snap.lastLoopAt <= limitMs;
}

function readiness(snap: HealthSnapshot, p: Params): boolean {
  if (snap.isLeader) return snap.postgresRunning;
  return isRunningReplica(snap) && lagWithin(snap, p.maxLag ?? snap.maximumLagOnFailover, p.mode);
}

function evaluate(check: Check, snap: HealthSnapshot, p: Params): boolean {
  switch (check) {
    case 'primary':
      return isPrimaryLeader(snap);
    case 'leader':
      return snap.isLeader;
    case 'replica':
      return replicaOk(snap, p);
    case 'read-only':
      return isPrimaryLeader(snap) || replicaOk(snap, p);
    case 'sync':
      return replicaOk(snap, p) && isSync(snap);
    case 'read-only-sync':
      return isPrimaryLeader(snap) || (replicaOk(snap, p) && isSync(snap));
    case 'async':
      return replicaOk(snap, p) && !isSync(snap);
    case 'health':
      return snap.postgresRunning;
    case 'liveness':
      return liveness(snap);
    case 'readiness':
      return readiness(snap, p);
  }
}

const LIVE_STATES: ReadonlySet<string> = new Set(['running', 'streaming', 'recovering']);

/** The Patroni-like description of this member returned with GET. */
export function describeMember(snap: HealthSnapshot): Record<string, unknown> {
  const self = snap.self;
  const role = self?.role === 'primary' ? 'primary' : 'replica';
  let state: string;
  if (snap.postgresRunning) state = 'running';
  else state = self !== null && !LIVE_STATES.has(self.state) ? self.state : 'stopped';
  const body: Record<string, unknown> = {
    state,
    role,
    timeline: self?.timeline ?? null,
    xlog:
      role === 'primary'
        ? { location: self?.receivedLsn ?? null }
        : { received_location: self?.receivedLsn ?? null, replayed_location: self?.replayedLsn ?? null },
    tags: self?.tags ?? {},
    cluster: snap.cluster,
    name: self?.name ?? null,
    lag: role === 'primary' ? 0 : lagOf(snap, 'write'),
    sync_standby: role === 'replica' && isSync(snap),
    pause: snap.paused,
  };
  if (isRunningReplica(snap)) body.replication_state = self?.state === 'streaming' ? 'streaming' : 'in archive recovery';
  return body;
}

export function healthCheck(path: string, query: URLSearchParams, snap: HealthSnapshot): HealthResult | null {
  const check = PATHS.get(normalizePath(path));
  if (check === undefined) return null;
  const params = parseParams(check, query);
  if (params instanceof BadParam) {
    return { status: 400, body: { error: 'bad_request', parameter: params.parameter, message: params.message } };
  }
  return { status: evaluate(check, snap, params) ? 200 : 503, body: describeMember(snap) };
}
