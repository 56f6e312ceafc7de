// The description of a local cluster started by `baton up`, kept in <dir>/cluster.json (mode 0600).
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../util/errors.js';

export interface LocalMember {
  name: string;
  configFile: string;
  dataDir: string;
  pgPort: number;
  apiPort: number;
  agentLog: string;
  agentPid: number | null;
}

export interface LocalCluster {
  cluster: string;
  dir: string;
  host: string;
  etcd: { clientPort: number; peerPort: number; dataDir: string; log: string; pid: number | null };
  superuser: { username: string; password: string };
  replication: { username: string; password: string };
  apiToken: string;
  members: LocalMember[];
  /** Absent in clusters created before the proxy existed. */
  proxy?: LocalProxy;
}

export interface LocalProxy {
  configFile: string;
  log: string;
  readWritePort: number;
  readOnlyPort: number;
  adminPort: number;
  adminPassword: string;
  pid: number | null;
}

export const DEFAULT_DIR = '.baton';

export function clusterFile(dir: string): string {
  return path.join(path.resolve(dir), 'cluster.json');
}

export function readLocalCluster(dir: string): LocalCluster | null {
  const file = clusterFile(dir);
  if (!fs.existsSync(file)) return null;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as LocalCluster;
  } catch (err) {
    throw new UsageError(`${file} is not valid JSON: ${(err as Error).message}`, `remove ${path.resolve(dir)} and run "baton up" again`);
  }
}

export function writeLocalCluster(c: LocalCluster): void {
  const file = clusterFile(c.dir);
  fs.writeFileSync(file + '.tmp', JSON.stringify(c, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(file + '.tmp', file);
}

export function etcdEndpoint(c: LocalCluster): string {
  return `http://${c.host}:${c.etcd.clientPort}`;
}

/** URIs of the proxy's listeners: clients need not know which member is the primary. */
export function proxyUris(c: LocalCluster): { readWrite: string; readOnly: string; admin: string } | null {
  if (!c.proxy) return null;
  const u = c.superuser.username;
  return {
    readWrite: `postgresql://${u}@${c.host}:${c.proxy.readWritePort}/postgres`,
    readOnly: `postgresql://${u}@${c.host}:${c.proxy.readOnlyPort}/postgres`,
    admin: `postgresql://admin@${c.host}:${c.proxy.adminPort}/baton`,
  };
}

/** libpq URIs: read-write goes to whichever host is primary; read-only prefers replicas. */
export function connectionUris(hosts: { host: string; port: number }[], user: string): { readWrite: string; readOnly: string } {
  const list = hosts.map((h) => `${h.host}:${h.port}`).join(',');
  return {
    readWrite: `postgresql://${user}@${list}/postgres?target_session_attrs=read-write&connect_timeout=2`,
    readOnly: `postgresql://${user}@${list}/postgres?target_session_attrs=prefer-standby&connect_timeout=2`,
  };
}

export function pidAlive(pid: number | null): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}
