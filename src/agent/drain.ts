// Before a leader shuts down for a switchover, it lets clients finish what they started: first every
// live proxy confirms that it holds new transactions (so none start here through it any more), then
// the transactions begun before that get until the drain timeout to end. Only what is still open
// then is cut off by the fast shutdown. Best effort: trouble reaching etcd or PostgreSQL ends the
// wait, never the switchover.
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClusterStore } from '../dcs/store.js';
import type { ProxyRecord, SwitchoverRequest } from '../dcs/types.js';
import type { OpenTransaction } from '../postgres/queries.js';
import type { Logger } from '../util/log.js';

const POLL_MS = 20;
/** A query a proxy wrote just before it held may reach its backend a moment later (a busy CPU):
 * transactions that start this soon after the proxies held are still waited for. */
export const LATE_START_MS = 200;

/** Proxies that have not yet confirmed holding new transactions for this switchover. */
export function proxiesNotHolding(proxies: ProxyRecord[], req: SwitchoverRequest): string[] {
  return proxies.filter((p) => p.holding !== req.requestedAt).map((p) => p.name);
}

/** The open transactions to wait for: those begun before the proxies held (plus LATE_START_MS).
 * Later ones come from clients that bypass the proxies; the shutdown ends them. */
export function transactionsToWaitFor(open: OpenTransaction[], heldAt: number): OpenTransaction[] {
  return open.filter((t) => t.startedAt <= heldAt + LATE_START_MS);
}

export interface DrainDeps {
  store: Pick<ClusterStore, 'listProxies'>;
  openTransactions: () => Promise<OpenTransaction[]>;
  log: Logger;
}

export interface DrainOutcome {
  /** Proxies that had not confirmed holding when the wait for them ended. */
  proxiesNotHolding: string[];
  /** Transactions waited for when the proxies held (or their wait ended). */
  waitedFor: number;
  /** Of those, still open at the deadline: the fast shutdown ends them. */
  cutOff: number;
  ms: number;
}

export async function drainBeforeHandover(deps: DrainDeps, req: SwitchoverRequest, timeoutMs: number): Promise<DrainOutcome> {
  const t0 = Date.now();
  const deadline = t0 + timeoutMs;
  const outcome: DrainOutcome = { proxiesNotHolding: [], waitedFor: 0, cutOff: 0, ms: 0 };
  if (timeoutMs <= 0) return outcome;
  try {
    const { last: waiting } = await pollUntilEmpty(async () => proxiesNotHolding(await deps.store.listProxies(), req), deadline);
    outcome.proxiesNotHolding = waiting;
    if (waiting.length) deps.log.warn({ proxies: waiting }, 'switchover: these proxies did not confirm holding new transactions in time');
  } catch (err) {
    deps.log.warn({ err: (err as Error).message }, 'switchover: cannot list proxies in etcd; not waiting for them');
  }
  const heldAt = Date.now();
  try {
    const { first, last } = await pollUntilEmpty(async () => transactionsToWaitFor(await deps.openTransactions(), heldAt), deadline);
    outcome.waitedFor = first.length;
    outcome.cutOff = last.length;
  } catch (err) {
    deps.log.warn({ err: (err as Error).message }, 'switchover: cannot list open transactions; shutting down without waiting for them');
  }
  outcome.ms = Date.now() - t0;
  return outcome;
}

/** Reads until the answer is empty or the deadline passes; the first and the last answer. */
async function pollUntilEmpty<T>(read: () => Promise<T[]>, deadline: number): Promise<{ first: T[]; last: T[] }> {
  const first = await read();
  let last = first;
  while (last.length > 0 && Date.now() < deadline) {
    await sleep(POLL_MS);
    last = await read();
  }
  return { first, last };
}
