// `baton node reload [member]` and `baton node restart <member>`: ask agents, through their REST API,
// to read their configuration files again (POST /reload: per member, what applied, what waits for a
// restart, what was refused) or to restart PostgreSQL in its role (POST /restart).
import type { MemberRecord } from '../dcs/types.js';
import { BatonError, UsageError } from '../util/errors.js';

export interface ReloadReply {
  applied: string[];
  needRestart: string[];
  bootstrapOnly: string[];
  pendingRestart: string[];
}

const REQUEST_TIMEOUT_MS = 30_000;

function isReloadReply(v: unknown): v is ReloadReply {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return ['applied', 'needRestart', 'bootstrapOnly', 'pendingRestart'].every((k) => Array.isArray(r[k]));
}

/** POST `path` on a member's agent; the reply's JSON when it says yes, otherwise a BatonError with the
 * agent's own message. */
export async function postToAgent(member: MemberRecord, path: string, token: string): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${member.apiUrl}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{}',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    throw new BatonError(`cannot reach the agent at ${member.apiUrl}: ${(err as Error).message}`, 'check that the agent runs ("baton status")');
  }
  const body: unknown = await res.json().catch(() => null);
  if (res.ok) return body;
  throw new BatonError(`${res.status}: ${messageOf(body) ?? 'unexpected reply'}`);
}

/** What an agent's reply says: `message` from actions, `error` from refusals (api-http.ts). */
function messageOf(body: unknown): string | null {
  if (typeof body !== 'object' || body === null) return null;
  const b = body as { message?: unknown; error?: unknown };
  const said = b.message ?? b.error;
  return typeof said === 'string' ? said : null;
}

/** POST /reload on one agent. */
export async function reloadMember(member: MemberRecord, token: string): Promise<ReloadReply> {
  const body = await postToAgent(member, '/reload', token);
  if (!isReloadReply(body)) throw new BatonError(`unexpected reply from ${member.apiUrl}/reload`);
  return body;
}

/** One line per kind of outcome, each naming the member. */
export function reloadLines(member: string, r: ReloadReply): string[] {
  const lines: string[] = [];
  if (r.applied.length > 0) lines.push(`${member}: applied ${r.applied.join(', ')}`);
  if (r.needRestart.length > 0) lines.push(`${member}: changed in the file, applies when the agent restarts: ${r.needRestart.join(', ')}`);
  if (r.bootstrapOnly.length > 0) lines.push(`${member}: read only when the cluster is created, no effect now: ${r.bootstrapOnly.join(', ')}`);
  if (r.pendingRestart.length > 0) lines.push(`${member}: PostgreSQL takes these at its next restart (baton node restart ${member}): ${r.pendingRestart.join(', ')}`);
  if (lines.length === 0) lines.push(`${member}: nothing changed`);
  return lines;
}

/** The member named, or all of them. */
export function membersNamed(members: MemberRecord[], name: string | undefined): MemberRecord[] {
  if (name === undefined) return members;
  const m = members.find((x) => x.name === name);
  if (!m) throw new UsageError(`no member "${name}" in the cluster`, `members: ${members.map((x) => x.name).join(', ') || 'none'}`);
  return [m];
}

export function apiToken(option: string | undefined, local: { apiToken: string } | null): string {
  const token = option ?? process.env.BATON_API_TOKEN ?? local?.apiToken;
  if (!token) throw new UsageError('reloading needs the agents\' REST API token', 'pass --token TOKEN or set BATON_API_TOKEN (restapi.token in the member configuration)');
  return token;
}

/** Restarts a member's PostgreSQL through its agent and waits until it runs in its role again. The
 * leader is refused without `force`: its writes stop until it is back. */
export async function restartMember(
  store: { read(): Promise<{ leader: { name: string } | null; members: MemberRecord[] }> },
  name: string,
  o: { token: string; force: boolean; timeoutMs?: number; out: (line: string) => void },
): Promise<void> {
  const view = await store.read();
  const [m] = membersNamed(view.members, name);
  if (view.leader?.name === name && !o.force) {
    throw new UsageError(`${name} is the leader: restarting its PostgreSQL stops writes until it is back`, `switch over first ("baton switchover"), or pass --force`);
  }
  o.out(`${name}: ${messageOf(await postToAgent(m!, '/restart', o.token)) ?? 'restarting'}`);
  const started = Date.now();
  const deadline = started + (o.timeoutMs ?? 120_000);
  // First it must be seen down (or restarted: a new postmaster), then up again in its role.
  const oldPid = m!.postmasterPid;
  for (;;) {
    const now = (await store.read()).members.find((x) => x.name === name);
    const back = now && now.postmasterPid !== null && now.postmasterPid !== oldPid && (now.state === 'running' || now.state === 'streaming');
    if (back) {
      o.out(`${name} is ${now.state} again (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      return;
    }
    if (Date.now() > deadline) throw new BatonError(`${name} is not back after ${Math.round((Date.now() - started) / 1000)} s`, 'see "baton status" and its agent log');
    await new Promise((r) => setTimeout(r, 200));
  }
}
