// Whether the server owes the client an answer, kept in the session's shared array (the TypeScript
// twin of count_sent and scan_server in native/relay/scan.c). Counting ReadyForQuery messages still
// due, not just "something was sent since the last one", keeps a pipelining client busy until its
// last batch is answered: a session whose later batch is in flight is never moved, and what its
// server sends is never taken for a goodbye.
import { STATE } from './native-relay.js';

const QUERY = 0x51; // 'Q'
const SYNC = 0x53; // 'S'
const FUNCTION_CALL = 0x46; // 'F'
const COPY_DATA = 0x64; // 'd'
const COPY_DONE = 0x63; // 'c'
const COPY_FAIL = 0x66; // 'f'

/** A client message (its type) on its way to the server. */
export function countSent(state: Float64Array, type: number): void {
  if (type === QUERY || type === SYNC || type === FUNCTION_CALL) {
    state[STATE.syncs] = state[STATE.syncs]! + 1;
    state[STATE.unsynced] = 0;
  } else if (type !== COPY_DATA && type !== COPY_DONE && type !== COPY_FAIL) {
    // COPY data belongs to the statement that asked for it; anything else waits for a Sync to come.
    state[STATE.unsynced] = 1;
  }
  state[STATE.busy] = 1;
}

/** A ReadyForQuery from the server. */
export function countAnswered(state: Float64Array): void {
  if (state[STATE.syncs]! > 0) state[STATE.syncs] = state[STATE.syncs]! - 1;
  state[STATE.busy] = state[STATE.syncs]! > 0 || state[STATE.unsynced] !== 0 ? 1 : 0;
}
