// Runs a moving session's prepared statements and settings again on its new server (after
// server-login.ts, before the client's bytes flow), so the client finds the server session it left.
import type net from 'node:net';
import { encodeSync } from './protocol-encode.js';
import type { ReplayEntry } from './session-replay.js';
import { awaitReplies, describeError, recordReported, type ReportedParameters } from './server-replies.js';

/** The server refused an entry: the same statement would fail on any server, so the move cannot succeed. */
export class ReplayFailed extends Error {
  constructor(
    readonly entry: string,
    readonly serverError: string,
  ) {
    super(`${entry}: ${serverError}`);
  }
}

function describe(e: ReplayEntry): string {
  if (e.kind === 'prepare') return `prepared statement "${e.names[0]}"`;
  return `setting "${e.frame.toString('utf8', 5, Math.min(e.frame.length - 1, 85))}"`;
}

/** Sends every entry (a Parse with its own Sync, or a Query) at once, then the unnamed Parse with its
 * own Sync, and waits for one ReadyForQuery each. An error of an entry rejects, naming the entry; one
 * of the unnamed Parse does not (it may have failed on the old server too, and the client knows).
 * What the settings change in the server's reported values is recorded in `reported`. */
export async function replaySessionState(
  socket: net.Socket,
  entries: readonly ReplayEntry[],
  unnamedParse: Buffer | null,
  timeoutMs: number,
  reported: ReportedParameters,
): Promise<void> {
  const expected = entries.length + (unnamedParse ? 1 : 0);
  if (expected === 0) return;
  let answered = 0;
  let error: ReplayFailed | null = null;
  const done = awaitReplies<void>(socket, timeoutMs, 'restoring the session state', (m, finish) => {
    if (recordReported(m, reported)) return;
    if (m.type === 0x45 /* E */ && error === null && answered < entries.length) error = new ReplayFailed(describe(entries[answered]!), describeError(m.frame));
    if (m.type !== 0x5a /* Z */) return;
    answered++;
    if (answered === expected) finish(error ?? undefined);
  });
  const frames = entries.flatMap((e) => (e.kind === 'prepare' ? [e.frame, encodeSync()] : [e.frame]));
  if (unnamedParse) frames.push(unnamedParse, encodeSync());
  socket.write(Buffer.concat(frames));
  return done;
}
