// What a server sends a session between transactions without being asked: a notification, a
// notice, a changed setting, or its goodbye before it closes. The client of a session that the
// proxy will move to another server must get everything but the goodbye, which is about a
// connection the client never sees. Chunks may cut messages anywhere, so this sorts whole messages.
import { parseErrorOrNotice } from './protocol.js';

/** PostgreSQL sends a goodbye ahead of closing: shutdown, crash of another process, idle-session
 * timeout (class 57P). After a crash or an immediate shutdown it is a notice (WARNING), not an error. */
const GOODBYE_SQLSTATE = /^57P0[1-5]$/;
/** A goodbye is a few hundred bytes; a longer message is passed on without being held whole. */
const LONGEST_GOODBYE = 64 * 1024;

/** A whole ErrorResponse or NoticeResponse that says the server is closing the connection. */
export function isGoodbye(frame: Buffer): boolean {
  const type = frame[0];
  if (type !== 0x45 /* E */ && type !== 0x4e /* N */) return false;
  let fields: Record<string, string>;
  try {
    fields = parseErrorOrNotice(frame);
  } catch {
    return false; // a malformed message is the client's to see, not a reason to hide it
  }
  const severity = fields.V ?? fields.S;
  if (type === 0x45 && (severity === 'FATAL' || severity === 'PANIC')) return true;
  return GOODBYE_SQLSTATE.test(fields.C ?? '');
}

export interface Sorted {
  /** Bytes for the client, in order: whole messages, or the body of a long one being passed on. */
  pass: Buffer;
  /** The server said goodbye: the message and everything after it are dropped. */
  goodbye: boolean;
}

const EMPTY = Buffer.alloc(0);

/** One server connection's unsolicited stream (a new sorter for each connection). */
export class UnsolicitedSorter {
  /** The start of a message whose end has not come yet. */
  private tail: Buffer = EMPTY;
  /** Bytes of a long message still to pass through unsorted. */
  private passing = 0;
  private closed = false;

  /** Between messages: the stream may change hands (to the native relay) here. */
  get atBoundary(): boolean {
    return this.tail.length === 0 && this.passing === 0;
  }

  get saidGoodbye(): boolean {
    return this.closed;
  }

  sort(chunk: Buffer): Sorted {
    if (this.closed) return { pass: EMPTY, goodbye: true };
    const buf = this.tail.length ? Buffer.concat([this.tail, chunk]) : chunk;
    this.tail = EMPTY;
    let pos = 0;
    if (this.passing > 0) {
      pos = Math.min(this.passing, buf.length);
      this.passing -= pos;
    }
    while (pos < buf.length) {
      if (buf.length - pos < 5) break;
      const length = buf.readInt32BE(pos + 1);
      // A bad length is the server's fault: pass it on, and the client side's scanner fails the session.
      if (length < 4) return { pass: buf, goodbye: false };
      const end = pos + 1 + length;
      if (length > LONGEST_GOODBYE) {
        this.passing = Math.max(0, end - buf.length);
        pos = Math.min(end, buf.length);
        continue;
      }
      if (end > buf.length) break;
      if (isGoodbye(buf.subarray(pos, end))) {
        this.closed = true;
        return { pass: buf.subarray(0, pos), goodbye: true };
      }
      pos = end;
    }
    this.tail = Buffer.from(buf.subarray(pos));
    return { pass: buf.subarray(0, pos), goodbye: false };
  }

  /** The session is busy again: what is held goes ahead of the chunk, unsorted (replies are the client's). */
  flush(chunk: Buffer): Buffer {
    if (this.closed) return EMPTY;
    const held = this.tail;
    this.tail = EMPTY;
    this.passing = 0;
    return held.length ? Buffer.concat([held, chunk]) : chunk;
  }
}
