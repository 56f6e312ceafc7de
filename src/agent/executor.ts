// Carries out a decision's actions in order; the first failure stops the plan (the next loop decides again).
import fs from 'node:fs';
import type { ClusterStore } from '../dcs/store.js';
import type { MemberConfig } from '../config/load.js';
import type { PostgresInstance } from '../postgres/instance.js';
import { slotName } from '../postgres/conf.js';
import type { ManagedSettings, UpstreamTarget } from '../postgres/types.js';
import type { Logger } from '../util/log.js';
import { BatonError } from '../util/errors.js';
import type { Action, UpstreamRef } from './actions.js';
import type { AgentMemory } from './state.js';
import { waitForPeerPosition } from './peers.js';
import { drainBeforeHandover } from './drain.js';

const SWITCHOVER_CATCH_UP_MS = 10_000;

export class AbortPlan extends BatonError {}

export interface ExecutorContext {
  cfg: MemberConfig;
  store: ClusterStore;
  pg: PostgresInstance;
  mem: AgentMemory;
  log: Logger;
  /** Hosts of every known member, for pg_hba replication entries. */
  memberHosts: () => string[];
  /** API URL of a member, for switchover catch-up checks. */
  apiUrlOf: (name: string) => string | null;
  /** Member records are republished when the state changes mid-plan (e.g. 'creating replica'). */
  publish: (state?: 'creating replica' | 'rewinding' | 'stopping' | 'starting') => Promise<void>;
}

export async function execute(ctx: ExecutorContext, actions: Action[]): Promise<void> {
  for (const action of actions) {
    await run(ctx, action);
  }
}

function upstreamOf(ctx: ExecutorContext, ref: UpstreamRef | null): UpstreamTarget | null {
  return ref ? { host: ref.host, port: ref.port, slot: slotName(ctx.cfg.name) } : null;
}

function settings(ctx: ExecutorContext, upstream: UpstreamRef | null, syncNames: string): ManagedSettings {
  return { upstream: upstreamOf(ctx, upstream), synchronousStandbyNames: syncNames, memberHosts: ctx.memberHosts() };
}

async function run(ctx: ExecutorContext, a: Action): Promise<void> {
  const { pg, store, mem, cfg, log } = ctx;
  switch (a.type) {
    case 'report':
      mem.problem = a.problem;
      return;
    case 'bootstrap':
      return bootstrap(ctx);
    case 'clone':
      return clone(ctx, a.from);
    case 'start_primary':
      log.warn({ reason: a.reason }, 'starting PostgreSQL as primary');
      if (!mem.manualRestart) mem.restarts.push(Date.now());
      mem.manualRestart = false;
      await ctx.publish('starting');
      pg.writeConfig(settings(ctx, null, mem.appliedSyncNames));
      await pg.start({ standby: false });
      return;
    case 'start_replica': {
      if (a.rewindFrom) {
        await ctx.publish('rewinding');
        try {
          const result = await pg.rewind({ host: a.rewindFrom.host, port: a.rewindFrom.port });
          log.info({ source: a.rewindFrom.name, result }, 'pg_rewind finished');
        } catch (err) {
          // A former primary that cannot be rewound is cloned afresh rather than left stuck.
          log.error({ err, source: a.rewindFrom.name }, 'pg_rewind failed: removing the data directory to clone afresh');
          pg.removeDataDir();
          return;
        }
      }
      mem.appliedSyncNames = '';
      mem.manualRestart = false;
      await ctx.publish('starting');
      pg.writeConfig(settings(ctx, a.upstream, ''));
      await pg.start({ standby: true });
      return;
    }
    case 'stop':
      log.warn({ mode: a.mode, reason: a.reason }, 'stopping PostgreSQL');
      await pg.stop(a.mode);
      return;
    case 'acquire_leader': {
      if (!mem.lease || mem.leaseValidUntil === null || Date.now() >= mem.leaseValidUntil) {
        throw new AbortPlan('no valid lease to take the leader key with');
      }
      const ok = await store.acquireLeader(cfg.name, mem.lease);
      if (!ok) throw new AbortPlan('another member took the leader key first');
      log.info('took the leader key');
      return;
    }
    case 'release_leader':
      log.warn({ reason: a.reason }, 'releasing the leader key');
      await store.releaseLeader(cfg.name);
      mem.handedOverAt = Date.now();
      return;
    case 'promote':
      return promote(ctx, a.reason, a.previousLeader);
    case 'follow': {
      const changed = await pg.applyManagedSettings(settings(ctx, a.upstream, ''));
      mem.appliedSyncNames = '';
      if (changed) log.info({ upstream: a.upstream.name }, 'now following');
      return;
    }
    case 'set_sync_names': {
      await pg.applyManagedSettings(settings(ctx, null, a.names));
      mem.appliedSyncNames = a.names;
      if (a.pendingMember) {
        // The checkpointer applies a reload asynchronously; commits acknowledged before it did are
        // below the position read after this pause, so the new standby must pass it.
        await sleep(300);
        mem.pendingSync = { member: a.pendingMember, sinceLsn: await pg.currentWalLsn() };
      } else {
        mem.pendingSync = null;
      }
      log.info({ synchronous_standby_names: a.names }, 'synchronous_standby_names set');
      return;
    }
    case 'put_sync':
      await store.putSync({ leader: cfg.name, members: a.members });
      if (a.members.length) {
        mem.pendingSync = null;
        log.info({ sync: a.members }, 'synchronous standby confirmed');
      }
      return;
    case 'drop_slots':
      for (const name of a.names) {
        try {
          await pg.dropSlot(name);
        } catch (err) {
          log.warn({ slot: name, err: (err as Error).message }, 'could not drop replication slot');
        }
      }
      return;
    case 'ensure_slots':
      await pg.ensureSlots(a.names.map(slotName));
      return;
    case 'start_switchover':
      await store.requestSwitchover({
        kind: 'switchover',
        from: cfg.name,
        to: a.target,
        requestedAt: new Date().toISOString(),
        phase: 'requested',
        deadline: Date.now() + 60_000,
        reason: a.reason,
      });
      return;
    case 'clear_switchover':
      log.warn({ reason: a.reason }, 'clearing switchover request');
      await store.clearSwitchover();
      return;
    case 'demote_for_switchover':
      return demoteForSwitchover(ctx, a.target);
  }
}

/** The leader key doubles as the bootstrap lock: only its holder runs initdb, and if it dies mid-way
 * its lease frees the key for another member. `initialize` (create-if-absent) then records the system id. */
async function bootstrap(ctx: ExecutorContext): Promise<void> {
  const { pg, store, mem, cfg, log } = ctx;
  if (!mem.lease) throw new AbortPlan('no lease yet to take the bootstrap lock with');
  const view = await store.read();
  if (view.leader?.name !== cfg.name && !(await store.acquireLeader(cfg.name, mem.lease))) {
    throw new AbortPlan(`${view.leader?.name ?? 'another member'} is bootstrapping the cluster`);
  }
  if (!pg.hasDataDir()) {
    log.info('initializing a new cluster with initdb');
    await pg.initdb();
  }
  if (!pg.isRunning()) {
    pg.writeConfig(settings(ctx, null, ''));
    await pg.start({ standby: false });
  }
  const status = await pg.status();
  if (!status.systemId) throw new AbortPlan('PostgreSQL did not report its system identifier');
  const won = (await store.initialize(status.systemId)) || (await store.read()).initialize === status.systemId;
  if (!won) {
    log.warn('the cluster was initialized with another system id: discarding this data directory to clone');
    await store.releaseLeader(cfg.name);
    await pg.stop('immediate');
    pg.removeDataDir();
    return;
  }
  await store.putConfig(cfg.initialDynamicConfig);
  mem.appliedSyncNames = '';
  await store.putSync({ leader: cfg.name, members: [] });
  await store.appendHistory({
    timeline: status.timeline ?? 1,
    lsn: status.receivedLsn ?? 0,
    at: new Date().toISOString(),
    leader: cfg.name,
    previousLeader: null,
    reason: 'bootstrap',
  });
  log.info({ systemId: status.systemId }, 'cluster bootstrapped');
}

async function promote(ctx: ExecutorContext, reason: string, previousLeader: string | null): Promise<void> {
  const { pg, store, mem, cfg, log } = ctx;
  const strict = (await store.read()).config.synchronousModeStrict;
  // Until a new synchronous standby is confirmed, commits are either asynchronous or (strict) wait.
  mem.appliedSyncNames = strict ? '*' : '';
  mem.pendingSync = null;
  await pg.applyManagedSettings(settings(ctx, null, mem.appliedSyncNames));
  await store.putSync({ leader: cfg.name, members: [] });
  const t0 = Date.now();
  await pg.promote();
  const status = await pg.status();
  log.warn({ reason, previousLeader, timeline: status.timeline, ms: Date.now() - t0 }, 'promoted to primary');
  await store.appendHistory({
    timeline: status.timeline ?? 0,
    lsn: status.receivedLsn ?? 0,
    at: new Date().toISOString(),
    leader: cfg.name,
    previousLeader,
    reason,
  });
  await store.clearSwitchover();
}

async function demoteForSwitchover(ctx: ExecutorContext, target: UpstreamRef): Promise<void> {
  const { pg, store, cfg, log } = ctx;
  const view = await store.read();
  const req = view.switchover;
  if (!req) return;
  await store.updateSwitchover({ ...req, to: target.name, phase: 'demoting' });
  const drain = await drainBeforeHandover({ store, openTransactions: () => pg.openTransactions(), log }, req, view.config.switchoverDrainTimeout * 1000);
  const level = drain.cutOff > 0 || drain.proxiesNotHolding.length > 0 ? 'warn' : 'info';
  log[level]({ ...drain, target: target.name }, 'switchover: drained open transactions');
  log.warn({ target: target.name }, 'switchover: shutting down cleanly so the target receives all WAL');
  await ctx.publish('stopping');
  await pg.stop('fast');
  const { checkpointLsn } = await pg.controlData();
  const api = ctx.apiUrlOf(target.name);
  const caughtUp = api !== null && (await waitForPeerPosition(api, checkpointLsn, SWITCHOVER_CATCH_UP_MS));
  if (!caughtUp) {
    log.error({ target: target.name }, 'switchover target did not receive all WAL in time: staying leader');
    ctx.mem.manualRestart = true;
    pg.writeConfig(settings(ctx, null, ctx.mem.appliedSyncNames));
    await pg.start({ standby: false });
    await store.clearSwitchover();
    throw new AbortPlan(`switchover to ${target.name} aborted: it did not catch up within ${SWITCHOVER_CATCH_UP_MS} ms`);
  }
  await store.updateSwitchover({ ...req, to: target.name, phase: 'handover' });
  await store.releaseLeader(cfg.name);
  log.warn({ target: target.name }, 'switchover: leader key handed over');
}

/** pg_basebackup from `from` through this member's slot, published as it goes; then starts as its replica. */
async function clone(ctx: ExecutorContext, from: UpstreamRef): Promise<void> {
  const { pg, mem, cfg, log } = ctx;
  // An agent killed mid-copy leaves a partial data directory: the marker says to discard it.
  const marker = cloneMarker(cfg);
  if (fs.existsSync(marker)) pg.removeDataDir();
  fs.writeFileSync(marker, `${new Date().toISOString()} from ${from.name}\n`);
  mem.clone = { source: from.name, doneBytes: 0, totalBytes: 0, startedAt: new Date().toISOString() };
  try {
    await ctx.publish('creating replica');
    log.info({ from: from.name }, 'cloning with pg_basebackup');
    let lastPublish = 0;
    await pg.cloneFrom({ host: from.host, port: from.port }, slotName(cfg.name), (p) => {
      if (!mem.clone) return;
      mem.clone.doneBytes = p.doneBytes;
      mem.clone.totalBytes = p.totalBytes ?? 0;
      // Progress goes out once a second: `baton node add` shows it, and etcd is spared a write per line.
      if (Date.now() - lastPublish >= 1000) {
        lastPublish = Date.now();
        log.info({ doneBytes: p.doneBytes, totalBytes: p.totalBytes }, 'clone progress');
        void ctx.publish('creating replica');
      }
    });
  } catch (err) {
    mem.problem = `cloning from ${from.name} (${from.host}:${from.port}) failed: ${(err as Error).message}`;
    throw err;
  } finally {
    mem.clone = null;
  }
  fs.rmSync(marker, { force: true });
  pg.writeConfig(settings(ctx, from, ''));
  mem.appliedSyncNames = '';
  mem.problem = null;
  await pg.start({ standby: true });
  log.info({ upstream: from.name }, 'clone started as a replica');
}

/** Present while a clone runs; a data directory next to it is incomplete. */
export function cloneMarker(cfg: MemberConfig): string {
  return `${cfg.pg.dataDir}.clone-in-progress`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
