// bench/lib/huge-pages.ts: reading the kernel's huge page counts and sizing the reservation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pagesFor, parseMeminfo } from '../../bench/lib/huge-pages.js';

const MEMINFO = `MemTotal:       24641536 kB
AnonHugePages:         0 kB
HugePages_Total:     144
HugePages_Free:      100
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:          294912 kB
`;

test('huge page counts from /proc/meminfo; none when the kernel reports none', () => {
  assert.deepEqual(parseMeminfo(MEMINFO), { total: 144, free: 100, sizeKiB: 2048 });
  assert.equal(parseMeminfo('MemTotal:       24641536 kB\n'), null);
  assert.equal(parseMeminfo(MEMINFO.replace('2048', '0')), null, 'a page size of 0 would divide by zero');
});

test('pages for the members: each instance rounded up to whole pages', () => {
  const info = { total: 0, free: 0, sizeKiB: 2048 };
  assert.equal(pagesFor(96 * 1024 * 1024, 3, info), 144);
  assert.equal(pagesFor(96 * 1024 * 1024 + 1, 3, info), 147);
  assert.equal(pagesFor(96 * 1024 * 1024, 3, { ...info, sizeKiB: 1024 * 1024 }), 3, '1 GB pages: one each');
});
