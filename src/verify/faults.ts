// How the drill hurts a member. A local cluster (cluster.json) is hurt with signals to the processes it
// lists; any other cluster through an operator's fault command, run with the fault and the member in
// its environment.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import type { MemberRecord } from '../dcs/types.js';
import { pidAlive, readLocalCluster, writeLocalCluster, type LocalCluster } from '../cli/local-cluster.js';
import { postmasterPidOf, startAgentProcess, waitExit } from '../cli/up.js';
import { BatonError } from '../util/errors.js';

export const FAULTS = ['postgres-crash', 'host-crash', 'freeze', 'thaw', 'stop', 'start'] as const;
export type Fault = (typeof FAULTS)[number];

export interface FaultInjector {
  /** Does the fault and returns once it has taken effect (processes dead, stopped, started). */
  inject(fault: Fault, member: MemberRecord): Promise<void>;
  describe(): string;
}

/** Children of a process (PostgreSQL's backends and auxiliary processes under its postmaster). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

function signal(pid: number | null, sig: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

export class LocalFaults implements FaultInjector {
  /** Processes stopped by `freeze`, per member, for `thaw`. */
  private frozen = new Map<string, number[]>();

  constructor(private readonly dir: string) {}

  describe(): string {
    return `signals to the processes of the local cluster in ${this.dir}`;
  }

  private cluster(): LocalCluster {
    const c = readLocalCluster(this.dir);
    if (!c) throw new BatonError(`no local cluster in ${this.dir}`);
    return c;
  }

  private local(name: string) {
    const m = this.cluster().members.find((x) => x.name === name);
    if (!m) throw new BatonError(`${name} is not a member of the local cluster in ${this.dir}`, 'process faults need a member started by "baton up" or "baton node add"');
    return { ...m, postmasterPid: postmasterPidOf(m.dataDir) };
  }

  async inject(fault: Fault, member: MemberRecord): Promise<void> {
    const m = this.local(member.name);
    const pm = pidAlive(m.postmasterPid) ? m.postmasterPid : null;
    switch (fault) {
      case 'postgres-crash':
      case 'host-crash': {
        if (!pm) throw new BatonError(`${m.name} has no running postmaster to crash`);
        if (fault === 'host-crash') signal(m.agentPid, 'SIGKILL');
        signal(pm, 'SIGKILL');
        const dead = (await waitExit(pm, 5000)) && (fault === 'postgres-crash' || !m.agentPid || (await waitExit(m.agentPid, 5000)));
        if (!dead) throw new BatonError(`${m.name}'s processes did not die within 5 s of SIGKILL`);
        return;
      }
      case 'freeze': {
        // Like a frozen VM: the agent, the postmaster and every PostgreSQL process stop at once.
        const pids = [m.agentPid, pm, ...(pm ? childrenOf(pm) : [])].filter((p): p is number => !!p && pidAlive(p));
        for (const p of pids) signal(p, 'SIGSTOP');
        this.frozen.set(m.name, pids);
        return;
      }
      case 'thaw': {
        for (const p of this.frozen.get(m.name) ?? []) signal(p, 'SIGCONT');
        this.frozen.delete(m.name);
        return;
      }
      case 'stop': {
        // A clean stop: the agent shuts PostgreSQL down and leaves the cluster's view.
        if (!m.agentPid || !pidAlive(m.agentPid)) throw new BatonError(`${m.name}'s agent is not running`);
        signal(m.agentPid, 'SIGTERM');
        if (!(await waitExit(m.agentPid, 30_000))) throw new BatonError(`${m.name}'s agent did not stop within 30 s of SIGTERM`);
        return;
      }
      case 'start': {
        if (pidAlive(m.agentPid)) return;
        const c = this.cluster();
        const rec = c.members.find((x) => x.name === m.name)!;
        rec.agentPid = startAgentProcess(rec);
        writeLocalCluster(c);
        return;
      }
    }
  }

  /** After an aborted run: SIGCONT to whatever is still frozen, and an agent for every member without one. */
  async restore(): Promise<void> {
    for (const pids of this.frozen.values()) for (const p of pids) signal(p, 'SIGCONT');
    this.frozen.clear();
    const c = this.cluster();
    for (const m of c.members) if (!pidAlive(m.agentPid)) m.agentPid = startAgentProcess(m);
    writeLocalCluster(c);
  }
}

/**
 * The operator's command, run with `sh -c`; environment: BATON_FAULT (postgres-crash, host-crash,
 * freeze, thaw, stop, start), BATON_MEMBER, BATON_HOST, BATON_PORT (PostgreSQL), BATON_API.
 * It must return once the fault has taken effect; a non-zero exit aborts the drill.
 */
export class CommandFaults implements FaultInjector {
  constructor(
    private readonly command: string,
    private readonly timeoutMs = 60_000,
  ) {}

  describe(): string {
    return `the fault command: ${this.command}`;
  }

  inject(fault: Fault, m: MemberRecord): Promise<void> {
    const env = { ...process.env, BATON_FAULT: fault, BATON_MEMBER: m.name, BATON_HOST: m.host, BATON_PORT: String(m.port), BATON_API: m.apiUrl };
    return new Promise((resolve, reject) => {
      const child = spawn('sh', ['-c', this.command], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-2000)));
      child.stderr.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-2000)));
      const timer = setTimeout(() => child.kill('SIGKILL'), this.timeoutMs);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(new BatonError(`could not run the fault command: ${e.message}`));
      });
      child.on('close', (code, sig) => {
        clearTimeout(timer);
        if (code === 0) return resolve();
        reject(
          new BatonError(
            `the fault command failed for ${fault} on ${m.name} (${sig ?? `exit ${code}`}): ${out.trim().split('\n').slice(-3).join(' / ')}`,
            'it must exit 0 once the fault has taken effect',
          ),
        );
      });
    });
  }
}
