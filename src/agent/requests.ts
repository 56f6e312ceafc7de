// Operator requests that go through etcd: switchover, forced failover, pause, standby.
// Used by the CLI and by the REST API, so both validate the same way.
import type { ClusterStore } from '../dcs/store.js';
import type { ClusterView, DynamicConfig } from '../dcs/types.js';
import { BatonError } from '../util/errors.js';
import { findMember, switchoverTargetProblem, switchoverTargets } from './candidates.js';

export class RequestRefused extends BatonError {
  constructor(
    message: string,
    hint: string | undefined,
    /** HTTP status the REST API answers with. */
    readonly status: number,
  ) {
    super(message, hint);
  }
}

export interface SwitchoverOutcome {
  from: string;
  to: string;
  ms: number;
}

const SWITCHOVER_TIMEOUT_MS = 60_000;

export async function switchover(
  store: ClusterStore,
  opts: { from?: string | null; to?: string | null; waitMs?: number },
): Promise<SwitchoverOutcome> {
  const view = await store.read();
  const leader = view.leader?.name;
  if (!leader) throw new RequestRefused('no leader: nothing to switch over from', 'use "baton failover --to MEMBER"', 412);
  if (opts.from && opts.from !== leader) {
    throw new RequestRefused(`"${opts.from}" is not the leader (the leader is "${leader}")`, undefined, 412);
  }
  if (view.switchover) throw new RequestRefused('a switchover is already in progress', 'wait for it, or check "baton status"', 409);
  const to = opts.to ?? switchoverTargets(view, leader)[0]?.name;
  if (!to) throw new RequestRefused('no replica can take over', 'every replica is down, lagging, tagged nofailover or in standby', 412);
  const problem = switchoverTargetProblem(view, leader, to);
  if (problem) throw new RequestRefused(`cannot switch over to "${to}": ${problem}`, undefined, 412);
  const t0 = Date.now();
  const ok = await store.requestSwitchover({
    kind: 'switchover',
    from: leader,
    to,
    requestedAt: new Date().toISOString(),
    phase: 'requested',
    deadline: t0 + SWITCHOVER_TIMEOUT_MS,
    reason: `switchover requested from ${leader} to ${to}`,
  });
  if (!ok) throw new RequestRefused('a switchover is already in progress', undefined, 409);
  await waitForLeader(store, to, t0, opts.waitMs ?? SWITCHOVER_TIMEOUT_MS);
  return { from: leader, to, ms: Date.now() - t0 };
}

export async function failover(store: ClusterStore, opts: { to: string; waitMs?: number }): Promise<SwitchoverOutcome> {
  const view = await store.read();
  const target = findMember(view, opts.to);
  if (!target) throw new RequestRefused(`member "${opts.to}" is not in the cluster`, 'see "baton status" for member names', 404);
  const leader = view.leader?.name ?? null;
  if (leader && findMember(view, leader)?.state === 'running') {
    throw new RequestRefused(
      `"${leader}" is a healthy leader: a forced failover would lose nothing but could not be justified`,
      `use "baton switchover --to ${opts.to}"`,
      412,
    );
  }
  if (target.role !== 'replica' || (target.state !== 'streaming' && target.state !== 'recovering')) {
    throw new RequestRefused(`"${opts.to}" is not a running replica (state: ${target.state})`, undefined, 412);
  }
  const t0 = Date.now();
  if (view.switchover) await store.clearSwitchover();
  await store.requestSwitchover({
    kind: 'failover',
    from: leader,
    to: opts.to,
    requestedAt: new Date().toISOString(),
    phase: 'requested',
    deadline: t0 + SWITCHOVER_TIMEOUT_MS,
    reason: `forced failover to ${opts.to}`,
  });
  // A leader key held by a dead leader whose lease has not yet expired: it goes when the lease does.
  await waitForLeader(store, opts.to, t0, opts.waitMs ?? SWITCHOVER_TIMEOUT_MS);
  return { from: leader ?? '(none)', to: opts.to, ms: Date.now() - t0 };
}

async function waitForLeader(store: ClusterStore, name: string, t0: number, waitMs: number): Promise<void> {
  while (Date.now() - t0 < waitMs) {
    const v = await store.read();
    const rec = findMember(v, v.leader?.name);
    if (v.leader?.name === name && rec?.role === 'primary' && rec.state === 'running' && !v.switchover) return;
    if (!v.switchover && v.leader?.name !== name && Date.now() - t0 > 2000) {
      throw new RequestRefused(
        `the request was dropped; the leader is ${v.leader?.name ?? '(none)'}`,
        'see the agents\' logs for the reason',
        503,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new RequestRefused(`"${name}" did not become leader within ${waitMs} ms`, 'see "baton status"', 503);
}

export async function updateConfig(store: ClusterStore, change: (c: DynamicConfig) => DynamicConfig): Promise<DynamicConfig> {
  const view = await store.read();
  const next = change(view.config);
  await store.putConfig(next);
  return next;
}

export async function setStandby(store: ClusterStore, member: string, standby: boolean): Promise<ClusterView> {
  const view = await store.read();
  if (!findMember(view, member)) throw new RequestRefused(`member "${member}" is not in the cluster`, 'see "baton status"', 404);
  await updateConfig(store, (c) => ({
    ...c,
    standbyMembers: standby ? [...new Set([...c.standbyMembers, member])] : c.standbyMembers.filter((m) => m !== member),
  }));
  return view;
}
