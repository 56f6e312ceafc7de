// Opening a server connection for a new session, and reading a server's first answer: whether it
// turned the session away for a moment (starting up, shutting down).
import net from 'node:net';
import type { MemberRecord } from '../dcs/types.js';
import { parseErrorOrNotice } from './protocol.js';

/** SQLSTATEs with which a server refuses a new connection for a moment: starting up, shutting down, crashed. */
const TRY_AGAIN = new Set(['57P03', '57P01', '57P02']);

/** Opens a server connection and sends the startup; resolves with the first bytes the server
 * answers, or with why another attempt is worth making. */
export function connectServer(
  m: MemberRecord,
  startup: Buffer,
  timeoutMs: number,
): Promise<{ server: net.Socket; first: Buffer } | { retry: string }> {
  return new Promise((resolve) => {
    const server = net.connect({ host: m.host, port: m.port });
    server.setNoDelay(true);
    const finish = (r: { server: net.Socket; first: Buffer } | { retry: string }) => {
      server.off('data', onData);
      server.off('error', onError);
      server.off('close', onClose);
      server.setTimeout(0);
      if ('retry' in r) server.destroy();
      resolve(r);
    };
    const onData = (chunk: Buffer) => {
      const code = errorCode(chunk);
      if (code && TRY_AGAIN.has(code)) return finish({ retry: `${m.name} refused the connection (${code})` });
      finish({ server, first: chunk });
    };
    const onError = (err: Error) => finish({ retry: `${m.name} (${m.host}:${m.port}): ${err.message}` });
    const onClose = () => finish({ retry: `${m.name} closed the connection` });
    server.setTimeout(timeoutMs, () => finish({ retry: `connecting to ${m.name} (${m.host}:${m.port}) timed out` }));
    server.on('data', onData);
    server.on('error', onError);
    server.on('close', onClose);
    server.once('connect', () => server.write(startup));
  });
}

/** The SQLSTATE of a chunk that starts with a whole ErrorResponse, else null. */
function errorCode(chunk: Buffer): string | null {
  if (chunk.length < 5 || chunk[0] !== 0x45 /* E */) return null;
  const len = chunk.readInt32BE(1);
  if (chunk.length < len + 1) return null;
  try {
    return parseErrorOrNotice(chunk.subarray(0, len + 1)).C ?? null;
  } catch {
    return null;
  }
}
