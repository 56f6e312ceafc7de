// Checks before the agent touches anything: a clash is refused with a clear error, and nothing
// already running (a live member of the same name, another server on our ports) is disturbed.
import type { MemberConfig } from '../config/load.js';
import type { ClusterStore } from '../dcs/store.js';
import type { ClusterView } from '../dcs/types.js';
import type { PostgresInstance } from '../postgres/instance.js';
import { BatonError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { portInUse } from '../util/net.js';

export class StartRefused extends BatonError {}

export async function preflight(
  cfg: MemberConfig,
  store: ClusterStore,
  pg: PostgresInstance,
  log: Logger,
  cancelled: () => boolean,
): Promise<void> {
  const { api } = cfg;
  if (await portInUse(api.listen.host, api.listen.port)) {
    throw new StartRefused(
      `REST API port ${api.listen.host}:${api.listen.port} is already in use`,
      `stop whatever listens there or change restapi.listen in ${cfg.file}`,
    );
  }
  const ownPostmaster = pg.isRunning();
  if (!ownPostmaster && (await portInUse(cfg.pg.listen.host, cfg.pg.listen.port))) {
    throw new StartRefused(
      `PostgreSQL port ${cfg.pg.listen.host}:${cfg.pg.listen.port} is already in use by another process`,
      `stop it or change postgresql.listen in ${cfg.file}`,
    );
  }
  const view = await readWithBackoff(store, log, cancelled);
  await refuseDuplicateName(cfg, store, view, log);
}

async function readWithBackoff(store: ClusterStore, log: Logger, cancelled: () => boolean): Promise<ClusterView> {
  let delay = 250;
  for (let attempt = 1; ; attempt++) {
    try {
      return await store.read();
    } catch (err) {
      if (cancelled()) throw err;
      log.error(
        { attempt, retryInMs: delay, err: (err as Error).message },
        'etcd unreachable: cannot start until it answers (check etcd.hosts in the config and that etcd runs)',
      );
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }
}

/** A member key with our name belongs either to a live agent (refuse) or to our own previous run
 * that has not expired yet (wait for it). A live agent answers on its REST API. */
async function refuseDuplicateName(cfg: MemberConfig, store: ClusterStore, view: ClusterView, log: Logger): Promise<void> {
  const myApi = `http://${cfg.api.connect.host}:${cfg.api.connect.port}`;
  let existing = view.members.find((m) => m.name === cfg.name);
  const deadline = Date.now() + (view.config.ttl + 2) * 1000;
  while (existing) {
    const answer = await fetch(`${existing.apiUrl}/liveness`, { signal: AbortSignal.timeout(1000) })
      .then((r) => r.status)
      .catch(() => null);
    if (answer !== null) {
      throw new StartRefused(
        `member name "${cfg.name}" is already used by a live agent (pid ${existing.agentPid}, API ${existing.apiUrl}, PostgreSQL ${existing.host}:${existing.port})`,
        `give this member another name in ${cfg.file}, or stop the other agent first`,
      );
    }
    if (existing.apiUrl !== myApi && Date.now() > deadline) {
      throw new StartRefused(
        `member name "${cfg.name}" is registered from ${existing.apiUrl}, which does not answer`,
        'wait for its lease to expire or remove the other member',
      );
    }
    log.info({ previous: existing.apiUrl }, 'a previous registration of this member has not expired yet; waiting');
    await new Promise((r) => setTimeout(r, 500));
    existing = (await store.read()).members.find((m) => m.name === cfg.name);
  }
}
