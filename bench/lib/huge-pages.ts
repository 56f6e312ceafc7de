// Huge pages for the benchmark's PostgreSQL. A new backend maps the shared memory page by page as
// it first touches it: with 4 kB pages that is thousands of page faults, and a fresh backend runs
// select-only at a fraction of its speed for seconds (docs/benchmarks.md). Every path but PgBouncer
// gets fresh backends for each run, PgBouncer keeps its pooled ones, so without huge pages short runs
// measure backend warm-up more than the hop. With 2 MB pages the mapping is a few dozen faults.
import fs from 'node:fs';

const POOL = '/proc/sys/vm/nr_hugepages';

export interface HugePagesInfo {
  total: number;
  free: number;
  sizeKiB: number;
}

/** The huge page counts of /proc/meminfo; null when the kernel reports none. */
export function parseMeminfo(text: string): HugePagesInfo | null {
  const get = (key: string): number | null => {
    const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  const total = get('HugePages_Total');
  const free = get('HugePages_Free');
  const sizeKiB = get('Hugepagesize');
  return total === null || free === null || sizeKiB === null || sizeKiB === 0 ? null : { total, free, sizeKiB };
}

/** Huge pages needed for `bytes` of shared memory per instance, `instances` of them. */
export function pagesFor(bytes: number, instances: number, info: HugePagesInfo): number {
  return instances * Math.ceil(bytes / (info.sizeKiB * 1024));
}

export type Reservation = { ok: true; pages: number; added: number; restore: () => void } | { ok: false; why: string };

function meminfo(): HugePagesInfo | null {
  return parseMeminfo(fs.readFileSync('/proc/meminfo', 'utf8'));
}

/** Makes sure `pages(info)` huge pages are free, adding what is missing to the kernel's pool;
 * `restore` puts the pool back as it was (call it once the instances using them have stopped). */
export function reserveHugePages(pages: (info: HugePagesInfo) => number): Reservation {
  const before = meminfo();
  if (!before) return { ok: false, why: 'this kernel reports no huge pages in /proc/meminfo' };
  const want = pages(before);
  if (before.free >= want) return { ok: true, pages: want, added: 0, restore: () => undefined };
  const original = Number(fs.readFileSync(POOL, 'utf8').trim());
  try {
    fs.writeFileSync(POOL, String(original + want - before.free));
  } catch (err) {
    return { ok: false, why: `could not write ${POOL} (${(err as Error).message}): run as root` };
  }
  const restore = (): void => fs.writeFileSync(POOL, String(original));
  const after = meminfo();
  if (!after || after.free < want) {
    restore();
    return { ok: false, why: `the kernel freed ${after?.free ?? 0} of the ${want} huge pages asked (memory too fragmented?)` };
  }
  return { ok: true, pages: want, added: want - before.free, restore };
}
