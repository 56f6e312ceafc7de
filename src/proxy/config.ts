// The proxy's configuration file (YAML), validated strictly like the member config.
import os from 'node:os';
import { z } from 'zod';
import { describeIssues, readYamlFile, splitHostPort, type HostPort } from '../config/load.js';
import { ConfigError } from '../util/errors.js';
import type { RelayMode } from './native-relay.js';

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:6432');

const schema = z
  .object({
    cluster: z.string().min(1),
    /** This proxy's name in etcd (proxies/<name>); default: host name and read-write port. */
    name: z
      .string()
      .max(100)
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]*$/, 'letters, digits, "_", ".", ":" and "-" only, starting with a letter or digit')
      .optional(),
    etcd: z.object({ hosts: z.array(hostPort).min(1) }).strict(),
    listen: z
      .object({ read_write: hostPort, read_only: hostPort, admin: hostPort })
      .strict(),
    admin_password: z.string().min(8, 'use at least 8 characters').nullable().default(null),
    max_replication_lag: z.number().int().nonnegative().default(1024 * 1024),
    read_only_fallback_to_leader: z.boolean().default(true),
    pause_timeout: z.number().positive().max(600).default(10),
    connect_timeout: z.number().positive().max(60).default(3),
    /** Seconds a client has, from connecting, to send its startup message (TLS handshake included), as
     * PostgreSQL's authentication_timeout and PgBouncer's client_login_timeout allow. */
    startup_timeout: z.number().positive().max(3600).default(60),
    max_message_length: z.number().int().min(1024).default(256 * 1024 * 1024),
    tls: z.object({ cert: z.string().min(1), key: z.string().min(1) }).strict().optional(),
    /** Passwords the proxy may use to log in as these users when it moves an idle session (a new leader; a replica that takes read-only sessions). */
    auth_users: z.record(z.string().min(1), z.string().min(1)).default({}),
    /** Reach a member's server through its Unix socket when it runs on this host (its agent's token
     * is beside the socket), rather than over TCP. */
    use_local_socket: z.boolean().default(true),
    /** auto: the native relay when it is built, else TypeScript; native: refuse to start without it. */
    relay: z.enum(['auto', 'native', 'js']).default('auto'),
    /** Threads of the native relay; default: one per CPU, at most 4. */
    relay_threads: z.number().int().min(1).max(16).optional(),
  })
  .strict();

export interface ProxyConfig {
  cluster: string;
  /** null: the host name and the bound read-write port. */
  name: string | null;
  etcdEndpoints: string[];
  readWrite: HostPort;
  readOnly: HostPort;
  admin: HostPort;
  adminPassword: string | null;
  maxReplicationLag: number;
  readOnlyFallbackToLeader: boolean;
  pauseTimeoutMs: number;
  connectTimeoutMs: number;
  startupTimeoutMs: number;
  maxMessageLength: number;
  tls: { cert: string; key: string } | null;
  authUsers: Record<string, string>;
  useLocalSocket: boolean;
  relay: RelayMode;
  relayThreads: number;
}

export function parseProxyConfig(raw: unknown, file: string): ProxyConfig {
  const r = schema.safeParse(raw ?? {});
  if (!r.success) {
    throw new ConfigError(`invalid proxy configuration\n${describeIssues(file, r.error)}`, 'fix the fields named above and start again');
  }
  const c = r.data;
  return {
    cluster: c.cluster,
    name: c.name ?? null,
    etcdEndpoints: c.etcd.hosts.map((h) => `http://${h}`),
    readWrite: splitHostPort(c.listen.read_write),
    readOnly: splitHostPort(c.listen.read_only),
    admin: splitHostPort(c.listen.admin),
    adminPassword: c.admin_password,
    maxReplicationLag: c.max_replication_lag,
    readOnlyFallbackToLeader: c.read_only_fallback_to_leader,
    pauseTimeoutMs: c.pause_timeout * 1000,
    connectTimeoutMs: c.connect_timeout * 1000,
    startupTimeoutMs: c.startup_timeout * 1000,
    maxMessageLength: c.max_message_length,
    tls: c.tls ?? null,
    authUsers: c.auth_users,
    useLocalSocket: c.use_local_socket,
    relay: c.relay,
    relayThreads: c.relay_threads ?? Math.min(4, os.availableParallelism()),
  };
}

export function loadProxyConfig(file: string): ProxyConfig {
  return parseProxyConfig(readYamlFile(file, 'proxy config'), file);
}
