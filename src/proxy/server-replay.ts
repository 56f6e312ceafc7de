// Runs a moving session's prepared statements and settings again on its new server (after
// server-login.ts, before the client's bytes flow), so the client finds the server session it left.
import type net from 'node:net';
import { MessageReader, parseErrorOrNotice } from './protocol.js';
import { encodeSync } from './protocol-encode.js';
import type { ReplayEntry } from './session-replay.js';

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
 * of the unnamed Parse does not (it may have failed on the old server too, and the client knows). */
export function replaySessionState(socket: net.Socket, entries: readonly ReplayEntry[], unnamedParse: Buffer | null, timeoutMs: number): Promise<void> {
  const expected = entries.length + (unnamedParse ? 1 : 0);
  if (expected === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const reader = new MessageReader();
    let answered = 0;
    let error: ReplayFailed | null = null;
    const done = (err: Error | null) => {
      socket.setTimeout(0);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onData = (chunk: Buffer) => {
      try {
        reader.push(chunk);
        for (let m = reader.next(); m; m = reader.next()) {
          if (m.type === 0x45 /* E */ && error === null && answered < entries.length) {
            const f = parseErrorOrNotice(m.frame);
            error = new ReplayFailed(describe(entries[answered]!), `${f.C ?? ''} ${f.M ?? 'error'}`.trim());
          }
          if (m.type !== 0x5a /* Z */) continue;
          answered++;
          if (answered < expected) continue;
          return done(error);
        }
      } catch (err) {
        done(err as Error);
      }
    };
    const onError = (err: Error) => done(err);
    const onClose = () => done(new Error('the server closed the connection while the session state was restored'));
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.setTimeout(timeoutMs, () => done(new Error(`restoring the session state timed out after ${timeoutMs} ms`)));
    const frames = entries.flatMap((e) => (e.kind === 'prepare' ? [e.frame, encodeSync()] : [e.frame]));
    if (unnamedParse) frames.push(unnamedParse, encodeSync());
    socket.write(Buffer.concat(frames));
  });
}
