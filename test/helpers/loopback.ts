// Socket pairs over loopback for tests of the native relay: both ends of each connection, and a read
// of exactly n bytes with a timeout.
import net from 'node:net';
import { stopNodeReading } from '../../src/proxy/native-relay.js';

/** A connection to `server`: [the connecting socket, the accepted one]. */
export function connected(server: net.Server): Promise<[net.Socket, net.Socket]> {
  const { port } = server.address() as net.AddressInfo;
  return new Promise((resolve, reject) => {
    server.once('connection', (accepted: net.Socket) => resolve([outgoing, accepted]));
    const outgoing = net.connect(port, '127.0.0.1');
    outgoing.once('error', reject);
  });
}

export function readExactly(socket: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(() => finish(new Error(`timed out with ${got} of ${n} bytes`)), 5000);
    const onData = (d: Buffer): void => {
      chunks.push(d);
      got += d.length;
      if (got >= n) finish(null);
    };
    function finish(err: Error | null): void {
      clearTimeout(timer);
      socket.off('data', onData);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    }
    socket.on('data', onData);
  });
}

/** What the native relay sits between: the application's socket to the proxy and the proxy's end of
 * it (proxyClient), the proxy's socket to the database and the database's end (db). The proxy's two
 * are not read by Node, as when the relay has a session. */
export async function relaySockets(server: net.Server): Promise<{ app: net.Socket; proxyClient: net.Socket; proxyServer: net.Socket; db: net.Socket }> {
  const [app, proxyClient] = await connected(server);
  const [proxyServer, db] = await connected(server);
  for (const s of [app, proxyClient, proxyServer, db]) s.setNoDelay(true);
  stopNodeReading(proxyClient);
  stopNodeReading(proxyServer);
  return { app, proxyClient, proxyServer, db };
}
