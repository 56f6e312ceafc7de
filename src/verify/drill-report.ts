// What `baton verify` shows: a table per run and a summary per scenario (median, min, max), and an
// SVG timeline of acknowledged writes per 100 ms with the fault and the recovery marked.
import { renderTable } from '../cli/table.js';
import { BUCKET_MS } from './accounting.js';
import type { RunReport, Scenario } from './drill.js';

export interface Summary {
  median: number;
  min: number;
  max: number;
}

export function summarise(xs: number[]): Summary {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return { median: NaN, min: NaN, max: NaN };
  const mid = Math.floor(s.length / 2);
  return { median: s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2, min: s[0]!, max: s.at(-1)! };
}

const ms = (x: number | null): string => (x === null || !Number.isFinite(x) ? '-' : String(Math.round(x)));

export function runsTable(runs: RunReport[]): string {
  const rows = runs.map((r) => [
    r.scenario,
    r.run,
    `${r.leaderBefore} -> ${r.leaderAfter}`,
    r.hurt,
    r.account.writesResumed ? ms(r.account.rtoMs) : `${ms(r.account.rtoMs)} (never resumed)`,
    r.account.failedAttempts,
    r.account.acked,
    r.account.lostAcked.length,
    r.account.unackedPresent.length,
    ms(r.account.wholeMs),
    ms(r.account.readRtoMs),
  ]);
  return renderTable(['scenario', 'run', 'leader', 'hurt', 'RTO ms', 'failed', 'acked', 'lost (RPO)', 'unacked present', 'whole ms', 'read outage ms'], rows);
}

export interface ScenarioSummary {
  scenario: Scenario;
  runs: number;
  rtoMs: Summary;
  failedAttempts: Summary;
  lostAcked: Summary;
  unackedPresent: Summary;
  wholeMs: Summary;
}

export function summaries(runs: RunReport[]): ScenarioSummary[] {
  const scenarios = [...new Set(runs.map((r) => r.scenario))];
  return scenarios.map((scenario) => {
    const rs = runs.filter((r) => r.scenario === scenario);
    return {
      scenario,
      runs: rs.length,
      rtoMs: summarise(rs.map((r) => r.account.rtoMs)),
      failedAttempts: summarise(rs.map((r) => r.account.failedAttempts)),
      lostAcked: summarise(rs.map((r) => r.account.lostAcked.length)),
      unackedPresent: summarise(rs.map((r) => r.account.unackedPresent.length)),
      wholeMs: summarise(rs.map((r) => r.account.wholeMs ?? NaN)),
    };
  });
}

export function summaryTable(s: ScenarioSummary[]): string {
  const f = (x: Summary) => `${ms(x.median)} (${ms(x.min)}..${ms(x.max)})`;
  return renderTable(
    ['scenario', 'runs', 'RTO ms median (min..max)', 'failed', 'lost (RPO)', 'unacked present', 'whole again ms'],
    s.map((x) => [x.scenario, x.runs, f(x.rtoMs), f(x.failedAttempts), f(x.lostAcked), f(x.unackedPresent), f(x.wholeMs)]),
  );
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** One row per run: bars of acknowledged writes per 100 ms, the fault (red), its end (orange) and whole again (green). */
export function timelineSvg(runs: RunReport[]): string {
  const width = 900;
  const rowHeight = 110;
  const left = 60;
  const plotW = width - left - 20;
  const plotH = 70;
  const parts: string[] = [];
  runs.forEach((r, i) => {
    const top = 20 + i * rowHeight;
    const bins = r.account.timeline;
    const max = Math.max(1, ...bins);
    const x = (tMs: number) => left + (tMs / (bins.length * BUCKET_MS)) * plotW;
    const barW = plotW / bins.length;
    parts.push(`<text x="${left}" y="${top - 4}" font-size="12">${esc(`${r.scenario} run ${r.run}: ${r.leaderBefore} -> ${r.leaderAfter}, RTO ${ms(r.account.rtoMs)} ms, lost ${r.account.lostAcked.length}, failed ${r.account.failedAttempts}`)}</text>`);
    parts.push(`<line x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="#888"/>`);
    parts.push(`<text x="${left - 6}" y="${top + 10}" font-size="10" text-anchor="end">${max}</text><text x="${left - 6}" y="${top + plotH}" font-size="10" text-anchor="end">0</text>`);
    bins.forEach((n, b) => {
      if (n === 0) return;
      const h = (n / max) * plotH;
      parts.push(`<rect x="${(left + b * barW).toFixed(1)}" y="${(top + plotH - h).toFixed(1)}" width="${Math.max(0.5, barW - 0.3).toFixed(1)}" height="${h.toFixed(1)}" fill="#4a7bd0"/>`);
    });
    const mark = (t: number | null, colour: string, label: string, cls: string) => {
      if (t === null) return;
      parts.push(`<line class="${cls}" x1="${x(t).toFixed(1)}" y1="${top}" x2="${x(t).toFixed(1)}" y2="${top + plotH}" stroke="${colour}" stroke-width="2"/>`);
      parts.push(`<text x="${(x(t) + 3).toFixed(1)}" y="${top + 12}" font-size="10" fill="${colour}">${label}</text>`);
    };
    mark(r.faultAtMs, '#d0342c', 'fault', 'fault');
    if (r.faultEndMs !== null && r.faultEndMs - r.faultAtMs > 200) mark(r.faultEndMs, '#e08a00', 'fault ends', 'fault-end');
    mark(r.wholeAtMs, '#2a9d3a', 'whole', 'whole');
    parts.push(`<text x="${left + plotW}" y="${top + plotH + 14}" font-size="10" text-anchor="end">${(r.endMs / 1000).toFixed(1)} s (acknowledged writes per ${BUCKET_MS} ms)</text>`);
  });
  const height = 20 + runs.length * rowHeight;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${parts.join('\n')}\n</svg>\n`;
}
