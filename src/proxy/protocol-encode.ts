// Encoders for the messages the proxy and its admin console write (see protocol.ts for framing
// and parsers).
import { PROTOCOL_3, CANCEL_REQUEST, ProtocolError } from './protocol.js';

function checkCString(s: string): string {
  if (s.includes('\0')) throw new ProtocolError('string contains a NUL byte', '22021');
  return s;
}

/** A typed message whose body is a list of NUL-terminated strings, plus an optional final NUL. */
function cstrings(type: string, strings: string[], terminator: boolean): Buffer {
  let len = 4 + (terminator ? 1 : 0);
  for (const s of strings) len += Buffer.byteLength(checkCString(s)) + 1;
  const buf = Buffer.allocUnsafe(len + 1);
  buf[0] = type.charCodeAt(0);
  buf.writeInt32BE(len, 1);
  let pos = 5;
  for (const s of strings) {
    pos += buf.write(s, pos);
    buf[pos++] = 0;
  }
  if (terminator) buf[pos] = 0;
  return buf;
}

function fixed(type: string, len: number): Buffer {
  const buf = Buffer.allocUnsafe(len + 1);
  buf[0] = type.charCodeAt(0);
  buf.writeInt32BE(len, 1);
  return buf;
}

export function encodeStartup(params: Record<string, string>, protocol: number = PROTOCOL_3): Buffer {
  const strings = Object.entries(params).flat();
  let len = 8 + 1;
  for (const s of strings) len += Buffer.byteLength(checkCString(s)) + 1;
  const buf = Buffer.allocUnsafe(len);
  buf.writeInt32BE(len, 0);
  buf.writeInt32BE(protocol | 0, 4);
  let pos = 8;
  for (const s of strings) {
    pos += buf.write(s, pos);
    buf[pos++] = 0;
  }
  buf[pos] = 0;
  return buf;
}

export function encodeCancel(pid: number, secret: number): Buffer {
  const buf = Buffer.allocUnsafe(16);
  buf.writeInt32BE(16, 0);
  buf.writeInt32BE(CANCEL_REQUEST, 4);
  buf.writeInt32BE(pid | 0, 8);
  buf.writeInt32BE(secret | 0, 12);
  return buf;
}

export interface ErrorFields {
  severity: string;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

function fieldList(f: ErrorFields): string[] {
  const out = ['S' + f.severity, 'V' + f.severity, 'C' + f.code, 'M' + f.message];
  if (f.detail !== undefined) out.push('D' + f.detail);
  if (f.hint !== undefined) out.push('H' + f.hint);
  return out;
}

export function encodeErrorResponse(f: ErrorFields & { severity: 'ERROR' | 'FATAL' }): Buffer {
  return cstrings('E', fieldList(f), true);
}

export function encodeNotice(f: ErrorFields & { severity: 'NOTICE' | 'WARNING' | 'INFO' | 'LOG' | 'DEBUG' }): Buffer {
  return cstrings('N', fieldList(f), true);
}

export function encodeReadyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  const buf = fixed('Z', 5);
  buf[5] = status.charCodeAt(0);
  return buf;
}

export function encodeBackendKeyData(pid: number, secret: number): Buffer {
  const buf = fixed('K', 12);
  buf.writeInt32BE(pid | 0, 5);
  buf.writeInt32BE(secret | 0, 9);
  return buf;
}

/** Authentication request with the given code (0 ok, 3 cleartext password, ...). */
export function encodeAuthentication(code: number): Buffer {
  const buf = fixed('R', 8);
  buf.writeInt32BE(code, 5);
  return buf;
}

/** AuthenticationSASL (10, the mechanisms offered), SASLContinue (11) or SASLFinal (12, the data). */
export function encodeAuthenticationSasl(code: 10 | 11 | 12, data: string): Buffer {
  const head = Buffer.alloc(4);
  head.writeInt32BE(code);
  return encodeMessage('R', Buffer.concat([head, Buffer.from(data, 'utf8')]));
}

export function encodeAuthenticationOk(): Buffer {
  return encodeAuthentication(0);
}

export function encodePassword(password: string): Buffer {
  return cstrings('p', [password], false);
}

export function encodeParameterStatus(name: string, value: string): Buffer {
  return cstrings('S', [name, value], false);
}

/** All columns text (oid 25), text format. */
export function encodeRowDescription(columns: string[]): Buffer {
  let len = 4 + 2;
  for (const c of columns) len += Buffer.byteLength(checkCString(c)) + 1 + 18;
  const buf = fixed('T', len);
  buf.writeInt16BE(columns.length, 5);
  let pos = 7;
  for (const c of columns) {
    pos += buf.write(c, pos);
    buf[pos++] = 0;
    pos = buf.writeInt32BE(0, pos); // table oid
    pos = buf.writeInt16BE(0, pos); // column number
    pos = buf.writeInt32BE(25, pos); // type oid: text
    pos = buf.writeInt16BE(-1, pos); // type length: variable
    pos = buf.writeInt32BE(-1, pos); // type modifier
    pos = buf.writeInt16BE(0, pos); // format: text
  }
  return buf;
}

export function encodeDataRow(values: (string | null)[]): Buffer {
  let len = 4 + 2;
  for (const v of values) len += 4 + (v === null ? 0 : Buffer.byteLength(v));
  const buf = fixed('D', len);
  buf.writeInt16BE(values.length, 5);
  let pos = 7;
  for (const v of values) {
    if (v === null) pos = buf.writeInt32BE(-1, pos);
    else {
      const n = buf.write(v, pos + 4);
      buf.writeInt32BE(n, pos);
      pos += 4 + n;
    }
  }
  return buf;
}

export function encodeCommandComplete(tag: string): Buffer {
  return cstrings('C', [tag], false);
}

export function encodeEmptyQueryResponse(): Buffer {
  return fixed('I', 4);
}

export function encodeQuery(sql: string): Buffer {
  return cstrings('Q', [sql], false);
}

export function encodeTerminate(): Buffer {
  return fixed('X', 4);
}

export function encodeSync(): Buffer {
  return fixed('S', 4);
}

/** A typed message around a body already encoded (a SASL response, a copy of a client's Parse). */
export function encodeMessage(type: string, body: Buffer): Buffer {
  const buf = fixed(type, 4 + body.length);
  body.copy(buf, 5);
  return buf;
}
