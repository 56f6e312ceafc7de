// The full drill as a benchmark: `baton verify --scenario all --runs N` against a fresh local 3-member
// cluster, then the per-scenario summary as a markdown table for docs/benchmarks.md.
//
//   node --import tsx bench/drill.ts [--runs 3] [--via proxy|multihost] [--json FILE] [--svg FILE]
//
// The cluster is always stopped and removed (also on SIGINT/SIGTERM). Exit code: baton verify's.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ScenarioSummary } from '../src/verify/drill-report.js';
import { BenchAbort } from './lib/cluster.js';
import { machine } from './lib/report.js';
import { BenchLifecycle, runBenchmark } from './lib/run.js';

const log = (line: string): void => console.log(line);

function options(): { runs: string; via: string; json: string; svg: string } {
  const { values } = parseArgs({
    options: { runs: { type: 'string', default: '3' }, via: { type: 'string', default: 'proxy' }, json: { type: 'string' }, svg: { type: 'string' } },
    strict: true,
  });
  if (!/^\d+$/.test(values.runs) || Number(values.runs) < 1) throw new BenchAbort(`--runs must be a positive integer (got ${values.runs})`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-drill-'));
  return { runs: values.runs, via: values.via, json: values.json ?? path.join(tmp, 'drill.json'), svg: values.svg ?? path.join(tmp, 'drill.svg') };
}

let child: ChildProcess | null = null;
const life = new BenchLifecycle(log, () => {
  child?.kill('SIGTERM');
});

const f = (x: { median: number; min: number; max: number }) => `${Math.round(x.median)} (${Math.round(x.min)}–${Math.round(x.max)})`;

async function main(): Promise<number> {
  const o = options();
  const m = machine();
  log(`baton drill benchmark: every scenario, ${o.runs} run(s) each, via ${o.via}`);
  log(`machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB memory, ${m.os}, node ${m.node}; ${m.date}`);
  const bc = await life.start(3);
  if (life.aborted) return 130;
  await bc.waitHealthy();
  const args = ['bin/baton.js', 'verify', '--dir', bc.dir, '--scenario', 'all', '--runs', o.runs, '--via', o.via, '--json', o.json, '--svg', o.svg];
  const code = await new Promise<number>((resolve, reject) => {
    child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', (e) => reject(new BenchAbort(`could not run baton verify: ${e.message}`)));
    child.on('close', (c) => resolve(c ?? 1));
  });
  if (!fs.existsSync(o.json)) throw new BenchAbort(`baton verify exited ${code} without a report`);
  const report = JSON.parse(fs.readFileSync(o.json, 'utf8')) as { summaries: ScenarioSummary[] };
  log('');
  log(`Machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB memory, ${m.os}, Node ${m.node}. Date: ${m.date}. Via ${o.via}.`);
  log('');
  log('| scenario | runs | RTO ms median (min–max) | failed attempts | acked rows lost | unacked rows present | whole again ms |');
  log('|---|---|---|---|---|---|---|');
  for (const s of report.summaries) log(`| ${s.scenario} | ${s.runs} | ${f(s.rtoMs)} | ${f(s.failedAttempts)} | ${f(s.lostAcked)} | ${f(s.unackedPresent)} | ${f(s.wholeMs)} |`);
  log(`\nreport: ${o.json}\ntimeline: ${o.svg}`);
  return code;
}

await runBenchmark(main, () => life.stop());
