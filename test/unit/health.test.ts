import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MemberRecord } from '../../src/dcs/types.js';
import { healthCheck, isHealthPath, parseLagParam, type HealthSnapshot } from '../../src/agent/health.js';

const NOW = 1_700_000_000_000;
const MB = 1024 * 1024;

function member(over: Partial<MemberRecord> = {}): MemberRecord {
  return {
    name: 'pg1',
    role: 'replica',
    state: 'streaming',
    host: '10.0.0.1',
    port: 5432,
    apiUrl: 'http://10.0.0.1:8008',
    timeline: 3,
    receivedLsn: 10 * MB - 100,
    replayedLsn: 10 * MB - 300,
    lagBytes: 100,
    tags: { nofailover: false, noloadbalance: false, weight: 1, priority: 100, clonefrom: false },
    agentPid: 11,
    postmasterPid: 12,
    upstream: 'pg0',
    systemId: '7300000000000000000',
    updatedAt: new Date(NOW).toISOString(),
    problem: null,
    ...over,
  };
}

function snap(over: Partial<HealthSnapshot> = {}, self: Partial<MemberRecord> | null = {}): HealthSnapshot {
  return {
    self: self === null ? null : member(self),
    isLeader: false,
    postgresRunning: true,
    leaderLsn: 10 * MB,
    syncMembers: ['pg-sync'],
    lastLoopAt: NOW - 500,
    now: NOW,
    ttlSeconds: 3,
    maximumLagOnFailover: MB,
    cluster: 'main',
    paused: false,
    ...over,
  };
}

const primary = { name: 'pg0', role: 'primary', state: 'running', receivedLsn: 10 * MB, replayedLsn: null } as const;

const SCENARIOS: Record<string, HealthSnapshot> = {
  'primary leader': snap({ isLeader: true }, primary),
  'primary not leader (fenced)': snap({ isLeader: false }, primary),
  'streaming replica': snap(),
  'replica with noloadbalance': snap({}, { tags: { ...member().tags, noloadbalance: true } }),
  'sync replica': snap({}, { name: 'pg-sync' }),
  'async replica restoring from archive': snap({}, { state: 'recovering', receivedLsn: 5 * MB, replayedLsn: 5 * MB }),
  'leader with postgres down': snap({ isLeader: true, postgresRunning: false }, { ...primary, state: 'crashed' }),
  'replica with postgres down': snap({ postgresRunning: false }, { state: 'stopped' }),
  'no published record': snap({ postgresRunning: false, lastLoopAt: null }, null),
};

// Columns follow the SCENARIOS order.
const EXPECTED: Array<[string[], number[]]> = [
  [['/', '/primary', '/read-write', '/master'], [200, 503, 503, 503, 503, 503, 503, 503, 503]],
  [['/leader'], [200, 503, 503, 503, 503, 503, 200, 503, 503]],
  [['/replica'], [503, 503, 200, 503, 200, 200, 503, 503, 503]],
  [['/read-only'], [200, 503, 200, 503, 200, 200, 503, 503, 503]],
  [['/sync', '/synchronous'], [503, 503, 503, 503, 200, 503, 503, 503, 503]],
  [['/read-only-sync'], [200, 503, 503, 503, 200, 503, 503, 503, 503]],
  [['/async', '/asynchronous'], [503, 503, 200, 503, 503, 200, 503, 503, 503]],
  [['/health'], [200, 200, 200, 200, 200, 200, 503, 503, 503]],
  [['/liveness'], [200, 200, 200, 200, 200, 200, 200, 200, 503]],
  [['/readiness'], [200, 503, 200, 200, 200, 503, 503, 503, 503]],
];

function status(path: string, s: HealthSnapshot, query = ''): number | undefined {
  return healthCheck(path, new URLSearchParams(query), s)?.status;
}

function body(path: string, s: HealthSnapshot, query = ''): Record<string, unknown> {
  const r = healthCheck(path, new URLSearchParams(query), s);
  assert.ok(r);
  return r.body as Record<string, unknown>;
}

describe('healthCheck: every endpoint x member situation', () => {
  const names = Object.keys(SCENARIOS);
  for (const [paths, statuses] of EXPECTED) {
    for (const path of paths) {
      names.forEach((name, i) => {
        it(`${path} on ${name} -> ${statuses[i]}`, () => {
          assert.equal(status(path, SCENARIOS[name]!), statuses[i]);
        });
      });
    }
  }
});

describe('healthCheck: paths', () => {
  it('returns null for paths that are not health checks', () => {
    for (const p of ['/cluster', '/metrics', '/primaryx', '/replica/extra', '/PRIMARY']) {
      assert.equal(healthCheck(p, new URLSearchParams(), snap()), null, p);
      assert.equal(isHealthPath(p), false, p);
    }
  });
  it('accepts a trailing slash', () => {
    assert.equal(status('/replica/', snap()), 200);
    assert.equal(isHealthPath('/primary/'), true);
  });
});

describe('parseLagParam', () => {
  const good: Array<[string, number]> = [
    ['0', 0],
    ['123', 123],
    ['10B', 10],
    ['1kB', 1024],
    ['1KB', 1024],
    ['1kb', 1024],
    ['16MB', 16 * MB],
    ['16mb', 16 * MB],
    [' 16 MB ', 16 * MB],
    ['1.5MB', 1.5 * MB],
    ['1GB', 1024 * MB],
    ['2TB', 2 * 1024 * 1024 * MB],
  ];
  for (const [text, bytes] of good) it(`${JSON.stringify(text)} -> ${bytes}`, () => assert.equal(parseLagParam(text), bytes));

  const bad = ['', ' ', 'abc', '-1', '+5', '16XB', '16M', '1e3', 'MB', '0x10', '1,000', '99999999999TB', 'NaN', '16 M B'];
  for (const text of bad) it(`${JSON.stringify(text)} -> null`, () => assert.equal(parseLagParam(text), null));
});

describe('healthCheck: ?lag=', () => {
  it('compares the leader position with the received position', () => {
    assert.equal(status('/replica', snap(), 'lag=100'), 200);
    assert.equal(status('/replica', snap(), 'lag=99'), 503);
    assert.equal(status('/replica', snap(), 'lag=1kB'), 200);
    assert.equal(status('/async', snap(), 'lag=99'), 503);
    assert.equal(status('/async', snap(), 'lag=16MB'), 200);
  });
  it('applies to the replica side of /read-only, /sync and /read-only-sync', () => {
    const lagging = SCENARIOS['async replica restoring from archive']!;
    assert.equal(status('/read-only', lagging, 'lag=1MB'), 503);
    assert.equal(status('/read-only', lagging, 'lag=5MB'), 200);
    assert.equal(status('/sync', SCENARIOS['sync replica']!, 'lag=10'), 503);
    assert.equal(status('/read-only-sync', SCENARIOS['sync replica']!, 'lag=1kB'), 200);
    assert.equal(status('/read-only', SCENARIOS['primary leader']!, 'lag=0'), 200);
  });
  it('fails when the lag cannot be known, and ignores it without ?lag=', () => {
    const unknown = snap({ leaderLsn: null });
    assert.equal(status('/replica', unknown, 'lag=1GB'), 503);
    assert.equal(status('/replica', unknown), 200);
    assert.equal(status('/replica', snap({}, { receivedLsn: null }), 'lag=1GB'), 503);
  });
  it('treats a replica ahead of the published leader position as 0 behind', () => {
    const ahead = snap({}, { receivedLsn: 10 * MB + 500 });
    assert.equal(status('/replica', ahead, 'lag=0'), 200);
    assert.equal(body('/replica', ahead).lag, 0);
  });
  it('answers 400 naming the parameter and the accepted forms for a bad value', () => {
    for (const path of ['/replica', '/read-only', '/sync', '/read-only-sync', '/async', '/readiness']) {
      for (const s of [snap(), SCENARIOS['primary leader']!]) {
        const r = healthCheck(path, new URLSearchParams('lag=lots'), s);
        assert.equal(r?.status, 400, path);
        const b = r.body as { parameter: string; message: string };
        assert.equal(b.parameter, 'lag');
        assert.match(b.message, /"lots"/);
        assert.match(b.message, /16MB/);
      }
    }
  });
  it('is ignored by endpoints that do not use it', () => {
    assert.equal(status('/primary', SCENARIOS['primary leader']!, 'lag=lots'), 200);
    assert.equal(status('/health', snap(), 'lag=lots'), 200);
  });
});

describe('healthCheck: ?replication_state=', () => {
  const recovering = SCENARIOS['async replica restoring from archive']!;
  it('streaming excludes replicas restoring from archive', () => {
    assert.equal(status('/replica', snap(), 'replication_state=streaming'), 200);
    assert.equal(status('/replica', recovering, 'replication_state=streaming'), 503);
    assert.equal(status('/async', recovering, 'replication_state=streaming'), 503);
  });
  it('accepts the archive-recovery state under both names', () => {
    assert.equal(status('/replica', recovering, 'replication_state=in archive recovery'), 200);
    assert.equal(status('/replica', recovering, 'replication_state=recovering'), 200);
    assert.equal(status('/replica', snap(), 'replication_state=recovering'), 503);
  });
  it('answers 400 for an unknown state', () => {
    const r = healthCheck('/replica', new URLSearchParams('replication_state=live'), snap());
    assert.equal(r?.status, 400);
    assert.equal((r.body as { parameter: string }).parameter, 'replication_state');
  });
});

describe('healthCheck: ?tag_<key>=', () => {
  it('matches the string form of member tags', () => {
    assert.equal(status('/replica', snap(), 'tag_nofailover=false'), 200);
    assert.equal(status('/replica', snap(), 'tag_nofailover=true'), 503);
    assert.equal(status('/replica', snap(), 'tag_priority=100&tag_weight=1'), 200);
    assert.equal(status('/replica', snap(), 'tag_priority=100&tag_weight=2'), 503);
    assert.equal(status('/async', snap(), 'tag_clonefrom=true'), 503);
  });
  it('fails for a tag the member does not have', () => {
    assert.equal(status('/replica', snap(), 'tag_dc=east'), 503);
    assert.equal(status('/replica', snap(), 'tag_constructor=x'), 503);
  });
  it('is ignored by leader endpoints and by the primary side of /read-only', () => {
    const leader = SCENARIOS['primary leader']!;
    for (const path of ['/', '/primary', '/leader', '/read-only', '/read-only-sync']) {
      assert.equal(status(path, leader, 'tag_nofailover=true&tag_dc=east'), 200, path);
    }
  });
});

describe('healthCheck: /liveness timing', () => {
  const at = (isLeader: boolean, ageMs: number): number | undefined =>
    status('/liveness', snap({ isLeader, lastLoopAt: NOW - ageMs, ttlSeconds: 3 }, isLeader ? primary : {}));
  it('allows the lease TTL on the leader', () => {
    assert.equal(at(true, 3000), 200);
    assert.equal(at(true, 3001), 503);
  });
  it('allows twice the TTL on a replica', () => {
    assert.equal(at(false, 3001), 200);
    assert.equal(at(false, 6000), 200);
    assert.equal(at(false, 6001), 503);
  });
  it('does not depend on PostgreSQL', () => {
    assert.equal(status('/liveness', snap({ postgresRunning: false })), 200);
  });
});

describe('healthCheck: /readiness', () => {
  it('uses maximumLagOnFailover without ?lag=', () => {
    assert.equal(status('/readiness', snap({ maximumLagOnFailover: 100 })), 200);
    assert.equal(status('/readiness', snap({ maximumLagOnFailover: 99 })), 503);
  });
  it('?lag= overrides the limit; ?mode=apply compares the replayed position', () => {
    assert.equal(status('/readiness', snap(), 'lag=150'), 200);
    assert.equal(status('/readiness', snap(), 'lag=150&mode=write'), 200);
    assert.equal(status('/readiness', snap(), 'lag=150&mode=apply'), 503);
    assert.equal(status('/readiness', snap(), 'lag=300&mode=apply'), 200);
  });
  it('ignores noloadbalance and tags', () => {
    assert.equal(status('/readiness', SCENARIOS['replica with noloadbalance']!, 'tag_dc=east'), 200);
  });
  it('answers 400 for an unknown mode', () => {
    const r = healthCheck('/readiness', new URLSearchParams('mode=fast'), snap());
    assert.equal(r?.status, 400);
    assert.equal((r.body as { parameter: string }).parameter, 'mode');
  });
});

describe('healthCheck: body', () => {
  it('describes a primary with its write location', () => {
    const b = body('/primary', SCENARIOS['primary leader']!);
    assert.equal(b.state, 'running');
    assert.equal(b.role, 'primary');
    assert.equal(b.timeline, 3);
    assert.deepEqual(b.xlog, { location: 10 * MB });
    assert.equal(b.cluster, 'main');
    assert.equal(b.name, 'pg0');
    assert.equal(b.lag, 0);
    assert.equal(b.sync_standby, false);
    assert.equal(b.pause, false);
    assert.equal(b.replication_state, undefined);
    assert.deepEqual(b.tags, member().tags);
  });
  it('describes a replica with received and replayed locations', () => {
    const b = body('/primary', SCENARIOS['sync replica']!);
    assert.equal(b.role, 'replica');
    assert.deepEqual(b.xlog, { received_location: 10 * MB - 100, replayed_location: 10 * MB - 300 });
    assert.equal(b.lag, 100);
    assert.equal(b.sync_standby, true);
    assert.equal(b.replication_state, 'streaming');
    assert.equal(body('/', SCENARIOS['async replica restoring from archive']!).replication_state, 'in archive recovery');
  });
  it('reports a stopped or crashed member and the pause flag', () => {
    assert.equal(body('/health', SCENARIOS['leader with postgres down']!).state, 'crashed');
    assert.equal(body('/health', SCENARIOS['replica with postgres down']!).state, 'stopped');
    assert.equal(body('/health', snap({ postgresRunning: false })).state, 'stopped');
    assert.equal(body('/health', snap({ paused: true })).pause, true);
  });
  it('works before the member has published a record', () => {
    const b = body('/', SCENARIOS['no published record']!);
    assert.equal(b.name, null);
    assert.equal(b.timeline, null);
    assert.equal(b.lag, null);
  });
});
