// Real PostgreSQL 15: initdb, clone through a slot, streaming, crash, promotion, pg_rewind.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PostgresInstance } from '../../src/postgres/instance.js';
import type { InstanceOptions, ManagedSettings } from '../../src/postgres/types.js';
import { ensureDirFor, runAsFor } from '../../src/util/os-user.js';
import { freePort } from '../../src/util/net.js';
import { createLogger, silentLogger } from '../../src/util/log.js';
import { removeOrphanedDsmSegments } from '../../src/postgres/dsm.js';

const BIN = process.env.PG_BIN_DIR ?? '/usr/lib/postgresql/15/bin';
const OS_USER = process.env.BATON_TEST_OS_USER ?? 'postgres';
const log = process.env.BATON_TEST_LOG ? createLogger({ cluster: 'test', component: 'test' }) : silentLogger();

async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== null && v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
    await sleep(100);
  }
}

describe('PostgresInstance', () => {
  let dir: string;
  const instances: PostgresInstance[] = [];
  let p1: PostgresInstance;
  let p2: PostgresInstance;

  function make(name: string, port: number): PostgresInstance {
    const opts: InstanceOptions = {
      binDir: BIN,
      dataDir: path.join(dir, name, 'data'),
      logFile: path.join(dir, name, 'postgres.log'),
      listenHost: '127.0.0.1',
      port,
      advertiseHost: '127.0.0.1',
      osUser: OS_USER,
      superuser: { username: 'postgres', password: 'super secret' },
      // A quote and a backslash: must survive postgresql.conf and conninfo quoting.
      replication: { username: 'replicator', password: "re'pl\\pw" },
      memberName: name,
      parameters: { log_min_messages: 'warning' },
    };
    const inst = new PostgresInstance(opts, log);
    instances.push(inst);
    return inst;
  }

  const settings = (upstream: ManagedSettings['upstream']): ManagedSettings => ({
    upstream,
    synchronousStandbyNames: '',
    memberHosts: ['127.0.0.1'],
  });

  async function one<T>(inst: PostgresInstance, sql: string): Promise<T | undefined> {
    return (await inst.query<{ v: T }>(sql))[0]?.v;
  }

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-pg-test-'));
    ensureDirFor(dir, runAsFor(OS_USER), 0o755);
    p1 = make('p1', await freePort());
    p2 = make('p2', await freePort());
  });

  after(async () => {
    for (const inst of instances) {
      await inst.stop('immediate', 10_000).catch(() => undefined);
      await inst.close();
    }
    // The last test leaves p2 killed: its shared memory segments would outlive its data directory.
    removeOrphanedDsmSegments(dir, instances.map((i) => i.opts.dataDir));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('new parameters for a member without a data directory are checked by PostgreSQL and kept for it', async () => {
    const p0 = make('p0', await freePort());
    await assert.rejects(p0.setParameters({ work_mem: 'lots' }), /PostgreSQL refuses postgresql.parameters: invalid value for parameter "work_mem": "lots"/);
    assert.deepEqual(await p0.setParameters({ work_mem: '8MB' }), { pendingRestart: [] });
    assert.deepEqual(p0.opts.parameters, { work_mem: '8MB' });
    assert.ok(!fs.existsSync(p0.opts.dataDir), 'nothing is written where the data directory will be');
  });

  it('initdb creates a running primary with a replication role', async () => {
    await p1.initdb(settings(null));
    assert.ok(p1.hasDataDir());
    assert.ok(p1.isRunning());
    const st = await p1.status();
    assert.equal(st.running, true);
    assert.equal(st.accepting, true);
    assert.equal(st.inRecovery, false);
    assert.equal(st.timeline, 1);
    assert.ok(st.receivedLsn !== null && st.receivedLsn > 0);
    assert.match(st.systemId ?? '', /^\d+$/);
    assert.equal(await one<boolean>(p1, "SELECT rolreplication AS v FROM pg_roles WHERE rolname = 'replicator'"), true);
    const cd = await p1.controlData();
    assert.equal(cd.state, 'in production');
    assert.equal(cd.systemId, st.systemId);
    // What a standby of it will have to match (src/postgres/hot-standby.ts): Baton's max_connections, PostgreSQL's defaults.
    assert.deepEqual(cd.hotStandbySettings, { max_connections: 100, max_worker_processes: 8, max_wal_senders: 10, max_prepared_transactions: 0, max_locks_per_transaction: 64 });
    const mode = fs.statSync(path.join(p1.opts.dataDir, 'baton.conf')).mode & 0o777;
    assert.equal(mode, 0o600);
  });

  it('clones a replica through a slot created before the copy, which then streams', async () => {
    const progress: number[] = [];
    const cloning = p2.cloneFrom({ host: '127.0.0.1', port: p1.opts.port }, 'p2', (p) => progress.push(p.doneBytes));
    // A reload while pg_basebackup fills the directory: checked aside, and in the configuration the copy ends with.
    await p2.setParameters({ ...p2.opts.parameters, work_mem: '9MB' });
    await cloning;
    assert.ok(progress.length > 0, 'progress reported');
    assert.match(fs.readFileSync(path.join(p2.opts.dataDir, 'postgresql.conf'), 'utf8'), /^work_mem = '?9MB'?$/m);
    assert.ok(!fs.existsSync(path.join(p2.opts.dataDir, 'postgresql.conf.baton-candidate')));
    assert.equal(await one<string>(p1, "SELECT slot_name AS v FROM pg_replication_slots WHERE slot_name = 'p2'"), 'p2');
    await p2.applyManagedSettings(settings({ host: '127.0.0.1', port: p1.opts.port, slot: 'p2' }));
    await p2.start({ standby: true });
    await waitFor('slot active', () => one<boolean>(p1, "SELECT active AS v FROM pg_replication_slots WHERE slot_name = 'p2'"));
    const rows = await waitFor('pg_stat_replication row', async () => (await p1.replication()).find((r) => r.applicationName === 'p2'));
    assert.equal(rows.state, 'streaming');
    assert.equal(rows.syncState, 'async');

    await p1.query('CREATE TABLE t (v text)');
    await p1.query("INSERT INTO t VALUES ('one')");
    await waitFor('row on the replica', () => one<string>(p2, "SELECT v FROM t WHERE v = 'one'"));

    const s2 = await waitFor('replica streaming', async () => {
      const s = await p2.status();
      return s.streaming ? s : null;
    });
    assert.equal(s2.inRecovery, true);
    assert.equal(s2.timeline, 1);
    assert.equal(await one<string>(p2, "SELECT current_setting('work_mem') AS v"), '9MB');
    assert.equal(s2.upstream, `127.0.0.1:${p1.opts.port}`);
    assert.equal(s2.systemId, (await p1.status()).systemId);
    assert.ok(s2.receivedLsn !== null && s2.replayedLsn !== null && s2.receivedLsn >= s2.replayedLsn);
    assert.ok((await p1.currentWalLsn()) >= s2.replayedLsn);
  });

  it('reports a kill -9 of the postmaster within a second and starts again', async () => {
    const pid = p1.postmasterPid();
    assert.ok(pid !== null);
    const exited = new Promise<{ code: number | null; signal: string | null; at: number }>((resolve) => {
      const off = p1.onExit((code, signal) => {
        off();
        resolve({ code, signal, at: Date.now() });
      });
    });
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    const ev = await Promise.race([exited, sleep(1000).then(() => null)]);
    assert.ok(ev, 'onExit fired within 1 s');
    assert.equal(ev.signal, 'SIGKILL');
    assert.ok(ev.at - killedAt < 1000);
    assert.equal(p1.isRunning(), false);
    assert.equal((await p1.status()).running, false);
    await p1.start({ standby: false });
    assert.equal(await one<string>(p1, "SELECT v FROM t WHERE v = 'one'"), 'one');
    await waitFor('replica streaming again', async () => (await p2.status()).streaming);
  });

  it('promotes the replica to timeline 2', async () => {
    await p2.promote();
    const st = await p2.status();
    assert.equal(st.inRecovery, false);
    assert.equal(st.timeline, 2);
    await p2.query("INSERT INTO t VALUES ('two')");
  });

  it('rewinds the forked old primary, which then follows the new primary', async () => {
    await p1.query("INSERT INTO t VALUES ('forked')");
    await p1.stop('immediate');
    assert.equal(p1.isRunning(), false);
    await p2.ensureSlots(['p1']);
    const upstream = { host: '127.0.0.1', port: p2.opts.port, slot: 'p1' };
    await p1.applyManagedSettings(settings(upstream));
    assert.equal(await p1.rewind({ host: '127.0.0.1', port: p2.opts.port }), 'rewound');
    const conf = fs.readFileSync(path.join(p1.opts.dataDir, 'postgresql.conf'), 'utf8');
    assert.ok(conf.includes(`port = ${p1.opts.port}\n`), 'our postgresql.conf is back after pg_rewind');
    await p1.start({ standby: true });
    const st = await waitFor('rewound member streaming', async () => {
      const s = await p1.status();
      return s.streaming ? s : null;
    });
    assert.equal(st.inRecovery, true);
    assert.equal(st.timeline, 2);
    assert.equal(st.upstream, `127.0.0.1:${p2.opts.port}`);
    await waitFor('row from the new primary', () => one<string>(p1, "SELECT v FROM t WHERE v = 'two'"));
    assert.equal(await one<string>(p1, "SELECT v FROM t WHERE v = 'forked'"), undefined);
    await waitFor('slot p1 active', () => one<boolean>(p2, "SELECT active AS v FROM pg_replication_slots WHERE slot_name = 'p1'"));
  });

  it('says a rewind is not needed when the histories have not diverged', async () => {
    await p1.stop('fast');
    assert.equal(await p1.rewind({ host: '127.0.0.1', port: p2.opts.port }), 'not needed');
    const cd = await p1.controlData();
    assert.equal(cd.state, 'shut down in recovery');
    assert.equal(cd.timeline, 2);
    assert.equal(cd.systemId, (await p2.status()).systemId);
  });

  it('refuses to clone into a directory that holds a data directory', async () => {
    await assert.rejects(p1.cloneFrom({ host: '127.0.0.1', port: p2.opts.port }, 'p1'), /already holds a PostgreSQL data directory/);
    assert.ok(p1.hasDataDir());
  });

  it('fails to start on a port already in use, naming the port', async () => {
    const sockets = new Set<net.Socket>();
    const srv = net.createServer((sock) => sockets.add(sock.on('error', () => undefined)));
    await new Promise<void>((resolve) => srv.listen(p1.opts.port, '127.0.0.1', resolve));
    try {
      await assert.rejects(p1.start({ standby: true }), (err: Error) => {
        assert.ok(err.message.includes(String(p1.opts.port)), err.message);
        assert.match(err.message, /in use/);
        return true;
      });
      assert.equal(p1.isRunning(), false);
    } finally {
      for (const sock of sockets) sock.destroy(); // srv.close() waits for open connections
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    }
  });

  it('adopts a postmaster it did not start and reports its kill -9 within a second', async () => {
    const adopted = make('p2', p2.opts.port); // same data directory as p2, a fresh object: like an agent restart
    const pid = adopted.postmasterPid();
    assert.equal(pid, p2.postmasterPid());
    assert.ok(pid !== null);
    assert.equal((await adopted.status()).inRecovery, false);
    const exited = new Promise<number>((resolve) => adopted.onExit(() => resolve(Date.now())));
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    const at = await Promise.race([exited, sleep(1000).then(() => null)]);
    assert.ok(at !== null && at - killedAt < 1000, 'onExit fired within 1 s');
    assert.equal(adopted.isRunning(), false);
  });
});
