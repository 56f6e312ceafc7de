// Opening a server connection for a new session, and reading a server's first answer: whether it
// turned the session away for a moment (starting up, shutting down).
import net from 'node:net';
import type { MemberRecord } from '../dcs/types.js';
import { parseErrorOrNotice } from './protocol.js';
import { describeAddress, dial, tcpAddress, type ServerAddress } from './server-address.js';

/** SQLSTATEs with which a server refuses a new connection for a moment: starting up, shutting down, crashed. */
const TRY_AGAIN = new Set(['57P03', '57P01', '57P02']);

export type Connected = { server: net.Socket; first: Buffer; address: ServerAddress } | { retry: string };

/** Opens a server connection at the address given (the member's Unix socket, or TCP) and sends the
 * startup; resolves with the first bytes the server answers, or with why another attempt is worth
 * making. A socket that cannot be connected to (the server restarting, its directory gone) is
 * followed by TCP at once. */
export async function connectServer(m: MemberRecord, address: ServerAddress, startup: Buffer, timeoutMs: number): Promise<Connected> {
  const r = await connectAt(m, address, startup, timeoutMs);
  if (!('unreachable' in r)) return r;
  const tcp = 'path' in address ? await connectAt(m, tcpAddress(m), startup, timeoutMs) : r;
  return 'unreachable' in tcp ? { retry: `${m.name} (${m.host}:${m.port}): ${tcp.unreachable}` } : tcp;
}

/** unreachable: the connection failed before it was made (the caller may try another address). */
function connectAt(m: MemberRecord, address: ServerAddress, startup: Buffer, timeoutMs: number): Promise<Connected | { unreachable: string }> {
  const where = describeAddress(address);
  return new Promise((resolve) => {
    const server = dial(address);
    let connected = false;
    const finish = (r: Connected | { unreachable: string }) => {
      server.off('data', onData);
      server.off('error', onError);
      server.off('close', onClose);
      server.setTimeout(0);
      if (!('server' in r)) server.destroy();
      resolve(r);
    };
    const onData = (chunk: Buffer) => {
      const code = errorCode(chunk);
      if (code && TRY_AGAIN.has(code)) return finish({ retry: `${m.name} refused the connection (${code})` });
      finish({ server, first: chunk, address });
    };
    const onError = (err: Error) => finish(connected ? { retry: `${m.name} (${where}): ${err.message}` } : { unreachable: err.message });
    const onClose = () => finish({ retry: `${m.name} closed the connection` });
    server.setTimeout(timeoutMs, () => finish({ retry: `connecting to ${m.name} (${where}) timed out` }));
    server.on('data', onData);
    server.on('error', onError);
    server.on('close', onClose);
    server.once('connect', () => {
      connected = true;
      server.write(startup);
    });
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
