// `baton proxy --config FILE` runs a proxy until SIGTERM; `baton pool` prints SHOW POOL_NODES.
import pg from 'pg';
import { EtcdStore } from '../dcs/etcd-store.js';
import { loadProxyConfig } from '../proxy/config.js';
import { BatonProxy } from '../proxy/proxy.js';
import { POOL_NODES_COLUMNS } from '../proxy/admin-commands.js';
import { UsageError } from '../util/errors.js';
import { runUntilSignalled } from './service.js';
import { createLogger } from '../util/log.js';
import { renderTable } from './table.js';

export async function runProxy(configFile: string): Promise<void> {
  const cfg = loadProxyConfig(configFile);
  const log = createLogger({ cluster: cfg.cluster, component: 'proxy' });
  const store = new EtcdStore({ endpoints: cfg.etcdEndpoints, cluster: cfg.cluster, logger: log.child({ subsystem: 'etcd' }) });
  const proxy = new BatonProxy(cfg, store, log, configFile);
  await runUntilSignalled('proxy', log, {
    start: () => proxy.start(),
    stop: () => proxy.stop(),
    cleanup: () => store.close(),
    reload: () => void proxy.reloadConfig(),
  });
}

export interface AdminAddress {
  host: string;
  port: number;
  password: string | null;
}

/** SHOW POOL_NODES from a proxy's admin console, as text cells. */
export async function queryPoolNodes(admin: AdminAddress): Promise<{ fields: string[]; rows: string[][] }> {
  const client = new pg.Client({
    host: admin.host,
    port: admin.port,
    user: 'admin',
    database: 'baton',
    password: admin.password ?? undefined,
    connectionTimeoutMillis: 3000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw new UsageError(`cannot reach the proxy's admin console at ${admin.host}:${admin.port}: ${(err as Error).message}`, 'is "baton proxy" running? pass --admin HOST:PORT');
  }
  try {
    const r = await client.query({ text: 'SHOW POOL_NODES', rowMode: 'array' });
    return { fields: r.fields.map((f) => f.name), rows: r.rows.map((row: unknown[]) => row.map((v) => String(v ?? ''))) };
  } finally {
    await client.end();
  }
}

/** A row of SHOW POOL_NODES with its numbers and booleans typed, as `baton pool --json` prints it. */
export interface PoolNodeJson {
  node_id: number | null;
  hostname: string;
  port: number | null;
  status: string;
  lb_weight: number | null;
  role: string;
  select_cnt: number | null;
  load_balance_node: boolean;
  replication_delay: number | null;
}

/** SHOW POOL_NODES's text cells as typed rows; a number the proxy could not give (an empty cell) is null. */
export function parsePoolNodes(fields: string[], rows: string[][]): PoolNodeJson[] {
  const missing = POOL_NODES_COLUMNS.filter((c) => !fields.includes(c));
  if (missing.length) throw new UsageError(`the proxy's SHOW POOL_NODES has no column ${missing.join(', ')} (it has ${fields.join(', ')})`, 'run the same version of baton as the proxy');
  return rows.map((row) => {
    const text = (c: keyof PoolNodeJson): string => row[fields.indexOf(c)] ?? '';
    const num = (c: keyof PoolNodeJson): number | null => (text(c) === '' || !Number.isFinite(Number(text(c))) ? null : Number(text(c)));
    return {
      node_id: num('node_id'),
      hostname: text('hostname'),
      port: num('port'),
      status: text('status'),
      lb_weight: num('lb_weight'),
      role: text('role'),
      select_cnt: num('select_cnt'),
      load_balance_node: text('load_balance_node') === 'true',
      replication_delay: num('replication_delay'),
    };
  });
}

export async function printPoolNodes(admin: AdminAddress, out: (l: string) => void, json = false): Promise<void> {
  const { fields, rows } = await queryPoolNodes(admin);
  out(json ? JSON.stringify(parsePoolNodes(fields, rows), null, 2) : renderTable(fields, rows));
}
