// Small network helpers: free ports, port-in-use checks.
import fs from 'node:fs';
import net from 'node:net';

/** A TCP port that is free on host right now (the OS picks it). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      if (addr && typeof addr === 'object') {
        const { port } = addr;
        srv.close(() => resolve(port));
      } else {
        srv.close(() => reject(new Error('could not read the port the OS picked')));
      }
    });
  });
}

/** True when something already listens on host:port. */
export async function portInUse(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRINUSE' || err.code === 'EACCES'));
    srv.listen(port, host, () => srv.close(() => resolve(false)));
  });
}

/** The kernel's range for outgoing connections' local ports; a listener placed in it can lose
 * its port to any client's connect() between a check and the bind. */
export function ephemeralPortRange(text: string | null): [number, number] {
  const m = text?.trim().match(/^(\d+)\s+(\d+)$/);
  return m ? [Number(m[1]), Number(m[2])] : [32768, 60999];
}

/** A base port P such that P..P+4, P+100..P+104, P+200..P+201 and P+300..P+302 are all free on
 * host: the layout `baton up --base-port P` uses (PostgreSQL, REST APIs, etcd, proxy). Chosen below
 * the ephemeral range when there is room (above it otherwise). */
export async function freePortBlock(host = '127.0.0.1'): Promise<number> {
  let rangeText: string | null = null;
  try {
    rangeText = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8');
  } catch {
    // not Linux: the usual default range
  }
  const [low, high] = ephemeralPortRange(rangeText);
  const [from, to] = low - 400 > 10000 ? [10000, low - 400] : [high + 1, 65535 - 400];
  if (to <= from) throw new Error(`no room for a block of ports outside the ephemeral range ${low}-${high}`);
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = from + Math.floor(Math.random() * (to - from));
    const ports = [0, 1, 2, 3, 4, 100, 101, 102, 103, 104, 200, 201, 300, 301, 302].map((d) => base + d);
    let free = true;
    for (const p of ports) if (await portInUse(host, p)) free = false;
    if (free) return base;
  }
  throw new Error(`no free block of ports found between ${from} and ${to + 302}`);
}
