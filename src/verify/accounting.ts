// The drill's accounting: from what the client saw (every write attempt with its outcome, every read)
// and which rows the cluster holds afterwards, what the run proves. Pure, so that crafted logs can
// show that a wrong report cannot pass. Times are milliseconds on one monotonic clock, from the
// start of the run.
import { BatonError } from '../util/errors.js';

export interface WriteAttempt {
  id: number;
  startMs: number;
  endMs: number;
  /** true: the commit was acknowledged. false: the attempt failed; whether it committed is unknown. */
  ok: boolean;
}

export interface ReadAttempt {
  startMs: number;
  endMs: number;
  ok: boolean;
}

export interface RunLog {
  writes: WriteAttempt[];
  reads: ReadAttempt[];
  faultAtMs: number;
  /** When every member streamed again (null: not within the run). */
  wholeAtMs: number | null;
  endMs: number;
}

export interface RunAccount {
  /** Longest time without an acknowledged write, from the last acknowledgement before the fault on. */
  rtoMs: number;
  /** false when no write was acknowledged after the fault: rtoMs then runs to the end of the run. */
  writesResumed: boolean;
  acked: number;
  failedAttempts: number;
  /** Acknowledged, yet not in the cluster afterwards: data loss (RPO). */
  lostAcked: number[];
  /** Failed attempts whose row is in the cluster: committed but not acknowledged (allowed, counted). */
  unackedPresent: number[];
  /** Rows in the cluster that no attempt wrote: something else wrote them, or the log is wrong. */
  unexpected: number[];
  /** Ids attempted more than once, or read back more than once. */
  duplicates: number[];
  /** Fault to whole again (every member streaming), or null. */
  wholeMs: number | null;
  readFailures: number;
  /** Longest time without a successful read, from the last one before the fault on. */
  readRtoMs: number;
  /** Acknowledged writes per BUCKET_MS, from 0 to endMs. */
  timeline: number[];
}

export const BUCKET_MS = 100;

function checkLog(log: RunLog): void {
  const bad = (what: string) => {
    throw new BatonError(`the drill's log is inconsistent: ${what}`, 'this is a bug in the drill; the run cannot be judged');
  };
  for (const [name, v] of [['fault', log.faultAtMs], ['end', log.endMs]] as const) if (!Number.isFinite(v) || v < 0) bad(`${name} time ${v}`);
  if (log.faultAtMs > log.endMs) bad(`the fault (${log.faultAtMs} ms) is after the end of the run (${log.endMs} ms)`);
  for (const a of [...log.writes, ...log.reads]) {
    if (!Number.isFinite(a.startMs) || !Number.isFinite(a.endMs) || a.startMs < 0) bad(`an attempt at ${a.startMs}..${a.endMs} ms`);
    if (a.endMs < a.startMs) bad(`an attempt ended (${a.endMs} ms) before it started (${a.startMs} ms)`);
    if (a.endMs > log.endMs) bad(`an attempt ended (${a.endMs} ms) after the run (${log.endMs} ms)`);
  }
  for (const w of log.writes) if (!Number.isSafeInteger(w.id)) bad(`write id ${w.id}`);
}

/** Longest gap between successive instants, starting from the last one at or before `from`
 * (or from 0 when there is none) and running to `end` when nothing came after `from`. */
function longestOutage(instants: number[], from: number, end: number): { ms: number; resumed: boolean } {
  const sorted = [...instants].sort((a, b) => a - b);
  const before = sorted.filter((t) => t <= from);
  const after = sorted.filter((t) => t > from);
  let prev = before.at(-1) ?? 0;
  if (after.length === 0) return { ms: end - prev, resumed: false };
  let ms = 0;
  for (const t of after) {
    ms = Math.max(ms, t - prev);
    prev = t;
  }
  return { ms, resumed: true };
}

function repeated(ids: number[]): number[] {
  const seen = new Set<number>();
  const dup = new Set<number>();
  for (const id of ids) (seen.has(id) ? dup : seen).add(id);
  return [...dup].sort((a, b) => a - b);
}

/** `present`: the ids of this run's rows in the cluster after the run (read from the leader). */
export function account(log: RunLog, present: number[]): RunAccount {
  checkLog(log);
  const acked = log.writes.filter((w) => w.ok);
  const failed = log.writes.filter((w) => !w.ok);
  const presentSet = new Set(present);
  const attempted = new Set(log.writes.map((w) => w.id));
  const ackedIds = new Set(acked.map((w) => w.id));
  const write = longestOutage(acked.map((w) => w.endMs), log.faultAtMs, log.endMs);
  const read = longestOutage(log.reads.filter((r) => r.ok).map((r) => r.endMs), log.faultAtMs, log.endMs);
  const timeline = new Array<number>(Math.max(1, Math.ceil(log.endMs / BUCKET_MS))).fill(0);
  for (const w of acked) timeline[Math.min(timeline.length - 1, Math.floor(w.endMs / BUCKET_MS))]!++;
  return {
    rtoMs: write.ms,
    writesResumed: write.resumed,
    acked: acked.length,
    failedAttempts: failed.length,
    lostAcked: [...ackedIds].filter((id) => !presentSet.has(id)).sort((a, b) => a - b),
    // An id both acknowledged and failed is a duplicate, not an unacknowledged commit.
    unackedPresent: failed.filter((w) => presentSet.has(w.id) && !ackedIds.has(w.id)).map((w) => w.id).sort((a, b) => a - b),
    unexpected: [...presentSet].filter((id) => !attempted.has(id)).sort((a, b) => a - b),
    duplicates: [...new Set([...repeated(log.writes.map((w) => w.id)), ...repeated(present)])].sort((a, b) => a - b),
    wholeMs: log.wholeAtMs === null ? null : Math.max(0, log.wholeAtMs - log.faultAtMs),
    readFailures: log.reads.filter((r) => !r.ok).length,
    readRtoMs: read.ms,
    timeline,
  };
}

export interface Targets {
  /** Longest write outage allowed in a planned scenario (switchover). */
  rtoPlannedMs: number;
  /** ... in an unplanned one (every crash, freeze). */
  rtoUnplannedMs: number;
  /** Acknowledged rows that may be missing: 0 for synchronous replication. */
  rpoRows: number;
}

export interface Verdict {
  met: boolean;
  /** One line per broken target, naming the run and the numbers. */
  failures: string[];
}

/** A run passes when writes resumed within the target, no more acknowledged rows are missing than
 * allowed, nothing unexpected or duplicated is in the cluster, and it became whole again. */
export function judge(runs: { label: string; planned: boolean; account: RunAccount }[], t: Targets): Verdict {
  const failures: string[] = [];
  for (const { label, planned, account: a } of runs) {
    const limit = planned ? t.rtoPlannedMs : t.rtoUnplannedMs;
    if (!a.writesResumed) failures.push(`${label}: writes did not resume (none acknowledged for ${Math.round(a.rtoMs)} ms, to the end of the run)`);
    else if (a.rtoMs > limit) failures.push(`${label}: RTO ${Math.round(a.rtoMs)} ms is over the ${planned ? 'planned' : 'unplanned'} target of ${limit} ms`);
    if (a.lostAcked.length > t.rpoRows) failures.push(`${label}: ${a.lostAcked.length} acknowledged row(s) missing (RPO target ${t.rpoRows}): ids ${preview(a.lostAcked)}`);
    if (a.unexpected.length) failures.push(`${label}: ${a.unexpected.length} row(s) present that no attempt wrote: ids ${preview(a.unexpected)}`);
    if (a.duplicates.length) failures.push(`${label}: duplicated id(s) ${preview(a.duplicates)}`);
    if (a.wholeMs === null) failures.push(`${label}: the cluster was not whole again (every member streaming) by the end of the run`);
  }
  return { met: failures.length === 0, failures };
}

function preview(ids: number[]): string {
  return ids.length > 10 ? `${ids.slice(0, 10).join(', ')}, ... (${ids.length})` : ids.join(', ');
}
