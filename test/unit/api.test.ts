import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startApi, type ApiActions, type ApiOptions, type ApiServer } from '../../src/agent/api.js';
import type { HealthSnapshot } from '../../src/agent/health.js';
import { DEFAULT_DYNAMIC_CONFIG, type ClusterView, type MemberRecord } from '../../src/dcs/types.js';
import { BatonError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { member as sharedMember } from '../helpers/observation.js';

const TOKEN = 's3cret-token';

function member(name: string, over: Partial<MemberRecord> = {}): MemberRecord {
  return sharedMember(name, {
    host: '127.0.0.1',
    apiUrl: `http://127.0.0.1:8008/${name}`,
    timeline: 2,
    receivedLsn: 4000,
    replayedLsn: 3900,
    lagBytes: 96,
    tags: { priority: 100 },
    agentPid: 1,
    postmasterPid: 2,
    upstream: 'pg0',
    systemId: '1',
    updatedAt: '2024-01-01T00:00:00.000Z',
    ...over,
  });
}

const VIEW: ClusterView = {
  initialize: '1',
  config: { ...DEFAULT_DYNAMIC_CONFIG, paused: true },
  leader: { name: 'pg0', modRevision: '7' },
  members: [member('pg2'), member('pg0', { role: 'primary', state: 'running', lagBytes: null }), member('pg1')],
  sync: { leader: 'pg0', members: ['pg1'] },
  switchover: {
    kind: 'switchover',
    from: 'pg0',
    to: 'pg1',
    requestedAt: '2024-01-01T00:00:00.000Z',
    phase: 'requested',
    deadline: Date.UTC(2024, 0, 1, 0, 1),
    reason: 'operator',
  },
  history: [{ timeline: 2, lsn: 1234, at: '2024-01-01T00:00:00.000Z', leader: 'pg0', previousLeader: 'pg9', reason: 'failover' }],
  revision: '42',
};

const SNAPSHOT: HealthSnapshot = {
  self: member('pg1'),
  isLeader: false,
  postgresRunning: true,
  leaderLsn: 4096,
  syncMembers: ['pg1'],
  lastLoopAt: 1_700_000_000_000,
  now: 1_700_000_000_500,
  ttlSeconds: 3,
  maximumLagOnFailover: 1024 * 1024,
  cluster: 'main',
  paused: false,
};

interface Calls {
  switchover: Array<{ leader?: string; candidate?: string }>;
  failover: Array<{ candidate?: string }>;
  restart: number;
  reload: number;
}

function fakeActions(calls: Calls): ApiActions {
  return {
    switchover: async (body) => {
      calls.switchover.push(body);
      return { status: 202, message: `switchover to ${body.candidate ?? 'best'} scheduled` };
    },
    failover: async (body) => {
      calls.failover.push(body);
      return { status: 412, message: 'candidate is not healthy' };
    },
    restart: async () => {
      calls.restart++;
      return { status: 200, message: 'restarted' };
    },
    reinitialize: async () => {
      throw new Error('disk on fire');
    },
    lsn: async () => ({ receivedLsn: 4000, replayedLsn: 3900, timeline: 2, running: true }),
    reload: async () => {
      calls.reload++;
      return calls.reload === 1
        ? { status: 200, json: { applied: ['tags.weight'], needRestart: [], bootstrapOnly: [], pendingRestart: [] } }
        : { status: 400, json: { message: 'invalid configuration' } };
    },
  };
}

async function start(over: Partial<ApiOptions> = {}): Promise<{ api: ApiServer; base: string; calls: Calls }> {
  const calls: Calls = { switchover: [], failover: [], restart: 0, reload: 0 };
  const api = await startApi({
    host: '127.0.0.1',
    port: 0,
    token: TOKEN,
    member: 'pg1',
    cluster: 'main',
    logger: silentLogger(),
    snapshot: () => SNAPSHOT,
    clusterView: async () => VIEW,
    actions: fakeActions(calls),
    ...over,
  });
  return { api, base: `http://127.0.0.1:${api.port}`, calls };
}

const auth = (token = TOKEN): Record<string, string> => ({ Authorization: `Bearer ${token}` });

describe('REST API', () => {
  let api: ApiServer;
  let base: string;
  let calls: Calls;
  before(async () => ({ api, base, calls } = await start()));
  after(async () => api.close());

  it('listens on the port the OS picked', () => {
    assert.ok(api.port > 0);
  });

  it('answers health checks for GET with a body, HEAD and OPTIONS without', async () => {
    const get = await fetch(`${base}/replica`);
    assert.equal(get.status, 200);
    assert.match(get.headers.get('content-type') ?? '', /application\/json/);
    const body = (await get.json()) as Record<string, unknown>;
    assert.equal(body.role, 'replica');
    assert.equal(body.sync_standby, true);

    const head = await fetch(`${base}/replica`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');

    const options = await fetch(`${base}/primary`, { method: 'OPTIONS' });
    assert.equal(options.status, 503);
    assert.equal(await options.text(), '');
    assert.equal(options.headers.get('allow'), 'GET, HEAD, OPTIONS');

    assert.equal((await fetch(`${base}/`, { method: 'HEAD' })).status, 503);
    assert.equal((await fetch(`${base}/sync`, { method: 'OPTIONS' })).status, 200);
    assert.equal((await fetch(`${base}/async`)).status, 503);
    assert.equal((await fetch(`${base}/replica?lag=10`)).status, 503);
  });

  it('answers 400 naming the bad health parameter', async () => {
    const res = await fetch(`${base}/replica?lag=fast`);
    assert.equal(res.status, 400);
    const body = (await res.json()) as { parameter: string; message: string };
    assert.equal(body.parameter, 'lag');
    assert.match(body.message, /16MB/);
  });

  it('requires the bearer token on POST /switchover', async () => {
    const none = await fetch(`${base}/switchover`, { method: 'POST', body: '{}' });
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);

    const wrong = await fetch(`${base}/switchover`, { method: 'POST', body: '{}', headers: auth('nope') });
    assert.equal(wrong.status, 401);
    assert.match(wrong.headers.get('www-authenticate') ?? '', /invalid_token/);
    assert.equal(calls.switchover.length, 0);

    const ok = await fetch(`${base}/switchover`, {
      method: 'POST',
      body: JSON.stringify({ leader: 'pg0', candidate: 'pg2' }),
      headers: auth(),
    });
    assert.equal(ok.status, 202);
    assert.deepEqual(await ok.json(), { message: 'switchover to pg2 scheduled' });
    assert.deepEqual(calls.switchover, [{ leader: 'pg0', candidate: 'pg2' }]);
  });

  it('passes action statuses through and survives an action that throws', async () => {
    const failover = await fetch(`${base}/failover`, { method: 'POST', body: '{"candidate":"pg2"}', headers: auth() });
    assert.equal(failover.status, 412);
    assert.deepEqual(calls.failover, [{ candidate: 'pg2' }]);

    const restart = await fetch(`${base}/restart`, { method: 'POST', headers: auth() });
    assert.equal(restart.status, 200);
    assert.equal(calls.restart, 1);

    const reload = await fetch(`${base}/reload`, { method: 'POST', headers: auth() });
    assert.equal(reload.status, 200);
    assert.deepEqual(((await reload.json()) as { applied: string[] }).applied, ['tags.weight']);
    const refused = await fetch(`${base}/reload`, { method: 'POST', headers: auth() });
    assert.equal(refused.status, 400);
    assert.equal(calls.reload, 2);

    const reinit = await fetch(`${base}/reinitialize`, { method: 'POST', headers: auth() });
    assert.equal(reinit.status, 500);
    assert.match(((await reinit.json()) as { error: string }).error, /disk on fire/);
    assert.equal((await fetch(`${base}/health`)).status, 200);
  });

  it('answers 400 for bodies that are not a JSON object or have wrong field types', async () => {
    const bad = await fetch(`${base}/switchover`, { method: 'POST', body: '{"leader":', headers: auth() });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: string }).error, /not valid JSON/);

    const array = await fetch(`${base}/switchover`, { method: 'POST', body: '[1]', headers: auth() });
    assert.equal(array.status, 400);
    assert.match(((await array.json()) as { error: string }).error, /JSON object/);

    const type = await fetch(`${base}/failover`, { method: 'POST', body: '{"candidate":5}', headers: auth() });
    assert.equal(type.status, 400);
    assert.match(((await type.json()) as { error: string }).error, /"candidate"/);
  });

  it('answers 413 for a body over 64 kB', async () => {
    const huge = JSON.stringify({ candidate: 'x'.repeat(1024 * 1024) });
    const res = await fetch(`${base}/switchover`, { method: 'POST', body: huge, headers: auth() });
    assert.equal(res.status, 413);
    assert.equal(calls.switchover.length, 1);
  });

  it('answers 413 for a chunked body over 64 kB', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${base}/failover`, { method: 'POST', headers: auth() }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      for (let i = 0; i < 20; i++) req.write('x'.repeat(8 * 1024));
      req.end();
    });
    assert.equal(status, 413);
  });

  it('answers 404 and 405 with JSON', async () => {
    const missing = await fetch(`${base}/nope`);
    assert.equal(missing.status, 404);
    assert.match(((await missing.json()) as { error: string }).error, /\/nope/);

    const post = await fetch(`${base}/cluster`, { method: 'POST', headers: auth() });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');

    const get = await fetch(`${base}/switchover`);
    assert.equal(get.status, 405);
    assert.equal(get.headers.get('allow'), 'POST');

    const put = await fetch(`${base}/primary`, { method: 'PUT' });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get('allow'), 'GET, HEAD, OPTIONS');
  });

  it('GET /cluster lists members with their roles, pause and the pending switchover', async () => {
    const body = (await (await fetch(`${base}/cluster`)).json()) as {
      members: Array<Record<string, unknown>>;
      pause: boolean;
      switchover: Record<string, unknown>;
    };
    assert.deepEqual(
      body.members.map((m) => [m.name, m.role]),
      [
        ['pg0', 'leader'],
        ['pg1', 'sync_standby'],
        ['pg2', 'replica'],
      ],
    );
    assert.deepEqual(Object.keys(body.members[1]!).sort(), [
      'api_url',
      'host',
      'lag',
      'name',
      'port',
      'role',
      'state',
      'tags',
      'timeline',
    ]);
    assert.equal(body.members[1]!.lag, 96);
    assert.equal(body.pause, true);
    assert.equal(body.switchover.to, 'pg1');
    assert.equal(body.switchover.deadline, '2024-01-01T00:01:00.000Z');
  });

  it('GET /history, /config and /lsn', async () => {
    assert.deepEqual(await (await fetch(`${base}/history`)).json(), [
      [2, 1234, 'failover', '2024-01-01T00:00:00.000Z', 'pg0'],
    ]);
    assert.deepEqual(await (await fetch(`${base}/config`)).json(), VIEW.config);
    assert.deepEqual(await (await fetch(`${base}/lsn`)).json(), {
      member: 'pg1',
      receivedLsn: 4000,
      replayedLsn: 3900,
      timeline: 2,
      running: true,
    });
  });

  it('GET /metrics exposes the member gauges', async () => {
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    const labels = '{cluster="main",member="pg1"}';
    for (const line of [
      `baton_postgres_running${labels} 1`,
      `baton_is_leader${labels} 0`,
      `baton_timeline${labels} 2`,
      `baton_received_lsn_bytes${labels} 4000`,
      `baton_replayed_lsn_bytes${labels} 3900`,
      `baton_lag_bytes${labels} 96`,
      `baton_last_loop_timestamp_seconds${labels} 1700000000`,
    ]) {
      assert.ok(text.includes(line), `missing ${line} in\n${text}`);
    }
  });

  it('survives a malformed HTTP request', async () => {
    await new Promise<void>((resolve) => {
      const sock = net.connect(api.port, '127.0.0.1', () => sock.write('NONSENSE\r\n\r\n'));
      sock.on('data', () => undefined);
      sock.on('close', () => resolve());
      sock.on('error', () => resolve());
    });
    assert.equal((await fetch(`${base}/health`)).status, 200);
  });
});

describe('REST API without a token', () => {
  it('answers 403 on changing endpoints', async () => {
    const { api, base, calls } = await start({ token: null });
    try {
      for (const path of ['/switchover', '/failover', '/restart', '/reload', '/reinitialize']) {
        const res = await fetch(`${base}${path}`, { method: 'POST', body: '{}', headers: auth() });
        assert.equal(res.status, 403, path);
        assert.match(((await res.json()) as { error: string }).error, /no api token configured; set restapi.token/);
      }
      assert.equal(calls.switchover.length, 0);
      assert.equal((await fetch(`${base}/lsn`)).status, 200);
    } finally {
      await api.close();
    }
  });
});

describe('REST API errors', () => {
  it('answers 503 when the cluster state cannot be read, and logs it with member and cluster', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const { api, base } = await start({
      logger: pino({ level: 'debug' }, sink),
      clusterView: async () => {
        throw new Error('etcd unreachable');
      },
    });
    try {
      const res = await fetch(`${base}/cluster`);
      assert.equal(res.status, 503);
      assert.match(((await res.json()) as { error: string }).error, /etcd unreachable/);
      const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.status === 503);
      assert.ok(logged);
      assert.equal(logged.member, 'pg1');
      assert.equal(logged.cluster, 'main');
      assert.equal(logged.path, '/cluster');
    } finally {
      await api.close();
    }
  });

  it('rejects with a clear BatonError when the port is in use', async () => {
    const { api } = await start();
    try {
      await assert.rejects(start({ port: api.port }), (err: unknown) => {
        assert.ok(err instanceof BatonError);
        assert.equal(err.message, `REST API port 127.0.0.1:${api.port} is already in use`);
        assert.match(err.hint ?? '', /restapi\.listen/);
        return true;
      });
    } finally {
      await api.close();
    }
  });
});
