// What a running proxy does with its configuration file read again (SIGHUP, or RELOAD on the admin
// console): the settings it can apply at once, and those that need a restart (they shape its
// listeners, its etcd client or its relay threads). Pure, so every key is decided in one place.
import type { ProxyConfig } from './config.js';

/** The name each setting has in the configuration file, as an operator wrote it. */
const FILE_KEYS: Record<keyof ProxyConfig, string> = {
  cluster: 'cluster',
  name: 'name',
  etcdEndpoints: 'etcd.hosts',
  readWrite: 'listen.read_write',
  readOnly: 'listen.read_only',
  admin: 'listen.admin',
  adminPassword: 'admin_password',
  maxReplicationLag: 'max_replication_lag',
  readOnlyFallbackToLeader: 'read_only_fallback_to_leader',
  pauseTimeoutMs: 'pause_timeout',
  connectTimeoutMs: 'connect_timeout',
  startupTimeoutMs: 'startup_timeout',
  maxMessageLength: 'max_message_length',
  tls: 'tls',
  authUsers: 'auth_users',
  useLocalSocket: 'use_local_socket',
  relay: 'relay',
  relayThreads: 'relay_threads',
};

/** Applied at once: new sessions, the next routing decision and the next admin login use them. */
const LIVE: ReadonlySet<keyof ProxyConfig> = new Set<keyof ProxyConfig>([
  'adminPassword',
  'maxReplicationLag',
  'readOnlyFallbackToLeader',
  'pauseTimeoutMs',
  'connectTimeoutMs',
  'startupTimeoutMs',
  'maxMessageLength',
  'tls',
  'authUsers',
  'useLocalSocket',
]);

export interface ReloadPlan {
  /** The configuration to run with: the new live settings, the old ones that need a restart. */
  next: ProxyConfig;
  /** File keys of the settings that changed and apply now. */
  applied: string[];
  /** File keys of the settings that changed but keep their old value until a restart. */
  needRestart: string[];
}

/** The settings in force as the file would spell them, secrets left out (SHOW CONFIG), and whether
 * a reload can change each one. */
export function configRows(c: ProxyConfig): { setting: string; value: string; reload: string }[] {
  const hostPort = (h: { host: string; port: number }): string => `${h.host}:${h.port}`;
  const seconds = (ms: number): string => String(ms / 1000);
  const shown: Record<keyof ProxyConfig, string> = {
    cluster: c.cluster,
    name: c.name ?? '(host name and read-write port)',
    etcdEndpoints: c.etcdEndpoints.map((e) => e.replace(/^https?:\/\//, '')).join(', '),
    readWrite: hostPort(c.readWrite),
    readOnly: hostPort(c.readOnly),
    admin: hostPort(c.admin),
    adminPassword: c.adminPassword === null ? '(none: anyone may log in)' : '(set)',
    maxReplicationLag: String(c.maxReplicationLag),
    readOnlyFallbackToLeader: String(c.readOnlyFallbackToLeader),
    pauseTimeoutMs: seconds(c.pauseTimeoutMs),
    connectTimeoutMs: seconds(c.connectTimeoutMs),
    startupTimeoutMs: seconds(c.startupTimeoutMs),
    maxMessageLength: String(c.maxMessageLength),
    tls: c.tls ? `cert ${c.tls.cert}, key ${c.tls.key}` : '(none)',
    authUsers: Object.keys(c.authUsers).sort().join(', ') || '(none)',
    useLocalSocket: String(c.useLocalSocket),
    relay: c.relay,
    relayThreads: String(c.relayThreads),
  };
  return (Object.keys(FILE_KEYS) as (keyof ProxyConfig)[]).map((k) => ({ setting: FILE_KEYS[k], value: shown[k], reload: LIVE.has(k) ? 'applies at once' : 'needs a restart' }));
}

function copySetting<K extends keyof ProxyConfig>(to: ProxyConfig, from: ProxyConfig, key: K): void {
  to[key] = from[key];
}

export function planReload(running: ProxyConfig, file: ProxyConfig): ReloadPlan {
  const next: ProxyConfig = { ...running };
  const applied: string[] = [];
  const needRestart: string[] = [];
  for (const key of Object.keys(FILE_KEYS) as (keyof ProxyConfig)[]) {
    if (JSON.stringify(running[key]) === JSON.stringify(file[key])) continue;
    if (LIVE.has(key)) {
      copySetting(next, file, key);
      applied.push(FILE_KEYS[key]);
    } else {
      needRestart.push(FILE_KEYS[key]);
    }
  }
  return { next, applied, needRestart };
}
