// The effectful half of moving an idle session (Session.move decides when, and what happens to the
// client): a server for it, logged in as the client, with the session's statements and settings
// made again, and, for a read-only session, caught up with what the session may have read before.
import type { MemberRecord } from '../dcs/types.js';
import { formatLsn } from '../util/lsn.js';
import { reachesPosition } from './read-position.js';
import { loginToServer, type ServerLogin } from './server-login.js';
import { tcpAddress, type ServerAddress } from './server-address.js';
import { ReplayFailed, replaySessionState } from './server-replay.js';
import type { SessionReplayLog } from './session-replay.js';
import type { ListenerKind, SessionHooks } from './session.js';

/** How long a read-only session's new server may take to replay what the old one had. */
export const READ_CATCH_UP_MS = 2000;

export interface MoveRequest {
  kind: ListenerKind;
  /** The member the session leaves. */
  from: string | undefined;
  /** The session still has its old server (read-only): no waiting for a better one, and never the same member. */
  keepsServer: boolean;
  params: Record<string, string>;
  password: string;
  replayLog: SessionReplayLog;
  /** The WAL position the new server must have replayed (read-only), or null. */
  floor: number | null;
}

export interface MoveTarget {
  member: MemberRecord;
  login: ServerLogin;
}

/** Throws (ReplayFailed, naming the member, when a statement of the session's failed there) with the server closed. */
export async function openMoveTarget(req: MoveRequest, hooks: Pick<SessionHooks, 'route' | 'connectTimeoutMs' | 'addressOf'>): Promise<MoveTarget> {
  const member = await hooks.route(req.kind, req.keepsServer ? 0 : undefined);
  if (req.keepsServer && member.name === req.from) throw new Error(`${req.from} takes new read-only sessions again`);
  const login = await loginToMember(member, hooks.addressOf(member), req, hooks.connectTimeoutMs);
  try {
    await replaySessionState(login.socket, req.replayLog.replay, req.replayLog.unnamedParse, hooks.connectTimeoutMs, login.reported);
    if (req.floor !== null && !(await reachesPosition(login.socket, req.floor, Date.now() + READ_CATCH_UP_MS, hooks.connectTimeoutMs, login.reported))) {
      throw new Error(`${member.name} did not replay up to ${formatLsn(req.floor)}, where ${req.from} was, within ${READ_CATCH_UP_MS} ms`);
    }
  } catch (err) {
    login.socket.destroy();
    throw err instanceof ReplayFailed ? new ReplayFailed(`${err.entry} on ${member.name}`, err.serverError) : err;
  }
  return { member, login };
}

/** Logs in at the address given; a Unix socket that cannot be connected to is followed by TCP (a
 * login the server refused is not tried again). */
async function loginToMember(member: MemberRecord, address: ServerAddress, req: MoveRequest, timeoutMs: number): Promise<ServerLogin> {
  const login = (a: ServerAddress) => loginToServer({ address: a, params: req.params, password: req.password, timeoutMs });
  if (!('path' in address)) return login(address);
  try {
    return await login(address);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ECONNREFUSED' && code !== 'EACCES') throw err;
    return login(tcpAddress(member));
  }
}
