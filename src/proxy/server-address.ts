// Where the proxy reaches a member's PostgreSQL: through its Unix socket when the server runs on this
// host, else over TCP at the address the member publishes. The socket skips the TCP stack on both
// sides of the hop (for PostgreSQL as much as for the proxy), and the member's record says where it is
// and which token its agent wrote beside it: only a socket with that token is taken for the member's
// server, never one that merely has the same path (another cluster, another container).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { MemberRecord } from '../dcs/types.js';
import { SOCKET_TOKEN_FILE } from '../postgres/conf.js';

export type ServerAddress = { path: string } | { host: string; port: number };

/** The token beside a socket, or null when there is none to read here. */
export function readSocketToken(socketPath: string): string | null {
  try {
    return fs.readFileSync(path.join(path.dirname(socketPath), SOCKET_TOKEN_FILE), 'utf8').trim();
  } catch {
    // Absent or unreadable here (the server is on another host, or not ours to reach this way): TCP,
    // which is always right, where a socket that cannot be vouched for might not be.
    return null;
  }
}

export function tcpAddress(m: MemberRecord): ServerAddress {
  return { host: m.host, port: m.port };
}

/** The socket when useLocalSocket allows it and the token beside it is the member's, else host:port. */
export function serverAddress(m: MemberRecord, useLocalSocket: boolean, readToken: (socketPath: string) => string | null = readSocketToken): ServerAddress {
  const local = m.localSocket;
  if (useLocalSocket && local && local.token !== '' && readToken(local.path) === local.token) return { path: local.path };
  return tcpAddress(m);
}

/** A connection to the address, with Nagle off (a no-op on a Unix socket). */
export function dial(a: ServerAddress): net.Socket {
  const socket = 'path' in a ? net.connect({ path: a.path }) : net.connect({ host: a.host, port: a.port });
  socket.setNoDelay(true);
  return socket;
}

export function describeAddress(a: ServerAddress): string {
  return 'path' in a ? a.path : `${a.host}:${a.port}`;
}
