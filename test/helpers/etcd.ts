// A throwaway single-member etcd for integration tests.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEtcdProcess, waitEtcdHealthy } from '../../src/dcs/etcd-process.js';
import { freePort } from '../../src/util/net.js';

export interface TestEtcd {
  endpoint: string;
  pid: number;
  dataDir: string;
  stop(): Promise<void>;
}

export async function startEtcd(): Promise<TestEtcd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-etcd-'));
  const logFile = path.join(dir, 'etcd.log');
  const proc = await startEtcdProcess({
    dataDir: path.join(dir, 'data'),
    clientPort: await freePort(),
    peerPort: await freePort(),
    logFile,
  });
  let stopped: Promise<void> | null = null;
  const stop = () =>
    (stopped ??= (async () => {
      if (proc.child.exitCode === null && proc.child.signalCode === null) {
        proc.child.kill('SIGTERM');
        const timer = setTimeout(() => proc.child.kill('SIGKILL'), 5000);
        await proc.exited;
        clearTimeout(timer);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    })());
  try {
    const early = proc.exited.then((code) => code);
    const healthy = waitEtcdHealthy(proc.endpoint, 15000).then(() => 'healthy' as const);
    healthy.catch(() => {}); // if etcd died first, this rejection comes later and is moot
    const first = await Promise.race([healthy, early]);
    if (first !== 'healthy') {
      throw new Error(`etcd exited (${first}) before it was healthy:\n${fs.readFileSync(logFile, 'utf8').slice(-2000)}`);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { endpoint: proc.endpoint, pid: proc.pid, dataDir: dir, stop };
}
