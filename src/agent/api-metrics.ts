// Prometheus gauges for one member, read from the health snapshot at scrape time.
import { Gauge, Registry } from 'prom-client';
import type { HealthSnapshot } from './health.js';

type Labels = 'cluster' | 'member';

export interface MemberMetrics {
  contentType: string;
  render(snap: HealthSnapshot): Promise<string>;
}

export function createMemberMetrics(cluster: string, member: string): MemberMetrics {
  // A private registry: several agents (or tests) in one process must not share series.
  const registry = new Registry();
  const labels = { cluster, member };
  const gauge = (name: string, help: string): Gauge<Labels> =>
    new Gauge<Labels>({ name, help, labelNames: ['cluster', 'member'], registers: [registry] });

  const running = gauge('baton_postgres_running', '1 when PostgreSQL is running');
  const leader = gauge('baton_is_leader', '1 when this member holds the leader key');
  const timeline = gauge('baton_timeline', 'PostgreSQL timeline');
  const received = gauge('baton_received_lsn_bytes', 'Write LSN on the primary, received LSN on a replica');
  const replayed = gauge('baton_replayed_lsn_bytes', 'Replayed LSN on a replica');
  const lag = gauge('baton_lag_bytes', "Bytes behind the leader's last published WAL position");
  const lastLoop = gauge('baton_last_loop_timestamp_seconds', 'Unix time of the last completed HA loop');

  // Unknown values drop the series rather than report a misleading 0.
  const put = (g: Gauge<Labels>, value: number | null | undefined): void => {
    if (value === null || value === undefined) g.remove(labels);
    else g.set(labels, value);
  };

  return {
    contentType: registry.contentType,
    async render(snap) {
      const self = snap.self;
      put(running, snap.postgresRunning ? 1 : 0);
      put(leader, snap.isLeader ? 1 : 0);
      put(timeline, self?.timeline);
      put(received, self?.receivedLsn);
      put(replayed, self?.replayedLsn);
      let lagBytes: number | null = null;
      if (self?.role === 'primary') lagBytes = 0;
      else if (self?.receivedLsn != null && snap.leaderLsn !== null) {
        lagBytes = Math.max(0, snap.leaderLsn - self.receivedLsn);
      }
      put(lag, lagBytes);
      put(lastLoop, snap.lastLoopAt === null ? null : snap.lastLoopAt / 1000);
      return registry.metrics();
    },
  };
}
