// The proxy logging in to a server on a client's behalf (to move an idle session to a new leader):
// StartupMessage, then SCRAM-SHA-256 (or MD5 / cleartext), up to the first ReadyForQuery.
import crypto from 'node:crypto';
import net from 'node:net';
import { MessageReader, parseBackendKeyData, parseAuthentication, parseErrorOrNotice, ProtocolError } from './protocol.js';
import { encodeMessage as message, encodeStartup } from './protocol-encode.js';
import { recordReported, type ReportedParameters } from './server-replies.js';
import { ScramClient } from './scram.js';
import { describeAddress, dial, type ServerAddress } from './server-address.js';

export interface ServerLogin {
  socket: net.Socket;
  /** Where the socket goes: the server's Unix socket or host:port. */
  address: ServerAddress;
  key: { pid: number; secret: number };
  /** What the server reported (ParameterStatus) up to its first ReadyForQuery. */
  reported: ReportedParameters;
}

function cstr(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
}

export function loginToServer(opts: {
  address: ServerAddress;
  params: Record<string, string>;
  password: string;
  timeoutMs: number;
}): Promise<ServerLogin> {
  return new Promise((resolve, reject) => {
    const socket = dial(opts.address);
    const reader = new MessageReader();
    let scram: ScramClient | null = null;
    let key: { pid: number; secret: number } | null = null;
    const reported: ReportedParameters = new Map();
    const done = (err: Error | null) => {
      socket.setTimeout(0);
      socket.removeAllListeners('data');
      socket.removeAllListeners('error');
      socket.removeAllListeners('timeout');
      if (err) {
        socket.destroy();
        reject(err);
      } else resolve({ socket, address: opts.address, key: key ?? { pid: 0, secret: 0 }, reported });
    };
    socket.setTimeout(opts.timeoutMs, () => done(new Error(`login to ${describeAddress(opts.address)} timed out`)));
    socket.on('error', (err) => done(err));
    socket.on('connect', () => socket.write(encodeStartup(opts.params)));
    socket.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
        for (let m = reader.next(); m; m = reader.next()) {
          const type = String.fromCharCode(m.type);
          if (type === 'E') {
            const f = parseErrorOrNotice(m.frame);
            return done(new Error(`${f.C ?? ''} ${f.M ?? 'login refused'}`.trim()));
          }
          if (type === 'K') key = parseBackendKeyData(m.frame);
          if (recordReported(m, reported)) continue;
          if (type === 'Z') return done(null);
          if (type !== 'R') continue;
          const code = parseAuthentication(m.frame);
          const data = m.frame.subarray(9).toString('utf8');
          if (code === 0) continue;
          if (code === 3) socket.write(message('p', cstr(opts.password)));
          else if (code === 5) {
            const user = opts.params.user ?? '';
            const inner = crypto.createHash('md5').update(opts.password + user).digest('hex');
            const outer = crypto.createHash('md5').update(Buffer.concat([Buffer.from(inner), m.frame.subarray(9, 13)])).digest('hex');
            socket.write(message('p', cstr(`md5${outer}`)));
          } else if (code === 10) {
            scram = new ScramClient(opts.password);
            socket.write(scram.initial());
          } else if (code === 11 && scram) socket.write(scram.respond(data));
          else if (code === 12 && scram) scram.verify(data);
          else return done(new Error(`unsupported authentication request ${code}`));
        }
      } catch (err) {
        done(err as Error);
      }
    });
  });
}
