// What the REST API's changing endpoints do, on behalf of an authenticated operator.
import { ConfigError, errorMessage } from '../util/errors.js';
import type { Agent } from './agent.js';
import type { ActionResult, ApiActions } from './api.js';
import { failover, RequestRefused, switchover } from './requests.js';

async function asResult(fn: () => Promise<string>): Promise<ActionResult> {
  try {
    return { status: 200, message: await fn() };
  } catch (err) {
    return { status: err instanceof RequestRefused ? err.status : 503, message: errorMessage(err) };
  }
}

export function apiActions(agent: Agent): ApiActions {
  return {
    switchover: (body) =>
      asResult(async () => {
        const r = await switchover(agent.store, { from: body.leader ?? null, to: body.candidate ?? null });
        return `switched over from ${r.from} to ${r.to} in ${r.ms} ms`;
      }),
    failover: (body) =>
      asResult(async () => {
        if (!body.candidate) throw new RequestRefused('failover needs a candidate', 'send {"candidate": "<member>"}', 400);
        const r = await failover(agent.store, { to: body.candidate });
        return `failed over to ${r.to} in ${r.ms} ms`;
      }),
    restart: () =>
      asResult(async () => {
        agent.mem.manualRestart = true;
        await agent.pg.stop('fast');
        agent.trigger();
        return 'PostgreSQL stopped; the agent starts it again in its role';
      }),
    reinitialize: () =>
      asResult(async () => {
        const view = await agent.store.read();
        if (view.leader?.name === agent.cfg.name) {
          throw new RequestRefused('the leader cannot be reinitialized', 'switch over to another member first', 412);
        }
        await agent.pg.stop('immediate');
        agent.pg.removeDataDir();
        agent.trigger();
        return 'data directory removed; the agent clones it afresh from the leader';
      }),
    reload: async () => {
      try {
        return { status: 200, json: await agent.reloadConfig() };
      } catch (err) {
        // A wrong file or a refused parameter is the request's problem; anything else is ours.
        return { status: err instanceof ConfigError ? 400 : 503, json: { message: errorMessage(err) } };
      }
    },
    lsn: async () => {
      const s = await agent.pg.status();
      return { receivedLsn: s.receivedLsn, replayedLsn: s.replayedLsn, timeline: s.timeline, running: s.running };
    },
  };
}
