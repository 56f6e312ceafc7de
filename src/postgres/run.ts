// Runs PostgreSQL programs (initdb, pg_basebackup, pg_rewind, pg_controldata, ...) as the run-as OS user.
import { spawn, type SpawnOptions } from 'node:child_process';
import path from 'node:path';
import type { RunAs } from '../util/os-user.js';
import { PostgresError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

export interface RunOptions {
  binDir: string;
  runAs: RunAs | null;
  /** Extra environment (PGPASSWORD, ...); added to the cleaned environment from toolEnv(). */
  env?: Record<string, string>;
  /** Kill the program after this long; 0 or absent = no limit. */
  timeoutMs?: number;
  /** Called for every line the program writes to stderr (progress reports). */
  onStderrLine?: (line: string) => void;
  logger?: Logger;
  /** Resolve with the exit code instead of throwing when the program exits non-zero (a check whose
   * "no" is an answer, not a failure). A timeout or a signal still throws. */
  resolveOnExitCode?: boolean;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Output kept per stream; older output is dropped (only the end matters for errors). */
const MAX_KEPT = 1 << 20;

/**
 * The environment for a PostgreSQL process: ours without PG* variables (a stray PGDATA or PGPORT must not
 * redirect a tool), HOME/USER/LOGNAME of the run-as user, C locale so the output we parse is English.
 */
export function toolEnv(runAs: RunAs | null, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && !k.startsWith('LC_')) env[k] = v;
  if (runAs) {
    env.HOME = runAs.home;
    env.USER = runAs.name;
    env.LOGNAME = runAs.name;
  }
  env.LANG = 'C';
  env.LC_ALL = 'C';
  return { ...env, ...extra };
}

/** uid/gid (when running as root) and a working directory the run-as user can enter. */
export function identityFor(runAs: RunAs | null): Pick<SpawnOptions, 'uid' | 'gid' | 'cwd'> {
  return runAs ? { uid: runAs.uid, gid: runAs.gid, cwd: '/' } : { cwd: '/' };
}

export function lastLines(text: string, n: number): string {
  const lines = text.split(/\r?\n|\r/).filter((l) => l.trim() !== '');
  return lines.slice(-n).join('\n');
}

/** Runs binDir/tool with args; resolves on exit code 0, otherwise throws PostgresError (command, code, stderr tail). */
export async function runTool(tool: string, args: string[], opts: RunOptions): Promise<RunResult> {
  const file = path.join(opts.binDir, tool);
  const shown = `${tool} ${args.join(' ')}`;
  opts.logger?.debug({ tool, args }, 'running PostgreSQL program');
  const started = Date.now();
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(file, args, {
      ...identityFor(opts.runAs),
      env: toolEnv(opts.runAs, opts.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let partial = '';
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    const timer =
      opts.timeoutMs && opts.timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            child.kill('SIGTERM');
            killTimer = setTimeout(() => child.kill('SIGKILL'), 5000);
          }, opts.timeoutMs)
        : undefined;
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      stdout = (stdout + chunk).slice(-MAX_KEPT);
    });
    child.stderr!.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-MAX_KEPT);
      if (!opts.onStderrLine) return;
      const parts = (partial + chunk).split(/\r?\n|\r/);
      partial = parts.pop() ?? '';
      for (const line of parts) if (line !== '') opts.onStderrLine(line);
    });
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(new PostgresError(`could not run ${file}: ${err.message}`, 'check postgresql.bin_dir', { cause: err }));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      if (partial !== '' && opts.onStderrLine) opts.onStderrLine(partial);
      const ms = Date.now() - started;
      if (!timedOut && (code === 0 || (code !== null && opts.resolveOnExitCode))) {
        opts.logger?.debug({ tool, ms }, 'PostgreSQL program finished');
        resolve({ code, stdout, stderr });
        return;
      }
      const why = timedOut
        ? `timed out after ${opts.timeoutMs} ms`
        : code !== null
          ? `exited with code ${code}`
          : `was killed by ${signal}`;
      const tail = lastLines(stderr || stdout, 8);
      opts.logger?.warn({ tool, code, signal, ms, stderr: tail }, 'PostgreSQL program failed');
      reject(new PostgresError(`${shown} ${why}${tail ? `:\n${tail}` : ''}`));
    });
  });
}
