// The `baton` command line.
import { Command, InvalidArgumentError } from 'commander';
import fs from 'node:fs';
import path from 'node:path';
import { failover, setStandby, switchover, updateConfig } from '../agent/requests.js';
import { BatonError, errorMessage, UsageError } from '../util/errors.js';
import { formatLsn } from '../util/lsn.js';
import { runAgent } from './agent-cmd.js';
import { apiToken, reloadLines, reloadMember, membersNamed, restartMember } from './node-reload.js';
import { DEFAULT_DIR, connectionUris, proxyUris, readLocalCluster } from './local-cluster.js';
import { printPoolNodes, runProxy } from './proxy-cmd.js';
import { splitHostPort } from '../config/load.js';
import { registerMembershipCommands } from './membership-cmds.js';
import { registerVerifyCommand } from './verify-cmd.js';
import { statusJson, statusText } from './status.js';
import { renderTable } from './table.js';
import { resolveTarget, type TargetOptions } from './target.js';
import { down, up } from './up.js';

function int(min: number, max: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`);
    return n;
  };
}

const out = (l: string): void => {
  process.stdout.write(l + '\n');
};

function targetOptions(cmd: Command): Command {
  return cmd
    .option('--dir <dir>', 'local cluster directory (from "baton up")')
    .option('--etcd <endpoints>', 'etcd endpoints of a remote cluster, host:port[,host:port]')
    .option('--cluster <name>', 'cluster name (with --etcd)');
}

async function withTarget<T>(o: TargetOptions, fn: (t: ReturnType<typeof resolveTarget>) => Promise<T>): Promise<T> {
  const t = resolveTarget(o);
  try {
    return await fn(t);
  } finally {
    await t.store.close();
  }
}

export function buildProgram(): Command {
  const program = new Command('baton')
    .description('High-availability cluster manager for PostgreSQL')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('agent')
    .description('run the agent of one member (one per PostgreSQL instance)')
    .requiredOption('-c, --config <file>', 'member configuration (YAML)')
    .action(async (o: { config: string }) => runAgent(o.config));

  program
    .command('proxy')
    .description('run a proxy: one address for writes (the leader), one for balanced reads, an admin console')
    .requiredOption('-c, --config <file>', 'proxy configuration (YAML)')
    .action(async (o: { config: string }) => runProxy(o.config));

  program
    .command('pool')
    .description("the proxy's SHOW POOL_NODES: members, roles, weights, select counts, replication delay")
    .option('--dir <dir>', 'local cluster directory (from "baton up")')
    .option('--admin <host:port>', "a proxy's admin console")
    .option('--password <password>', 'admin console password (or BATON_ADMIN_PASSWORD)')
    .option('--json', 'the rows as JSON, with numbers and booleans typed')
    .action(async (o: { dir?: string; admin?: string; password?: string; json?: boolean }) => {
      if (o.admin) {
        const { host, port } = splitHostPort(o.admin);
        return printPoolNodes({ host, port, password: o.password ?? process.env.BATON_ADMIN_PASSWORD ?? null }, out, !!o.json);
      }
      const local = readLocalCluster(o.dir ?? process.env.BATON_DIR ?? DEFAULT_DIR);
      if (!local?.proxy) throw new UsageError('no local cluster with a proxy here', 'pass --dir DIR, or --admin HOST:PORT');
      return printPoolNodes({ host: local.host, port: local.proxy.adminPort, password: local.proxy.adminPassword }, out, !!o.json);
    });

  program
    .command('up')
    .description('start a local cluster: etcd and N agents as separate processes')
    .option('--dir <dir>', 'where data and logs go', DEFAULT_DIR)
    .option('--nodes <n>', 'number of members', int(1, 9), 3)
    .option('--base-port <port>', 'first PostgreSQL port; APIs use +100, etcd +200', int(1024, 65000), 15432)
    .option('--cluster <name>', 'cluster name', 'demo')
    .option('--os-user <user>', 'OS user that runs PostgreSQL when baton runs as root', 'postgres')
    .option('--timeout <seconds>', 'how long to wait for a healthy cluster', int(1, 3600), 180)
    .action(async (o: { dir: string; nodes: number; basePort: number; cluster: string; osUser: string; timeout: number }) => {
      const c = await up({ ...o, timeoutMs: o.timeout * 1000, out });
      const passfile = path.join(c.dir, 'pgpass');
      fs.writeFileSync(passfile, `${c.host}:*:*:${c.superuser.username}:${c.superuser.password}\n`, { mode: 0o600 });
      const uris = connectionUris(c.members.map((m) => ({ host: c.host, port: m.pgPort })), c.superuser.username);
      const dirArg = path.relative(process.cwd(), c.dir) === DEFAULT_DIR ? '' : ` --dir ${c.dir}`;
      const viaProxy = proxyUris(c);
      out('');
      out('Cluster is up.');
      if (viaProxy) {
        out(`  connect (read-write, through the proxy): PGPASSFILE=${passfile} psql '${viaProxy.readWrite}'`);
        out(`  connect (read-only, balanced):           PGPASSFILE=${passfile} psql '${viaProxy.readOnly}'`);
        out(`  pool nodes:                              npx baton pool${dirArg}`);
      }
      out(`  connect (read-write, multi-host URI):    PGPASSFILE=${passfile} psql '${uris.readWrite}'`);
      out(`  connect (read-only, multi-host URI):     PGPASSFILE=${passfile} psql '${uris.readOnly}'`);
      out(`  status:                                  npx baton status${dirArg}`);
      out(`  switch over:                             npx baton switchover${dirArg}`);
      out(`  RTO/RPO drill:                           npx baton verify --scenario all${dirArg}`);
      out(`  stop:                                    npx baton down${dirArg}`);
    });

  program
    .command('down')
    .description('stop a local cluster started by "baton up"')
    .option('--dir <dir>', 'cluster directory', DEFAULT_DIR)
    .option('--purge', 'also remove its data directory')
    .action(async (o: { dir: string; purge?: boolean }) => down(o.dir, !!o.purge, out));

  targetOptions(program.command('status').description('members, roles, states, timelines and lag'))
    .option('--json', 'machine-readable, with process ids and connection URIs')
    .action(async (o: TargetOptions & { json?: boolean }) =>
      withTarget(o, async ({ store, local }) => {
        const [view, proxies] = await Promise.all([store.read(), store.listProxies()]);
        if (o.json) out(JSON.stringify(statusJson(view, local, proxies), null, 2));
        else out(statusText(view, store.cluster, local, proxies));
      }),
    );

  targetOptions(program.command('switchover').description('planned move of leadership to a replica'))
    .option('--to <member>', 'the new leader (default: the best replica)')
    .option('--from <member>', 'the current leader, as a safety check')
    .action(async (o: TargetOptions & { to?: string; from?: string }) =>
      withTarget(o, async ({ store }) => {
        const r = await switchover(store, { from: o.from ?? null, to: o.to ?? null });
        out(`switched over from ${r.from} to ${r.to} in ${(r.ms / 1000).toFixed(1)} s`);
      }),
    );

  targetOptions(program.command('failover').description('forced promotion of a replica when no healthy leader exists'))
    .requiredOption('--to <member>', 'the member to promote')
    .action(async (o: TargetOptions & { to: string }) =>
      withTarget(o, async ({ store }) => {
        const r = await failover(store, { to: o.to });
        out(`failed over to ${r.to} in ${(r.ms / 1000).toFixed(1)} s`);
      }),
    );

  targetOptions(program.command('history').description('every promotion: timeline, LSN, time, reason'))
    .option('--json', 'machine-readable')
    .action(async (o: TargetOptions & { json?: boolean }) =>
      withTarget(o, async ({ store }) => {
        const view = await store.read();
        if (o.json) return out(JSON.stringify(view.history, null, 2));
        out(renderTable(['TL', 'LSN', 'Time', 'Leader', 'Previous', 'Reason'], view.history.map((h) => [
          h.timeline, formatLsn(h.lsn), h.at, h.leader, h.previousLeader ?? '', h.reason,
        ])));
      }),
    );

  for (const [name, paused] of [['pause', true], ['resume', false]] as const) {
    targetOptions(program.command(name).description(paused ? 'stop automatic failover and restarts cluster-wide' : 'end pause'))
      .action(async (o: TargetOptions) =>
        withTarget(o, async ({ store }) => {
          await updateConfig(store, (c) => ({ ...c, paused }));
          out(paused ? 'cluster paused: no automatic failover or restart until "baton resume"' : 'cluster resumed');
        }),
      );
  }

  const node = program.command('node').description('member maintenance');
  for (const [name, standby] of [['standby', true], ['unstandby', false]] as const) {
    targetOptions(node.command(`${name} <member>`).description(standby ? 'move leadership away and keep the member from leading' : 'allow the member to lead again'))
      .action(async (member: string, o: TargetOptions) =>
        withTarget(o, async ({ store }) => {
          const view = await setStandby(store, member, standby);
          if (!standby) return out(`${member} may lead again`);
          if (view.leader?.name === member) {
            out(`${member} is the leader: moving leadership away...`);
            const t0 = Date.now();
            for (;;) {
              const v = await store.read();
              const rec = v.members.find((m) => m.name === v.leader?.name);
              if (v.leader && v.leader.name !== member && rec?.state === 'running') {
                out(`${v.leader.name} is the leader now (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
                break;
              }
              if (Date.now() - t0 > 60_000) throw new BatonError('leadership did not move within 60 s', 'see "baton status"');
              await new Promise((r) => setTimeout(r, 100));
            }
          }
          out(`${member} is in standby: it will not lead until "baton node unstandby ${member}"`);
        }),
      );
  }
  targetOptions(node.command('reload [member]').description("ask the agents (or one) to read their configuration files again: tags and postgresql.parameters apply at once"))
    .option('--token <token>', "the agents' REST API token (restapi.token; default: BATON_API_TOKEN, or the local cluster's)")
    .action(async (member: string | undefined, o: TargetOptions & { token?: string }) =>
      withTarget(o, async ({ store, local }) => {
        const token = apiToken(o.token, local);
        const targets = membersNamed((await store.read()).members, member);
        let refused = 0;
        for (const m of targets) {
          try {
            for (const line of reloadLines(m.name, await reloadMember(m, token))) out(line);
          } catch (err) {
            refused++;
            out(`${m.name}: not reloaded: ${errorMessage(err)}`);
          }
        }
        if (refused > 0) throw new BatonError(`${refused} of ${targets.length} member(s) did not reload`, 'fix what is named above and run "baton node reload" again');
      }),
    );
  targetOptions(node.command('restart <member>').description('restart the PostgreSQL of a member in its role (to apply settings that wait for a restart)'))
    .option('--token <token>', "the agents' REST API token (restapi.token; default: BATON_API_TOKEN, or the local cluster's)")
    .option('--force', 'also restart the leader (its writes stop until it is back; a switchover first keeps them going)', false)
    .action(async (member: string, o: TargetOptions & { token?: string; force: boolean }) =>
      withTarget(o, async ({ store, local }) => restartMember(store, member, { token: apiToken(o.token, local), force: o.force, out })),
    );
  registerMembershipCommands(program, node, { out, targetOptions, withTarget });
  registerVerifyCommand(program, { out, targetOptions, withTarget });
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help') return;
    if (code?.startsWith('commander.')) process.exit(2);
    process.stderr.write(`baton: ${errorMessage(err)}\n`);
    process.exit(1);
  }
}
