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
]);

export interface ReloadPlan {
  /** The configuration to run with: the new live settings, the old ones that need a restart. */
  next: ProxyConfig;
  /** File keys of the settings that changed and apply now. */
  applied: string[];
  /** File keys of the settings that changed but keep their old value until a restart. */
  needRestart: string[];
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
