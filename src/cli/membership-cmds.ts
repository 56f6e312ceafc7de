// Commands about who is in the cluster and whether they agree: node add / wait / remove,
// replication, check consistency.
import type { Command } from 'commander';
import { parseBytes, parseSeconds, parseTag } from './arg-parsers.js';
import type { MemberTags } from '../dcs/types.js';
import { BatonError, UsageError } from '../util/errors.js';
import { formatLsn } from '../util/lsn.js';
import { checkConsistency, shortSum, type DatabaseReport } from '../verify/consistency.js';
import { DEFAULT_DIR } from './local-cluster.js';
import { selectMembers, sqlCredentials } from './member-sql.js';
import { addLocalMember, followNewMember } from './node-add.js';
import { removeMember } from './node-remove.js';
import { formatDuration } from './progress.js';
import { gatherReplication, replicationTable } from './replication.js';
import { renderTable } from './table.js';
import type { Target, TargetOptions } from './target.js';

type Out = (line: string) => void;

interface Common {
  out: Out;
  targetOptions: (cmd: Command) => Command;
  withTarget: <T>(o: TargetOptions, fn: (t: Target) => Promise<T>) => Promise<T>;
}

/** Progress lines: rewritten in place on a terminal, one per change otherwise. */
function progressPrinter(): { progress: Out; done: () => void } {
  const tty = process.stderr.isTTY;
  let pending = false;
  return {
    progress: (line) => {
      if (tty) {
        process.stderr.write(`\r\x1b[K${line}`);
        pending = true;
      } else process.stderr.write(line + '\n');
    },
    done: () => {
      if (pending) process.stderr.write('\n');
      pending = false;
    },
  };
}

export function registerMembershipCommands(program: Command, node: Command, c: Common): void {
  const { out } = c;
  node
    .command('add [name]')
    .description('add a member to a local cluster: clone it under load, wait until it streams, put it in the read-only pool')
    .option('--dir <dir>', 'local cluster directory (from "baton up")')
    .option('--clone-from <member>', 'copy from this replica rather than the leader')
    .option('--tag <tag>', 'a tag for the new member: nofailover, noloadbalance, clonefrom, weight=N, priority=N (repeatable)', parseTag, {})
    .option('--max-lag <size>', 'done when the member streams with at most this lag', parseBytes, 1024 * 1024)
    .option('--timeout <seconds>', 'give up (and undo) after this long', parseSeconds, 3600)
    .option('--os-user <user>', 'OS user that runs PostgreSQL when baton runs as root', 'postgres')
    .action(async (name: string | undefined, o: { dir?: string; cloneFrom?: string; tag: Partial<MemberTags>; maxLag: number; timeout: number; osUser: string }) => {
      const dir = o.dir ?? process.env.BATON_DIR ?? DEFAULT_DIR;
      const p = progressPrinter();
      await c.withTarget({ dir }, async ({ store }) => {
        try {
          const r = await addLocalMember(store, {
            dir,
            ...(name !== undefined && { name }),
            ...(o.cloneFrom !== undefined && { cloneFrom: o.cloneFrom }),
            tags: o.tag,
            maxLagBytes: o.maxLag,
            timeoutMs: o.timeout * 1000,
            osUser: o.osUser,
            out: (l) => {
              p.done();
              out(l);
            },
            progress: p.progress,
          });
          p.done();
          out(`${r.name} streams from ${r.member.upstream ?? '?'} with lag ${r.member.lagBytes ?? 0} bytes: added in ${formatDuration(r.ms)}${r.cloneMs !== null ? ` (copy ${formatDuration(r.cloneMs)})` : ''}`);
        } finally {
          p.done();
        }
      });
    });

  c.targetOptions(node.command('wait <name>').description('follow a member being added (e.g. started on another host) until it streams'))
    .option('--max-lag <size>', 'done when the member streams with at most this lag', parseBytes, 1024 * 1024)
    .option('--timeout <seconds>', 'give up after this long', parseSeconds, 3600)
    .action(async (name: string, o: TargetOptions & { maxLag: number; timeout: number }) =>
      c.withTarget(o, async ({ store }) => {
        const p = progressPrinter();
        try {
          const r = await followNewMember(store, name, { maxLagBytes: o.maxLag, timeoutMs: o.timeout * 1000, progress: p.progress });
          p.done();
          out(`${name} streams with lag ${r.member.lagBytes ?? 0} bytes (${formatDuration(r.ms)})`);
        } finally {
          p.done();
        }
      }),
    );

  c.targetOptions(node.command('remove <name>').description('stop a member, drop its replication slots and member key, take it out of the pool'))
    .option('--user <user>', 'superuser for dropping slots (remote clusters; password from PGPASSWORD or ~/.pgpass)')
    .option('--keep-data', 'keep the data directory of a local member')
    .action(async (name: string, o: TargetOptions & { user?: string; keepData?: boolean }) =>
      c.withTarget(o, async ({ store, local }) => removeMember(store, { name, local, cred: sqlCredentials(local, o.user), keepData: !!o.keepData, out })),
    );

  c.targetOptions(program.command('replication').description("pg_stat_replication and replication slots of every member"))
    .option('--user <user>', 'superuser to connect as (remote clusters; password from PGPASSWORD or ~/.pgpass)')
    .option('--json', 'machine-readable')
    .action(async (o: TargetOptions & { user?: string; json?: boolean }) =>
      c.withTarget(o, async ({ store, local }) => {
        const r = await gatherReplication(await store.read(), sqlCredentials(local, o.user));
        if (o.json) return out(JSON.stringify(r, null, 2));
        out(replicationTable(r.links));
        for (const u of r.unreachable) out(`warning: ${u.member}: ${u.error}`);
      }),
    );

  const check = program.command('check').description('checks across members');
  c.targetOptions(check.command('consistency').description('compare row counts and checksums of every table on every member at one WAL position'))
    .option('--members <names>', 'comma-separated members to compare (default: all)')
    .option('--database <names>', 'comma-separated databases (default: all that accept connections)')
    .option('--user <user>', 'superuser to connect as (remote clusters; password from PGPASSWORD or ~/.pgpass)')
    .option('--timeout <seconds>', 'how long replicas may take to reach the barrier', parseSeconds, 60)
    .option('--json', 'machine-readable')
    .action(async (o: TargetOptions & { members?: string; database?: string; user?: string; timeout: number; json?: boolean }) =>
      c.withTarget(o, async ({ store, local }) => {
        const view = await store.read();
        const members = selectMembers(view.members, o.members);
        if (members.length < 2) throw new UsageError('name at least two members to compare');
        const p = progressPrinter();
        const reports = await checkConsistency(view, sqlCredentials(local, o.user), {
          members,
          ...(o.database !== undefined && { databases: o.database.split(',').map((s) => s.trim()).filter(Boolean) }),
          timeoutMs: o.timeout * 1000,
          progress: (l) => {
            p.progress(l);
            p.done();
          },
        });
        if (o.json) out(JSON.stringify(reports, null, 2));
        else out(consistencyTable(reports, members.map((m) => m.name)));
        const bad = reports.flatMap((r) => r.tables.filter((t) => !t.same).map((t) => `${r.database}.${t.table}`));
        if (bad.length) throw new BatonError(`members differ in ${bad.length} table${bad.length > 1 ? 's' : ''}: ${bad.join(', ')}`, 'see the table above; a replica that differs should be cloned again (baton node remove, then node add)');
        out(`consistent: ${reports.reduce((n, r) => n + r.tables.length, 0)} tables in ${reports.length} database(s) match on ${members.map((m) => m.name).join(', ')}`);
      }),
    );
}

export function consistencyTable(reports: DatabaseReport[], members: string[]): string {
  const rows = reports.flatMap((r) =>
    r.tables.map((t) => [
      r.database,
      t.table,
      ...members.map((m) => (t.digests[m] ? `${t.digests[m].rows} rows ${shortSum(t.digests[m].sum)}` : '-')),
      t.same ? 'same' : 'DIFFERENT',
    ]),
  );
  const head = reports.map((r) => `${r.database}: barrier ${formatLsn(r.barrierLsn)}, writes held ${r.writesHeldMs} ms`).join('\n');
  return `${head}\n${renderTable(['Database', 'Table', ...members, 'Result'], rows)}`;
}

