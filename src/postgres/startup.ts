// Waiting for a freshly spawned postmaster: a real connection as the superuser, or the reason it died.
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { PostgresError } from '../util/errors.js';
import { lastLines } from './run.js';

export interface ConnectTarget {
  host: string;
  port: number;
  user: string;
  password: string;
}

/**
 * Connects, runs fn, disconnects. A client whose connect failed is not awaited on end(): pg's end() would wait
 * for an 'end' event that a timed-out connection never emits.
 */
export async function withClient<T>(config: pg.ClientConfig, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(config);
  client.on('error', () => undefined); // errors surface through the awaited calls
  let connected = false;
  try {
    await client.connect();
    connected = true;
    return await fn(client);
  } finally {
    const ending = client.end().catch(() => undefined);
    if (connected) await Promise.race([ending, sleep(2000)]);
  }
}

export type StartupResult =
  | { ok: true; ms: number }
  | { ok: false; logTail: string; shmemInUse: boolean; portInUse: boolean };

/** Log written since offset (what this postmaster said), at most the last 64 kB. */
export function logSince(logFile: string, offset: number): string {
  try {
    const fd = fs.openSync(logFile, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const from = Math.max(offset, size - 65536);
      const buf = Buffer.alloc(Math.max(0, size - from));
      fs.readSync(fd, buf, 0, buf.length, from);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

function safeRealpath(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

/** Errors that mean "not yet": refused (not listening yet), starting up, recovery not consistent yet, timeouts. */
function transient(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (e.code === '57P03') return true; // cannot_connect_now: starting up / not yet accepting connections
  if (e.code && ['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE'].includes(e.code)) return true;
  return /timeout|starting up|not yet accepting|terminated unexpectedly|Connection terminated/i.test(e.message ?? '');
}

export async function waitUntilAccepting(args: {
  target: ConnectTarget;
  alive: () => boolean;
  logFile: string;
  logOffset: number;
  deadline: number;
  /** To tell our postmaster from another server answering on the same port. */
  dataDir: string;
}): Promise<StartupResult> {
  const started = Date.now();
  const died = (): StartupResult => {
    const log = logSince(args.logFile, args.logOffset);
    return {
      ok: false,
      logTail: lastLines(log, 10),
      shmemInUse: /shared memory block .* is still in use/i.test(log),
      portInUse: /Address already in use|could not bind|could not create any TCP\/IP sockets/i.test(log),
    };
  };
  for (;;) {
    if (!args.alive()) return died();
    let dir: string;
    try {
      dir = await withClient({ ...args.target, database: 'postgres', connectionTimeoutMillis: 1000 }, async (c) => {
        const res = await c.query<{ dir: string }>("SELECT current_setting('data_directory') AS dir");
        return res.rows[0]?.dir ?? '';
      });
    } catch (err) {
      if (!args.alive()) return died();
      if (!transient(err)) {
        throw new PostgresError(
          `PostgreSQL on ${args.target.host}:${args.target.port} is up but refuses the agent: ${(err as Error).message}`,
          'check the superuser credentials and pg_hba.conf',
        );
      }
      if (Date.now() >= args.deadline) {
        throw new PostgresError(
          `PostgreSQL on port ${args.target.port} did not accept connections in time (last error: ${(err as Error).message}); it is still running`,
          `see ${args.logFile}`,
        );
      }
      await sleep(100);
      continue;
    }
    if (dir === args.dataDir || safeRealpath(dir) === safeRealpath(args.dataDir)) return { ok: true, ms: Date.now() - started };
    // Someone else answers on our port; ours will fail to bind and exit.
    await sleep(100);
  }
}
