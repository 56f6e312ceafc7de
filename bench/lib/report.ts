// Tables for the terminal and a markdown summary for docs/benchmarks.md.
import os from 'node:os';
import { renderTable } from '../../src/cli/table.js';
import type { RunResult, Scenario } from './scenarios.js';

export interface Stats {
  median: number;
  min: number;
  max: number;
}

export function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length === 0 ? NaN : s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0] ?? NaN, max: s.at(-1) ?? NaN };
}

const LABEL: Record<Scenario, string> = {
  'host-crash': 'host crash',
  'postmaster-crash': 'postmaster crash',
  switchover: 'planned switchover',
};

/** Patroni 3.0.2, same measurement (defaults / tuned). */
const PATRONI: Record<Scenario, string> = {
  'host-crash': '22.4 s / 8.9 s',
  'postmaster-crash': '11.6 s / 3.3 s',
  switchover: '1.3 s, 22 failed attempts',
};

const ms = (x: number): string => (Number.isFinite(x) ? String(Math.round(x)) : '-');
const sec = (x: number): string => (x / 1000).toFixed(1);

export function machine(): { cpus: number; cpuModel: string; memoryGiB: number; os: string; node: string; date: string } {
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    date: new Date().toISOString(),
  };
}

export function scenarioTable(scenario: Scenario, runs: RunResult[]): string {
  const rows: (string | number)[][] = runs.map((r) => [
    r.run,
    `${r.leaderBefore} -> ${r.leaderAfter}`,
    ms(r.unavailabilityMs),
    r.failedAttempts,
    r.ackedRows,
    r.lostAckedRows,
    ms(r.leaderReadyMs),
  ]);
  const u = stats(runs.map((r) => r.unavailabilityMs));
  const f = stats(runs.map((r) => r.failedAttempts));
  const l = stats(runs.map((r) => r.lostAckedRows));
  const t = stats(runs.map((r) => r.leaderReadyMs));
  for (const [name, key] of [['median', 'median'], ['min', 'min'], ['max', 'max']] as const) {
    rows.push([name, '', ms(u[key]), ms(f[key]), '', ms(l[key]), ms(t[key])]);
  }
  const ready = scenario === 'postmaster-crash' ? 'leader running again (ms)' : 'time to new leader (ms)';
  return `${LABEL[scenario]} (${scenario})\n` + renderTable(['run', 'leader', 'write unavailability (ms)', 'failed attempts', 'acked rows', 'lost acked rows', ready], rows);
}

export function markdown(results: RunResult[], scenarios: readonly Scenario[]): string {
  const lines = [
    '| scenario | runs | write unavailability median (min–max) | failed attempts median | lost acknowledged rows (total) | Patroni 3.0.2 (defaults / tuned) |',
    '|---|---|---|---|---|---|',
  ];
  for (const sc of scenarios) {
    const runs = results.filter((r) => r.scenario === sc);
    if (runs.length === 0) continue;
    const u = stats(runs.map((r) => r.unavailabilityMs));
    const f = stats(runs.map((r) => r.failedAttempts));
    const lost = runs.reduce((n, r) => n + r.lostAckedRows, 0);
    lines.push(`| ${LABEL[sc]} | ${runs.length} | ${sec(u.median)} s (${sec(u.min)}–${sec(u.max)} s) | ${f.median} | ${lost} | ${PATRONI[sc]} |`);
  }
  return lines.join('\n');
}
