// Failover benchmark: what a client writing one row per transaction sees when the leader's host
// crashes, when only its postmaster crashes, and during a planned switchover.
//
//   node --import tsx bench/failover.ts [--runs N] [--scenario host-crash|postmaster-crash|switchover|all] [--via multihost|proxy] [--prepared] [--json FILE]
//
// --via proxy: the writer keeps one connection to baton proxy's read-write port (reconnecting only
// after an error) instead of a libpq multi-host URI. --prepared: the writer inserts through a named
// prepared statement (session state the proxy carries to a new leader).
//
// Starts one local 3-node cluster (etcd + 3 agents) in a temp dir and always stops it (and purges it),
// also on SIGINT/SIGTERM or when a wait times out (every wait gives up after 60 s).
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { BenchAbort, BenchCluster, runningLeader } from './lib/cluster.js';
import { machine, markdown, scenarioTable } from './lib/report.js';
import { restore, runScenario, SCENARIOS, type RunResult, type Scenario } from './lib/scenarios.js';
import { BenchLifecycle, runBenchmark } from './lib/run.js';

const NODES = 3;
const log = (line: string): void => console.log(line);

function options(): { runs: number; scenarios: Scenario[]; json: string | null; via: 'multihost' | 'proxy'; prepared: boolean } {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      scenario: { type: 'string', default: 'all' },
      json: { type: 'string' },
      via: { type: 'string', default: 'multihost' },
      prepared: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new BenchAbort(`--runs must be a positive integer (got ${values.runs})`);
  const sc = values.scenario;
  const scenarios = sc === 'all' ? [...SCENARIOS] : SCENARIOS.filter((s) => s === sc);
  if (scenarios.length === 0) throw new BenchAbort(`--scenario must be one of ${SCENARIOS.join(', ')}, all (got ${sc})`);
  const via = values.via;
  if (via !== 'multihost' && via !== 'proxy') throw new BenchAbort(`--via must be multihost or proxy (got ${via})`);
  return { runs, scenarios, json: values.json ?? null, via, prepared: values.prepared };
}

const life = new BenchLifecycle(log);

async function main(): Promise<number> {
  const o = options();
  const m = machine();
  log(`baton failover benchmark: ${o.runs} run(s) of ${o.scenarios.join(', ')}, writer via ${o.via}${o.prepared ? ' with a named prepared statement' : ''}`);
  log(`machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB memory, ${m.os}, node ${m.node}; ${m.date}`);

  const bc = await life.start(NODES);
  bc.via = o.via;
  bc.preparedWriter = o.prepared;
  if (life.aborted) return 130;
  const view = await bc.waitHealthy();
  const leader = runningLeader(view);
  if (!leader) throw new BenchAbort('no running leader');
  const db = await bc.client(leader.name);
  await db.query('CREATE TABLE bench(id bigint primary key, at timestamptz default now())');
  await db.end();
  await bc.waitHealthy();
  log(`cluster ready: leader ${leader.name}; read-write URI ${bc.readWriteUri()}`);

  const results: RunResult[] = [];
  const crashes = new Map<string, number>();
  let nextId = 1;
  for (const scenario of o.scenarios) {
    for (let run = 1; run <= o.runs; run++) {
      if (life.aborted) return 130;
      log(`${scenario} run ${run}/${o.runs}`);
      const { result: r, nextId: n } = await runScenario(bc, scenario, run, nextId);
      nextId = n;
      results.push(r);
      log(
        `  ${r.leaderBefore} -> ${r.leaderAfter}: unavailable ${Math.round(r.unavailabilityMs)} ms, ${r.failedAttempts} failed attempts, ` +
          `${r.ackedRows} acked, ${r.lostAckedRows} lost, leader ready after ${Math.round(r.leaderReadyMs)} ms`,
      );
      await restore(bc, r, crashes, scenario === 'postmaster-crash' && run < o.runs, log);
    }
  }

  log('');
  for (const sc of o.scenarios) log(scenarioTable(sc, results.filter((r) => r.scenario === sc)) + '\n');
  log(`Machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB memory, ${m.os}, Node ${m.node}. Date: ${m.date}.\n`);
  log(markdown(results, o.scenarios));
  if (o.json) {
    fs.writeFileSync(o.json, JSON.stringify({ machine: m, runs: o.runs, scenarios: o.scenarios, results }, null, 2) + '\n');
    log(`\nraw results written to ${o.json}`);
  }
  return results.some((r) => r.lostAckedRows > 0) ? 2 : 0;
}

await runBenchmark(main, () => life.stop());
