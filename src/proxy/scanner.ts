// Finds message boundaries in a relayed byte stream without copying it: the proxy forwards each
// chunk as it came and only learns what it needs (message types, ReadyForQuery status, sizes).

export class FrameError extends Error {}

export interface FrameEvents {
  /** A message starts: its type byte, its length (including the 4 length bytes), and its body when
   * the whole body is in the chunk at hand (null when it is split across chunks). */
  onMessage?(type: number, length: number, body: Buffer | null): void;
  /** A ReadyForQuery arrived with this transaction status ('I', 'T' or 'E'). */
  onReadyForQuery?(status: string): void;
}

const READY_FOR_QUERY = 0x5a; // 'Z'

export class FrameScanner {
  private readonly header = Buffer.alloc(5);
  private headerFill = 0;
  /** Bytes of the current message body still to pass. */
  private remaining = 0;
  private wantStatus = false;

  constructor(
    private readonly maxLength: number,
    private readonly events: FrameEvents,
  ) {}

  /** True between messages: an error may be injected into the stream here. */
  atBoundary(): boolean {
    return this.remaining === 0 && this.headerFill === 0 && !this.wantStatus;
  }

  /** Writes the scanner's position into 4 slots of `to` (the native relay's layout, see relay.c). */
  saveTo(to: Float64Array, at: number): void {
    let packed = 0;
    for (let i = 4; i >= 0; i--) packed = packed * 256 + this.header[i]!;
    to[at] = this.remaining;
    to[at + 1] = this.headerFill;
    to[at + 2] = packed;
    to[at + 3] = this.wantStatus ? 1 : 0;
  }

  /** Takes up the position the native relay left in `from`. */
  loadFrom(from: Float64Array, at: number): void {
    this.remaining = from[at]!;
    this.headerFill = from[at + 1]!;
    let packed = from[at + 2]!;
    for (let i = 0; i < 5; i++) {
      this.header[i] = packed % 256;
      packed = Math.floor(packed / 256);
    }
    this.wantStatus = from[at + 3] === 1;
  }

  scan(chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.remaining > 0) {
        if (this.wantStatus) {
          this.wantStatus = false;
          this.events.onReadyForQuery?.(String.fromCharCode(chunk[i]!));
        }
        const take = Math.min(this.remaining, n - i);
        this.remaining -= take;
        i += take;
        continue;
      }
      // Read a 5-byte header, possibly split across chunks.
      if (this.headerFill === 0 && n - i >= 5) {
        i += 5;
        this.startMessage(chunk[i - 5]!, chunk.readInt32BE(i - 4), chunk, i);
        continue;
      }
      const take = Math.min(5 - this.headerFill, n - i);
      chunk.copy(this.header, this.headerFill, i, i + take);
      this.headerFill += take;
      i += take;
      if (this.headerFill === 5) {
        this.headerFill = 0;
        this.startMessage(this.header[0]!, this.header.readInt32BE(1), chunk, i);
      }
    }
  }

  private startMessage(type: number, length: number, chunk: Buffer, bodyAt: number): void {
    if (length < 4 || length > this.maxLength) {
      throw new FrameError(`invalid message length ${length} for message type ${JSON.stringify(String.fromCharCode(type))} (limit ${this.maxLength})`);
    }
    this.remaining = length - 4;
    if (this.events.onMessage) {
      const whole = bodyAt + this.remaining <= chunk.length;
      this.events.onMessage(type, length, whole ? chunk.subarray(bodyAt, bodyAt + this.remaining) : null);
    }
    if (type === READY_FOR_QUERY && this.remaining === 1) this.wantStatus = true;
  }
}
