// One run of one fault scenario: steady writes, the fault, writes until 3 s after they resume,
// then what the client saw (longest gap, failed attempts) and what the new leader holds.
import { performance } from 'node:perf_hooks';
import { switchover } from '../../src/agent/requests.js';
import type { ClusterView } from '../../src/dcs/types.js';
import { connectMultiHost, parseMultiHostUri } from '../../src/verify/multihost.js';
import { BenchAbort, runningLeader, sleep, WAIT_MS, type BenchCluster } from './cluster.js';
import { AckWriter } from '../../src/verify/writer.js';

export const SCENARIOS = ['host-crash', 'postmaster-crash', 'switchover'] as const;
export type Scenario = (typeof SCENARIOS)[number];

const STEADY_MS = 2000;
const AFTER_RESUME_MS = 3000;

export interface RunResult {
  scenario: Scenario;
  run: number;
  startedAt: string;
  leaderBefore: string;
  leaderAfter: string;
  /** Longest gap between consecutive acknowledged commits in the run. */
  unavailabilityMs: number;
  failedAttempts: number;
  ackedRows: number;
  lostAckedRows: number;
  lostIds: number[];
  /** Fault to the leader key naming a running primary (a new one, or for a postmaster crash the restarted one). */
  leaderReadyMs: number;
  /** Fault to the first acknowledged commit after the first failed attempt. */
  resumeMs: number;
  /** Duration of the switchover request (switchover only). */
  switchoverMs: number | null;
}

/** Polls etcd from the fault on; resolves with ms since `t0` when `ready` holds. */
async function watchLeader(
  bc: BenchCluster,
  t0: number,
  ready: (v: ClusterView) => boolean,
  cancel: { stopped: boolean },
): Promise<{ ms: number; leader: string }> {
  for (;;) {
    if (cancel.stopped) throw new BenchAbort('run aborted');
    const v = await bc.store.read().catch(() => null);
    const now = performance.now();
    if (v && ready(v)) return { ms: now - t0, leader: v.leader?.name ?? '?' };
    if (now - t0 > WAIT_MS) throw new BenchAbort(`no ready leader within ${WAIT_MS / 1000} s of the fault\n${bc.logs()}`);
    await sleep(25);
  }
}

/** Resolves with the instant writes resumed: the first acknowledged commit after the first failed attempt since `t0`. */
async function waitResumed(w: AckWriter, t0: number, faultDone: () => number | null): Promise<number> {
  for (;;) {
    const firstFail = w.failedAt.find((f) => f > t0);
    const resumed = firstFail !== undefined ? w.firstAckAfter(firstFail) : undefined;
    if (resumed !== undefined) return resumed;
    // A fault the client never noticed: count writes as resumed from the fault on.
    const done = faultDone();
    if (firstFail === undefined && done !== null && performance.now() - done > 5000) {
      const ack = w.firstAckAfter(t0);
      if (ack !== undefined) return ack;
    }
    if (performance.now() - t0 > WAIT_MS) throw new BenchAbort(`writes did not resume within ${WAIT_MS / 1000} s of the fault`);
    await sleep(20);
  }
}

export function longestGap(at: number[]): number {
  let gap = 0;
  for (let i = 1; i < at.length; i++) gap = Math.max(gap, at[i]! - at[i - 1]!);
  return gap;
}

async function missingIds(bc: BenchCluster, ids: number[]): Promise<number[]> {
  const leader = await bc.waitFor('a running leader to check acknowledged rows on', (v) => runningLeader(v));
  const db = await bc.client(leader.name);
  try {
    const ro = await db.query<{ ro: boolean }>('SELECT pg_is_in_recovery() AS ro');
    if (ro.rows[0]?.ro !== false) throw new BenchAbort(`${leader.name} is not a primary; cannot check acknowledged rows`);
    const r = await db.query<{ id: string }>('SELECT id FROM bench WHERE id = ANY($1::bigint[])', [ids]);
    const present = new Set(r.rows.map((row) => Number(row.id)));
    return ids.filter((id) => !present.has(id));
  } finally {
    await db.end().catch(() => undefined);
  }
}

export async function runScenario(bc: BenchCluster, scenario: Scenario, run: number, firstId: number): Promise<{ result: RunResult; nextId: number }> {
  const view = await bc.waitHealthy();
  const old = runningLeader(view);
  if (!old) throw new BenchAbort('no running leader before the run');
  const oldPm = bc.postmasterPid(old.name);
  if (!oldPm) throw new BenchAbort(`no postmaster.pid for the leader ${old.name}`);
  const startedAt = new Date().toISOString();

  const connect = () => connectMultiHost(parseMultiHostUri(bc.readWriteUri(), bc.c.superuser.password));
  const writer = new AckWriter(connect, firstId, undefined, bc.preparedWriter);
  writer.start();
  let faultOp: Promise<number | null> = Promise.resolve(null);
  let monitor: Promise<{ ms: number; leader: string }> | null = null;
  const cancel = { stopped: false };
  try {
    await sleep(STEADY_MS);
    if (writer.ackedAt.length === 0) throw new BenchAbort(`no write was acknowledged in ${STEADY_MS} ms of steady state (failed attempts: ${writer.failedAt.length})`);

    const ready =
      scenario === 'postmaster-crash'
        ? (v: ClusterView) => {
            const l = runningLeader(v);
            return !!l && (l.name !== old.name || (l.postmasterPid !== null && l.postmasterPid !== oldPm));
          }
        : (v: ClusterView) => {
            const l = runningLeader(v);
            return !!l && l.name !== old.name;
          };
    let faultDoneAt: number | null = null;
    const faultAt = performance.now();
    monitor = watchLeader(bc, faultAt, ready, cancel);
    monitor.catch(() => undefined);
    if (scenario === 'host-crash') {
      await bc.kill(old.name, { agent: true, postmaster: true });
    } else if (scenario === 'postmaster-crash') {
      await bc.kill(old.name, { agent: false, postmaster: true });
    } else {
      faultOp = switchover(bc.store, { waitMs: WAIT_MS }).then((o) => o.ms);
      faultOp.catch(() => undefined);
    }
    void faultOp.then(() => (faultDoneAt = performance.now()), () => undefined);

    const resumedAt = await waitResumed(writer, faultAt, () => faultDoneAt);
    await sleep(Math.max(0, resumedAt + AFTER_RESUME_MS - performance.now()));
    await writer.stop();
    const switchoverMs = await faultOp;
    const leaderReady = await monitor;
    const lostIds = await missingIds(bc, writer.ackedIds);
    return {
      nextId: writer.next,
      result: {
        scenario,
        run,
        startedAt,
        leaderBefore: old.name,
        leaderAfter: leaderReady.leader,
        unavailabilityMs: longestGap(writer.ackedAt),
        failedAttempts: writer.failedAt.length,
        ackedRows: writer.ackedIds.length,
        lostAckedRows: lostIds.length,
        lostIds,
        leaderReadyMs: leaderReady.ms,
        resumeMs: resumedAt - faultAt,
        switchoverMs,
      },
    };
  } finally {
    cancel.stopped = true;
    await writer.stop();
    await faultOp.catch(() => undefined);
  }
}

/**
 * Brings the cluster back to 3 healthy members with a synchronous standby after a run.
 * Postmaster crashes: each agent allows max_restarts (3) in-place restarts within restart_window (60 s),
 * so before the next postmaster-crash run leadership moves to the member crashed least recently.
 */
export async function restore(bc: BenchCluster, r: RunResult, crashes: Map<string, number>, rotateLeader: boolean, log: (l: string) => void): Promise<void> {
  if (r.scenario === 'host-crash') {
    bc.restartAgent(r.leaderBefore);
    log(`  restarted the agent of ${r.leaderBefore}; waiting for it to rejoin`);
  }
  if (r.scenario === 'postmaster-crash') crashes.set(r.leaderBefore, Date.now());
  const view = await bc.waitHealthy();
  if (!rotateLeader) return;
  const leader = view.leader?.name ?? '';
  const sync = new Set(view.sync?.members ?? []);
  const target = view.members
    .filter((m) => m.name !== leader && m.role === 'replica' && m.state === 'streaming')
    .sort((a, b) => (crashes.get(a.name) ?? 0) - (crashes.get(b.name) ?? 0) || Number(sync.has(b.name)) - Number(sync.has(a.name)))[0];
  if (!target) throw new BenchAbort('no streaming replica to switch over to');
  const o = await switchover(bc.store, { to: target.name, waitMs: WAIT_MS });
  log(`  switched over ${o.from} -> ${o.to} (${o.ms} ms) so the next crash hits a leader with fresh restart history`);
  await bc.waitHealthy();
}
