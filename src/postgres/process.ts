// The postmaster as an OS process: spawn it directly (no pg_ctl), find it, watch it exit, stop it with signals.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RunAs } from '../util/os-user.js';
import type { Logger } from '../util/log.js';
import { identityFor, toolEnv } from './run.js';
import type { StopMode } from './types.js';

export type ExitListener = (code: number | null, signal: string | null) => void;

/** Process state letter from /proc/<pid>/stat, or null when there is no such process. */
function procState(pid: number): { state: string; pgrp: number } | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) S ppid pgrp ...": comm may contain spaces and parentheses, so split after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '?', pgrp: Number(rest[2]) };
  } catch {
    return null;
  }
}

/** Alive and not a zombie. */
export function pidAlive(pid: number): boolean {
  const st = procState(pid);
  if (st) return st.state !== 'Z' && st.state !== 'X';
  try {
    process.kill(pid, 0); // no /proc (not Linux): fall back to signal 0
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid in dataDir/postmaster.pid, if that process is alive. */
export function pidFromFile(dataDir: string): number | null {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8');
  } catch {
    return null;
  }
  const pid = Number(text.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !pidAlive(pid)) return null;
  // A stale file from before a reboot may name a pid reused by something else.
  try {
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!/postgres|postmaster/.test(cmd)) return null;
  } catch {
    /* no /proc: trust the pid */
  }
  return pid;
}

const SIGNALS: Record<StopMode, NodeJS.Signals> = { smart: 'SIGTERM', fast: 'SIGINT', immediate: 'SIGQUIT' };

export class Postmaster {
  private child: ChildProcess | null = null;
  private childAlive = false;
  private pid: number | null = null;
  private readonly listeners = new Set<ExitListener>();
  private poller: NodeJS.Timeout | null = null;

  constructor(
    private readonly binDir: string,
    private readonly dataDir: string,
    private readonly logFile: string,
    private readonly runAs: RunAs | null,
    private readonly log: Logger,
  ) {}

  /** The running postmaster's pid: the child we spawned, else the one named in postmaster.pid. */
  currentPid(): number | null {
    if (this.child && this.childAlive && this.child.pid && pidAlive(this.child.pid)) return this.child.pid;
    const pid = pidFromFile(this.dataDir);
    if (pid !== null && pid !== this.pid) {
      this.pid = pid;
      if (this.listeners.size > 0) this.watchAdopted(pid);
    }
    return pid;
  }

  /** Spawns `postgres -D dataDir`, detached, output appended to the log file; returns the log offset before it. */
  spawn(): { pid: number; logOffset: number } {
    fs.mkdirSync(path.dirname(this.logFile), { recursive: true });
    const fd = fs.openSync(this.logFile, 'a', 0o640);
    let logOffset: number;
    try {
      if (this.runAs) fs.fchownSync(fd, this.runAs.uid, this.runAs.gid);
      logOffset = fs.fstatSync(fd).size;
      const child = spawn(path.join(this.binDir, 'postgres'), ['-D', this.dataDir], {
        ...identityFor(this.runAs),
        env: toolEnv(this.runAs),
        stdio: ['ignore', fd, fd],
        detached: true,
      });
      this.child = child;
      this.childAlive = true;
      child.unref();
      child.on('error', (err) => this.log.error({ err: err.message }, 'could not spawn postgres'));
      child.on('exit', (code, signal) => {
        if (this.child === child) this.childAlive = false;
        this.log.info({ pid: child.pid, code, signal }, 'postmaster exited');
        this.emit(code, signal);
      });
      if (!child.pid) throw new Error(`could not spawn ${path.join(this.binDir, 'postgres')}`);
      this.pid = child.pid;
      this.stopPolling();
      this.log.info({ pid: child.pid, dataDir: this.dataDir }, 'postmaster spawned');
      return { pid: child.pid, logOffset };
    } finally {
      fs.closeSync(fd);
    }
  }

  /** True while the child we spawned has not exited (false for adopted postmasters). */
  spawnedAndAlive(): boolean {
    return this.child !== null && this.childAlive;
  }

  onExit(cb: ExitListener): () => void {
    this.listeners.add(cb);
    const pid = this.currentPid();
    if (pid !== null && !this.spawnedAndAlive()) this.watchAdopted(pid);
    return () => {
      this.listeners.delete(cb);
      if (this.listeners.size === 0) this.stopPolling();
    };
  }

  /** A postmaster we did not spawn cannot be waited for: poll its pid every 100 ms. */
  private watchAdopted(pid: number): void {
    this.stopPolling();
    this.poller = setInterval(() => {
      if (pidAlive(pid)) return;
      this.stopPolling();
      if (this.pid === pid) this.pid = null;
      this.log.info({ pid }, 'adopted postmaster exited');
      this.emit(null, null);
    }, 100);
    this.poller.unref();
  }

  private stopPolling(): void {
    if (this.poller) clearInterval(this.poller);
    this.poller = null;
  }

  private emit(code: number | null, signal: string | null): void {
    for (const cb of [...this.listeners]) {
      try {
        cb(code, signal);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'postmaster exit listener failed');
      }
    }
  }

  /** Waits until pid is gone; false on timeout. */
  private static async waitGone(pid: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (pidAlive(pid)) {
      if (Date.now() >= deadline) return false;
      await sleep(50);
    }
    return true;
  }

  private signal(pid: number, sig: NodeJS.Signals): void {
    try {
      process.kill(pid, sig);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }

  /**
   * Signals the postmaster (smart=SIGTERM, fast=SIGINT, immediate=SIGQUIT) and waits for it to exit.
   * fast and immediate escalate (to SIGQUIT, then SIGKILL of its process group) when it does not exit in time;
   * smart throws on timeout. Not running is not an error.
   */
  async stop(mode: StopMode, timeoutMs: number): Promise<void> {
    const pid = this.currentPid();
    if (pid === null) return;
    this.log.info({ pid, mode }, 'stopping postmaster');
    this.signal(pid, SIGNALS[mode]);
    if (await Postmaster.waitGone(pid, timeoutMs)) return;
    if (mode === 'smart') throw new Error(`postmaster ${pid} did not stop within ${timeoutMs} ms (smart mode)`);
    if (mode === 'fast') {
      this.log.warn({ pid }, 'fast shutdown timed out; escalating to immediate');
      this.signal(pid, 'SIGQUIT');
      if (await Postmaster.waitGone(pid, 5000)) return;
    }
    this.log.warn({ pid }, 'postmaster still running; sending SIGKILL');
    const st = procState(pid);
    this.signal(pid, 'SIGKILL');
    // Its backends would otherwise hold the shared memory until they notice the postmaster is gone.
    if (st && st.pgrp === pid) this.signal(-pid, 'SIGKILL');
    if (!(await Postmaster.waitGone(pid, 5000))) throw new Error(`postmaster ${pid} survived SIGKILL`);
  }

  close(): void {
    this.stopPolling();
    this.listeners.clear();
  }
}
