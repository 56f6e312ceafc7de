// Reading a server's answers on a connection the proxy uses itself (a session whose state it
// restores, or one it asks for its WAL position), with the listeners, the time limit and the end of
// the connection handled in one place.
import type net from 'node:net';
import { MessageReader, parseErrorOrNotice, parseParameterStatus, type Message } from './protocol.js';

/** Hands each message from the server to `onMessage` until it calls `finish` (with a result, or an
 * Error to reject with); rejects on a bad message, a socket error, the server closing, or `timeoutMs`.
 * `what` names the exchange in those errors. Attach before writing the request. */
export function awaitReplies<T>(socket: net.Socket, timeoutMs: number, what: string, onMessage: (m: Message, finish: (result: T | Error) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const reader = new MessageReader();
    let finished = false;
    const finish = (result: T | Error) => {
      if (finished) return;
      finished = true;
      socket.setTimeout(0);
      socket.removeListener('timeout', onTimeout);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    const onData = (chunk: Buffer) => {
      try {
        reader.push(chunk);
        for (let m = reader.next(); m && !finished; m = reader.next()) onMessage(m, finish);
      } catch (err) {
        finish(err as Error);
      }
    };
    const onError = (err: Error) => finish(err);
    const onClose = () => finish(new Error(`the server closed the connection while ${what}`));
    const onTimeout = () => finish(new Error(`${what} timed out after ${timeoutMs} ms`));
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.on('timeout', onTimeout);
    socket.setTimeout(timeoutMs);
    socket.resume();
  });
}

/** An ErrorResponse as "SQLSTATE message". */
export function describeError(frame: Buffer): string {
  const f = parseErrorOrNotice(frame);
  return `${f.C ?? ''} ${f.M ?? 'error'}`.trim();
}

/** The values a server reports to its client (ParameterStatus), as they stand after the messages seen so far. */
export type ReportedParameters = Map<string, string>;

/** Records `m` in `reported` when it is a ParameterStatus; true if it was one. */
export function recordReported(m: Message, reported: ReportedParameters): boolean {
  if (m.type !== 0x53 /* S */) return false;
  const { name, value } = parseParameterStatus(m.frame);
  reported.set(name, value);
  return true;
}
