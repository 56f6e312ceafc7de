// Where a read-only session's reads stand, so that moving it never takes it back in time: the WAL
// position its server has replayed (a replica) or written (a primary), asked on a server connection
// the proxy holds between the client's queries, and a wait for another server to reach it.
import type net from 'node:net';
import { parseLsn } from '../util/lsn.js';
import { parseDataRow, type Message } from './protocol.js';
import { encodeQuery } from './protocol-encode.js';
import { awaitReplies, describeError, recordReported, type ReportedParameters } from './server-replies.js';

const POSITION_SQL =
  'SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END';
/** How often a server that has not reached a position is asked again. */
const POLL_MS = 20;

/** Messages a server may send whatever it was asked: a notice, a reported value that changed (a
 * promoted server reports in_hot_standby off with its next answer), a notification. */
const ASIDE = new Set([0x4e /* N */, 0x53 /* S */, 0x41 /* A */]);

/** The WAL position the server behind `socket` has replayed (or written, as a primary), as bytes.
 * The session must be idle: the answer is read off the socket and never reaches a client. What the
 * server says besides the answer goes to `aside`, in order. */
export async function serverPosition(socket: net.Socket, timeoutMs: number, aside: (m: Message) => void): Promise<number> {
  let value: string | null = null;
  let error: string | null = null;
  const answered = awaitReplies<void>(socket, timeoutMs, 'asking the WAL position', (m, finish) => {
    if (ASIDE.has(m.type)) aside(m);
    else if (m.type === 0x44 /* D */) value = parseDataRow(m.frame)[0] ?? null;
    else if (m.type === 0x45 /* E */) error = describeError(m.frame);
    else if (m.type === 0x5a /* Z */) finish(error === null ? undefined : new Error(`asking the WAL position failed: ${error}`));
  });
  socket.write(encodeQuery(POSITION_SQL));
  await answered;
  if (value === null) throw new Error('the server does not know its WAL position yet');
  return parseLsn(value);
}

/** Asks until the server has reached `floor`: true once it has, false if it has not by `deadline`.
 * The server has no client yet: of what it says besides, only its reported values are kept, in `reported`. */
export async function reachesPosition(socket: net.Socket, floor: number, deadline: number, timeoutMs: number, reported: ReportedParameters): Promise<boolean> {
  const keepReported = (m: Message) => void recordReported(m, reported);
  for (;;) {
    if ((await serverPosition(socket, timeoutMs, keepReported)) >= floor) return true;
    if (Date.now() + POLL_MS > deadline) return false;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
