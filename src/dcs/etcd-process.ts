// Starting a single-member etcd: used by `baton up` and by the tests.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { StoreUnavailableError } from '../util/errors.js';

export interface EtcdProcessOptions {
  dataDir: string;
  clientPort: number;
  peerPort: number;
  /** etcd's stdout and stderr are appended here. */
  logFile: string;
  /** Run in its own session and let this process exit without it. */
  detached?: boolean;
  host?: string;
  name?: string;
  /** Defaults to /usr/bin/etcd when present, else `etcd` on PATH. */
  binary?: string;
}

export interface EtcdProcess {
  pid: number;
  endpoint: string;
  child: ChildProcess;
  /** Settles with the exit code (or signal name) when etcd exits. */
  exited: Promise<number | string | null>;
}

export function etcdBinary(): string {
  return fs.existsSync('/usr/bin/etcd') ? '/usr/bin/etcd' : 'etcd';
}

export async function startEtcdProcess(opts: EtcdProcessOptions): Promise<EtcdProcess> {
  const host = opts.host ?? '127.0.0.1';
  const name = opts.name ?? 'default';
  const clientUrl = `http://${host}:${opts.clientPort}`;
  const peerUrl = `http://${host}:${opts.peerPort}`;
  const binary = opts.binary ?? etcdBinary();
  const args = [
    '--name', name,
    '--data-dir', opts.dataDir,
    '--listen-client-urls', clientUrl,
    '--advertise-client-urls', clientUrl,
    '--listen-peer-urls', peerUrl,
    '--initial-advertise-peer-urls', peerUrl,
    '--initial-cluster', `${name}=${peerUrl}`,
  ];
  const out = fs.openSync(opts.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(binary, args, { stdio: ['ignore', out, out], detached: opts.detached ?? false });
  } finally {
    fs.closeSync(out); // the child has its own copy
  }
  const exited = new Promise<number | string | null>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal));
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) =>
      reject(new StoreUnavailableError(`cannot start etcd (${binary}): ${err.message}`, 'is etcd installed?', { cause: err })),
    );
  });
  if (opts.detached) child.unref();
  return { pid: child.pid!, endpoint: clientUrl, child, exited };
}

/** Polls GET /health until etcd reports healthy; throws StoreUnavailableError after timeoutMs. */
export async function waitEtcdHealthy(endpoint: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
      const body = (await res.json()) as { health?: unknown };
      if (res.ok && body.health === 'true') return;
      last = `HTTP ${res.status} ${JSON.stringify(body)}`;
    } catch (err) {
      last = err instanceof Error ? ((err.cause as { code?: string } | undefined)?.code ?? err.message) : String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new StoreUnavailableError(
    `etcd at ${endpoint} did not become healthy within ${timeoutMs} ms (last: ${last})`,
    "check etcd's log",
  );
}
