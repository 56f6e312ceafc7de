// What a running agent does with its configuration file read again (SIGHUP, or POST /reload on its
// REST API): the settings it applies at once, those that need the agent restarted, and those read
// only when the cluster was created. Pure, so every key is decided in one place.
import type { MemberConfig } from './load.js';

export interface MemberReloadPlan {
  /** The configuration to run with: the new live settings, the old value of everything else. */
  next: MemberConfig;
  /** File keys of the settings that changed and apply now (tags at the next publish, PostgreSQL
   * parameters once PostgreSQL has read them). */
  applied: string[];
  /** File keys of the settings that changed but keep their old value until the agent restarts. */
  needRestart: string[];
  /** File keys under bootstrap.dcs that changed: read once, when the cluster is created. */
  bootstrapOnly: string[];
}

type Setting = { key: string; get: (c: MemberConfig) => unknown; live: boolean };

/** Every setting but the open-ended maps (tags, parameters, bootstrap.dcs), which go key by key. */
const SETTINGS: Setting[] = [
  { key: 'cluster', get: (c) => c.cluster, live: false },
  { key: 'name', get: (c) => c.name, live: false },
  { key: 'etcd.hosts', get: (c) => c.etcdEndpoints, live: false },
  { key: 'etcd.request_timeout', get: (c) => c.etcdRequestTimeoutMs, live: false },
  { key: 'postgresql.bin_dir', get: (c) => c.pg.binDir, live: false },
  { key: 'postgresql.data_dir', get: (c) => c.pg.dataDir, live: false },
  { key: 'postgresql.listen', get: (c) => c.pg.listen, live: false },
  { key: 'postgresql.connect_address', get: (c) => c.pg.connect, live: false },
  { key: 'postgresql.os_user', get: (c) => c.pg.osUser, live: false },
  { key: 'postgresql.authentication.superuser', get: (c) => c.pg.superuser, live: false },
  { key: 'postgresql.authentication.replication', get: (c) => c.pg.replication, live: false },
  { key: 'postgresql.log_file', get: (c) => c.pg.logFile, live: false },
  // Read when a data directory is cloned, which is always later than the reload.
  { key: 'postgresql.clone_from', get: (c) => c.pg.cloneFrom, live: true },
  { key: 'restapi.listen', get: (c) => c.api.listen, live: false },
  { key: 'restapi.connect_address', get: (c) => c.api.connect, live: false },
  // Checked on every request.
  { key: 'restapi.token', get: (c) => c.api.token, live: true },
];

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** The keys of two maps whose values differ (added, removed or changed), sorted. */
function changedKeys(a: object, b: object): string[] {
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  return [...new Set([...Object.keys(ra), ...Object.keys(rb)])].filter((k) => !same(ra[k], rb[k])).sort();
}

export function planMemberReload(running: MemberConfig, file: MemberConfig): MemberReloadPlan {
  const applied: string[] = [];
  const needRestart: string[] = [];
  for (const s of SETTINGS) {
    if (same(s.get(running), s.get(file))) continue;
    (s.live ? applied : needRestart).push(s.key);
  }
  applied.push(...changedKeys(running.tags, file.tags).map((k) => `tags.${k}`));
  applied.push(...changedKeys(running.pg.parameters, file.pg.parameters).map((k) => `postgresql.parameters.${k}`));
  const next: MemberConfig = {
    ...running,
    pg: { ...running.pg, parameters: { ...file.pg.parameters }, cloneFrom: file.pg.cloneFrom },
    api: { ...running.api, token: file.api.token },
    tags: { ...file.tags },
  };
  // The file's keys, not the in-memory names, so that an operator can find them.
  const dcsKeys: Record<string, string> = {
    ttl: 'ttl', loopWait: 'loop_wait', maximumLagOnFailover: 'maximum_lag_on_failover', synchronousMode: 'synchronous_mode',
    synchronousModeStrict: 'synchronous_mode_strict', maxRestarts: 'max_restarts', restartWindow: 'restart_window',
    switchoverDrainTimeout: 'switchover_drain_timeout',
  };
  const bootstrapOnly = changedKeys(running.initialDynamicConfig, file.initialDynamicConfig).map((k) => `bootstrap.dcs.${dcsKeys[k] ?? k}`);
  return { next, applied, needRestart, bootstrapOnly };
}
