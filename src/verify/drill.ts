// `baton verify`: one run of one scenario against a live cluster. Steady writes (one row per
// transaction, increasing ids) and reads, the fault, the cluster made whole again (every member
// streaming), then the rows read back from the leader and the run accounted (accounting.ts).
import type pg from 'pg';
import { performance } from 'node:perf_hooks';
import { switchover } from '../agent/requests.js';
import type { ClusterStore } from '../dcs/store.js';
import type { ClusterView, MemberRecord } from '../dcs/types.js';
import { BatonError } from '../util/errors.js';
import { account, type RunAccount } from './accounting.js';
import type { FaultInjector } from './faults.js';
import { AckReader } from './reader.js';
import { AckWriter } from './writer.js';

export const SCENARIOS = ['switchover', 'postgres-crash', 'host-crash', 'freeze', 'replica-crash', 'standby-then-primary'] as const;
export type Scenario = (typeof SCENARIOS)[number];
/** Planned scenarios are judged against rto_planned, the others against rto_unplanned. */
export const PLANNED: ReadonlySet<Scenario> = new Set(['switchover']);

export const TABLE = 'baton_verify';
const STEADY_MS = 1000;
/** Writes and reads go on this long after the cluster is whole again. */
const AFTER_WHOLE_MS = 500;

export interface DrillContext {
  store: ClusterStore;
  /** null: only planned scenarios can run. */
  faults: FaultInjector | null;
  connectWrite: () => Promise<pg.Client>;
  connectRead: () => Promise<pg.Client>;
  connectMember: (m: MemberRecord) => Promise<pg.Client>;
  /** Minimum time writes go on after the fault. */
  durationMs: number;
  /** Longest wait for anything (a new leader, the cluster whole again). */
  timeoutMs: number;
  progress: (phase: string, live: { acked: number; failed: number }) => void;
}

export interface RunReport {
  scenario: Scenario;
  run: number;
  startedAt: string;
  leaderBefore: string;
  leaderAfter: string;
  /** The member the fault hit (the first one, for standby-then-primary). */
  hurt: string;
  /** Milliseconds from the start of the run. */
  faultAtMs: number;
  /** When the fault ended (thaw, restart, switchover done), or null. */
  faultEndMs: number | null;
  wholeAtMs: number | null;
  endMs: number;
  account: RunAccount;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function runningLeader(v: ClusterView): MemberRecord | undefined {
  return v.members.find((m) => m.name === v.leader?.name && m.role === 'primary' && m.state === 'running');
}

/** A running leader, every other named member streaming, no switchover, and (synchronous mode) a synchronous standby. */
export function isWhole(v: ClusterView, names: string[]): boolean {
  const leader = runningLeader(v);
  if (!leader || v.switchover) return false;
  const ok = names.every((n) => n === leader.name || v.members.some((m) => m.name === n && m.role === 'replica' && m.state === 'streaming'));
  return ok && (!v.config.synchronousMode || (v.sync?.leader === leader.name && v.sync.members.length > 0));
}

async function waitView<T>(ctx: DrillContext, what: string, fn: (v: ClusterView) => T | undefined | null | false, timeoutMs = ctx.timeoutMs): Promise<T> {
  const t0 = Date.now();
  let last: ClusterView | null = null;
  for (;;) {
    last = await ctx.store.read().catch(() => last);
    const r = last ? fn(last) : null;
    if (r) return r;
    if (Date.now() - t0 > timeoutMs) {
      const members = last?.members.map((m) => `${m.name}=${m.role}/${m.state}${m.problem ? ` (${m.problem})` : ''}`).join(', ');
      throw new BatonError(`timed out after ${timeoutMs / 1000} s waiting for ${what}; leader ${last?.leader?.name ?? 'none'}; members: ${members ?? 'unknown'}`);
    }
    await sleep(50);
  }
}

/** Replicas the leader itself sees streaming (pg_stat_replication), by application_name = member name. */
async function streamingFromLeader(ctx: DrillContext, leader: MemberRecord): Promise<Set<string>> {
  const db = await ctx.connectMember(leader);
  try {
    const r = await db.query<{ name: string }>("SELECT application_name AS name FROM pg_stat_replication WHERE state = 'streaming'");
    return new Set(r.rows.map((x) => x.name));
  } finally {
    await db.end().catch(() => undefined);
  }
}

/**
 * Whole again: the member keys say so (isWhole) *and* the leader streams to every other member. The
 * keys alone can be stale: a member killed with its agent keeps its last record until its lease expires.
 */
async function waitWhole(ctx: DrillContext, names: string[], what: string): Promise<ClusterView> {
  const t0 = Date.now();
  for (;;) {
    const v = await waitView(ctx, `the cluster to be whole again ${what}`, (x) => (isWhole(x, names) ? x : null), Math.max(1, ctx.timeoutMs - (Date.now() - t0)));
    const leader = runningLeader(v)!;
    const seen = await streamingFromLeader(ctx, leader).catch(() => new Set<string>());
    const missing = names.filter((n) => n !== leader.name && !seen.has(n));
    if (missing.length === 0) return v;
    if (Date.now() - t0 > ctx.timeoutMs) {
      throw new BatonError(`timed out after ${ctx.timeoutMs / 1000} s waiting for the cluster to be whole again ${what}: ${leader.name} does not stream to ${missing.join(', ')}`);
    }
    await sleep(50);
  }
}

export async function prepareTable(ctx: DrillContext): Promise<number> {
  const leader = await waitView(ctx, 'a running leader', runningLeader);
  const db = await ctx.connectMember(leader);
  try {
    await db.query(`CREATE TABLE IF NOT EXISTS ${TABLE}(id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())`);
    const r = await db.query<{ max: string | null }>(`SELECT max(id)::text AS max FROM ${TABLE}`);
    return Number(r.rows[0]?.max ?? 0) + 1;
  } finally {
    await db.end().catch(() => undefined);
  }
}

function pickReplica(v: ClusterView, leader: string): MemberRecord {
  const replicas = v.members.filter((m) => m.name !== leader && m.role === 'replica' && m.state === 'streaming');
  // The synchronous standby is the hard case: commits wait on it.
  const r = replicas.find((m) => v.sync?.members.includes(m.name)) ?? replicas[0];
  if (!r) throw new BatonError('no streaming replica to hurt');
  return r;
}

/** Runs the fault; returns the member hurt and when the fault ended (ms from the run's start). */
async function inject(ctx: DrillContext, scenario: Scenario, view: ClusterView, leader: MemberRecord, rel: () => number, say: (phase: string) => void): Promise<{ hurt: string; endedAt: number | null }> {
  const f = ctx.faults ?? { inject: () => Promise.reject(new BatonError(`${scenario} needs a way to hurt processes: a local cluster or fault_command`)), describe: () => 'none' };
  const newLeader = (v: ClusterView) => {
    const l = runningLeader(v);
    return l && l.name !== leader.name ? l : undefined;
  };
  switch (scenario) {
    case 'switchover':
      await switchover(ctx.store, { waitMs: ctx.timeoutMs });
      return { hurt: leader.name, endedAt: rel() };
    case 'postgres-crash':
      await f.inject('postgres-crash', leader);
      return { hurt: leader.name, endedAt: null };
    case 'host-crash':
      await f.inject('host-crash', leader);
      say('host down, waiting for a new leader');
      await waitView(ctx, 'a new leader after the host crash', newLeader);
      await f.inject('start', leader); // the host comes back
      return { hurt: leader.name, endedAt: rel() };
    case 'freeze': {
      await f.inject('freeze', leader);
      // Longer than the lease: the cluster must elect a new leader while the old one cannot act.
      await sleep((view.config.ttl + 2) * 1000);
      await f.inject('thaw', leader);
      return { hurt: leader.name, endedAt: rel() };
    }
    case 'replica-crash': {
      const victim = pickReplica(view, leader.name);
      await f.inject('host-crash', victim);
      await sleep(2000);
      await f.inject('start', victim);
      return { hurt: victim.name, endedAt: rel() };
    }
    case 'standby-then-primary': {
      const replicas = view.members.filter((m) => m.name !== leader.name);
      if (replicas.length < 2) throw new BatonError('standby-then-primary needs at least two replicas (a leader and two more members)');
      const first = pickReplica(view, leader.name);
      await f.inject('stop', first);
      say(`${first.name} stopped, waiting for another synchronous standby`);
      await waitView(ctx, `a synchronous standby other than ${first.name}`, (v) => !v.config.synchronousMode || (v.sync?.leader === leader.name && v.sync.members.length > 0 && !v.sync.members.includes(first.name)));
      await f.inject('stop', leader);
      const taken = await waitView(ctx, 'the remaining replica to take over', newLeader);
      if (taken.name === first.name) throw new BatonError(`${first.name} was stopped yet became leader`);
      await f.inject('start', first);
      await f.inject('start', leader);
      return { hurt: first.name, endedAt: rel() };
    }
  }
}

export async function runOnce(ctx: DrillContext, scenario: Scenario, run: number, firstId: number): Promise<{ report: RunReport; nextId: number }> {
  const view = await waitView(ctx, 'the cluster to be whole (a leader, every member streaming)', (v) => (isWhole(v, v.members.map((m) => m.name)) ? v : null));
  const names = view.members.map((m) => m.name);
  const leader = runningLeader(view)!;
  const t0 = performance.now();
  const rel = () => performance.now() - t0;
  const startedAt = new Date().toISOString();
  const writer = new AckWriter(ctx.connectWrite, firstId, `INSERT INTO ${TABLE}(id) VALUES ($1)`);
  const reader = new AckReader(ctx.connectRead, `SELECT max(id) FROM ${TABLE}`);
  const live = () => ({ acked: writer.ackedIds.length, failed: writer.failedAt.length });
  let phase = 'writing before the fault';
  const say = (p: string) => {
    phase = p;
    ctx.progress(p, live());
  };
  const ticker = setInterval(() => ctx.progress(phase, live()), 200);
  writer.start();
  reader.start();
  try {
    await sleep(STEADY_MS);
    if (writer.ackedIds.length === 0) throw new BatonError(`no write was acknowledged in ${STEADY_MS} ms before the fault (${writer.failedAt.length} failed attempts)`, 'is the read-write path up? try "baton status"');
    say(`injecting ${scenario}`);
    const faultAtMs = rel();
    const { hurt, endedAt } = await inject(ctx, scenario, view, leader, rel, say);
    say('waiting for the cluster to be whole again');
    const wholeView = await waitWhole(ctx, names, `after ${scenario}`);
    const wholeAtMs = rel();
    say('whole again, writing on');
    await sleep(Math.max(AFTER_WHOLE_MS, faultAtMs + ctx.durationMs - rel()));
    await writer.stop();
    await reader.stop();
    const endMs = rel();
    const after = runningLeader(wholeView)!;
    const db = await ctx.connectMember(after);
    let present: number[];
    try {
      const r = await db.query<{ id: string }>(`SELECT id::text FROM ${TABLE} WHERE id >= $1 AND id < $2`, [firstId, writer.next]);
      present = r.rows.map((x) => Number(x.id));
    } finally {
      await db.end().catch(() => undefined);
    }
    const shift = <T extends { startMs: number; endMs: number }>(a: T): T => ({ ...a, startMs: a.startMs - t0, endMs: a.endMs - t0 });
    const acc = account(
      { writes: writer.attempts.map(shift), reads: reader.attempts.map(shift), faultAtMs, wholeAtMs, endMs },
      present,
    );
    return {
      nextId: writer.next,
      report: { scenario, run, startedAt, leaderBefore: leader.name, leaderAfter: after.name, hurt, faultAtMs, faultEndMs: endedAt, wholeAtMs, endMs, account: acc },
    };
  } finally {
    clearInterval(ticker);
    await writer.stop();
    await reader.stop();
  }
}
