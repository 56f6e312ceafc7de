// `baton node reload [member]`: asks agents to read their configuration files again (POST /reload on
// each one's REST API), and says per member what applied, what waits for a restart, and what was refused.
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

/** POST /reload on one agent; throws a BatonError with the agent's own message when it refuses. */
export async function reloadMember(member: MemberRecord, token: string): Promise<ReloadReply> {
  let res: Response;
  try {
    res = await fetch(`${member.apiUrl}/reload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{}',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    throw new BatonError(`cannot reach the agent at ${member.apiUrl}: ${(err as Error).message}`, 'check that the agent runs ("baton status")');
  }
  const body: unknown = await res.json().catch(() => null);
  if (res.ok && isReloadReply(body)) return body;
  const said = typeof body === 'object' && body !== null ? ((body as { message?: unknown; error?: unknown }).message ?? (body as { error?: unknown }).error) : null;
  throw new BatonError(`${res.status}: ${typeof said === 'string' ? said : 'unexpected reply'}`);
}

/** One line per kind of outcome, each naming the member. */
export function reloadLines(member: string, r: ReloadReply): string[] {
  const lines: string[] = [];
  if (r.applied.length > 0) lines.push(`${member}: applied ${r.applied.join(', ')}`);
  if (r.needRestart.length > 0) lines.push(`${member}: changed in the file, applies when the agent restarts: ${r.needRestart.join(', ')}`);
  if (r.bootstrapOnly.length > 0) lines.push(`${member}: read only when the cluster is created, no effect now: ${r.bootstrapOnly.join(', ')}`);
  if (r.pendingRestart.length > 0) lines.push(`${member}: PostgreSQL takes these at its next restart (POST /restart): ${r.pendingRestart.join(', ')}`);
  if (lines.length === 0) lines.push(`${member}: nothing changed`);
  return lines;
}

/** The members to reload: the one named, or all of them. */
export function reloadTargets(members: MemberRecord[], name: string | undefined): MemberRecord[] {
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
