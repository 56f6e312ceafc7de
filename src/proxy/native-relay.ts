// Loads the native relay (native/relay, built by `make build` with node-gyp) and reaches the file
// descriptors under Node's sockets. When the addon is missing the proxy relays in TypeScript.
// The relay runs on its own threads: while it has a session, the Session's counters and status in
// the shared array change under TypeScript's feet, so decisions that depend on them (moving a
// session) take the session back first and look again.
import { createRequire } from 'node:module';
import type net from 'node:net';

/** Slots of the Float64Array a Session shares with the native relay (see relay.c). */
export const STATE = {
  toServer: 0,
  toClient: 1,
  queries: 2,
  busy: 3,
  tx: 4,
  syncs: 5,
  unsynced: 6,
  clientScan: 7,
  serverScan: 11,
  /** Set by TypeScript before each attach: 1 when the replay log holds no settings, so RESET ALL
   * changes nothing it keeps and the native relay may pass it (asyncpg sends one per release). */
  resetAllIsNoop: 15,
  length: 16,
} as const;

/** What the relay gives back: bytes still to write each way, bytes read but not dealt with. */
export interface Handover {
  reason: string;
  /** EOF or a socket error: the session is ending, TypeScript sees it through and keeps it. */
  ended: boolean;
  toServer: Buffer | null;
  toClient: Buffer | null;
  fromClient: Buffer | null;
  fromServer: Buffer | null;
  /** The last unnamed Parse the relay forwarded (null: a Query or Close destroyed it, or it was too
   * large to keep); absent when neither passed while the relay had the session. */
  unnamedParse?: Buffer | null;
  /** Plain session settings (`SET name = value` Queries) the relay passed and the server confirmed,
   * in the order they took effect, one per parameter; absent when none. */
  keptSettings?: Buffer[];
  /** Such a setting sent alone and not yet answered (its reply is still to come, or in fromServer),
   * and whether an ErrorResponse for it has passed already. */
  pendingSetting?: Buffer;
  pendingSettingFailed?: boolean;
}

export type RelayHandle = { readonly __relay: unique symbol };

export interface NativeRelay {
  stateLength: number;
  /** balance.h: load window, and the loads (per mille of a CPU) at which threads spread and pack. */
  balanceLimits: { windowMs: number; spill: number; quiet: number; pack: number };
  attach(clientFd: number, serverFd: number, state: Float64Array, checkPins: boolean, maxMessageLength: number, onHandback: (h: Handover) => void): RelayHandle;
  /** Takes the session back (the relay thread stops touching it); never call twice for one handle. */
  detach(handle: RelayHandle): Handover | null;
  /** How many relay threads to start with the first session; returns the number in use. */
  threads(n: number): number;
  /** 0: the message leaves no session state; 1: it pins the session; 2: the native side cannot tell;
   * 3: a plain session setting the relay may keep itself (then handed over in keptSettings).
   * flags: PIN_RESET_ALL_NOOP (1) as the relay takes it from STATE.resetAllIsNoop. */
  messageVerdict(type: number, body: Buffer | null, flags?: number): 0 | 1 | 2 | 3;
  /** The settings the relay keeps for a session it has now (a copy; they stay there). */
  keptSettings(handle: RelayHandle): Buffer[];
  /** The parameter a Query's SQL (no NUL) sets in the form the relay keeps, lower-cased, or null. */
  sessionSetting(sql: Buffer): string | null;
  /** Per relay thread started: sessions it carries and its load (per mille of its last 100 ms window). */
  threadLoads(): ThreadLoad[];
  /** Thread `from` moves its sessions to `to` as they show activity, whatever the loads say. */
  moveSessions(from: number, to: number): void;
  /** balance.c's decisions for these loads: the thread for a new session, and where thread `self`
   * would move how many sessions at the end of its window (to: -1 for nowhere). */
  balance(threads: ThreadLoad[], self: number): { pick: number; to: number; count: number };
}

export interface ThreadLoad {
  sessions: number;
  load: number;
  /** How the thread does its system calls: "io_uring" (batched per wake-up, native/relay/batch.c),
   * or "plain: " and why not (BATON_RELAY_IO=plain, a kernel or seccomp filter that refuses io_uring). */
  io?: string;
}

export type RelayMode = 'auto' | 'native' | 'js';

const ADDON = '../../native/relay/build/Release/baton_relay.node';

let loaded: { relay: NativeRelay | null; error: string | null } | null = null;

/** The addon, or null with the reason (not built, built for another Node, a layout mismatch). */
export function loadNativeRelay(): { relay: NativeRelay | null; error: string | null } {
  if (loaded) return loaded;
  try {
    const relay = createRequire(import.meta.url)(ADDON) as NativeRelay;
    loaded = relay.stateLength === STATE.length ? { relay, error: null } : { relay: null, error: `native relay state layout ${relay.stateLength} != ${STATE.length}: rebuild with make build` };
  } catch (err) {
    loaded = { relay: null, error: `native relay not available (${(err as Error).message.split('\n')[0]}); run make build` };
  }
  return loaded;
}

/** The part of Node's TCP handle the relay needs (internal to Node, stable since v0.x). */
interface TcpHandle {
  fd: number;
  reading: boolean;
  readStop(): number;
  readStart(): number;
}

function handleOf(socket: net.Socket): TcpHandle | null {
  // `_handle` is not in Node's types; it is how a socket's descriptor is reached.
  const h = (socket as unknown as { _handle?: TcpHandle | null })._handle;
  return h && typeof h.fd === 'number' && h.fd >= 0 ? h : null;
}

export function socketFd(socket: net.Socket): number | null {
  return handleOf(socket)?.fd ?? null;
}

/** Stops Node from reading the socket: the native relay reads its descriptor until it hands back. */
export function stopNodeReading(socket: net.Socket): void {
  socket.pause();
  const h = handleOf(socket);
  if (h?.reading) {
    h.reading = false;
    h.readStop();
  }
}

/** Lets Node read the socket again after the native relay handed it back. */
export function resumeNodeReading(socket: net.Socket): void {
  if (socket.destroyed) return;
  socket.resume();
  const h = handleOf(socket);
  if (h && !h.reading) {
    h.reading = true;
    // As Node's own tryReadStart: a failed start is a dead socket.
    if (h.readStart() !== 0) socket.destroy(new Error('cannot read from the socket again after the native relay'));
  }
}
