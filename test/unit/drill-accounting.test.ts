// The drill's accounting on crafted logs: a lost row, a duplicate, a gap, clock edge cases. A wrong
// report must not pass the verdict.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { account, judge, type RunLog, type WriteAttempt } from '../../src/verify/accounting.js';

/** Writes every `every` ms from `from` to `to`, each taking 1 ms, ids from `firstId`; ok unless in a failing window. */
function writes(from: number, to: number, every: number, firstId = 1, failing: [number, number][] = []): WriteAttempt[] {
  const out: WriteAttempt[] = [];
  let id = firstId;
  for (let t = from; t + 1 <= to; t += every) {
    const ok = !failing.some(([a, b]) => t >= a && t < b);
    out.push({ id: id++, startMs: t, endMs: t + 1, ok });
  }
  return out;
}

function log(w: WriteAttempt[], o: Partial<RunLog> = {}): RunLog {
  return { writes: w, reads: [], faultAtMs: 1000, wholeAtMs: 3000, endMs: 4000, ...o };
}

const ackedIds = (w: WriteAttempt[]) => w.filter((x) => x.ok).map((x) => x.id);
const targets = { rtoPlannedMs: 1000, rtoUnplannedMs: 5000, rpoRows: 0 };
const verdictOf = (a: ReturnType<typeof account>, planned = false) => judge([{ label: 'run 1', planned, account: a }], targets);

test('a clean outage: RTO is the gap from the last acknowledgement before the fault to the first after', () => {
  // Every 10 ms; attempts between 1000 and 2500 fail.
  const w = writes(0, 4000, 10, 1, [[1000, 2500]]);
  const a = account(log(w), ackedIds(w));
  // Last ack before the fault ends at 991, the first after at 2501.
  assert.equal(a.rtoMs, 2501 - 991);
  assert.equal(a.writesResumed, true);
  assert.equal(a.failedAttempts, 150);
  assert.deepEqual(a.lostAcked, []);
  assert.deepEqual(a.unackedPresent, []);
  assert.equal(a.wholeMs, 2000);
  assert.equal(verdictOf(a).met, true);
  // The same outage in a planned scenario misses a 1 s target.
  assert.match(verdictOf(a, true).failures[0]!, /RTO 1510 ms is over the planned target of 1000 ms/);
});

test('a lost acknowledged row fails the verdict and is named', () => {
  const w = writes(0, 4000, 10);
  const present = ackedIds(w).filter((id) => id !== 150);
  const a = account(log(w), present);
  assert.deepEqual(a.lostAcked, [150]);
  const v = verdictOf(a);
  assert.equal(v.met, false);
  assert.match(v.failures.join('\n'), /1 acknowledged row\(s\) missing \(RPO target 0\): ids 150/);
  // With an RPO target of one row it would pass.
  assert.equal(judge([{ label: 'r', planned: false, account: a }], { ...targets, rpoRows: 1 }).met, true);
});

test('a failed attempt that committed anyway is counted, and allowed', () => {
  const w = writes(0, 4000, 10, 1, [[1000, 1100]]);
  const failedId = w.find((x) => !x.ok)!.id;
  const a = account(log(w), [...ackedIds(w), failedId]);
  assert.deepEqual(a.unackedPresent, [failedId]);
  assert.deepEqual(a.lostAcked, []);
  assert.equal(verdictOf(a).met, true);
});

test('duplicates, in the log or in the rows read back, fail the verdict', () => {
  const w = writes(0, 4000, 10);
  const twice = [...w, { ...w[5]!, startMs: 3990, endMs: 3991 }];
  const a = account(log(twice), ackedIds(w));
  assert.deepEqual(a.duplicates, [6]);
  assert.equal(verdictOf(a).met, false);
  const b = account(log(w), [...ackedIds(w), 7]);
  assert.deepEqual(b.duplicates, [7]);
  assert.match(verdictOf(b).failures.join('\n'), /duplicated id\(s\) 7/);
  // An id both acknowledged and failed is a duplicate, not an unacknowledged commit.
  const c = account(log([...w, { id: 3, startMs: 3995, endMs: 3996, ok: false }]), ackedIds(w));
  assert.deepEqual(c.duplicates, [3]);
  assert.deepEqual(c.unackedPresent, []);
});

test('rows that no attempt wrote are reported, and fail the verdict', () => {
  const w = writes(0, 4000, 10);
  const a = account(log(w), [...ackedIds(w), 100_000]);
  assert.deepEqual(a.unexpected, [100_000]);
  assert.equal(verdictOf(a).met, false);
});

test('a gap in the ids is not a loss when those attempts failed, and is one when they were acknowledged', () => {
  const w = writes(0, 4000, 10, 1, [[1500, 1530]]);
  const gapIds = w.filter((x) => !x.ok).map((x) => x.id);
  assert.equal(gapIds.length, 3);
  assert.deepEqual(account(log(w), ackedIds(w)).lostAcked, []);
  const ackedGap = ackedIds(w).slice(200, 203);
  const a = account(log(w), ackedIds(w).filter((id) => !ackedGap.includes(id)));
  assert.deepEqual(a.lostAcked, ackedGap);
});

test('writes that never resume: the outage runs to the end and the verdict says so', () => {
  const w = writes(0, 4000, 10, 1, [[1000, 4000]]);
  const a = account(log(w, { wholeAtMs: null }), ackedIds(w));
  assert.equal(a.writesResumed, false);
  assert.equal(a.rtoMs, 4000 - 991);
  assert.equal(a.wholeMs, null);
  const v = verdictOf(a);
  assert.match(v.failures.join('\n'), /writes did not resume/);
  assert.match(v.failures.join('\n'), /not whole again/);
});

test('clock edges: an ack at the very instant of the fault counts as before it; an attempt spanning the fault as after it', () => {
  const w: WriteAttempt[] = [
    { id: 1, startMs: 900, endMs: 1000, ok: true },
    { id: 2, startMs: 1000, endMs: 1800, ok: true }, // in flight across the fault, acknowledged late
    { id: 3, startMs: 1800, endMs: 1801, ok: true },
  ];
  const a = account(log(w), [1, 2, 3]);
  assert.equal(a.rtoMs, 800);
  // No acknowledgement before the fault: the outage counts from the start of the run.
  const b = account(log([{ id: 1, startMs: 1200, endMs: 1300, ok: true }]), [1]);
  assert.equal(b.rtoMs, 1300);
  // Equal timestamps and an unsorted log give the same answer as the sorted one.
  const c = account(log([...w].reverse().concat({ id: 4, startMs: 1801, endMs: 1801, ok: true })), [1, 2, 3, 4]);
  assert.equal(c.rtoMs, 800);
  // The fault at 0 and at the end of the run.
  assert.equal(account(log(w, { faultAtMs: 0 }), [1, 2, 3]).rtoMs, 1000);
  assert.equal(account(log(w, { faultAtMs: 4000 }), [1, 2, 3]).writesResumed, false);
});

test('an inconsistent log is refused rather than judged', () => {
  const bad: RunLog[] = [
    log([{ id: 1, startMs: 10, endMs: 5, ok: true }]),
    log([{ id: 1, startMs: -1, endMs: 5, ok: true }]),
    log([{ id: 1, startMs: 10, endMs: 5000, ok: true }]),
    log([{ id: 1.5, startMs: 10, endMs: 11, ok: true }]),
    log([{ id: 1, startMs: Number.NaN, endMs: 11, ok: true }]),
    log([], { faultAtMs: 5000 }),
  ];
  for (const l of bad) assert.throws(() => account(l, []), /the drill's log is inconsistent/);
});

test('timeline: acknowledged writes per 100 ms, every ack in exactly one bucket', () => {
  const w = writes(0, 4000, 10, 1, [[1000, 1500]]);
  const a = account(log(w), ackedIds(w));
  assert.equal(a.timeline.length, 40);
  assert.equal(a.timeline[0], 10);
  assert.deepEqual(a.timeline.slice(10, 15), [0, 0, 0, 0, 0]);
  assert.equal(a.timeline.reduce((x, y) => x + y, 0), a.acked);
});

test('property: whatever the log, lost + present acknowledged = acknowledged, and a loss never passes RPO 0', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ ok: fc.boolean(), dur: fc.integer({ min: 0, max: 50 }) }), { maxLength: 200 }),
      fc.array(fc.boolean(), { maxLength: 200 }),
      fc.integer({ min: 0, max: 10_000 }),
      (attempts, keep, fault) => {
        let t = 0;
        const w = attempts.map((x, i) => {
          const a = { id: i + 1, startMs: t, endMs: t + x.dur, ok: x.ok };
          t += x.dur;
          return a;
        });
        const endMs = Math.max(t, fault);
        const present = w.filter((x, i) => keep[i] ?? true).map((x) => x.id);
        const a = account({ writes: w, reads: [], faultAtMs: fault, wholeAtMs: endMs, endMs }, present);
        const ackedPresent = w.filter((x) => x.ok && present.includes(x.id)).length;
        assert.equal(a.lostAcked.length + ackedPresent, a.acked);
        assert.equal(a.acked + a.failedAttempts, w.length);
        assert.ok(a.rtoMs >= 0);
        if (a.lostAcked.length > 0) assert.equal(judge([{ label: 'p', planned: false, account: a }], { ...targets, rtoUnplannedMs: Infinity }).met, false);
      },
    ),
  );
});
