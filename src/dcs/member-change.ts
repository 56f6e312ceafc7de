// Keeping a cluster view current from member watch events, without reading the whole prefix again.
import type { ClusterChange } from './store.js';
import type { ClusterView } from './types.js';

export type MemberChange = Extract<ClusterChange, { kind: 'member' }>;

/** The view with one member's change in it. A change at or below the view's revision is already
 * in the view (the view was read after it), so the view comes back unchanged. */
export function withMemberChange(view: ClusterView, change: MemberChange): ClusterView {
  if (BigInt(change.revision) <= BigInt(view.revision)) return view;
  const members = view.members.filter((m) => m.name !== change.name);
  if (change.record) {
    members.push(change.record);
    members.sort((a, b) => a.name.localeCompare(b.name));
  }
  return { ...view, members, revision: change.revision };
}

/** Whether two views hold the same cluster state, their revisions aside: a view kept current from
 * watch events against one read afresh. */
export function sameClusterState(a: ClusterView, b: ClusterView): boolean {
  return JSON.stringify({ ...a, revision: null }) === JSON.stringify({ ...b, revision: null });
}
