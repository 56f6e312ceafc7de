// `baton node remove NAME`: stop a member for good and leave nothing of it behind: its agent and
// PostgreSQL stopped, its member key gone (so the proxy stops routing to it), its replication slots
// dropped everywhere (so no member keeps WAL for it), and for a local cluster its directory removed.
import fs from 'node:fs';
import path from 'node:path';
import { updateConfig } from '../agent/requests.js';
import type { EtcdStore } from '../dcs/etcd-store.js';
import type { ClusterView } from '../dcs/types.js';
import { slotName } from '../postgres/conf.js';
import { dropSlot } from '../postgres/queries.js';
import { BatonError, UsageError } from '../util/errors.js';
import { readLocalCluster, writeLocalCluster, type LocalCluster } from './local-cluster.js';
import { withMember, type SqlCredentials } from './member-sql.js';
import { stopAgent, stopOrphanPostmaster } from './up.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Drops `name`'s slot on every running member; returns where it was dropped and what failed. */
export async function dropMemberSlots(view: ClusterView, name: string, cred: SqlCredentials): Promise<{ dropped: string[]; failed: string[] }> {
  const slot = slotName(name);
  const dropped: string[] = [];
  const failed: string[] = [];
  for (const m of view.members) {
    if (m.name === name || !['running', 'streaming', 'recovering'].includes(m.state)) continue;
    try {
      if (await withMember(m, cred, (db) => dropSlot(db, slot))) dropped.push(m.name);
    } catch (err) {
      failed.push(`${m.name}: ${(err as Error).message}`);
    }
  }
  return { dropped, failed };
}

/** Drops the slots of a member whose key is gone. A leader that read the member list just before the
 * key went may create its slot once more: drop, wait one loop, drop again. */
export async function dropSlotsOfGoneMember(store: EtcdStore, name: string, cred: SqlCredentials, out: (l: string) => void): Promise<Set<string>> {
  const droppedOn = new Set<string>();
  for (const round of [0, 1]) {
    const view = await store.read();
    if (round === 1) await sleep((view.config.loopWait + 0.5) * 1000);
    const r = await dropMemberSlots(round === 1 ? await store.read() : view, name, cred);
    r.dropped.forEach((m) => droppedOn.add(m));
    if (r.failed.length) out(`warning: could not drop slot ${slotName(name)} on ${r.failed.join('; ')}`);
  }
  return droppedOn;
}

async function waitMemberGone(store: EtcdStore, name: string, ms: number): Promise<ClusterView> {
  const t0 = Date.now();
  for (;;) {
    const view = await store.read();
    if (!view.members.some((m) => m.name === name)) return view;
    if (Date.now() - t0 > ms) throw new BatonError(`the member key of ${name} is still there after ${ms / 1000} s`, 'is its agent still running? stop it, then run this again');
    await sleep(200);
  }
}

export interface RemoveOptions {
  name: string;
  local: LocalCluster | null;
  cred: SqlCredentials;
  keepData: boolean;
  out: (line: string) => void;
}

export async function removeMember(store: EtcdStore, o: RemoveOptions): Promise<void> {
  const { name, out } = o;
  const view = await store.read();
  const rec = view.members.find((m) => m.name === name);
  const localMember = o.local?.members.find((m) => m.name === name);
  if (!rec && !localMember) {
    throw new UsageError(`no member named ${name}`, `members: ${view.members.map((m) => m.name).join(', ') || 'none'}`);
  }
  if (view.leader?.name === name) {
    throw new UsageError(`${name} is the leader: removing it would take the primary away`, `switch over first ("baton switchover --from ${name}"), then remove it`);
  }
  if (view.switchover && view.switchover.to === name) {
    throw new UsageError(`a switchover to ${name} is in progress`, 'wait for it to finish (see "baton status"), then switch away and remove it');
  }
  if (localMember) {
    await stopAgent(localMember, out);
    await stopOrphanPostmaster(localMember, out);
  } else if (rec) {
    throw new UsageError(
      `${name} runs on ${rec.host} (agent pid ${rec.agentPid} there) and this command cannot stop it`,
      `stop its agent on that host first (e.g. "systemctl stop baton"); its member key goes with it; then run this again`,
    );
  }
  const after = await waitMemberGone(store, name, 15_000);
  out(`${name} is no longer a member (the proxy stops routing to it)`);
  if (after.config.standbyMembers.includes(name)) {
    await updateConfig(store, (c) => ({ ...c, standbyMembers: c.standbyMembers.filter((n) => n !== name) }));
  }
  const droppedOn = await dropSlotsOfGoneMember(store, name, o.cred, out);
  out(droppedOn.size ? `dropped replication slot ${slotName(name)} on ${[...droppedOn].join(', ')}` : `no replication slot ${slotName(name)} to drop`);
  if (localMember && o.local) {
    const now = readLocalCluster(o.local.dir) ?? o.local;
    writeLocalCluster({ ...now, members: now.members.filter((m) => m.name !== name) });
    const home = path.dirname(localMember.configFile);
    if (o.keepData) out(`kept ${home}`);
    else {
      fs.rmSync(home, { recursive: true, force: true });
      fs.rmSync(`${localMember.dataDir}.clone-in-progress`, { force: true });
      out(`removed ${home}`);
    }
  }
  out(`${name} removed`);
}
