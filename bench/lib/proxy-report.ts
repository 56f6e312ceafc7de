// Tables and verdicts for bench/proxy.ts: every path compared with the direct connection
// measured in the same round (same workload and client count).
import { renderTable } from '../../src/cli/table.js';
import type { PgbenchResult, Workload } from './proxy-pgbench.js';

export interface Row extends PgbenchResult {
  /** tps / direct tps. */
  tpsRatio: number;
  /** p99 - direct p99, in ms. */
  p99OverheadMs: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** One result per workload, client count and path: the median of each measure over the rounds. */
export function medians(results: PgbenchResult[]): PgbenchResult[] {
  const groups = new Map<string, PgbenchResult[]>();
  for (const r of results) {
    const key = `${r.workload}/${r.clients}/${r.path}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((g) => {
    const known = (pick: (r: PgbenchResult) => number | null): number | null => {
      const xs = g.map(pick).filter((x): x is number => x !== null);
      return xs.length ? median(xs) : null;
    };
    return {
      ...g[0]!,
      tps: median(g.map((r) => r.tps)),
      transactions: median(g.map((r) => r.transactions)),
      failed: g.reduce((n, r) => n + r.failed, 0),
      p50Ms: median(g.map((r) => r.p50Ms)),
      p99Ms: median(g.map((r) => r.p99Ms)),
      relayCpuUs: known((r) => r.relayCpuUs),
      relayWaitUs: known((r) => r.relayWaitUs),
      serverCpuUs: known((r) => r.serverCpuUs),
      hostCpuUs: known((r) => r.hostCpuUs),
      rate: known((r) => r.rate),
    };
  });
}

export function compare(results: PgbenchResult[]): Row[] {
  return results.map((r) => {
    const d = results.find((x) => x.path === 'direct' && x.workload === r.workload && x.clients === r.clients);
    return { ...r, tpsRatio: d ? r.tps / d.tps : NaN, p99OverheadMs: d ? r.p99Ms - d.p99Ms : NaN };
  });
}

const f = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');
const signed = (x: number, digits: number): string => (Number.isFinite(x) && x >= 0 ? '+' : '') + f(x, digits);

const HEADERS = ['workload', 'clients', 'path', 'tps', 'p50 ms', 'p99 ms', 'tps ratio to direct', 'p99 overhead vs direct (ms)', 'relay CPU µs/tx', 'relay run-queue wait µs/tx', 'server CPU µs/tx', 'host CPU µs/tx'];

function cells(r: Row): string[] {
  const direct = r.path === 'direct';
  return [r.workload, String(r.clients), r.path, f(r.tps, 0), f(r.p50Ms, 3), f(r.p99Ms, 3), f(r.tpsRatio, 3), direct ? '' : signed(r.p99OverheadMs, 3), r.relayCpuUs === null ? '' : f(r.relayCpuUs, 1), r.relayWaitUs === null ? '' : f(r.relayWaitUs, 1), r.serverCpuUs === null ? '' : f(r.serverCpuUs, 0), r.hostCpuUs === null ? '' : f(r.hostCpuUs, 0)];
}

export function table(rows: Row[]): string {
  return renderTable(HEADERS, rows.map(cells));
}

export function markdownTable(rows: Row[]): string {
  return [`| ${HEADERS.join(' | ')} |`, `|${HEADERS.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${cells(r).join(' | ')} |`)].join('\n');
}

export interface Verdict {
  workload: Workload;
  pass: boolean;
  line: string;
}

/**
 * The target, per workload and for every client count: baton's throughput at least PgBouncer's, and
 * baton's p99 overhead under 1 ms. Judged round by round, where baton and PgBouncer were measured
 * seconds apart against the same direct run, since the machine's drift between rounds is larger than
 * the difference sought (see driftLines):
 * - throughput: baton/PgBouncer tps per round, its geometric mean and 95 % interval. Baton is
 *   behind only when the whole interval lies below 1; with one round, when its tps is lower;
 * - p99: the median over the rounds of baton's p99 minus the direct run's.
 */
export function verdicts(results: PgbenchResult[], workloads: readonly Workload[], clients: readonly number[]): Verdict[] {
  return workloads.map((w) => {
    let pass = true;
    const parts = clients.map((c) => {
      const cell = pairedCell(results, w, c);
      if (!cell) {
        pass = false;
        return `${c} clients: not measured`;
      }
      const { rounds: n, ci } = cell;
      const overhead = median(cell.batonOverheads);
      const mean = ci ? ci.mean : cell.ratios[0]!;
      const standing = ci ? (ci.low > 1 ? 'ahead' : ci.high < 1 ? 'behind' : 'level') : mean >= 1 ? 'ahead' : 'behind';
      const ok = standing !== 'behind' && overhead < 1;
      pass &&= ok;
      const tps = ci ? `baton/pgbouncer tps ${f(mean, 3)}, 95 % interval ${f(ci.low, 3)}-${f(ci.high, 3)}: ${standing}` : `baton/pgbouncer tps ${f(mean, 3)}: ${standing}`;
      return `${c} clients ${ok ? 'ok' : 'MISSED'} (${tps}; baton p99 overhead ${signed(overhead, 3)} ms${n > 1 ? `, median of ${n} rounds` : ''})`;
    });
    const line = `verdict ${w}: ${pass ? 'PASS' : 'FAIL'} — target "baton's throughput at least PgBouncer's and p99 overhead < 1 ms": ${parts.join('; ')}`;
    return { workload: w, pass, line };
  });
}

/** Student's t, two-sided 95 %, by degrees of freedom 1..19. */
const T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093];

/** Student's t, two-sided 95 %: the table up to 19 degrees of freedom, beyond it the Cornish-Fisher
 * expansion around the normal quantile (within 0.001 of the exact value from 20 on). */
export function t95(df: number): number | null {
  if (!Number.isInteger(df) || df < 1) return null;
  const tabled = T95[df - 1];
  if (tabled !== undefined) return tabled;
  const z = 1.959964;
  return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2);
}

/** Geometric mean of per-round ratios and its 95 % confidence interval (t on the logs); null under two rounds. */
export function ratioInterval(ratios: number[]): { mean: number; low: number; high: number } | null {
  const n = ratios.length;
  const t = t95(n - 1);
  if (t === null || ratios.some((x) => !(x > 0))) return null;
  const logs = ratios.map(Math.log);
  const m = logs.reduce((a, b) => a + b, 0) / n;
  const sd = Math.sqrt(logs.reduce((a, x) => a + (x - m) ** 2, 0) / (n - 1));
  const half = (t * sd) / Math.sqrt(n);
  return { mean: Math.exp(m), low: Math.exp(m - half), high: Math.exp(m + half) };
}

/** The k-th result of a workload, client count and path, in run order: round k's. */
function byRound(results: PgbenchResult[], w: Workload, clients: number, path: string): PgbenchResult[] {
  return results.filter((r) => r.workload === w && r.clients === clients && r.path === path);
}

/** One cell's rounds paired: baton/PgBouncer tps per round with its interval, and each path's p99
 * overhead against the same round's direct run. Null when a path was not measured. */
interface PairedCell {
  rounds: number;
  ratios: number[];
  ci: { mean: number; low: number; high: number } | null;
  batonOverheads: number[];
  pgbouncerOverheads: number[];
}

function pairedCell(results: PgbenchResult[], w: Workload, clients: number): PairedCell | null {
  const [b, p, d] = ['baton', 'pgbouncer', 'direct'].map((path) => byRound(results, w, clients, path));
  const rounds = Math.min(b!.length, p!.length, d!.length);
  if (rounds === 0) return null;
  const each = <T>(fn: (i: number) => T): T[] => Array.from({ length: rounds }, (_, i) => fn(i));
  const ratios = each((i) => b![i]!.tps / p![i]!.tps);
  return {
    rounds,
    ratios,
    ci: ratioInterval(ratios),
    batonOverheads: each((i) => b![i]!.p99Ms - d![i]!.p99Ms),
    pgbouncerOverheads: each((i) => p![i]!.p99Ms - d![i]!.p99Ms),
  };
}

/** Over this many rounds the paired line gives a summary instead of every round. */
export const PER_ROUND_LIMIT = 10;

/**
 * Baton against PgBouncer round by round (both measured minutes apart, against the same direct run):
 * a paired view that the medians hide when the machine drifts between rounds; the verdict is judged on it.
 */
export function pairedLines(results: PgbenchResult[], workloads: readonly Workload[], clients: readonly number[]): string[] {
  const lines: string[] = [];
  for (const c of clients) {
    for (const w of workloads) {
      const cell = pairedCell(results, w, c);
      if (!cell) continue;
      const { rounds: n, ratios, ci } = cell;
      const ahead = ratios.filter((x) => x >= 1).length;
      const interval = ci ? `; geometric mean ${f(ci.mean, 3)}, 95 % interval ${f(ci.low, 3)}-${f(ci.high, 3)}` : '';
      if (n > PER_ROUND_LIMIT) {
        // Too many rounds to list: the paired summary, and each path's median p99 overhead over the rounds.
        const medianOver = (xs: number[]): string => signed(median(xs), 2);
        lines.push(`${w} ${c} clients, ${n} rounds: baton/pgbouncer tps ahead in ${ahead} of ${n}${interval}; median p99 overhead baton ${medianOver(cell.batonOverheads)}, pgbouncer ${medianOver(cell.pgbouncerOverheads)} ms`);
        continue;
      }
      const over = (xs: number[]): string => xs.map((x) => signed(x, 2)).join(' ');
      lines.push(
        `${w} ${c} clients, per round: baton/pgbouncer tps ${ratios.map((x) => f(x, 3)).join(' ')} (baton ahead in ${ahead} of ${n}${interval}); ` +
          `p99 overhead baton ${over(cell.batonOverheads)}, pgbouncer ${over(cell.pgbouncerOverheads)} ms`,
      );
    }
  }
  return lines;
}

/** Direct runs of one cell further apart than this (max/min over the rounds) mean the machine drifted. */
export const DRIFT_LIMIT = 1.2;

/**
 * The direct path round by round: the same client against the same server, so its spread is the
 * machine's own drift (other tenants of the host, clock changes), which no proxy causes. Under
 * heavy drift the medians compare a path measured on a fast machine with one measured on a slow one.
 */
export function driftLines(results: PgbenchResult[], workloads: readonly Workload[], clients: readonly number[]): { lines: string[]; drifted: boolean } {
  const lines: string[] = [];
  let worst = 1;
  for (const c of clients) {
    for (const w of workloads) {
      const tps = byRound(results, w, c, 'direct').map((r) => r.tps);
      if (tps.length < 2 || tps.some((x) => !(x > 0))) continue;
      const spread = Math.max(...tps) / Math.min(...tps);
      worst = Math.max(worst, spread);
      lines.push(`direct ${w} ${c} clients, per round: ${tps.map((x) => f(x, 0)).join(' ')} tps (max/min ${f(spread, 2)})`);
    }
  }
  const drifted = worst > DRIFT_LIMIT;
  if (drifted) {
    lines.push(
      `WARNING: the direct runs of one cell differ by up to ${f((worst - 1) * 100, 0)} % between rounds (more than ${f((DRIFT_LIMIT - 1) * 100, 0)} %): ` +
        'the machine drifted, so the medians above compare paths measured at different speeds (the verdict and the paired lines compare each round with itself); run again on a quiet machine',
    );
  }
  return { lines, drifted };
}
