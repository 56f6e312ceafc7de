// SQL connections from the command line to each member, as the superuser: commands that read or change
// PostgreSQL itself (replication, check consistency, node remove) use them. A local cluster's credentials
// come from its cluster.json; a remote cluster's from --user and PGPASSWORD or ~/.pgpass, as libpq's do.
import pg from 'pg';
import type { MemberRecord } from '../dcs/types.js';
import { BatonError, UsageError } from '../util/errors.js';
import type { LocalCluster } from './local-cluster.js';

export interface SqlCredentials {
  user: string;
  /** Absent: node-postgres reads PGPASSWORD or ~/.pgpass. */
  password?: string;
}

export function sqlCredentials(local: LocalCluster | null, user?: string): SqlCredentials {
  if (local && (!user || user === local.superuser.username)) return { user: local.superuser.username, password: local.superuser.password };
  return { user: user ?? process.env.PGUSER ?? 'postgres' };
}

export type MemberAddress = Pick<MemberRecord, 'name' | 'host' | 'port'>;

export async function connectMember(m: MemberAddress, cred: SqlCredentials, database = 'postgres'): Promise<pg.Client> {
  const client = new pg.Client({
    host: m.host,
    port: m.port,
    user: cred.user,
    ...(cred.password !== undefined && { password: cred.password }),
    database,
    application_name: 'baton-cli',
    connectionTimeoutMillis: 5000,
  });
  // A connection lost later surfaces as the failed query's error; this keeps it from crashing the CLI.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    const reason = (err as Error).message;
    const hint = /password|authentication/i.test(reason)
      ? 'give the superuser with --user and its password in PGPASSWORD or ~/.pgpass'
      : `is ${m.name}'s PostgreSQL running? see "baton status"`;
    throw new BatonError(`cannot connect to ${m.name} (${m.host}:${m.port}, database ${database}) as ${cred.user}: ${reason}`, hint);
  }
  return client;
}

export async function withMember<T>(m: MemberAddress, cred: SqlCredentials, fn: (c: pg.Client) => Promise<T>, database?: string): Promise<T> {
  const client = await connectMember(m, cred, database);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Members named on the command line (comma-separated), checked against the cluster; all when none. */
export function selectMembers(all: MemberRecord[], names: string | undefined): MemberRecord[] {
  if (!names) return all;
  const wanted = names.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = wanted.filter((n) => !all.some((m) => m.name === n));
  if (unknown.length) {
    throw new UsageError(`unknown member${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}`, `members: ${all.map((m) => m.name).join(', ') || 'none'}`);
  }
  return all.filter((m) => wanted.includes(m.name));
}
