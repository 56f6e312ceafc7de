// What decide() asks for. The executor carries out a plan in order and stops at the first failure.

export interface UpstreamRef {
  name: string;
  host: string;
  port: number;
}

export type Action =
  | { type: 'bootstrap' }
  | { type: 'clone'; from: UpstreamRef }
  | { type: 'start_primary'; reason: string }
  | { type: 'start_replica'; upstream: UpstreamRef | null; rewindFrom: UpstreamRef | null }
  | { type: 'stop'; mode: 'fast' | 'immediate'; reason: string }
  | { type: 'acquire_leader' }
  | { type: 'release_leader'; reason: string }
  | { type: 'promote'; reason: string; previousLeader: string | null }
  | { type: 'follow'; upstream: UpstreamRef }
  | { type: 'set_sync_names'; names: string; pendingMember: string | null }
  | { type: 'put_sync'; members: string[] }
  | { type: 'ensure_slots'; names: string[] }
  /** Slots on this replica that nobody streams through any more (a finished clone's, a former leader's). */
  | { type: 'drop_slots'; names: string[] }
  | { type: 'demote_for_switchover'; target: UpstreamRef }
  | { type: 'start_switchover'; target: string; reason: string }
  | { type: 'clear_switchover'; reason: string }
  | { type: 'report'; problem: string | null };

export interface Decision {
  /** One line saying why: logged when it changes, shown in status. */
  summary: string;
  actions: Action[];
}
