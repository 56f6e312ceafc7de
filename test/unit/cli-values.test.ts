// Command-line values (tags, sizes, seconds), the progress line of a copy, and `baton pool --json`'s rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from 'commander';
import { parseBytes, parseSeconds, parseTag } from '../../src/cli/arg-parsers.js';
import { describeProgress, formatDuration } from '../../src/cli/progress.js';
import { parsePoolNodes } from '../../src/cli/proxy-cmd.js';
import { POOL_NODES_COLUMNS } from '../../src/proxy/admin-commands.js';
import { UsageError } from '../../src/util/errors.js';

test('tags: flags, true/false, numbers in range; repeated options accumulate', () => {
  let tags = parseTag('nofailover', {});
  tags = parseTag('weight=3', tags);
  tags = parseTag('clonefrom=false', tags);
  tags = parseTag('priority=0', tags);
  assert.deepEqual(tags, { nofailover: true, weight: 3, clonefrom: false, priority: 0 });
});

test('tags: unknown keys, bad booleans and numbers out of range are refused with what is expected', () => {
  const bad: [string, RegExp][] = [
    ['colour=red', /expected nofailover, noloadbalance, clonefrom, weight=N or priority=N/],
    ['weight', /weight needs a whole number from 0 to 1000/],
    ['weight=1.5', /whole number/],
    ['weight=-1', /whole number/],
    ['priority=1001', /whole number/],
    ['nofailover=yes', /nofailover is true or false/],
    ['', /expected/],
  ];
  for (const [v, re] of bad) assert.throws(() => parseTag(v, {}), (e: unknown) => e instanceof InvalidArgumentError && re.test(e.message), v);
});

test('sizes: plain bytes and kB/MB/GB in any case', () => {
  assert.equal(parseBytes('1048576'), 1048576);
  assert.equal(parseBytes('512kB'), 512 * 1024);
  assert.equal(parseBytes('16MB'), 16 * 1024 ** 2);
  assert.equal(parseBytes('1 gb'), 1024 ** 3);
  assert.equal(parseBytes(' 0 '), 0);
  for (const v of ['', '1.5MB', '-1', '10TB', 'MB', '1e6']) assert.throws(() => parseBytes(v), /expected a size such as/, v);
});

test('seconds: positive numbers only', () => {
  assert.equal(parseSeconds('0.5'), 0.5);
  assert.equal(parseSeconds('3600'), 3600);
  for (const v of ['0', '-3', 'soon', '', 'Infinity']) assert.throws(() => parseSeconds(v), /positive number of seconds/, v);
});

test('durations read as an operator would say them', () => {
  assert.equal(formatDuration(0), '0 s');
  assert.equal(formatDuration(-5), '0 s');
  assert.equal(formatDuration(59_400), '59 s');
  assert.equal(formatDuration(61_000), '1 min 1 s');
  assert.equal(formatDuration(3_600_000 + 125_000), '1 h 2 min');
});

test('progress: done of total, percent, average rate and time left', () => {
  const mb = 1024 ** 2;
  assert.equal(describeProgress({ doneBytes: 400 * mb, totalBytes: 1000 * mb, elapsedMs: 4000 }), '400 MB of 1000 MB (40%), 100 MB/s, 6 s left');
  // Total not known yet; nothing copied yet; finished (no time left); pg_basebackup's total is an estimate and may be passed.
  assert.equal(describeProgress({ doneBytes: 5 * mb, totalBytes: 0, elapsedMs: 1000 }), '5.0 MB, 5.0 MB/s');
  assert.equal(describeProgress({ doneBytes: 0, totalBytes: 10 * mb, elapsedMs: 0 }), '0 B of 10 MB (0%)');
  assert.equal(describeProgress({ doneBytes: 10 * mb, totalBytes: 10 * mb, elapsedMs: 2000 }), '10 MB of 10 MB (100%), 5.0 MB/s');
  assert.equal(describeProgress({ doneBytes: 11 * mb, totalBytes: 10 * mb, elapsedMs: 1000 }), '11 MB of 10 MB (100%), 11 MB/s');
});

test('pool --json: SHOW POOL_NODES cells typed; an empty number is null; a missing column is named', () => {
  const fields = [...POOL_NODES_COLUMNS];
  const rows = [
    ['0', '127.0.0.1', '15432', 'up', '0.500000', 'primary', '3', 'false', '0'],
    ['1', 'db2', '15433', 'down', '', 'standby', '0', 'true', ''],
  ];
  assert.deepEqual(parsePoolNodes(fields, rows), [
    { node_id: 0, hostname: '127.0.0.1', port: 15432, status: 'up', lb_weight: 0.5, role: 'primary', select_cnt: 3, load_balance_node: false, replication_delay: 0 },
    { node_id: 1, hostname: 'db2', port: 15433, status: 'down', lb_weight: null, role: 'standby', select_cnt: 0, load_balance_node: true, replication_delay: null },
  ]);
  // Columns in another order are found by name.
  const reversed = [...fields].reverse();
  assert.deepEqual(parsePoolNodes(reversed, rows.map((r) => [...r].reverse())), parsePoolNodes(fields, rows));
  assert.throws(
    () => parsePoolNodes(fields.filter((f) => f !== 'select_cnt'), [rows[0]!.filter((_, i) => i !== fields.indexOf('select_cnt'))]),
    (e: unknown) => e instanceof UsageError && /no column select_cnt/.test(e.message),
  );
});
