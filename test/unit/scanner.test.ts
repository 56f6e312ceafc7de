// The relay's frame scanner: same findings whatever the chunking; bad lengths refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameError, FrameScanner } from '../../src/proxy/scanner.js';
import { bytewise, cutAt } from '../helpers/chunks.js';

function message(type: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(body.length + 4, 1);
  body.copy(b, 5);
  return b;
}

const arbMessage = fc.oneof(
  fc.constantFrom('I', 'T', 'E').map((s) => message('Z', Buffer.from(s))),
  fc.tuple(fc.constantFrom('D', 'C', 'T', 'N', 'A'), fc.uint8Array({ maxLength: 300 })).map(([t, b]) => message(t, Buffer.from(b))),
);

function findings(chunks: Buffer[]): { types: string; statuses: string } {
  let types = '';
  let statuses = '';
  const s = new FrameScanner(1 << 20, {
    onMessage: (t) => (types += String.fromCharCode(t)),
    onReadyForQuery: (st) => (statuses += st),
  });
  for (const c of chunks) s.scan(c);
  assert.ok(s.atBoundary());
  return { types, statuses };
}

test('findings do not depend on how the stream is chunked', () => {
  fc.assert(
    fc.property(fc.array(arbMessage, { maxLength: 40 }), fc.array(fc.nat(), { maxLength: 20 }), (msgs, cuts) => {
      const stream = Buffer.concat(msgs);
      const whole = findings([stream]);
      assert.deepEqual(findings(cutAt(stream, cuts)), whole);
      assert.deepEqual(findings(bytewise(stream)), whole);
      assert.equal(whole.types.length, msgs.length);
    }),
  );
});

test('boundaries: not at a boundary in the middle of a message', () => {
  const s = new FrameScanner(1000, {});
  const m = message('D', Buffer.alloc(10));
  s.scan(m.subarray(0, 7));
  assert.equal(s.atBoundary(), false);
  s.scan(m.subarray(7));
  assert.equal(s.atBoundary(), true);
});

test('lengths below 4 or over the limit are refused', () => {
  const bad = Buffer.from([0x44, 0, 0, 0, 3]);
  assert.throws(() => new FrameScanner(1000, {}).scan(bad), FrameError);
  const huge = Buffer.from([0x44, 0x7f, 0xff, 0xff, 0xff]);
  assert.throws(() => new FrameScanner(1000, {}).scan(huge), /invalid message length 2147483647/);
});

test('bodies are handed over when they arrive in one piece', () => {
  const bodies: (string | null)[] = [];
  const s = new FrameScanner(1000, { onMessage: (_t, _l, body) => bodies.push(body ? body.toString() : null) });
  const a = message('Q', Buffer.from('SELECT 1\0'));
  const b = message('Q', Buffer.from('SELECT 2\0'));
  s.scan(Buffer.concat([a, b.subarray(0, 7)]));
  s.scan(b.subarray(7));
  assert.deepEqual(bodies, ['SELECT 1\0', null]);
});
