// JSON shapes of GET /cluster and GET /history, close to Patroni's.
import type { ClusterView } from '../dcs/types.js';

export type ClusterMemberRole = 'leader' | 'sync_standby' | 'replica';

export function clusterBody(view: ClusterView, cluster: string): Record<string, unknown> {
  const sync = new Set(view.sync?.members ?? []);
  const members = [...view.members]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((m) => {
      let role: ClusterMemberRole = 'replica';
      if (view.leader?.name === m.name) role = 'leader';
      else if (sync.has(m.name)) role = 'sync_standby';
      return {
        name: m.name,
        role,
        state: m.state,
        host: m.host,
        port: m.port,
        api_url: m.apiUrl,
        timeline: m.timeline,
        lag: m.lagBytes,
        tags: m.tags,
      };
    });
  const body: Record<string, unknown> = { cluster, members, pause: view.config.paused };
  const sw = view.switchover;
  if (sw !== null) {
    body.switchover = {
      kind: sw.kind,
      from: sw.from,
      to: sw.to,
      phase: sw.phase,
      requested_at: sw.requestedAt,
      deadline: new Date(sw.deadline).toISOString(),
      reason: sw.reason,
    };
  }
  return body;
}

/** [timeline, lsn, reason, at, leader] per entry, as Patroni's /history. */
export function historyBody(view: ClusterView): Array<[number, number, string, string, string]> {
  return view.history.map((h) => [h.timeline, h.lsn, h.reason, h.at, h.leader]);
}
