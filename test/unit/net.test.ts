// Port helpers: test clusters must not listen where outgoing connections take their local ports.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { ephemeralPortRange, freePortBlock, portInUse } from '../../src/util/net.js';

test('the ephemeral range is read from the kernel text, with the usual default when unreadable', () => {
  assert.deepEqual(ephemeralPortRange('32768\t60999\n'), [32768, 60999]);
  assert.deepEqual(ephemeralPortRange('1024 65535'), [1024, 65535]);
  assert.deepEqual(ephemeralPortRange(null), [32768, 60999]);
  assert.deepEqual(ephemeralPortRange('garbage'), [32768, 60999]);
});

test('a free port block lies outside the ephemeral range and is free', async () => {
  const [low, high] = ephemeralPortRange(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8'));
  for (let i = 0; i < 5; i++) {
    const base = await freePortBlock();
    for (const p of [base, base + 302]) assert.ok(p < low || p > high, `${p} is in ${low}-${high}`);
    assert.equal(await portInUse('127.0.0.1', base), false);
  }
});
