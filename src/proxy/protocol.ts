// PostgreSQL v3 wire protocol, as much as the proxy needs: framing of startup packets and typed
// messages, parsers for what it reads, encoders for what it writes. Frames are whole messages
// (type byte, int32 length, body); parsers take a frame and check its type and length.

export const PROTOCOL_3 = 196608; // 3 << 16
export const SSL_REQUEST = 80877103;
export const GSSENC_REQUEST = 80877104;
export const CANCEL_REQUEST = 80877102;
/** PostgreSQL's MAX_STARTUP_PACKET_LENGTH. */
export const MAX_STARTUP_LENGTH = 10000;
export const DEFAULT_MAX_MESSAGE_LENGTH = 64 * 1024 * 1024;

export class ProtocolError extends Error {
  constructor(
    message: string,
    /** SQLSTATE to report to the peer; protocol_violation by default. */
    readonly code: string = '08P01',
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: number }
  | { kind: 'startup'; protocol: number; params: Record<string, string>; raw: Buffer };

export interface Message {
  /** The type byte as a char code, e.g. 0x51 for 'Q'. */
  type: number;
  /** The whole message: type byte, length and body. */
  frame: Buffer;
}

/** Growable list of chunks with O(1) append and copy-once extraction. */
class ChunkQueue {
  private chunks: Buffer[] = [];
  private head = 0; // index of the first live chunk
  private offset = 0; // bytes already consumed from chunks[head]
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** Byte at position i (0-based from the read position); caller ensures i < length. */
  byteAt(i: number): number {
    let k = this.head;
    let pos = this.offset + i;
    for (;;) {
      const c = this.chunks[k] as Buffer;
      if (pos < c.length) return c[pos] as number;
      pos -= c.length;
      k++;
    }
  }

  int32At(i: number): number {
    return ((this.byteAt(i) << 24) | (this.byteAt(i + 1) << 16) | (this.byteAt(i + 2) << 8) | this.byteAt(i + 3)) | 0;
  }

  /** Removes and returns n bytes: a subarray when they lie in one chunk, else one copy. */
  take(n: number): Buffer {
    const first = this.chunks[this.head] as Buffer;
    let out: Buffer;
    if (first.length - this.offset >= n) {
      out = first.subarray(this.offset, this.offset + n);
      this.offset += n;
      if (this.offset === first.length) this.advance();
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[this.head] as Buffer;
        const count = Math.min(c.length - this.offset, n - filled);
        c.copy(out, filled, this.offset, this.offset + count);
        filled += count;
        this.offset += count;
        if (this.offset === c.length) this.advance();
      }
    }
    this.length -= n;
    return out;
  }

  takeAll(): Buffer {
    return this.length === 0 ? Buffer.alloc(0) : this.take(this.length);
  }

  private advance(): void {
    this.chunks[this.head] = undefined as unknown as Buffer; // release the memory now
    this.head++;
    this.offset = 0;
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}

/**
 * Reads the first, untyped packet of a connection. After it yields a packet it is empty again:
 * feed `rest` back in (e.g. after answering an SSLRequest) or hand it to a MessageReader.
 */
export class StartupReader {
  private queue = new ChunkQueue();

  push(chunk: Buffer): { packet: StartupPacket; rest: Buffer } | null {
    this.queue.push(chunk);
    if (this.queue.length < 4) return null;
    const len = this.queue.int32At(0);
    if (len > MAX_STARTUP_LENGTH) {
      throw new ProtocolError(`startup packet too long (${len >>> 0} bytes, limit ${MAX_STARTUP_LENGTH})`);
    }
    if (len < 8) throw new ProtocolError(`invalid startup packet length ${len}`);
    if (this.queue.length < len) return null;
    const raw = this.queue.take(len);
    const rest = this.queue.takeAll();
    return { packet: parseStartupPacket(raw), rest };
  }
}

function parseStartupPacket(raw: Buffer): StartupPacket {
  const code = raw.readInt32BE(4);
  if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
    if (raw.length !== 8) throw new ProtocolError(`invalid ${code === SSL_REQUEST ? 'SSL' : 'GSSENC'} request length ${raw.length}`);
    return { kind: code === SSL_REQUEST ? 'ssl' : 'gssenc' };
  }
  if (code === CANCEL_REQUEST) {
    if (raw.length !== 16) throw new ProtocolError(`invalid cancel request length ${raw.length} (expected 16)`);
    return { kind: 'cancel', pid: raw.readInt32BE(8), secret: raw.readInt32BE(12) };
  }
  const major = code >>> 16;
  if (major !== 3) {
    throw new ProtocolError(`unsupported frontend protocol ${major}.${code & 0xffff}: this proxy speaks 3.0`, '0A000');
  }
  const params: Record<string, string> = Object.create(null) as Record<string, string>;
  let pos = 8;
  for (;;) {
    if (pos >= raw.length) throw new ProtocolError('invalid startup packet: parameters are not terminated by a NUL byte');
    if (raw[pos] === 0) {
      if (pos !== raw.length - 1) throw new ProtocolError('invalid startup packet: data after the terminating NUL byte');
      break;
    }
    const keyEnd = raw.indexOf(0, pos);
    const valueEnd = keyEnd < 0 ? -1 : raw.indexOf(0, keyEnd + 1);
    if (valueEnd < 0) throw new ProtocolError('invalid startup packet: unterminated parameter name or value');
    params[raw.toString('utf8', pos, keyEnd)] = raw.toString('utf8', keyEnd + 1, valueEnd);
    pos = valueEnd + 1;
  }
  if (!params.user) throw new ProtocolError('startup packet has no user', '28000');
  return { kind: 'startup', protocol: code, params, raw };
}

/** Splits a byte stream into typed messages. */
export class MessageReader {
  private queue = new ChunkQueue();

  constructor(readonly maxLength: number = DEFAULT_MAX_MESSAGE_LENGTH) {}

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  /** Bytes received but not yet returned as messages. */
  get buffered(): number {
    return this.queue.length;
  }

  next(): Message | null {
    if (this.queue.length < 5) return null;
    const len = this.queue.int32At(1);
    if (len < 4) throw new ProtocolError(`invalid message length ${len}`);
    if (len > this.maxLength) throw new ProtocolError(`message too long (${len} bytes, limit ${this.maxLength})`);
    if (this.queue.length < len + 1) return null;
    const frame = this.queue.take(len + 1);
    return { type: frame[0] as number, frame };
  }
}

// ---- parsers ----

function body(frame: Buffer, type: string, exactLength?: number): Buffer {
  if (frame.length < 5 || frame[0] !== type.charCodeAt(0)) {
    throw new ProtocolError(`expected a '${type}' message, got '${frame.length ? String.fromCharCode(frame[0] as number) : ''}'`);
  }
  const len = frame.readInt32BE(1);
  if (len !== frame.length - 1 || (exactLength !== undefined && len !== exactLength)) {
    throw new ProtocolError(`malformed '${type}' message (length ${len})`);
  }
  return frame.subarray(5);
}

function cstring(buf: Buffer, pos: number, what: string): [string, number] {
  const end = buf.indexOf(0, pos);
  if (end < 0) throw new ProtocolError(`malformed message: unterminated ${what}`);
  return [buf.toString('utf8', pos, end), end + 1];
}

export function parseBackendKeyData(frame: Buffer): { pid: number; secret: number } {
  const b = body(frame, 'K', 12);
  return { pid: b.readInt32BE(0), secret: b.readInt32BE(4) };
}

export function parseReadyForQuery(frame: Buffer): 'I' | 'T' | 'E' {
  const s = String.fromCharCode(body(frame, 'Z', 5)[0] as number);
  if (s !== 'I' && s !== 'T' && s !== 'E') throw new ProtocolError(`invalid transaction status '${s}'`);
  return s;
}

export function parseQuery(frame: Buffer): string {
  const b = body(frame, 'Q');
  const [sql, end] = cstring(b, 0, 'query string');
  if (end !== b.length) throw new ProtocolError('malformed query message: data after the query string');
  return sql;
}

/** ErrorResponse ('E') or NoticeResponse ('N'): field code char -> value. */
export function parseErrorOrNotice(frame: Buffer): Record<string, string> {
  const b = body(frame, frame[0] === 0x4e ? 'N' : 'E');
  const fields: Record<string, string> = {};
  let pos = 0;
  while (pos < b.length && b[pos] !== 0) {
    const code = String.fromCharCode(b[pos] as number);
    const [value, next] = cstring(b, pos + 1, 'error field');
    fields[code] = value;
    pos = next;
  }
  if (pos !== b.length - 1) throw new ProtocolError('malformed error message: missing terminator');
  return fields;
}

export function parseParameterStatus(frame: Buffer): { name: string; value: string } {
  const b = body(frame, 'S');
  const [name, p] = cstring(b, 0, 'parameter name');
  const [value, end] = cstring(b, p, 'parameter value');
  if (end !== b.length) throw new ProtocolError('malformed parameter status message');
  return { name, value };
}

export function parseAuthentication(frame: Buffer): number {
  const b = body(frame, 'R');
  if (b.length < 4) throw new ProtocolError('malformed authentication message');
  return b.readInt32BE(0);
}

/** SASLInitialResponse ('p'): the mechanism the client chose and its first message. */
export function parseSaslInitialResponse(frame: Buffer): { mechanism: string; data: string } {
  const b = body(frame, 'p');
  const [mechanism, at] = cstring(b, 0, 'SASL mechanism');
  if (b.length < at + 4) throw new ProtocolError('malformed SASLInitialResponse');
  const len = b.readInt32BE(at);
  if (len < -1 || b.length !== at + 4 + Math.max(len, 0)) throw new ProtocolError(`malformed SASLInitialResponse (data length ${len})`);
  return { mechanism, data: b.toString('utf8', at + 4) };
}

/** SASLResponse ('p'): the client's next SASL message. */
export function parseSaslResponse(frame: Buffer): string {
  return body(frame, 'p').toString('utf8');
}

/** PasswordMessage ('p') with a cleartext password. */
export function parsePassword(frame: Buffer): string {
  return cstring(body(frame, 'p'), 0, 'password')[0];
}

export function parseCommandComplete(frame: Buffer): string {
  return cstring(body(frame, 'C'), 0, 'command tag')[0];
}

export function parseRowDescription(frame: Buffer): string[] {
  const b = body(frame, 'T');
  if (b.length < 2) throw new ProtocolError('malformed row description');
  const n = b.readInt16BE(0);
  const names: string[] = [];
  let pos = 2;
  for (let i = 0; i < n; i++) {
    const [name, next] = cstring(b, pos, 'column name');
    names.push(name);
    pos = next + 18;
    if (pos > b.length) throw new ProtocolError('malformed row description');
  }
  if (pos !== b.length) throw new ProtocolError('malformed row description');
  return names;
}

export function parseDataRow(frame: Buffer): (string | null)[] {
  const b = body(frame, 'D');
  if (b.length < 2) throw new ProtocolError('malformed data row');
  const n = b.readInt16BE(0);
  const values: (string | null)[] = [];
  let pos = 2;
  for (let i = 0; i < n; i++) {
    if (pos + 4 > b.length) throw new ProtocolError('malformed data row');
    const len = b.readInt32BE(pos);
    pos += 4;
    if (len === -1) values.push(null);
    else if (len < 0 || pos + len > b.length) throw new ProtocolError('malformed data row');
    else values.push(b.toString('utf8', pos, (pos += len)));
  }
  if (pos !== b.length) throw new ProtocolError('malformed data row');
  return values;
}
