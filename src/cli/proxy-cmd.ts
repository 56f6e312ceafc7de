// `baton proxy --config FILE` runs a proxy until SIGTERM; `baton pool` prints SHOW POOL_NODES.
import pg from 'pg';
import { EtcdStore } from '../dcs/etcd-store.js';
import { loadProxyConfig } from '../proxy/config.js';
import { BatonProxy } from '../proxy/proxy.js';
import { UsageError } from '../util/errors.js';
import { runUntilSignalled } from './service.js';
import { createLogger } from '../util/log.js';
import { renderTable } from './table.js';

export async function runProxy(configFile: string): Promise<void> {
  const cfg = loadProxyConfig(configFile);
  const log = createLogger({ cluster: cfg.cluster, component: 'proxy' });
  const store = new EtcdStore({ endpoints: cfg.etcdEndpoints, cluster: cfg.cluster, logger: log.child({ subsystem: 'etcd' }) });
  const proxy = new BatonProxy(cfg, store, log);
  await runUntilSignalled('proxy', log, {
    start: () => proxy.start(),
    stop: () => proxy.stop(),
    cleanup: () => store.close(),
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

export async function printPoolNodes(admin: AdminAddress, out: (l: string) => void): Promise<void> {
  const { fields, rows } = await queryPoolNodes(admin);
  out(renderTable(fields, rows));
}
