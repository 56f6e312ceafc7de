// `baton status`: the cluster at a glance, like `pcs status` or `patronictl list`.
import type { ClusterView, MemberRecord, ProxyRecord } from '../dcs/types.js';
import { formatBytes, formatLsn } from '../util/lsn.js';
import { connectionUris, proxyUris, type LocalCluster } from './local-cluster.js';
import { renderTable } from './table.js';

function roleOf(view: ClusterView, m: MemberRecord): string {
  if (view.leader?.name === m.name) return 'Leader';
  if (view.sync?.leader === view.leader?.name && view.sync?.members.includes(m.name)) return 'Sync Standby';
  return m.role === 'replica' ? 'Replica' : m.role === 'primary' ? 'Primary (no key)' : 'Unknown';
}

/** `proxies`: the proxies registered in etcd (any host), beside the local cluster's own proxy URIs. */
export function statusJson(view: ClusterView, local: LocalCluster | null, proxies: ProxyRecord[]) {
  const hosts = view.members.map((m) => ({ host: m.host, port: m.port }));
  return {
    cluster: local?.cluster ?? null,
    leader: view.leader?.name ?? null,
    paused: view.config.paused,
    synchronousMode: view.config.synchronousMode,
    sync: view.sync,
    switchover: view.switchover,
    standbyMembers: view.config.standbyMembers,
    members: view.members.map((m) => ({
      name: m.name,
      role: roleOf(view, m).toLowerCase().replace(/ /g, '_'),
      state: m.state,
      host: m.host,
      port: m.port,
      apiUrl: m.apiUrl,
      timeline: m.timeline,
      receivedLsn: m.receivedLsn === null ? null : formatLsn(m.receivedLsn),
      lagBytes: m.lagBytes,
      tags: m.tags,
      agentPid: m.agentPid,
      postmasterPid: m.postmasterPid,
      problem: m.problem,
    })),
    uris: hosts.length ? connectionUris(hosts, local?.superuser.username ?? 'postgres') : null,
    proxy: local ? proxyUris(local) : null,
    proxies,
    ...(local && { dir: local.dir, passfile: `${local.dir}/pgpass` }),
  };
}

export function statusText(view: ClusterView, clusterName: string, local: LocalCluster | null, proxies: ProxyRecord[]): string {
  const rows = view.members.map((m) => [
    m.name,
    `${m.host}:${m.port}`,
    roleOf(view, m),
    m.state,
    m.timeline ?? '',
    m.role === 'replica' ? (m.lagBytes === null ? 'unknown' : formatBytes(m.lagBytes)) : '',
    [m.tags.nofailover && 'nofailover', m.tags.noloadbalance && 'noloadbalance', view.config.standbyMembers.includes(m.name) && 'standby', m.problem]
      .filter(Boolean)
      .join(', '),
  ]);
  const head = `Cluster: ${clusterName} (system id ${view.initialize ?? 'not initialized'})`;
  const notes: string[] = [];
  if (view.config.paused) notes.push('Maintenance mode: automatic failover is PAUSED ("baton resume" to end it)');
  if (!view.leader) notes.push('No leader: writes are not possible right now');
  if (view.config.synchronousMode && view.leader && !(view.sync?.members.length)) {
    notes.push(
      view.config.synchronousModeStrict
        ? 'No synchronous standby: writes wait until one streams (strict mode)'
        : 'No synchronous standby: commits are asynchronous, and no member may take over automatically',
    );
  }
  const proxy = local ? proxyUris(local) : null;
  if (proxy) notes.push(`Proxy: read-write ${proxy.readWrite}  read-only ${proxy.readOnly}`);
  if (proxies.length) {
    const list = proxies.map((p) => `${p.name} (read-write ${p.readWrite}, read-only ${p.readOnly}${p.holding ? ', holding transactions for the switchover' : ''})`);
    notes.push(`Proxies in etcd: ${list.join('; ')}`);
  }
  if (view.switchover) notes.push(`Switchover in progress: ${view.switchover.from ?? '?'} -> ${view.switchover.to ?? 'best'} (${view.switchover.phase})`);
  return [head, renderTable(['Member', 'Host', 'Role', 'State', 'TL', 'Lag', 'Notes'], rows), ...notes].join('\n');
}
