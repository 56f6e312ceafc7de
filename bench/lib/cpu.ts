// CPU accounting for bench/proxy.ts, from /proc: what a relay, the leader's PostgreSQL and the
// whole host spent over a run, so that a path's cost can be split between the relay and the server.
import fs from 'node:fs';

/** Clock ticks per second for /proc times (getconf CLK_TCK; 100 on Linux). */
export const TICKS_PER_SECOND = 100;

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces): index 0 is the state. */
function statFields(pid: number): string[] | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ESRCH') return null;
    throw err;
  }
}

/** Clock ticks of CPU (user + system, all threads) a process has used. */
export function cpuTicks(pid: number): number {
  const f = statFields(pid);
  if (!f) throw new Error(`no process ${pid}: cannot read /proc/${pid}/stat`);
  return Number(f[11]) + Number(f[12]);
}

/**
 * Clock ticks of CPU used by a process and its children: the children alive now, and those that
 * ended and were waited for (cutime and cstime). A child that ends between two readings moves its
 * time from the first sum to the second, so a difference of two readings counts it once.
 */
export function treeCpuTicks(root: number): number {
  const f = statFields(root);
  if (!f) throw new Error(`no process ${root}: cannot read /proc/${root}/stat`);
  let ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const c = statFields(Number(entry));
    // f[1] is the parent's pid. PostgreSQL's backends and workers are all the postmaster's children.
    if (c && Number(c[1]) === root) ticks += Number(c[11]) + Number(c[12]);
  }
  return ticks;
}

/** Clock ticks the host's CPUs have been busy, summed over CPUs: not idle, not waiting for I/O,
 * and not stolen by the hypervisor for other guests. */
export function hostBusyTicks(): number {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  // cpu user nice system idle iowait irq softirq steal guest guest_nice; guest time is in user already.
  const [user, nice, system, , , irq, softirq] = line.trim().split(/\s+/).slice(1).map(Number);
  return user! + nice! + system! + irq! + softirq!;
}

/** Nanoseconds the threads of a process (those whose name matches `threads`, if given) have waited
 * on a run queue, summed; null without schedstat. */
export function runQueueWaitNs(pid: number, threads?: RegExp): number | null {
  let total = 0;
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      if (threads && !threads.test(fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim())) continue;
      // "<on cpu ns> <waiting on a run queue ns> <timeslices>"; a thread gone meanwhile counts 0.
      const f = fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ');
      total += Number(f[1]);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return Number.isFinite(total) ? total : null;
}
