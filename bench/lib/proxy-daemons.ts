// HAProxy (TCP mode), PgBouncer (session mode), a second baton proxy relaying in TypeScript and (on
// request) bench/kernel-forward, in front of one PostgreSQL server, for bench/proxy.ts.
// Each runs in the foreground as a child process with its own config, log and port in its own temp dir;
// stop() ends it (SIGTERM, then SIGKILL after 5 s) and removes the dir.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pidAlive } from '../../src/cli/local-cluster.js';
import { freePort, portInUse } from '../../src/util/net.js';
import { runAsFor } from '../../src/util/os-user.js';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { BenchAbort, sleep } from './cluster.js';

export interface Backend {
  host: string;
  port: number;
  /** The server's Unix socket (…/.s.PGSQL.<port>): relays that take it connect there instead of host:port. */
  socket?: string | undefined;
}

export function describeBackend(b: Backend): string {
  return b.socket ?? `${b.host}:${b.port}`;
}

/** Every daemon started (stopped or not), so an abort can stop them all. */
export const daemons = new Set<Daemon>();

export class Daemon {
  private stopping: Promise<void> | null = null;

  constructor(
    readonly name: string,
    readonly host: string,
    readonly port: number,
    readonly dir: string,
    readonly logFile: string,
    private readonly child: ChildProcess,
  ) {}

  get pid(): number | undefined {
    return this.child.pid;
  }

  running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && pidAlive(this.child.pid ?? null);
  }

  logTail(lines = 15): string {
    const text = fs.existsSync(this.logFile) ? fs.readFileSync(this.logFile, 'utf8') : '';
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  }

  /** Waits until the daemon listens on its port; throws (after stopping it) if it exits or takes over 15 s. */
  async waitListening(): Promise<void> {
    const t0 = Date.now();
    while (!(await portInUse(this.host, this.port))) {
      const failure = !this.running() ? 'exited' : Date.now() - t0 > 15_000 ? `did not listen on ${this.host}:${this.port} within 15 s` : null;
      if (failure) {
        const tail = this.logTail();
        await this.stop();
        throw new BenchAbort(`${this.name} ${failure}; its log:\n${tail}`);
      }
      await sleep(50);
    }
  }

  /** SIGTERM, SIGKILL after 5 s, wait for the exit, remove the temp dir. Safe to call more than once. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const pid = this.child.pid;
      if (pid && this.running()) {
        process.kill(pid, 'SIGTERM');
        const t0 = Date.now();
        while (this.running() && Date.now() - t0 < 5000) await sleep(20);
        if (this.running()) process.kill(pid, 'SIGKILL');
        while (this.running() && Date.now() - t0 < 10_000) await sleep(20);
      }
      fs.rmSync(this.dir, { recursive: true, force: true });
    })();
    return this.stopping;
  }
}

/** Spawns cmd in its own process group (a Ctrl-C in the terminal reaches only us; we stop it). */
function launch(name: string, cmd: string, args: string[], dir: string, host: string, port: number, ids?: { uid: number; gid: number }, env?: Record<string, string>): Daemon {
  const logFile = path.join(dir, `${name}.out`);
  const out = fs.openSync(logFile, 'a');
  if (ids) fs.fchownSync(out, ids.uid, ids.gid);
  const child = spawn(cmd, args, { cwd: dir, detached: true, stdio: ['ignore', out, out], ...ids, ...(env && { env: { ...process.env, ...env } }) });
  fs.closeSync(out);
  child.on('error', () => undefined);
  const d = new Daemon(name, host, port, dir, logFile, child);
  daemons.add(d);
  return d;
}

export async function startHaproxy(backend: Backend): Promise<Daemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-haproxy-'));
  const port = await freePort(backend.host);
  const cfg = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(
    cfg,
    [
      'global',
      '  maxconn 1000',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 1h',
      '  timeout server 1h',
      'frontend postgres',
      `  bind ${backend.host}:${port}`,
      '  default_backend leader',
      'backend leader',
      backend.socket ? `  server leader unix@${backend.socket}` : `  server leader ${backend.host}:${backend.port}`,
      '',
    ].join('\n'),
  );
  const d = launch('haproxy', 'haproxy', ['-f', cfg, '-db'], dir, backend.host, port);
  await d.waitListening();
  return d;
}

/** PgBouncer refuses to run as root: when we are root it runs as the postgres OS user. */
export async function startPgbouncer(backend: Backend, user: string, password: string, maxClients: number): Promise<Daemon> {
  const runAs = runAsFor('postgres');
  const ids = runAs ? { uid: runAs.uid, gid: runAs.gid } : undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-pgbouncer-'));
  if (ids) fs.chownSync(dir, ids.uid, ids.gid);
  const port = await freePort(backend.host);
  const quote = (s: string): string => `"${s.replace(/"/g, '""')}"`;
  const userlist = path.join(dir, 'userlist.txt');
  const ini = path.join(dir, 'pgbouncer.ini');
  fs.writeFileSync(userlist, `${quote(user)} ${quote(password)}\n`, { mode: 0o600 });
  fs.writeFileSync(
    ini,
    [
      '[databases]',
      // A socket directory as host: PgBouncer connects to <dir>/.s.PGSQL.<port>.
      `postgres = host=${backend.socket ? path.dirname(backend.socket) : backend.host} port=${backend.port} dbname=postgres`,
      '',
      '[pgbouncer]',
      `listen_addr = ${backend.host}`,
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = scram-sha-256',
      `auth_file = ${userlist}`,
      'pool_mode = session',
      `max_client_conn = ${Math.max(200, 2 * maxClients)}`,
      `default_pool_size = ${Math.max(64, maxClients)}`,
      // Warm, as operators run it: a pool that emptied between runs (this file once had
      // server_idle_timeout = 1) made every run's first transactions wait for PgBouncer's server
      // logins inside pgbench's clock, while the other paths log in when pgbench connects, before
      // it starts. Idle pooled backends, reset by DISCARD ALL, have an empty application_name.
      `min_pool_size = ${maxClients}`,
      'ignore_startup_parameters = extra_float_digits',
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  if (ids) for (const f of [userlist, ini]) fs.chownSync(f, ids.uid, ids.gid);
  const d = launch('pgbouncer', 'pgbouncer', [ini], dir, backend.host, port, ids);
  await d.waitListening();
  return d;
}

const BATON = fileURLToPath(new URL('../../bin/baton.js', import.meta.url));

/** A second `baton proxy` for the cluster, with the cluster proxy's config but its own ports and
 * `relay: js`: the TypeScript relay measured beside the native one. */
/** A second Baton proxy for the cluster, on free ports, with the cluster proxy's other settings. */
async function startSecondProxy(name: string, clusterProxyConfig: string, host: string, relay: 'js' | 'native', env: Record<string, string> = {}, settings: Record<string, unknown> = {}): Promise<Daemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `baton-bench-${name}-`));
  const cfg = YAML.parse(fs.readFileSync(clusterProxyConfig, 'utf8')) as Record<string, unknown>;
  const port = await freePort(host);
  const others = [await freePort(host), await freePort(host)];
  cfg.listen = { read_write: `${host}:${port}`, read_only: `${host}:${others[0]}`, admin: `${host}:${others[1]}` };
  cfg.relay = relay;
  cfg.name = name;
  Object.assign(cfg, settings);
  const file = path.join(dir, 'proxy.yml');
  fs.writeFileSync(file, YAML.stringify(cfg), { mode: 0o600 });
  const d = launch(name, process.execPath, [BATON, 'proxy', '--config', file], dir, host, port, undefined, env);
  await d.waitListening();
  return d;
}

export function startBatonTsProxy(clusterProxyConfig: string, host: string): Promise<Daemon> {
  return startSecondProxy('baton-ts', clusterProxyConfig, host, 'js');
}

/** The native relay with a system call per recv and send, to measure what batching them saves. */
export function startBatonPlainProxy(clusterProxyConfig: string, host: string): Promise<Daemon> {
  return startSecondProxy('baton-plain', clusterProxyConfig, host, 'native', { BATON_RELAY_IO: 'plain' });
}

/** The cluster's proxy as it is, but reaching the leader over TCP (use_local_socket: false). */
export function startBatonTcpProxy(clusterProxyConfig: string, host: string): Promise<Daemon> {
  return startSecondProxy('baton-tcp', clusterProxyConfig, host, 'native', {}, { use_local_socket: false });
}

const KERNEL_FORWARD_SRC = fileURLToPath(new URL('../kernel-forward/', import.meta.url));

/** bench/kernel-forward, compiled into its own temp dir (clang for the BPF object, gcc with libbpf for
 * the loader); it must run as root (or with CAP_BPF and CAP_NET_ADMIN). */
export async function startKernelForward(backend: Backend): Promise<Daemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-kernel-forward-'));
  const build = (cmd: string, args: string[]): void => {
    try {
      execFileSync(cmd, args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      fs.rmSync(dir, { recursive: true, force: true });
      throw new BenchAbort(`building bench/kernel-forward failed (${cmd}): ${(e.stderr || e.message).trim()}\nrun scripts/install-deps.sh --bench (clang, libbpf-dev)`);
    }
  };
  const multiarch = execFileSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).trim();
  build('clang', ['-O2', '-g', '-target', 'bpf', `-I/usr/include/${multiarch}`, '-c', path.join(KERNEL_FORWARD_SRC, 'forward.bpf.c'), '-o', 'forward.bpf.o']);
  build('gcc', ['-O2', '-Wall', '-o', 'forward', path.join(KERNEL_FORWARD_SRC, 'forward.c'), '-lbpf']);
  const port = await freePort(backend.host);
  const args = [backend.host, String(port), backend.host, String(backend.port), path.join(dir, 'forward.bpf.o')];
  const d = launch('kernel-fwd', path.join(dir, 'forward'), args, dir, backend.host, port);
  await d.waitListening();
  return d;
}

/** First line of `haproxy -v` and `pgbouncer --version`. */
export function versions(): { haproxy: string; pgbouncer: string; pgbench: string } {
  const first = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0]!.trim();
    } catch (err) {
      throw new BenchAbort(`${cmd} is not usable (${(err as Error).message.split('\n')[0]}); run scripts/install-deps.sh --bench`);
    }
  };
  return { haproxy: first('haproxy', ['-v']), pgbouncer: first('pgbouncer', ['--version']), pgbench: first('pgbench', ['--version']) };
}
