// PostgreSQL's POSIX dynamic shared memory segments (/dev/shm/PostgreSQL.<handle>). A postmaster
// killed with SIGKILL leaves them behind; restarted in the same data directory it removes them, but a
// data directory that is deleted instead (a test cluster, a benchmark, `baton down --purge` after a
// crash) leaves them in memory until the host reboots.
import fs from 'node:fs';
import path from 'node:path';

const SEGMENT = /^PostgreSQL\.\d+$/;

/** Names of the segments some process maps now (from /proc/<pid>/maps; unreadable processes are skipped). */
export function mappedDsmSegments(procDir = '/proc'): Set<string> {
  const mapped = new Set<string>();
  for (const pid of fs.readdirSync(procDir)) {
    if (!/^\d+$/.test(pid)) continue;
    let maps: string;
    try {
      maps = fs.readFileSync(path.join(procDir, pid, 'maps'), 'utf8');
    } catch {
      continue; // gone since the listing, or not ours to read
    }
    for (const m of maps.matchAll(/\/PostgreSQL\.(\d+)/g)) mapped.add(`PostgreSQL.${m[1]}`);
  }
  return mapped;
}

/**
 * Segments owned by `uid`, modified at or after `since`, that no process maps: those of postmasters
 * that are gone. A live instance keeps its control segment mapped by the postmaster, and every other
 * segment mapped while in use.
 */
export function orphanedDsmSegments(opts: { uid: number; since: number; mapped: Set<string>; shmDir?: string }): string[] {
  const dir = opts.shmDir ?? '/dev/shm';
  const out: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return out; // no /dev/shm: nothing can be left there
  }
  for (const name of names) {
    if (!SEGMENT.test(name) || opts.mapped.has(name)) continue;
    let st: fs.Stats;
    try {
      st = fs.statSync(path.join(dir, name));
    } catch {
      continue;
    }
    if (st.isFile() && st.uid === opts.uid && st.mtimeMs >= opts.since) out.push(path.join(dir, name));
  }
  return out.sort();
}

/**
 * Before a cluster's directory is removed: the orphaned segments of the PostgreSQL instances whose
 * data directories are under `dir` (run by the owners of those directories, created since `dir`
 * was). Nothing when the file system does not record birth times. Returns the paths removed.
 */
export function removeOrphanedDsmSegments(dir: string, dataDirs: string[]): string[] {
  const since = fs.statSync(dir).birthtimeMs;
  if (!(since > 0)) return [];
  const owners = new Set<number>();
  for (const d of dataDirs) {
    try {
      owners.add(fs.statSync(d).uid);
    } catch {
      // never created, or already gone
    }
  }
  if (owners.size === 0) return [];
  const mapped = mappedDsmSegments();
  const removed: string[] = [];
  for (const uid of owners) {
    for (const f of orphanedDsmSegments({ uid, since, mapped })) {
      fs.rmSync(f, { force: true });
      removed.push(f);
    }
  }
  return removed;
}
