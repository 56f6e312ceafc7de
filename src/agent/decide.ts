// The HA decision: a pure function of an observation. Every branch is a row of the decision table
// in docs/architecture.md and has a unit test in test/unit/decide.test.ts.
import type { ClusterView } from '../dcs/types.js';
import { slotName } from '../postgres/conf.js';
import type { Action, Decision, UpstreamRef } from './actions.js';
import {
  compareCandidates,
  findMember,
  ineligibility,
  memberRef,
  switchoverTargetProblem,
  syncEligibleNames,
  switchoverTargets,
  type Ranked,
} from './candidates.js';
import type { Observation } from './observation.js';
import { decideSync } from './sync.js';

const REWIND_AFTER_NOT_STREAMING_MS = 10_000;

function plan(summary: string, ...actions: Action[]): Decision {
  return { summary, actions };
}

function wait(summary: string, problem: string | null = null): Decision {
  return plan(summary, { type: 'report', problem });
}

export function decide(o: Observation): Decision {
  const c = o.cluster;
  const leaseValid = o.leaseValidUntil !== null && o.now < o.leaseValidUntil;
  const runningPrimary = o.pg.running && o.pg.inRecovery === false;

  if (!c) {
    if (runningPrimary && !leaseValid) {
      return plan('etcd unreachable and the lease may have expired: stopping PostgreSQL so no second writer can exist', {
        type: 'stop',
        mode: 'immediate',
        reason: 'leader lease not confirmed',
      });
    }
    return wait('etcd unreachable: keeping PostgreSQL as it is', 'etcd unreachable');
  }

  // One writer comes before anything else, even a data directory we do not recognise.
  const leader = c.leader?.name ?? null;
  if (runningPrimary && leader !== null && leader !== o.self.name) {
    return plan(`${leader} holds the leader key: stopping this primary`, { type: 'stop', mode: 'immediate', reason: `${leader} is the leader` });
  }
  if (runningPrimary && leader === o.self.name && !leaseValid) {
    return plan('holding the leader key without a confirmed lease: stopping PostgreSQL', {
      type: 'stop',
      mode: 'immediate',
      reason: 'leader lease not confirmed',
    });
  }

  if (c.initialize === null) return decideUninitialized(o, c);
  if (o.pg.systemId !== null && o.pg.systemId !== c.initialize) {
    return wait(
      'data directory belongs to another cluster',
      `data directory has system identifier ${o.pg.systemId}, the cluster has ${c.initialize}; move it away so this member clones afresh`,
    );
  }
  if (!o.pg.hasData) return decideClone(o, c);
  if (!o.pg.running) return decideStopped(o, c, leaseValid);

  if (leader === o.self.name) return decideAsLeader(o, c, leaseValid);
  if (leader !== null) return decideFollower(o, c, leader);
  return decideNoLeader(o, c);
}

function decideUninitialized(o: Observation, c: ClusterView): Decision {
  // The leader key is the bootstrap lock (see the executor's bootstrap).
  const holder = c.leader?.name ?? null;
  if (holder !== null && holder !== o.self.name) return wait(`waiting for ${holder} to bootstrap the cluster`);
  if (!o.pg.hasData || o.pg.stoppedAsPrimary || (o.pg.running && o.pg.inRecovery === false)) {
    return plan('cluster not initialized: bootstrapping it', { type: 'bootstrap' });
  }
  return wait('cluster not initialized and this data directory is a replica: waiting for a member to bootstrap');
}

function decideClone(o: Observation, c: ClusterView): Decision {
  const leader = findMember(c, c.leader?.name);
  if (!leader || leader.state !== 'running') return wait('no running leader to clone from yet');
  const named = o.self.cloneFrom;
  if (named !== null && named !== o.self.name) {
    // The operator chose the source to spare the leader: wait for it rather than copy from the leader.
    const m = findMember(c, named);
    if (!m) return wait(`clone source ${named} is not a member`, `clone_from names ${named}, which is not a member of the cluster`);
    if (m.state !== 'streaming' && m.state !== 'running') {
      return wait(`clone source ${named} is ${m.state}`, `clone_from names ${named}, which is ${m.state}: waiting for it to stream`);
    }
    return plan(`cloning from ${named} (clone_from)`, { type: 'clone', from: memberRef(m) });
  }
  const source =
    c.members.find((m) => m.tags.clonefrom && m.state === 'streaming' && m.name !== o.self.name) ?? leader;
  return plan(`cloning from ${source.name}`, { type: 'clone', from: memberRef(source) });
}

function decideStopped(o: Observation, c: ClusterView, leaseValid: boolean): Decision {
  const leader = c.leader?.name ?? null;
  if (leader === o.self.name) {
    if (c.config.paused) return wait('paused: PostgreSQL is down and will not be restarted', 'PostgreSQL down (paused)');
    const windowStart = o.now - c.config.restartWindow * 1000;
    const recent = o.restarts.filter((t) => t >= windowStart).length;
    if (recent < c.config.maxRestarts) {
      // Same rule as a running leader: no writable primary without a confirmed lease.
      if (!leaseValid) {
        return wait('holding the leader key without a confirmed lease: not starting PostgreSQL', 'PostgreSQL down; leader lease not confirmed');
      }
      return plan(`PostgreSQL down: restarting it in place (${recent + 1} of ${c.config.maxRestarts})`, {
        type: 'start_primary',
        reason: `restart ${recent + 1}/${c.config.maxRestarts} within ${c.config.restartWindow}s`,
      });
    }
    return plan(
      `PostgreSQL failed ${recent} times within ${c.config.restartWindow}s: handing leadership over`,
      { type: 'release_leader', reason: `max_restarts (${c.config.maxRestarts}) reached` },
      { type: 'report', problem: `PostgreSQL restarted ${recent} times within ${c.config.restartWindow}s; leadership handed over` },
    );
  }
  if (leader !== null) {
    const rec = findMember(c, leader);
    if (!rec || rec.state !== 'running') return wait(`waiting for leader ${leader} to run before rejoining`);
    const up = memberRef(rec);
    const forked = o.pg.stoppedAsPrimary || (o.pg.timeline !== null && rec.timeline !== null && o.pg.timeline < rec.timeline);
    return plan(forked ? `rejoining ${leader} (pg_rewind first: history may have forked)` : `starting as a replica of ${leader}`, {
      type: 'start_replica',
      upstream: up,
      rewindFrom: forked ? up : null,
    });
  }
  if (c.config.paused) return wait('paused: no leader and PostgreSQL down; not starting it');
  // Like Pacemaker's migration-threshold: a member that gave leadership up after repeated failures
  // stays down (and so out of the election) for restart_window, unless a new leader appears first.
  if (o.handedOverAt !== null && o.now - o.handedOverAt < c.config.restartWindow * 1000) {
    return wait('handed leadership over after repeated failures: waiting for another member to lead', 'failed repeatedly; sitting out the election for restart_window');
  }
  const sw = activeSwitchover(o, c);
  if (sw?.phase === 'handover' && sw.to !== o.self.name) return wait(`waiting for ${sw.to} to take over`);
  // No leader: start in recovery without an upstream, so this member can replay its WAL and stand in the election.
  return plan('no leader: starting as a replica so this member can stand for election', {
    type: 'start_replica',
    upstream: null,
    rewindFrom: null,
  });
}

function activeSwitchover(o: Observation, c: ClusterView) {
  return c.switchover && o.now <= c.switchover.deadline ? c.switchover : null;
}

function decideAsLeader(o: Observation, c: ClusterView, leaseValid: boolean): Decision {
  if (!leaseValid) {
    return plan('holding the leader key without a confirmed lease: stopping PostgreSQL', {
      type: 'stop',
      mode: 'immediate',
      reason: 'leader lease not confirmed',
    });
  }
  if (o.pg.inRecovery === true) {
    return plan('holding the leader key while in recovery: promoting', {
      type: 'promote',
      reason: 'holds the leader key',
      previousLeader: c.history.at(-1)?.leader ?? null,
    });
  }
  if (!o.pg.accepting) return wait('PostgreSQL starting');

  const switchover = decideLeaderSwitchover(o, c);
  if (switchover) return switchover;

  const actions: Action[] = [];
  const others = c.members.filter((m) => m.name !== o.self.name).map((m) => m.name);
  actions.push({ type: 'ensure_slots', names: others });
  actions.push(...decideSync(o, c));
  return { summary: 'leader: PostgreSQL running', actions: [...actions, { type: 'report', problem: null }] };
}

function decideLeaderSwitchover(o: Observation, c: ClusterView): Decision | null {
  const me = o.self.name;
  if (c.switchover && o.now > c.switchover.deadline) {
    return plan('switchover request expired', { type: 'clear_switchover', reason: 'deadline passed' });
  }
  const sw = c.switchover;
  if (!sw) {
    if (c.config.standbyMembers.includes(me)) {
      const target = switchoverTargets(c, me)[0];
      if (!target) return wait('in standby but no replica can take over', 'in standby: no eligible replica to hand leadership to');
      return plan(`in standby: moving leadership to ${target.name}`, {
        type: 'start_switchover',
        target: target.name,
        reason: `${me} put in standby`,
      });
    }
    return null;
  }
  if (sw.kind === 'failover') {
    return plan('failover requested while a healthy leader exists: refused', {
      type: 'clear_switchover',
      reason: 'a healthy leader exists; use switchover instead of failover',
    });
  }
  if (sw.phase !== 'requested') return null; // our own switchover in progress
  if (sw.from !== null && sw.from !== me) {
    return plan('switchover names another leader', { type: 'clear_switchover', reason: `${sw.from} is not the leader` });
  }
  const targetName = sw.to ?? switchoverTargets(c, me)[0]?.name ?? null;
  if (!targetName) return plan('switchover: no eligible target', { type: 'clear_switchover', reason: 'no eligible replica' });
  const problem = switchoverTargetProblem(c, me, targetName);
  const target = findMember(c, targetName);
  if (problem || !target) return plan(`switchover refused: ${problem}`, { type: 'clear_switchover', reason: problem ?? 'unknown target' });
  return plan(`switchover: handing leadership to ${targetName}`, { type: 'demote_for_switchover', target: memberRef(target) });
}

function decideFollower(o: Observation, c: ClusterView, leader: string): Decision {
  if (o.pg.inRecovery === false) {
    return plan(`${leader} holds the leader key: stopping this primary`, {
      type: 'stop',
      mode: 'immediate',
      reason: `${leader} is the leader`,
    });
  }
  const rec = findMember(c, leader);
  if (!rec) return wait(`leader ${leader} has not published its address yet`);
  const up: UpstreamRef = memberRef(rec);
  if (
    o.notStreamingSince !== null &&
    o.now - o.notStreamingSince > REWIND_AFTER_NOT_STREAMING_MS &&
    o.pg.timeline !== null &&
    rec.timeline !== null &&
    o.pg.timeline < rec.timeline
  ) {
    return plan(`not streaming from ${leader} on an older timeline: restarting through pg_rewind`, {
      type: 'stop',
      mode: 'fast',
      reason: 'timeline behind the leader and not streaming',
    });
  }
  const stale = staleReplicaSlots(o, c);
  return plan(
    `replica of ${leader}`,
    { type: 'follow', upstream: up },
    ...(stale.length ? [{ type: 'drop_slots' as const, names: stale }] : []),
    { type: 'report', problem: null },
  );
}

/**
 * Slots on this replica that hold WAL for nobody: the slot of a member cloned from here that now streams
 * from elsewhere, or one this member made while it led. Only slots named after a current member that
 * streams from another upstream, and not in use, are dropped; other slots may be an operator's own.
 */
export function staleReplicaSlots(o: Observation, c: ClusterView): string[] {
  const here = `${o.self.host}:${o.self.port}`;
  return o.pg.slots
    .filter((s) => !s.active)
    .filter((s) =>
      c.members.some((m) => m.name !== o.self.name && slotName(m.name) === s.name && m.state === 'streaming' && m.upstream !== null && m.upstream !== here),
    )
    .map((s) => s.name);
}

function decideNoLeader(o: Observation, c: ClusterView): Decision {
  const me = o.self.name;
  if (c.config.paused) return wait('paused: no leader, automatic failover disabled', 'no leader (paused)');
  const sw = activeSwitchover(o, c);
  const takeOver = (reason: string, previousLeader: string | null): Decision =>
    plan(reason, { type: 'acquire_leader' }, { type: 'promote', reason, previousLeader });
  const previous = c.history.at(-1)?.leader ?? c.sync?.leader ?? null;

  if (sw?.phase === 'handover' || sw?.kind === 'failover') {
    if (sw.to !== me) return wait(`waiting for ${sw.to} to take over (${sw.kind})`);
    if (o.pg.inRecovery === false) return plan('taking the leader key back', { type: 'acquire_leader' });
    return takeOver(sw.kind === 'failover' ? `forced failover to ${me}` : `switchover from ${sw.from}`, sw.from ?? previous);
  }
  if (o.pg.inRecovery === false) {
    // In synchronous mode a primary outside `sync` may lack commits acknowledged under a later leader.
    // No `sync` key at all means no synchronous commit was ever confirmed (e.g. an interrupted bootstrap).
    if (c.config.synchronousMode && c.sync !== null && !syncEligibleNames(c).has(me)) {
      return wait(
        'running as primary without the leader key, but not a synchronous standby: not taking it',
        'running as primary without the leader key outside the synchronous set: it may lack acknowledged commits',
      );
    }
    return plan('running as primary without the leader key: taking it', { type: 'acquire_leader' });
  }
  if (!o.pg.accepting) return wait('PostgreSQL starting; not standing for election yet');
  const myLsn = o.pg.receivedLsn;
  const why = ineligibility(c, me, o.self.tags, myLsn, o.lastLeaderLsn);
  if (why) return wait(`no leader; not eligible: ${why}`, `no leader, and this member may not take over: ${why}`);

  const ranked: Ranked[] = [{ name: me, receivedLsn: myLsn ?? 0, priority: o.self.tags.priority }];
  for (const p of o.peers) {
    const rec = findMember(c, p.name);
    if (!rec || p.name === me || !p.running) continue;
    if (ineligibility(c, p.name, rec.tags, p.receivedLsn, o.lastLeaderLsn)) continue;
    ranked.push({ name: p.name, receivedLsn: p.receivedLsn ?? 0, priority: rec.tags.priority });
  }
  ranked.sort(compareCandidates);
  const best = ranked[0]!;
  if (best.name !== me) return wait(`no leader; ${best.name} is the better candidate`);
  return takeOver(previous ? `leader ${previous} gone` : 'no leader', previous);
}
