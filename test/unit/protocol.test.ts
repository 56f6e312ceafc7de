import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CANCEL_REQUEST, GSSENC_REQUEST, MAX_STARTUP_LENGTH, MessageReader, PROTOCOL_3, ProtocolError, SSL_REQUEST, StartupReader, parseAuthentication, parseBackendKeyData, parseCommandComplete, parseDataRow, parseErrorOrNotice, parseParameterStatus, parsePassword, parseQuery, parseReadyForQuery, parseRowDescription, type Message, type StartupPacket } from '../../src/proxy/protocol.js';
import { encodeAuthentication, encodeAuthenticationOk, encodeBackendKeyData, encodeCancel, encodeCommandComplete, encodeDataRow, encodeEmptyQueryResponse, encodeErrorResponse, encodeNotice, encodeParameterStatus, encodePassword, encodeQuery, encodeReadyForQuery, encodeRowDescription, encodeStartup, encodeTerminate } from '../../src/proxy/protocol-encode.js';

// Strings without NUL (C strings on the wire), including multi-byte characters.
const cstr = fc.string({ unit: 'grapheme', maxLength: 40 }).filter((s) => !s.includes('\0'));
const nonEmptyCstr = cstr.filter((s) => s.length > 0);
const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const status = fc.constantFrom('I' as const, 'T' as const, 'E' as const);

/** One encoded message of any kind the codec writes. */
const anyMessage: fc.Arbitrary<Buffer> = fc.oneof(
  status.map(encodeReadyForQuery),
  fc.tuple(int32, int32).map(([p, s]) => encodeBackendKeyData(p, s)),
  cstr.map(encodeQuery),
  cstr.map(encodeCommandComplete),
  fc.tuple(cstr, cstr).map(([n, v]) => encodeParameterStatus(n, v)),
  fc.array(cstr, { maxLength: 5 }).map(encodeRowDescription),
  fc.array(fc.option(fc.string({ maxLength: 30 })), { maxLength: 5 }).map(encodeDataRow),
  fc.tuple(cstr, cstr).map(([c, m]) => encodeErrorResponse({ severity: 'ERROR', code: c, message: m })),
  fc.constant(encodeEmptyQueryResponse()),
  fc.constant(encodeTerminate()),
  fc.uint8Array({ maxLength: 3000 }).map((body) => {
    const b = Buffer.alloc(5 + body.length);
    b[0] = 0x64; // 'd' CopyData with arbitrary bytes
    b.writeInt32BE(4 + body.length, 1);
    b.set(body, 5);
    return b;
  }),
);

/** Splits a buffer at the given (sorted, deduplicated) cut points. */
function split(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, buf.length]) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  return out;
}

function readAll(chunks: Buffer[], maxLength?: number, complete = true): Message[] {
  const reader = new MessageReader(maxLength);
  const out: Message[] = [];
  for (const c of chunks) {
    reader.push(c);
    for (let m = reader.next(); m; m = reader.next()) out.push(m);
  }
  if (complete) assert.equal(reader.buffered, 0);
  return out;
}

function readStartups(chunks: Buffer[]): { packets: StartupPacket[]; rest: Buffer } {
  const reader = new StartupReader();
  const packets: StartupPacket[] = [];
  let rest: Buffer = Buffer.alloc(0);
  for (const c of chunks) {
    for (let got = reader.push(c); got; got = reader.push(got.rest)) {
      packets.push(got.packet);
      rest = got.rest;
      if (got.rest.length === 0) break;
    }
  }
  return { packets, rest };
}

function throwsProtocol(fn: () => unknown, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `expected ProtocolError, got ${String(err)}`);
    if (message) assert.match(err.message, message);
    return true;
  });
}

function untyped(code: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(8 + body.length);
  b.writeInt32BE(b.length, 0);
  b.writeInt32BE(code | 0, 4);
  body.copy(b, 8);
  return b;
}

describe('protocol: encode -> parse round trips', () => {
  it('every encoder and its parser agree, and each frame is one whole message', () => {
    fc.assert(
      fc.property(status, int32, int32, cstr, cstr, (st, a, b, s1, s2) => {
        assert.equal(parseReadyForQuery(encodeReadyForQuery(st)), st);
        assert.deepEqual(parseBackendKeyData(encodeBackendKeyData(a, b)), { pid: a, secret: b });
        assert.equal(parseQuery(encodeQuery(s1)), s1);
        assert.equal(parseCommandComplete(encodeCommandComplete(s1)), s1);
        assert.equal(parsePassword(encodePassword(s2)), s2);
        assert.deepEqual(parseParameterStatus(encodeParameterStatus(s1, s2)), { name: s1, value: s2 });
        assert.equal(parseAuthentication(encodeAuthenticationOk()), 0);
        assert.equal(parseAuthentication(encodeAuthentication(a)), a);
        for (const f of [encodeQuery(s1), encodeParameterStatus(s1, s2), encodeBackendKeyData(a, b)]) {
          assert.deepEqual(readAll([f]).map((m) => m.frame), [f]);
        }
      }),
    );
  });

  it('error and notice fields', () => {
    const opt = fc.option(cstr, { nil: undefined });
    fc.assert(
      fc.property(fc.constantFrom('ERROR' as const, 'FATAL' as const), cstr, cstr, opt, opt, (sev, code, message, detail, hint) => {
        const want: Record<string, string> = { S: sev, V: sev, C: code, M: message };
        if (detail !== undefined) want.D = detail;
        if (hint !== undefined) want.H = hint;
        assert.deepEqual(parseErrorOrNotice(encodeErrorResponse({ severity: sev, code, message, detail, hint })), want);
        const notice = encodeNotice({ severity: 'NOTICE', code, message, detail, hint });
        assert.equal(notice[0], 'N'.charCodeAt(0));
        assert.deepEqual(parseErrorOrNotice(notice), { ...want, S: 'NOTICE', V: 'NOTICE' });
      }),
    );
  });

  it('row description and data rows', () => {
    fc.assert(
      fc.property(fc.array(cstr, { maxLength: 20 }), fc.array(fc.option(fc.string()), { maxLength: 20 }), (cols, vals) => {
        assert.deepEqual(parseRowDescription(encodeRowDescription(cols)), cols);
        assert.deepEqual(parseDataRow(encodeDataRow(vals)), vals);
      }),
    );
  });

  it('startup and cancel packets', () => {
    const params = fc.dictionary(nonEmptyCstr, cstr, { maxKeys: 6 });
    fc.assert(
      fc.property(params, nonEmptyCstr, fc.integer({ min: 0, max: 0xffff }), (p, user, minor) => {
        const all = { ...p, user };
        const raw = encodeStartup(all, (3 << 16) | minor);
        const { packets } = readStartups([raw]);
        assert.equal(packets.length, 1);
        const got = packets[0];
        assert.ok(got?.kind === 'startup');
        assert.equal(got.protocol, (3 << 16) | minor);
        assert.deepEqual({ ...got.params }, all);
        assert.deepEqual(got.raw, raw);
      }),
    );
    fc.assert(
      fc.property(int32, int32, (pid, secret) => {
        assert.deepEqual(readStartups([encodeCancel(pid, secret)]).packets, [{ kind: 'cancel', pid, secret }]);
      }),
    );
  });

  it('empty query response and terminate are bare 5-byte frames', () => {
    assert.deepEqual(encodeEmptyQueryResponse(), Buffer.from([0x49, 0, 0, 0, 4]));
    assert.deepEqual(encodeTerminate(), Buffer.from([0x58, 0, 0, 0, 4]));
  });

  it('encoders refuse NUL inside C strings', () => {
    throwsProtocol(() => encodeQuery('a\0b'), /NUL/);
  });
});

describe('protocol: framing is independent of chunking', () => {
  it('MessageReader yields the same messages for any split of the stream', () => {
    fc.assert(
      fc.property(fc.array(anyMessage, { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 40 }), (msgs, cuts) => {
        const stream = Buffer.concat(msgs);
        const got = readAll(split(stream, cuts));
        assert.deepEqual(got.map((m) => m.frame), msgs);
        assert.deepEqual(got.map((m) => m.type), msgs.map((m) => m[0]));
      }),
    );
  });

  it('MessageReader with 1-byte chunks', () => {
    fc.assert(
      fc.property(fc.array(anyMessage, { maxLength: 8 }), (msgs) => {
        const stream = Buffer.concat(msgs);
        const chunks = [...stream].map((b) => Buffer.from([b]));
        assert.deepEqual(readAll(chunks).map((m) => m.frame), msgs);
      }),
      { numRuns: 50 },
    );
  });

  it('StartupReader yields the same packets for any split, and hands back the rest', () => {
    const packet = fc.oneof(
      fc.constant(untyped(SSL_REQUEST)),
      fc.constant(untyped(GSSENC_REQUEST)),
      fc.tuple(int32, int32).map(([p, s]) => encodeCancel(p, s)),
      fc.tuple(fc.dictionary(nonEmptyCstr, cstr, { maxKeys: 4 }), nonEmptyCstr).map(([p, u]) => encodeStartup({ ...p, user: u })),
    );
    fc.assert(
      fc.property(fc.array(packet, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 30 }), fc.boolean(), (packets, cuts, oneByte) => {
        const trailer = encodeQuery('SELECT 1');
        const stream = Buffer.concat([...packets, trailer]);
        const chunks = oneByte ? [...stream].map((b) => Buffer.from([b])) : split(stream, cuts);
        // Feed until every packet came out; then whatever is left is the rest.
        const reader = new StartupReader();
        const got: StartupPacket[] = [];
        const after: Buffer[] = [];
        for (const c of chunks) {
          if (got.length === packets.length) {
            after.push(c);
            continue;
          }
          for (let r = reader.push(c); r; r = got.length < packets.length ? reader.push(r.rest) : null) {
            got.push(r.packet);
            if (got.length === packets.length) after.push(r.rest);
          }
        }
        assert.equal(got.length, packets.length);
        assert.deepEqual(Buffer.concat(after), trailer);
        const want = readStartups(packets.map((p) => Buffer.from(p))).packets;
        assert.deepEqual(got, want);
      }),
    );
  });
});

describe('protocol: malformed input', () => {
  it('random garbage only ever raises ProtocolError and always terminates', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.nat(), { maxLength: 20 }), (bytes, cuts) => {
        const chunks = split(Buffer.from(bytes), cuts);
        for (const make of [() => readAll(chunks, 5000, false), () => readStartups(chunks)]) {
          try {
            make();
          } catch (err) {
            assert.ok(err instanceof ProtocolError, String(err));
          }
        }
      }),
    );
  });

  it('parsers given garbage frames of the right type only raise ProtocolError', () => {
    const parsers = [parseBackendKeyData, parseReadyForQuery, parseQuery, parseErrorOrNotice, parseParameterStatus, parseAuthentication, parsePassword, parseCommandComplete, parseRowDescription, parseDataRow];
    fc.assert(
      fc.property(fc.constantFrom(...'KZQENSRpCTD'), fc.uint8Array({ maxLength: 60 }), (type, body) => {
        const frame = Buffer.alloc(5 + body.length);
        frame[0] = type.charCodeAt(0);
        frame.writeInt32BE(4 + body.length, 1);
        frame.set(body, 5);
        for (const parse of parsers) {
          try {
            parse(frame);
          } catch (err) {
            assert.ok(err instanceof ProtocolError, `${parse.name}: ${String(err)}`);
          }
        }
      }),
    );
  });

  it('message lengths below 4 or over the limit are refused as soon as the header arrives', () => {
    fc.assert(
      fc.property(fc.integer({ min: -(2 ** 31), max: 3 }), (len) => {
        const reader = new MessageReader();
        const h = Buffer.alloc(5);
        h[0] = 0x51;
        h.writeInt32BE(len, 1);
        reader.push(h);
        throwsProtocol(() => reader.next(), /invalid message length/);
      }),
    );
    const reader = new MessageReader(1000);
    reader.push(Buffer.from([0x51, 0, 0, 0x03, 0xe9])); // 1001
    throwsProtocol(() => reader.next(), /message too long \(1001 bytes, limit 1000\)/);
    const ok = new MessageReader(1000);
    ok.push(Buffer.concat([Buffer.from([0x64, 0, 0, 0x03, 0xe8]), Buffer.alloc(996)]));
    assert.equal(ok.next()?.frame.length, 1001);
  });

  it('refuses bad startup packets with a clear message', () => {
    const refuse = (buf: Buffer, message: RegExp) => throwsProtocol(() => new StartupReader().push(buf), message);
    // 1234.5678 is the CancelRequest code: a startup-shaped packet with it is a malformed cancel
    refuse(encodeStartup({ user: 'xyz' }, (1234 << 16) | 5678), /invalid cancel request length 18 \(expected 16\)/);
    refuse(encodeStartup({ user: 'x' }, (1234 << 16) | 5681), /unsupported frontend protocol 1234\.5681: this proxy speaks 3\.0/);
    refuse(encodeStartup({ user: 'x' }, 1 << 16), /unsupported frontend protocol 1\.0/);
    refuse(encodeStartup({ database: 'x' }), /startup packet has no user/);
    refuse(encodeStartup({ user: '' }), /startup packet has no user/);
    // unterminated: drop the final NUL, or cut inside a value
    const full = encodeStartup({ user: 'alice', database: 'db' });
    const noTerminator = Buffer.from(full.subarray(0, full.length - 1));
    noTerminator.writeInt32BE(noTerminator.length, 0);
    refuse(noTerminator, /not terminated/);
    const cut = Buffer.from(full.subarray(0, 8 + 'user\0ali'.length));
    cut.writeInt32BE(cut.length, 0);
    refuse(cut, /unterminated parameter/);
    const trailing = Buffer.concat([full, Buffer.from('x\0')]);
    trailing.writeInt32BE(trailing.length, 0);
    refuse(trailing, /after the terminating NUL/);
    // lengths: refused before the body arrives
    const long = Buffer.alloc(4);
    long.writeInt32BE(MAX_STARTUP_LENGTH + 1, 0);
    refuse(long, /startup packet too long \(10001 bytes, limit 10000\)/);
    refuse(Buffer.from([0, 0, 0, 7, 0, 0, 0]), /invalid startup packet length 7/);
    refuse(Buffer.from([0xff, 0xff, 0xff, 0xff]), /too long|invalid/);
    // cancel must be exactly 16 bytes
    refuse(untyped(CANCEL_REQUEST, Buffer.alloc(12)), /cancel request length 20/);
    refuse(untyped(SSL_REQUEST, Buffer.alloc(4)), /SSL request length 12/);
  });

  it('recognises SSLRequest, GSSENCRequest and a 16-byte CancelRequest', () => {
    assert.deepEqual(new StartupReader().push(untyped(SSL_REQUEST))?.packet, { kind: 'ssl' });
    assert.deepEqual(new StartupReader().push(untyped(GSSENC_REQUEST))?.packet, { kind: 'gssenc' });
    // length 16, code 80877102 (0x04d2162e), pid 12345, secret 12345678
    const cancel = Buffer.from('00000010' + '04d2162e' + '00003039' + '00bc614e', 'hex');
    assert.equal(cancel.length, 16);
    assert.deepEqual(new StartupReader().push(cancel)?.packet, { kind: 'cancel', pid: 12345, secret: 12345678 });
    assert.equal(untyped(PROTOCOL_3).readInt32BE(4), 196608);
  });
});

describe('protocol: throughput (generous bounds, not a benchmark)', () => {
  it('1,000,000 small messages in well under a few seconds', () => {
    const one = encodeReadyForQuery('I');
    const n = 1_000_000;
    const stream = Buffer.alloc(one.length * n);
    for (let i = 0; i < n; i++) one.copy(stream, i * one.length);
    const started = performance.now();
    const reader = new MessageReader();
    let count = 0;
    const step = 65539; // odd-sized chunks: messages straddle them
    for (let off = 0; off < stream.length; off += step) {
      reader.push(stream.subarray(off, off + step));
      for (let m = reader.next(); m; m = reader.next()) count++;
    }
    const ms = performance.now() - started;
    assert.equal(count, n);
    assert.ok(ms < 3000, `took ${ms.toFixed(0)} ms`);
  });

  it('a 32 MiB message arriving in 4 KiB chunks is assembled once', () => {
    const size = 32 * 1024 * 1024;
    const msg = Buffer.alloc(size + 5, 7);
    msg[0] = 0x64;
    msg.writeInt32BE(size + 4, 1);
    const started = performance.now();
    const reader = new MessageReader();
    let got: Message | null = null;
    for (let off = 0; off < msg.length; off += 4096) {
      reader.push(msg.subarray(off, off + 4096));
      got = reader.next() ?? got;
    }
    const ms = performance.now() - started;
    assert.ok(got);
    assert.ok(got.frame.equals(msg));
    assert.ok(ms < 3000, `took ${ms.toFixed(0)} ms`);
  });
});
