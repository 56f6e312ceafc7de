// Which cluster a command talks to: a local one (--dir, default .baton) or a remote one (--etcd, --cluster).
import { EtcdStore } from '../dcs/etcd-store.js';
import { UsageError } from '../util/errors.js';
import { DEFAULT_DIR, etcdEndpoint, readLocalCluster, type LocalCluster } from './local-cluster.js';

export interface TargetOptions {
  dir?: string;
  etcd?: string;
  cluster?: string;
}

export interface Target {
  store: EtcdStore;
  local: LocalCluster | null;
}

export function resolveTarget(o: TargetOptions): Target {
  const etcd = o.etcd ?? process.env.BATON_ETCD;
  if (etcd) {
    const cluster = o.cluster ?? process.env.BATON_CLUSTER;
    if (!cluster) throw new UsageError('--etcd needs --cluster NAME (or BATON_CLUSTER)');
    const endpoints = etcd.split(',').map((e) => (e.includes('://') ? e : `http://${e}`));
    return { store: new EtcdStore({ endpoints, cluster }), local: null };
  }
  const dir = o.dir ?? process.env.BATON_DIR ?? DEFAULT_DIR;
  const local = readLocalCluster(dir);
  if (!local) {
    throw new UsageError(
      `no cluster to talk to: no local cluster in ${dir}`,
      'start one with "baton up", pass --dir DIR, or name a remote one with --etcd HOST:PORT --cluster NAME',
    );
  }
  return { store: new EtcdStore({ endpoints: [etcdEndpoint(local)], cluster: o.cluster ?? local.cluster }), local };
}
