// Unsolicited server messages on an idle movable session: every one reaches the client except the
// server's goodbye, whatever the chunking.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeErrorResponse, encodeMessage, encodeNotice, encodeParameterStatus } from '../../src/proxy/protocol-encode.js';
import { isGoodbye, UnsolicitedSorter } from '../../src/proxy/unsolicited.js';
import { bytewise, cutAt } from '../helpers/chunks.js';

const fatal = encodeErrorResponse({ severity: 'FATAL', code: '57P01', message: 'terminating connection due to administrator command' });
const immediate = encodeNotice({ severity: 'WARNING', code: '57P01', message: 'terminating connection due to immediate shutdown command' });
const crash = encodeNotice({ severity: 'WARNING', code: '57P02', message: 'terminating connection because of crash of another server process' });
const idleTimeout = encodeErrorResponse({ severity: 'FATAL', code: '57P05', message: 'terminating connection due to idle-session timeout' });
const notice = encodeNotice({ severity: 'NOTICE', code: '00000', message: 'a notice' });
const warning = encodeNotice({ severity: 'WARNING', code: '01000', message: 'a warning that is not a goodbye' });
const error = encodeErrorResponse({ severity: 'ERROR', code: '57014', message: 'an error that is not a goodbye' });
const parameter = encodeParameterStatus('application_name', 'app');

function notification(payload: string): Buffer {
  const channel = Buffer.from('jobs\0');
  const body = Buffer.concat([Buffer.alloc(4), channel, Buffer.from(payload + '\0')]);
  body.writeInt32BE(4242, 0);
  return encodeMessage('A', body);
}

/** Feeds the chunks; returns what reached the client and whether a goodbye was seen. */
function sortAll(chunks: Buffer[]): { passed: Buffer; goodbye: boolean } {
  const s = new UnsolicitedSorter();
  const out: Buffer[] = [];
  let goodbye = false;
  for (const c of chunks) {
    const r = s.sort(c);
    out.push(r.pass);
    goodbye ||= r.goodbye;
  }
  return { passed: Buffer.concat(out), goodbye };
}

test('goodbyes: FATAL or PANIC errors, and class 57P shutdown notices; not other errors or warnings', () => {
  for (const g of [fatal, immediate, crash, idleTimeout]) assert.equal(isGoodbye(g), true);
  for (const m of [notice, warning, error, parameter, notification('x')]) assert.equal(isGoodbye(m), false);
  // A malformed error is not hidden from the client.
  assert.equal(isGoodbye(encodeMessage('E', Buffer.from('SFATAL'))), false);
});

test('notifications, notices and parameter changes pass; the goodbye and all after it do not', () => {
  const stream = Buffer.concat([notification('one'), notice, parameter, immediate, notification('late')]);
  const r = sortAll([stream]);
  assert.equal(r.goodbye, true);
  assert.deepEqual(r.passed, Buffer.concat([notification('one'), notice, parameter]));
});

test('a goodbye cut into pieces is still recognised, and a message is passed only when whole', () => {
  const s = new UnsolicitedSorter();
  const n = notification('payload');
  assert.deepEqual(s.sort(n.subarray(0, 3)).pass, Buffer.alloc(0));
  assert.equal(s.atBoundary, false);
  assert.deepEqual(s.sort(n.subarray(3)).pass, n);
  assert.equal(s.atBoundary, true);
  const first = s.sort(fatal.subarray(0, 10));
  assert.deepEqual(first, { pass: Buffer.alloc(0), goodbye: false });
  assert.equal(s.sort(fatal.subarray(10)).goodbye, true);
  assert.equal(s.saidGoodbye, true);
  assert.deepEqual(s.sort(notice), { pass: Buffer.alloc(0), goodbye: true });
});

test('what reaches the client does not depend on how the stream is chunked', () => {
  const arbMessage = fc.oneof(
    fc.constantFrom(notice, warning, error, parameter, fatal, immediate, crash),
    fc.string({ maxLength: 200 }).map((p) => notification(p.replace(/\0/g, ''))),
  );
  fc.assert(
    fc.property(fc.array(arbMessage, { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 20 }), (msgs, cuts) => {
      const stream = Buffer.concat(msgs);
      const firstGoodbye = msgs.findIndex(isGoodbye);
      const expected = Buffer.concat(firstGoodbye < 0 ? msgs : msgs.slice(0, firstGoodbye));
      for (const chunks of [[stream], cutAt(stream, cuts), bytewise(stream)]) {
        const r = sortAll(chunks);
        assert.deepEqual(r.passed, expected);
        assert.equal(r.goodbye, firstGoodbye >= 0);
      }
    }),
  );
});

test('a message longer than any goodbye passes through as it comes, without being held whole', () => {
  const big = notification('x'.repeat(100_000));
  const s = new UnsolicitedSorter();
  const a = s.sort(big.subarray(0, 1000));
  assert.deepEqual(a.pass, big.subarray(0, 1000));
  const b = s.sort(Buffer.concat([big.subarray(1000), notice]));
  assert.deepEqual(b.pass, Buffer.concat([big.subarray(1000), notice]));
  assert.equal(s.atBoundary, true);
});

test('when the session is busy again, held bytes go ahead of the reply, unsorted', () => {
  const s = new UnsolicitedSorter();
  s.sort(notice.subarray(0, 7));
  const reply = encodeMessage('C', Buffer.from('SELECT 1\0'));
  assert.deepEqual(s.flush(Buffer.concat([notice.subarray(7), reply])), Buffer.concat([notice, reply]));
  assert.equal(s.atBoundary, true);
});

test('a bad length is passed on for the client-side scanner to refuse, not held forever', () => {
  const bad = Buffer.from([0x4e, 0, 0, 0, 2, 1, 2, 3]);
  assert.deepEqual(new UnsolicitedSorter().sort(bad), { pass: bad, goodbye: false });
});
