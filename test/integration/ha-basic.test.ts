// Three members come up; replication, status, switchover, standby/unstandby and pause on a real cluster.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import net from 'node:net';
import tls from 'node:tls';
import pg from 'pg';
import YAML from 'yaml';
import { freePort } from '../../src/util/net.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { setStandby, switchover, updateConfig } from '../../src/agent/requests.js';

const run = promisify(execFile);
let t: TestCluster;

before(async () => {
  t = await startCluster();
});
after(async () => {
  await t?.stop();
});

test('a row written on the leader is read on both replicas', async () => {
  const leader = await t.leader();
  const db = await t.client(leader.name);
  await db.query('CREATE TABLE basic(id int primary key, v text)');
  await db.query("INSERT INTO basic VALUES (1, 'hello')");
  await db.end();
  for (const m of t.c.members.filter((x) => x.name !== leader.name)) {
    const r = await t.client(m.name);
    let rows: unknown[] = [];
    for (let i = 0; i < 100 && rows.length === 0; i++) {
      // Until the replica replays the CREATE TABLE the relation does not exist there: wait, as for the row.
      rows = await r.query('SELECT v FROM basic WHERE id = 1').then(
        (x) => x.rows,
        (err: { code?: string }) => {
          if (err.code === '42P01') return [];
          throw err;
        },
      );
      if (!rows.length) await new Promise((res) => setTimeout(res, 50));
    }
    const ro = await r.query<{ ro: boolean }>('SELECT pg_is_in_recovery() AS ro');
    await r.end();
    assert.deepEqual(rows, [{ v: 'hello' }], `row on ${m.name}`);
    assert.equal(ro.rows[0]?.ro, true, `${m.name} is a replica`);
  }
  const view = await t.waitFor('a confirmed synchronous standby', (v) => (v.sync?.members.length ? v : null));
  assert.equal(view.sync?.leader, leader.name);
  assert.equal(view.sync?.members.length, 1, 'one synchronous standby');
});

test('status --json gives process ids and a multi-host read-write URI', async () => {
  const { stdout } = await run(process.execPath, ['bin/baton.js', 'status', '--json', '--dir', t.c.dir]);
  const s = JSON.parse(stdout) as {
    leader: string;
    members: { name: string; agentPid: number; postmasterPid: number; state: string }[];
    uris: { readWrite: string };
    proxies: { readWrite: string; holding: string | null }[];
  };
  assert.equal(s.members.length, 3);
  assert.deepEqual(
    s.proxies.map((p) => [p.readWrite, p.holding]),
    [[`${t.c.host}:${t.c.proxy!.readWritePort}`, null]],
    'the local proxy, as registered in etcd',
  );
  for (const m of s.members) {
    assert.ok(m.agentPid > 0 && m.postmasterPid > 0, `pids of ${m.name}`);
    assert.equal(m.agentPid, t.member(m.name).agentPid);
    assert.equal(m.postmasterPid, t.postmasterPid(m.name));
  }
  assert.match(s.uris.readWrite, /^postgresql:\/\/postgres@127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+\/postgres\?target_session_attrs=read-write/);
  const text = await run(process.execPath, ['bin/baton.js', 'status', '--dir', t.c.dir]);
  assert.match(text.stdout, /Leader/);
  assert.match(text.stdout, /Sync Standby/);
  assert.match(text.stdout, /streaming/);
  assert.match(text.stdout, new RegExp(`Proxies in etcd: \\S+ \\(read-write ${t.c.host}:${t.c.proxy!.readWritePort}, `));
});

test('pool prints SHOW POOL_NODES, and --json the same rows typed', async () => {
  const view = await t.waitFor('two streaming replicas', (v) => (v.leader && v.members.filter((m) => m.state === 'streaming').length === 2 ? v : null));
  const { stdout } = await run(process.execPath, ['bin/baton.js', 'pool', '--json', '--dir', t.c.dir]);
  const rows = JSON.parse(stdout) as { hostname: string; port: number; role: string; status: string; load_balance_node: boolean; lb_weight: number }[];
  assert.deepEqual(
    rows.map((r) => [r.port, r.role, r.status]).sort(),
    view.members.map((m) => [t.member(m.name).pgPort, m.name === view.leader?.name ? 'primary' : 'standby', 'up']).sort(),
  );
  assert.ok(rows.every((r) => typeof r.lb_weight === 'number' && typeof r.load_balance_node === 'boolean'));
  const text = await run(process.execPath, ['bin/baton.js', 'pool', '--dir', t.c.dir]);
  assert.match(text.stdout, /node_id \| hostname +\| port +\| status/);
  const refused = await run(process.execPath, ['bin/baton.js', 'pool', '--admin', '127.0.0.1:1', '--password', 'x']).catch((e: { code: number; stderr: string }) => e);
  assert.ok('code' in refused && refused.code !== 0);
  assert.match(refused.stderr, /cannot reach the proxy's admin console at 127\.0\.0\.1:1/);
});

test('SIGHUP: a proxy reloads its file (live settings now, the rest at restart; a bad file changes nothing), RELOAD does the same', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-reload-'));
  const file = path.join(dir, 'proxy.yml');
  const logFile = path.join(dir, 'proxy.log');
  const write = (extra: string, readOnlyPort = 0) =>
    fs.writeFileSync(
      file,
      [
        `cluster: ${t.c.cluster}`,
        'name: reload-test',
        `etcd: { hosts: ['${t.c.host}:${t.c.etcd.clientPort}'] }`,
        `listen: { read_write: 127.0.0.1:0, read_only: 127.0.0.1:${readOnlyPort}, admin: 127.0.0.1:0 }`,
        extra,
      ].join('\n') + '\n',
    );
  const logLines = () => fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const waitLog = async (msg: string, after = 0) => {
    for (let i = 0; i < 100; i++) {
      const hit = logLines().slice(after).find((l) => l.msg === msg);
      if (hit) return hit;
      await new Promise((r) => setTimeout(r, 100));
    }
    return assert.fail(`no log line "${msg}" in ${logFile}`);
  };
  write("admin_password: 'first-password'");
  const child = spawn(process.execPath, ['bin/baton.js', 'proxy', '--config', file], { stdio: ['ignore', fs.openSync(logFile, 'w'), 'inherit'] });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    const ports = (await waitLog('proxy listening')).ports as { readWrite: number; readOnly: number; admin: number };
    const admin = async (password: string, sql: string) => {
      const c = new pg.Client({ host: '127.0.0.1', port: ports.admin, user: 'admin', database: 'baton', password });
      c.on('error', () => undefined);
      await c.connect();
      try {
        return (await c.query(sql)).rows as Record<string, string>[];
      } finally {
        await c.end();
      }
    };
    assert.ok((await admin('first-password', 'SHOW HELP')).length > 0);

    let seen = logLines().length;
    // A new admin password and pause timeout apply now; a new read-only port waits for a restart.
    write("admin_password: 'second-password'\npause_timeout: 20", 1);
    child.kill('SIGHUP');
    const reloaded = await waitLog('configuration reloaded', seen);
    assert.deepEqual((reloaded.applied as string[]).sort(), ['admin_password', 'pause_timeout']);
    assert.deepEqual(reloaded.needRestart, ['listen.read_only']);
    await assert.rejects(admin('first-password', 'SHOW HELP'), /password authentication failed/);
    const config = new Map((await admin('second-password', 'SHOW CONFIG')).map((r) => [r.setting, r.value]));
    assert.equal(config.get('pause_timeout'), '20', 'SHOW CONFIG shows the reloaded value');
    assert.equal(config.get('listen.read_only'), '127.0.0.1:0', 'and the read-only listener it still runs with');
    assert.ok((await admin('second-password', 'SHOW HELP')).length > 0, 'the new admin password applies to the next login');

    seen = logLines().length;
    write("admin_password: 'second-password'\npause_timeout: -1");
    child.kill('SIGHUP');
    const refused = await waitLog('configuration not reloaded; running on as before', seen);
    assert.match(String(refused.err), /pause_timeout/);
    assert.ok((await admin('second-password', 'SHOW HELP')).length > 0, 'a file that does not parse changes nothing');

    write("admin_password: 'third-password'\npause_timeout: 20");
    const rows = await admin('second-password', 'RELOAD');
    assert.deepEqual(rows, [{ setting: 'admin_password', outcome: 'applied' }]);
    assert.ok((await admin('third-password', 'SHOW HELP')).length > 0);

    // A certificate rotated in place: new files at the same paths, then RELOAD.
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    const newCertificate = async (cn: string) =>
      run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${cn}`, '-keyout', key, '-out', cert]);
    const servedCN = () =>
      new Promise<string>((resolve, reject) => {
        // An SSLRequest, then TLS on the read-write port: which certificate does the proxy show?
        const s = net.connect(ports.readWrite, '127.0.0.1', () => s.write(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47])));
        s.once('data', (b: Buffer) => {
          if (b.toString() !== 'S') return reject(new Error(`no TLS: ${JSON.stringify(b.toString())}`));
          const t2 = tls.connect({ socket: s, rejectUnauthorized: false }, () => {
            resolve(String(t2.getPeerCertificate().subject.CN));
            t2.destroy();
          });
          t2.on('error', reject);
        });
        s.on('error', reject);
      });
    await newCertificate('first-cert');
    write(`admin_password: 'third-password'\npause_timeout: 20\ntls: { cert: '${cert}', key: '${key}' }`);
    assert.deepEqual(await admin('third-password', 'RELOAD'), [{ setting: 'tls', outcome: 'applied' }]);
    assert.equal(await servedCN(), 'first-cert');
    await newCertificate('second-cert');
    assert.deepEqual(await admin('third-password', 'RELOAD'), [{ setting: 'tls', outcome: 'applied' }], 'the same paths, new files');
    assert.equal(await servedCN(), 'second-cert');
    assert.deepEqual(await admin('third-password', 'RELOAD'), [], 'nothing changed');
    assert.equal(child.exitCode, null, 'the proxy is still running');
  } finally {
    child.kill('SIGTERM');
    assert.equal(await exited, 0, 'a graceful stop');
    fs.rmSync(dir, { recursive: true, force: true });
  }

});

test('an agent reloads its file (SIGHUP, baton node reload): tags reach the proxy, parameters reach PostgreSQL, a parameter PostgreSQL refuses changes nothing; baton node restart applies the rest', async () => {
  const leader = await t.leader();
  const m = t.member(t.c.members.find((x) => x.name !== leader.name)!.name);
  const original = fs.readFileSync(m.configFile, 'utf8');
  const edit = (fn: (doc: { tags?: Record<string, unknown>; postgresql: { parameters?: Record<string, unknown> }; restapi: Record<string, unknown> }) => void) => {
    const doc = YAML.parse(original) as Parameters<typeof fn>[0];
    fn(doc);
    fs.writeFileSync(m.configFile, YAML.stringify(doc));
  };
  const logLines = (from: number) => fs.readFileSync(m.agentLog, 'utf8').slice(from).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const waitLog = async (from: number, msg: RegExp) => {
    for (let i = 0; i < 100; i++) {
      const hit = logLines(from).find((l) => msg.test(String(l.msg)));
      if (hit) return hit;
      await new Promise((r) => setTimeout(r, 100));
    }
    return assert.fail(`no log line ${msg} in ${m.agentLog}`);
  };
  const setting = async (name: string) => {
    const db = await t.client(m.name);
    try {
      return (await db.query<{ setting: string }>(`SELECT current_setting('${name}') AS setting`)).rows[0]!.setting;
    } finally {
      await db.end();
    }
  };
  const cli = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    run(process.execPath, ['bin/baton.js', 'node', 'reload', ...args, '--dir', t.c.dir]).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
  try {
    // SIGHUP: a new weight and a reloadable parameter apply; a new API port waits for a restart.
    const from = fs.statSync(m.agentLog).size;
    edit((d) => {
      d.tags = { ...d.tags, weight: 7 };
      d.postgresql.parameters = { ...d.postgresql.parameters, work_mem: '7MB' };
      d.restapi.listen = '127.0.0.1:1';
    });
    process.kill(m.agentPid!, 'SIGHUP');
    const reloaded = await waitLog(from, /^configuration reloaded/);
    assert.deepEqual(reloaded.applied, ['tags.weight', 'postgresql.parameters.work_mem']);
    assert.deepEqual(reloaded.needRestart, ['restapi.listen', 'restapi.connect_address']); // the second follows the first
    assert.equal(reloaded.member, m.name, 'the log line names the member');
    await t.waitFor('the new weight in etcd', (v) => v.members.find((x) => x.name === m.name)?.tags.weight === 7);
    for (let i = 0; (await setting('work_mem')) !== '7MB'; i++) {
      assert.ok(i < 50, 'PostgreSQL took work_mem = 7MB');
      await new Promise((r) => setTimeout(r, 100));
    }
    // The proxy balances by it: 7 of the replicas' weights (the other member keeps 1, the leader too).
    for (let i = 0; ; i++) {
      const { stdout } = await run(process.execPath, ['bin/baton.js', 'pool', '--json', '--dir', t.c.dir]);
      const row = (JSON.parse(stdout) as { hostname: string; port: number; lb_weight: number }[]).find((r) => r.port === m.pgPort)!;
      if (Math.abs(row.lb_weight - 7 / 9) < 1e-6) break;
      assert.ok(i < 50, `the proxy's lb_weight follows (${row.lb_weight})`);
      await new Promise((r) => setTimeout(r, 100));
    }

    // baton node reload: PostgreSQL refuses a value, and nothing changes (file, setting, the agent).
    edit((d) => {
      d.tags = { ...d.tags, weight: 7 };
      d.postgresql.parameters = { ...d.postgresql.parameters, work_mem: 'lots', shared_buffers: '48MB' };
    });
    const conf = path.join(m.dataDir, 'postgresql.conf');
    const confBefore = fs.readFileSync(conf, 'utf8');
    const refused = await cli(m.name);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, new RegExp(`${m.name}: not reloaded: 400: .*invalid value for parameter "work_mem": "lots"`));
    assert.equal(fs.readFileSync(conf, 'utf8'), confBefore, 'postgresql.conf is untouched');
    assert.ok(!fs.existsSync(`${conf}.baton-candidate`), 'no candidate file is left behind');
    assert.equal(await setting('work_mem'), '7MB');
    process.kill(m.agentPid!, 0); // throws if it is gone
    // A standby below its primary's max_connections would not start again: refused before it is written.
    edit((d) => {
      d.tags = { ...d.tags, weight: 7 };
      d.postgresql.parameters = { ...d.postgresql.parameters, work_mem: '7MB', max_connections: 50 };
    });
    const tooFew = await cli(m.name);
    assert.equal(tooFew.code, 1);
    assert.match(tooFew.stdout, new RegExp(`${m.name}: not reloaded: 400: a standby must not run with less of these than its primary.*max_connections = 50 \\(the primary's: 100\\)`));
    assert.equal(fs.readFileSync(conf, 'utf8'), confBefore, 'postgresql.conf is untouched');
    assert.ok(!fs.existsSync(`${conf}.baton-candidate`), 'no candidate file is left behind');

    // A setting PostgreSQL takes only at a restart is named as such; the other members have nothing new.
    edit((d) => {
      d.tags = { ...d.tags, weight: 7 };
      d.postgresql.parameters = { ...d.postgresql.parameters, work_mem: '7MB', shared_buffers: '48MB' };
    });
    const all = await cli();
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, new RegExp(`${m.name}: applied postgresql.parameters.shared_buffers`));
    assert.match(all.stdout, new RegExp(`${m.name}: PostgreSQL takes these at its next restart \\(baton node restart ${m.name}\\): shared_buffers`));
    assert.match(all.stdout, new RegExp(`${leader.name}: nothing changed`));
    // baton node restart applies it; the leader is refused without --force.
    const restart = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
      run(process.execPath, ['bin/baton.js', 'node', 'restart', ...args, '--dir', t.c.dir]).then(
        (r) => ({ code: 0, ...r }),
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
    const refusedLeader = await restart(leader.name);
    assert.equal(refusedLeader.code, 1);
    assert.match(refusedLeader.stderr, new RegExp(`${leader.name} is the leader: restarting its PostgreSQL stops writes`));
    const restarted = await restart(m.name);
    assert.equal(restarted.code, 0, restarted.stderr);
    assert.match(restarted.stdout, new RegExp(`${m.name} is streaming again \\(`));
    assert.equal(await setting('shared_buffers'), '48MB');
    assert.equal(await setting('work_mem'), '7MB');
    const badToken = await cli(m.name, '--token', 'not-the-token-at-all');
    assert.equal(badToken.code, 1);
    assert.match(badToken.stdout, /401: invalid API token/);
  } finally {
    fs.writeFileSync(m.configFile, original);
    await cli(m.name);
  }
});

test('switchover to a named member, then the old leader streams from it', async () => {
  const before = await t.leader();
  const target = t.c.members.find((m) => m.name !== before.name)!.name;
  const r = await switchover(t.store, { to: target });
  assert.equal(r.to, target);
  const view = await t.waitFor('old leader streaming from the new one', (v) =>
    v.members.find((m) => m.name === before.name && m.role === 'replica' && m.state === 'streaming') ? v : null,
  );
  assert.equal(view.leader?.name, target);
  const db = await t.client(target);
  await db.query("INSERT INTO basic VALUES (2, 'after switchover')");
  await db.end();
  assert.ok(view.history.length >= 2, 'switchover recorded in history');
  assert.match(view.history.at(-1)!.reason, /switchover/);
});

test('a switchover to an unknown member or to the leader is refused', async () => {
  const leader = await t.leader();
  await assert.rejects(switchover(t.store, { to: 'nosuch' }), /not in the cluster/);
  await assert.rejects(switchover(t.store, { to: leader.name }), /already the leader/);
  const cli = await run(process.execPath, ['bin/baton.js', 'switchover', '--to', 'nosuch', '--dir', t.c.dir]).catch((e: { code: number; stderr: string }) => e);
  assert.equal((cli as { code: number }).code, 1);
  assert.match((cli as { stderr: string }).stderr, /nosuch/);
});

test('node standby moves leadership away and keeps the member from leading; unstandby allows it again', async () => {
  const leader = await t.leader();
  await setStandby(t.store, leader.name, true);
  const moved = await t.waitFor('leadership to move', (v) =>
    v.leader && v.leader.name !== leader.name && v.members.find((m) => m.name === v.leader?.name)?.state === 'running' ? v : null,
  );
  assert.notEqual(moved.leader?.name, leader.name);
  await assert.rejects(switchover(t.store, { to: leader.name }), /standby/);
  await setStandby(t.store, leader.name, false);
  await t.waitFor('member back as a streaming replica', (v) => v.members.find((m) => m.name === leader.name && m.state === 'streaming'));
  const back = await switchover(t.store, { to: leader.name });
  assert.equal(back.to, leader.name);
});

test('a second agent with the name of a live member is refused and disturbs nothing', async () => {
  const victim = t.c.members[1]!;
  await t.waitFor('every member settled', (v) => v.members.length === 3 && v.members.every((m) => m.state === 'running' || m.state === 'streaming'));
  const pmBefore = t.postmasterPid(victim.name);
  assert.ok(pmBefore);
  const cfg = fs.readFileSync(victim.configFile, 'utf8')
    .replace(/listen: 127\.0\.0\.1:\d+\n(\s+authentication)/, `listen: 127.0.0.1:${await freePort()}\n$1`)
    .replace(/data_dir: .*/, `data_dir: ${path.join(t.c.dir, 'dup-data')}`)
    .replace(/(restapi:\n\s+listen: )127\.0\.0\.1:\d+/, `$1127.0.0.1:${await freePort()}`);
  const file = path.join(t.c.dir, 'dup.yml');
  fs.writeFileSync(file, cfg);
  const r = await run(process.execPath, ['bin/baton.js', 'agent', '--config', file], { timeout: 30_000 }).catch(
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
  assert.equal((r as { code: number }).code, 1);
  assert.match(`${(r as { stdout: string }).stdout}${(r as { stderr: string }).stderr}`, new RegExp(`member name \\\\?"${victim.name}\\\\?" is already used by a live agent`));
  assert.equal(fs.existsSync(path.join(t.c.dir, 'dup-data')), false);
  assert.equal(t.postmasterPid(victim.name), pmBefore, 'the live member keeps its PostgreSQL');
  const v = await t.view();
  assert.equal(v.members.find((m) => m.name === victim.name)?.agentPid, t.member(victim.name).agentPid);
});

test('a data directory left by an interrupted clone is discarded and cloned again', async () => {
  const view = await t.waitFor('all members settled', (v) => v.members.length === 3 && v.members.every((m) => m.state === 'running' || m.state === 'streaming') ? v : null);
  const replica = view.members.find((m) => m.name !== view.leader?.name)!.name;
  const m = t.member(replica);
  await t.kill(replica, { agent: true, postmaster: true });
  fs.writeFileSync(`${m.dataDir}.clone-in-progress`, 'simulated crash during pg_basebackup\n');
  fs.writeFileSync(path.join(m.dataDir, 'leftover-from-interrupted-clone'), 'x');
  t.startAgent(replica);
  const pid = t.member(replica).agentPid;
  await t.waitFor('the new agent streams', (v) => v.members.find((x) => x.name === replica && x.agentPid === pid && x.state === 'streaming'), 90_000);
  assert.equal(fs.existsSync(path.join(m.dataDir, 'leftover-from-interrupted-clone')), false, 'the partial copy was replaced');
  assert.equal(fs.existsSync(`${m.dataDir}.clone-in-progress`), false, 'the marker is gone after the clone');
});

test('pause prevents automatic failover; resume lets it happen', async () => {
  await updateConfig(t.store, (c) => ({ ...c, paused: true }));
  await t.waitFor('every member to see the pause', (v) => v.config.paused);
  const leader = await t.leader();
  await t.kill(leader.name, { agent: true, postmaster: true });
  await t.waitFor('leader key to expire', (v) => v.leader === null, 15_000);
  await new Promise((r) => setTimeout(r, 4000));
  const view = await t.view();
  assert.equal(view.leader, null, 'nobody took over while paused');
  for (const m of t.c.members.filter((x) => x.name !== leader.name)) {
    const db = await t.client(m.name);
    const r = await db.query<{ ro: boolean }>('SELECT pg_is_in_recovery() AS ro');
    await db.end();
    assert.equal(r.rows[0]?.ro, true, `${m.name} still a replica`);
  }
  await updateConfig(t.store, (c) => ({ ...c, paused: false }));
  const newLeader = await t.leader();
  assert.notEqual(newLeader.name, leader.name);
  t.startAgent(leader.name);
  await t.waitFor('old leader rejoins', (v) => v.members.find((m) => m.name === leader.name && m.state === 'streaming'), 90_000);
});
