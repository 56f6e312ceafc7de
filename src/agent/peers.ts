// Asking peers' REST APIs for their WAL positions: fresher than what they last published in etcd.
import type { MemberRecord } from '../dcs/types.js';
import type { PeerPosition } from './observation.js';

interface LsnAnswer {
  receivedLsn: number | null;
  running: boolean;
}

async function fetchLsn(apiUrl: string, timeoutMs: number): Promise<LsnAnswer | null> {
  try {
    const res = await fetch(`${apiUrl}/lsn`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return null;
    const body = (await res.json()) as Partial<LsnAnswer>;
    return {
      receivedLsn: typeof body.receivedLsn === 'number' ? body.receivedLsn : null,
      running: body.running === true,
    };
  } catch {
    return null;
  }
}

/** Fresh positions of every other member, falling back to the published record of one that does not answer. */
export async function peerPositions(members: MemberRecord[], self: string, timeoutMs = 500): Promise<PeerPosition[]> {
  const others = members.filter((m) => m.name !== self);
  return Promise.all(
    others.map(async (m) => {
      const live = await fetchLsn(m.apiUrl, timeoutMs);
      if (live) return { name: m.name, receivedLsn: live.receivedLsn, running: live.running };
      return {
        name: m.name,
        receivedLsn: m.receivedLsn,
        running: m.state === 'streaming' || m.state === 'recovering' || m.state === 'running',
      };
    }),
  );
}

/** Whether a peer's agent answers on its REST API at all (any HTTP status counts as an answer). */
export async function agentAnswers(apiUrl: string, timeoutMs = 500): Promise<boolean> {
  try {
    await fetch(`${apiUrl}/liveness`, { signal: AbortSignal.timeout(timeoutMs) });
    return true;
  } catch {
    return false;
  }
}

/** Polls a peer until its received position passes `lsn`; false on timeout. */
export async function waitForPeerPosition(apiUrl: string, lsn: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const live = await fetchLsn(apiUrl, 500);
    if (live?.receivedLsn !== null && live?.receivedLsn !== undefined && live.receivedLsn > lsn) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}
