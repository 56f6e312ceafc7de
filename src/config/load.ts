// Loading and validating a member config; every error names the file, the field and the fix.
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../util/errors.js';
import { DEFAULT_DYNAMIC_CONFIG, type DynamicConfig, type MemberTags } from '../dcs/types.js';
import { memberConfigSchema, type MemberConfigFile } from './schema.js';

export interface HostPort {
  host: string;
  port: number;
}

export interface MemberConfig {
  file: string;
  cluster: string;
  name: string;
  etcdEndpoints: string[];
  etcdRequestTimeoutMs: number;
  pg: {
    binDir: string;
    dataDir: string;
    listen: HostPort;
    connect: HostPort;
    osUser: string;
    superuser: { username: string; password: string };
    replication: { username: string; password: string };
    parameters: Record<string, string | number | boolean>;
    logFile: string;
    /** Clone a new data directory from this member rather than the leader. */
    cloneFrom: string | null;
  };
  api: { listen: HostPort; connect: HostPort; token: string | null };
  tags: MemberTags;
  /** Written to etcd by the member that bootstraps the cluster. */
  initialDynamicConfig: DynamicConfig;
}

export function splitHostPort(s: string): HostPort {
  const i = s.lastIndexOf(':');
  const host = s.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(s.slice(i + 1)) };
}

/** One line per problem: the file, the field's path, and what is wrong with it. */
export function describeIssues(file: string, error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const where = issue.path.length ? issue.path.join('.') : '(top level)';
      if (issue.code === 'unrecognized_keys') {
        return `${file}: ${where}: unknown key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
      }
      return `${file}: ${where}: ${issue.message}`;
    })
    .join('\n');
}

/** Validates already-parsed YAML; `file` is only used in messages and to resolve relative paths. */
export function parseMemberConfig(raw: unknown, file: string): MemberConfig {
  const result = memberConfigSchema.safeParse(raw ?? {});
  if (!result.success) {
    throw new ConfigError(`invalid configuration\n${describeIssues(file, result.error)}`, 'fix the fields named above and start again');
  }
  return toMemberConfig(result.data, file);
}

/** Reads and parses a YAML file; errors name the file (and the line) and what to do. */
export function readYamlFile(file: string, what = 'config file'): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, 'check the path given with --config');
  }
  try {
    return parseYaml(text);
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` at line ${err.linePos[0].line}` : '';
    throw new ConfigError(`${file}: not valid YAML${where}: ${(err as Error).message.split('\n')[0]}`, 'fix the YAML syntax');
  }
}

export function loadMemberConfig(file: string): MemberConfig {
  return parseMemberConfig(readYamlFile(file), file);
}

function toMemberConfig(c: MemberConfigFile, file: string): MemberConfig {
  const base = path.dirname(path.resolve(file));
  const abs = (p: string) => (path.isAbsolute(p) ? p : path.resolve(base, p));
  const listen = splitHostPort(c.postgresql.listen);
  const apiListen = splitHostPort(c.restapi.listen);
  const d = c.bootstrap.dcs;
  const dataDir = abs(c.postgresql.data_dir);
  return {
    file,
    cluster: c.cluster,
    name: c.name,
    etcdEndpoints: c.etcd.hosts.map((h) => `http://${h}`),
    etcdRequestTimeoutMs: Math.round(c.etcd.request_timeout * 1000),
    pg: {
      binDir: c.postgresql.bin_dir,
      dataDir,
      listen,
      connect: c.postgresql.connect_address ? splitHostPort(c.postgresql.connect_address) : listen,
      osUser: c.postgresql.os_user,
      superuser: c.postgresql.authentication.superuser,
      replication: c.postgresql.authentication.replication,
      parameters: c.postgresql.parameters,
      logFile: abs(c.postgresql.log_file ?? `${dataDir}.postgresql.log`),
      cloneFrom: c.postgresql.clone_from ?? null,
    },
    api: {
      listen: apiListen,
      connect: c.restapi.connect_address ? splitHostPort(c.restapi.connect_address) : apiListen,
      token: c.restapi.token,
    },
    tags: c.tags,
    initialDynamicConfig: {
      ...DEFAULT_DYNAMIC_CONFIG,
      ...(d.ttl !== undefined && { ttl: d.ttl }),
      ...(d.loop_wait !== undefined && { loopWait: d.loop_wait }),
      ...(d.maximum_lag_on_failover !== undefined && { maximumLagOnFailover: d.maximum_lag_on_failover }),
      ...(d.synchronous_mode !== undefined && { synchronousMode: d.synchronous_mode }),
      ...(d.synchronous_mode_strict !== undefined && { synchronousModeStrict: d.synchronous_mode_strict }),
      ...(d.max_restarts !== undefined && { maxRestarts: d.max_restarts }),
      ...(d.restart_window !== undefined && { restartWindow: d.restart_window }),
      ...(d.switchover_drain_timeout !== undefined && { switchoverDrainTimeout: d.switchover_drain_timeout }),
    },
  };
}
