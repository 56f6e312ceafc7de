import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mappedDsmSegments, orphanedDsmSegments } from '../../src/postgres/dsm.js';

test('mapped segments: read from every process maps file, skipping what is not a process or cannot be read', () => {
  const proc = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-proc-'));
  try {
    fs.mkdirSync(path.join(proc, '100'));
    fs.writeFileSync(
      path.join(proc, '100', 'maps'),
      '7f00-7f10 rw-s 00000000 00:1a 12 /dev/shm/PostgreSQL.42\n7f10-7f20 rw-s 00000000 00:1a 13 /dev/shm/PostgreSQL.7 (deleted)\n7f20-7f30 r-xp 0 08:01 9 /usr/lib/libc.so.6\n',
    );
    fs.mkdirSync(path.join(proc, '101')); // gone before its maps could be read
    fs.mkdirSync(path.join(proc, 'self'));
    fs.writeFileSync(path.join(proc, 'self', 'maps'), '/dev/shm/PostgreSQL.99\n');
    assert.deepEqual([...mappedDsmSegments(proc)].sort(), ['PostgreSQL.42', 'PostgreSQL.7']);
  } finally {
    fs.rmSync(proc, { recursive: true, force: true });
  }
});

test('orphaned segments: PostgreSQL segments of that owner, from since on, that nothing maps', () => {
  const shm = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-shm-'));
  try {
    const uid = process.getuid!();
    const since = Date.now() - 60_000;
    for (const name of ['PostgreSQL.1', 'PostgreSQL.2', 'PostgreSQL.3', 'PostgreSQL.x', 'other']) fs.writeFileSync(path.join(shm, name), '');
    const old = new Date(since - 3_600_000);
    fs.utimesSync(path.join(shm, 'PostgreSQL.1'), old, old); // before this cluster: not ours to judge
    fs.mkdirSync(path.join(shm, 'PostgreSQL.4')); // not a segment file
    const mapped = new Set(['PostgreSQL.3']);
    assert.deepEqual(orphanedDsmSegments({ uid, since, mapped, shmDir: shm }), [path.join(shm, 'PostgreSQL.2')]);
    assert.deepEqual(orphanedDsmSegments({ uid: uid + 1, since, mapped, shmDir: shm }), [], 'another owner');
    assert.deepEqual(orphanedDsmSegments({ uid, since, mapped, shmDir: path.join(shm, 'absent') }), [], 'no shm directory');
  } finally {
    fs.rmSync(shm, { recursive: true, force: true });
  }
});
