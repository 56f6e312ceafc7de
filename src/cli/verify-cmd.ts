// `baton verify`: the RTO/RPO drill against a running cluster, with a verdict against targets.
import type { Command } from 'commander';
import fs from 'node:fs';
import pg from 'pg';
import type { ClusterView } from '../dcs/types.js';
import { BatonError, UsageError } from '../util/errors.js';
import { judge } from '../verify/accounting.js';
import { loadDrillConfig, type DrillConfig } from '../verify/drill-config.js';
import { summaries, summaryTable, runsTable, timelineSvg } from '../verify/drill-report.js';
import { PLANNED, prepareTable, runOnce, SCENARIOS, type DrillContext, type RunReport, type Scenario } from '../verify/drill.js';
import { CommandFaults, LocalFaults, type FaultInjector } from '../verify/faults.js';
import { connectMultiHost, parseMultiHostUri } from '../verify/multihost.js';
import { parseSeconds } from './arg-parsers.js';
import { connectionUris, type LocalCluster } from './local-cluster.js';
import { connectMember, sqlCredentials, type SqlCredentials } from './member-sql.js';
import type { Target, TargetOptions } from './target.js';

type Out = (line: string) => void;

interface VerifyOptions extends TargetOptions {
  scenario: string;
  runs: number;
  duration: number;
  via?: string;
  config?: string;
  json?: string;
  svg?: string;
  user?: string;
  timeout: number;
}

export function parseScenarios(v: string): Scenario[] {
  const names = v === 'all' ? [...SCENARIOS] : v.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = names.filter((n) => !(SCENARIOS as readonly string[]).includes(n));
  if (bad.length || names.length === 0) throw new UsageError(`unknown scenario ${bad.join(', ') || '(none)'}`, `use one or more of ${SCENARIOS.join(', ')}, comma-separated, or all`);
  return names as Scenario[];
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new UsageError(`--runs must be a whole number from 1 to 1000 (got ${v})`);
  return n;
}

/** Progress on one line of a terminal (a bar), or a line per phase otherwise. */
function progressBar(total: number) {
  const tty = process.stderr.isTTY;
  let lastPhase = '';
  let pending = false;
  return {
    update(done: number, label: string, phase: string, live: { acked: number; failed: number }, elapsedMs: number) {
      if (tty) {
        const width = 20;
        const filled = Math.round((done / total) * width);
        process.stderr.write(`\r\x1b[K[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${label}: ${phase}, ${live.acked} acked, ${live.failed} failed, ${(elapsedMs / 1000).toFixed(1)} s`);
        pending = true;
      } else if (phase !== lastPhase) {
        process.stderr.write(`${label}: ${phase}\n`);
      }
      lastPhase = phase;
    },
    done() {
      if (pending) process.stderr.write('\n');
      pending = false;
    },
  };
}

function connections(t: Target, cfg: DrillConfig, via: 'proxy' | 'multihost', cred: SqlCredentials, view: ClusterView) {
  const uri = (u: string) => {
    const target = parseMultiHostUri(u, cred.password);
    target.connectTimeoutMs = Math.min(target.connectTimeoutMs, 2000);
    return () => connectMultiHost(target);
  };
  const proxyClient = (local: LocalCluster, port: number) => async () => {
    const c = new pg.Client({ host: local.host, port, user: cred.user, password: cred.password, database: 'postgres', connectionTimeoutMillis: 2000, application_name: 'baton-verify' });
    c.on('error', () => undefined);
    try {
      await c.connect();
    } catch (err) {
      await c.end().catch(() => undefined);
      throw err;
    }
    return c;
  };
  const hosts = connectionUris(view.members.map((m) => ({ host: m.host, port: m.port })), cred.user);
  const useProxy = via === 'proxy' && t.local?.proxy;
  return {
    connectWrite: cfg.readWriteUri ? uri(cfg.readWriteUri) : useProxy ? proxyClient(t.local!, t.local!.proxy!.readWritePort) : uri(hosts.readWrite),
    connectRead: cfg.readOnlyUri ? uri(cfg.readOnlyUri) : useProxy ? proxyClient(t.local!, t.local!.proxy!.readOnlyPort) : uri(hosts.readOnly),
    path: cfg.readWriteUri ? 'read_write_uri from the config' : useProxy ? "the proxy's read-write port" : 'a multi-host URI of the members',
  };
}

function faultsFor(t: Target, cfg: DrillConfig, scenarios: Scenario[]): FaultInjector | null {
  if (cfg.faultCommand) return new CommandFaults(cfg.faultCommand);
  if (t.local) return new LocalFaults(t.local.dir);
  const needs = scenarios.filter((s) => !PLANNED.has(s));
  if (needs.length) {
    throw new UsageError(
      `scenario ${needs.join(', ')} hurts processes: it needs a local cluster (--dir) or fault_command in the --config file`,
      'fault_command runs with BATON_FAULT (postgres-crash, host-crash, freeze, thaw, stop, start), BATON_MEMBER, BATON_HOST and BATON_PORT set',
    );
  }
  return null;
}

export async function runVerify(t: Target, o: VerifyOptions, out: Out): Promise<void> {
  const scenarios = parseScenarios(o.scenario);
  const cfg = loadDrillConfig(o.config);
  const via = o.via ?? 'proxy';
  if (via !== 'proxy' && via !== 'multihost') throw new UsageError(`--via must be proxy or multihost (got ${via})`);
  const faults = faultsFor(t, cfg, scenarios);
  const cred = sqlCredentials(t.local, o.user);
  const view = await t.store.read();
  const conns = connections(t, cfg, via, cred, view);
  const total = scenarios.length * o.runs;
  const bar = progressBar(total);
  let done = 0;
  let label = '';
  let runStart = Date.now();
  const ctx: DrillContext = {
    store: t.store,
    faults,
    connectWrite: conns.connectWrite,
    connectRead: conns.connectRead,
    connectMember: (m) => connectMember(m, cred),
    durationMs: o.duration * 1000,
    timeoutMs: o.timeout * 1000,
    progress: (phase, live) => bar.update(done, label, phase, live, Date.now() - runStart),
  };
  out(`baton verify: ${scenarios.join(', ')}, ${o.runs} run(s) each; writes through ${conns.path}; faults by ${faults?.describe() ?? '(none needed)'}`);
  out(`targets: RTO planned ${cfg.targets.rtoPlannedMs} ms, unplanned ${cfg.targets.rtoUnplannedMs} ms, RPO ${cfg.targets.rpoRows} rows`);
  let nextId = await prepareTable(ctx);
  const runs: RunReport[] = [];
  // Ctrl-C in the middle of a freeze must not leave the leader stopped: thaw and restart, then exit.
  const onSignal = (sig: NodeJS.Signals) => {
    bar.done();
    process.stderr.write(`${sig}: stopping the drill; putting the cluster back\n`);
    const restored = faults instanceof LocalFaults ? faults.restore() : Promise.resolve();
    void restored
      .catch((err: unknown) => process.stderr.write(`could not put the cluster back: ${(err as Error).message}; see "baton status"\n`))
      .finally(() => process.exit(130));
  };
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const sig of signals) process.once(sig, onSignal);
  try {
    for (const scenario of scenarios) {
      for (let run = 1; run <= o.runs; run++) {
        label = `${scenario} run ${run}`;
        runStart = Date.now();
        const r = await runOnce(ctx, scenario, run, nextId);
        nextId = r.nextId;
        runs.push(r.report);
        done++;
        bar.done();
        const a = r.report.account;
        out(`${label}: RTO ${Math.round(a.rtoMs)} ms, ${a.failedAttempts} failed, ${a.acked} acked, ${a.lostAcked.length} lost, whole after ${a.wholeMs === null ? '-' : Math.round(a.wholeMs)} ms`);
      }
    }
  } catch (err) {
    bar.done();
    if (faults instanceof LocalFaults) await faults.restore().catch(() => undefined);
    throw err;
  } finally {
    for (const sig of signals) process.off(sig, onSignal);
  }
  const verdict = judge(
    runs.map((r) => ({ label: `${r.scenario} run ${r.run}`, planned: PLANNED.has(r.scenario), account: r.account })),
    cfg.targets,
  );
  const sums = summaries(runs);
  out('');
  out(runsTable(runs));
  out('');
  out(summaryTable(sums));
  if (o.json) {
    fs.writeFileSync(o.json, JSON.stringify({ targets: cfg.targets, via: conns.path, runs, summaries: sums, verdict }, null, 2) + '\n');
    out(`report: ${o.json}`);
  }
  if (o.svg) {
    fs.writeFileSync(o.svg, timelineSvg(runs));
    out(`timeline: ${o.svg}`);
  }
  if (!verdict.met) {
    for (const f of verdict.failures) out(`FAILED ${f}`);
    throw new BatonError(`targets not met in ${verdict.failures.length} case(s)`, 'see the lines marked FAILED above');
  }
  out('verdict: every target met');
}

export function registerVerifyCommand(program: Command, c: { out: Out; targetOptions: (cmd: Command) => Command; withTarget: <T>(o: TargetOptions, fn: (t: Target) => Promise<T>) => Promise<T> }): void {
  c.targetOptions(program.command('verify').description('the RTO/RPO drill: write and read while a fault hits the cluster, then judge what the client saw'))
    .requiredOption('--scenario <names>', `${SCENARIOS.join(', ')} (comma-separated) or all`)
    .option('--runs <n>', 'runs of each scenario', positiveInt, 1)
    .option('--duration <seconds>', 'writes go on at least this long after the fault', parseSeconds, 5)
    .option('--via <path>', 'writer and reader go through the proxy (default, local clusters) or a multi-host URI: proxy | multihost')
    .option('--config <file>', 'targets (rto_planned, rto_unplanned, rpo), fault_command, read_write_uri, read_only_uri')
    .option('--json <file>', 'write the full report as JSON')
    .option('--svg <file>', 'write a timeline of acknowledged writes per 100 ms')
    .option('--user <user>', 'superuser to connect as (remote clusters; password from PGPASSWORD or ~/.pgpass)')
    .option('--timeout <seconds>', 'longest wait for a new leader or for the cluster to be whole again', parseSeconds, 120)
    .action(async (o: VerifyOptions) => c.withTarget(o, (t) => runVerify(t, o, c.out)));
}
