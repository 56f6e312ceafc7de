// Bad input at start-up is refused with a clear error that names the problem, and nothing runs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { freePort } from '../../src/util/net.js';
import { startEtcd } from '../helpers/etcd.js';

const run = promisify(execFile);
let dir: string;
let etcd: Awaited<ReturnType<typeof startEtcd>>;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-refuse-'));
  fs.chmodSync(dir, 0o755);
  etcd = await startEtcd();
});
after(async () => {
  await etcd?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function config(name: string, over: Record<string, unknown> = {}): Promise<string> {
  const cfg = {
    cluster: 'refuse',
    name,
    etcd: { hosts: [etcd.endpoint.replace('http://', '')] },
    postgresql: {
      data_dir: path.join(dir, name, 'data'),
      listen: `127.0.0.1:${await freePort()}`,
      authentication: {
        superuser: { username: 'postgres', password: 'secret-pass-1' },
        replication: { username: 'replicator', password: 'secret-pass-2' },
      },
    },
    restapi: { listen: `127.0.0.1:${await freePort()}` },
    ...over,
  };
  const file = path.join(dir, `${name}.yml`);
  fs.writeFileSync(file, stringify(cfg));
  return file;
}

async function agentFails(file: string): Promise<{ code: number; out: string }> {
  const r = await run(process.execPath, ['bin/baton.js', 'agent', '--config', file], { timeout: 20_000 }).then(
    () => ({ code: 0, stdout: '', stderr: '' }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
  return { code: r.code, out: `${r.stdout}${r.stderr}` };
}

test('an invalid config is refused with the field path and the reason', async () => {
  const file = path.join(dir, 'bad.yml');
  fs.writeFileSync(file, stringify({ cluster: 'x', name: 'a b', etcd: { hosts: ['nohost'] }, bogus: 1 }));
  const r = await agentFails(file);
  assert.equal(r.code, 1);
  assert.match(r.out, /name: letters, digits/);
  assert.match(r.out, /etcd\.hosts\.0: expected host:port/);
  assert.match(r.out, /unknown key\(s\) "bogus"/);
  assert.match(r.out, /postgresql: /);
  fs.writeFileSync(file, 'cluster: [unclosed');
  assert.match((await agentFails(file)).out, /not valid YAML at line 1/);
  assert.match((await agentFails(path.join(dir, 'missing.yml'))).out, /cannot read config file .*missing\.yml: ENOENT/);
});

test('a PostgreSQL port already in use is refused before anything is created', async () => {
  const file = await config('busy');
  const port = Number((fs.readFileSync(file, 'utf8').match(/listen: 127\.0\.0\.1:(\d+)/) ?? [])[1]);
  const srv = net.createServer().listen(port, '127.0.0.1');
  await new Promise((r) => srv.once('listening', r));
  try {
    const r = await agentFails(file);
    assert.equal(r.code, 1);
    assert.match(r.out, new RegExp(`PostgreSQL port 127\\.0\\.0\\.1:${port} is already in use`));
    assert.equal(fs.existsSync(path.join(dir, 'busy', 'data')), false, 'no data directory created');
  } finally {
    srv.close();
  }
});

test('unreachable etcd: the agent says so, retries, and creates nothing; the CLI fails clearly', async () => {
  const dead = await freePort();
  const file = await config('lonely', { etcd: { hosts: [`127.0.0.1:${dead}`] } });
  const child = spawn(process.execPath, ['bin/baton.js', 'agent', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const t0 = Date.now();
  while (!/etcd unreachable/.test(out) || (out.match(/etcd unreachable/g) ?? []).length < 2) {
    if (Date.now() - t0 > 15_000) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const exited = child.exitCode;
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  assert.equal(exited, null, 'the agent keeps running and retrying');
  assert.ok((out.match(/etcd unreachable/g) ?? []).length >= 2, `retries logged: ${out}`);
  assert.match(out, new RegExp(`127\\.0\\.0\\.1:${dead}`));
  assert.equal(fs.existsSync(path.join(dir, 'lonely', 'data')), false, 'no initdb without etcd');

  const cli = await run(process.execPath, ['bin/baton.js', 'status', '--etcd', `127.0.0.1:${dead}`, '--cluster', 'refuse']).catch(
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal((cli as { code: number }).code, 1);
  assert.match((cli as { stderr: string }).stderr, /etcd/);
});

test('CLI: unknown commands and bad arguments exit non-zero with a message', async () => {
  const bad = await run(process.execPath, ['bin/baton.js', 'up', '--nodes', 'many']).catch((e: { code: number; stderr: string }) => e);
  assert.equal((bad as { code: number }).code, 2);
  assert.match((bad as { stderr: string }).stderr, /--nodes.*whole number/);
  const none = await run(process.execPath, ['bin/baton.js', 'status', '--dir', path.join(dir, 'nothing')]).catch((e: { code: number; stderr: string }) => e);
  assert.equal((none as { code: number }).code, 1);
  assert.match((none as { stderr: string }).stderr, /no local cluster/);
});
