// PostgreSQL refuses to run as root: when we are root, its processes run as a configured OS user.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export interface RunAs {
  uid: number;
  gid: number;
  name: string;
  home: string;
}

const cache = new Map<string, RunAs>();

/** The uid/gid to run PostgreSQL as: `user` when we are root, ourselves otherwise (null). */
export function runAsFor(user: string): RunAs | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  const hit = cache.get(user);
  if (hit) return hit;
  let line: string;
  try {
    line = execFileSync('getent', ['passwd', user], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(
      `OS user "${user}" does not exist; PostgreSQL cannot run as root. Create it (apt-get install postgresql-15 does) or set postgresql.os_user`,
    );
  }
  const parts = line.split(':');
  const r: RunAs = { name: user, uid: Number(parts[2]), gid: Number(parts[3]), home: parts[5] ?? '/' };
  cache.set(user, r);
  return r;
}

/** Makes dir (recursively) and hands it to the run-as user, so PostgreSQL can write there. */
export function ensureDirFor(dir: string, runAs: RunAs | null, mode = 0o700): void {
  fs.mkdirSync(dir, { recursive: true, mode });
  if (runAs) fs.chownSync(dir, runAs.uid, runAs.gid);
  fs.chmodSync(dir, mode);
}
