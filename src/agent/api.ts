// The agent's REST API on node:http: health checks for load balancers, cluster state for
// operators and peers, and authenticated management actions.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ClusterView } from '../dcs/types.js';
import { BatonError, errorMessage } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { checkAuth, HttpError, optionalString, readJsonBody, sendJson } from './api-http.js';
import { createMemberMetrics, type MemberMetrics } from './api-metrics.js';
import { clusterBody, historyBody } from './api-views.js';
import { healthCheck, isHealthPath, type HealthSnapshot } from './health.js';

export interface ActionResult {
  status: number;
  message: string;
}

export interface LsnReport {
  receivedLsn: number | null;
  replayedLsn: number | null;
  timeline: number | null;
  running: boolean;
}

export interface ApiActions {
  switchover(body: { leader?: string; candidate?: string }): Promise<ActionResult>;
  failover(body: { candidate?: string }): Promise<ActionResult>;
  restart(): Promise<ActionResult>;
  reinitialize(): Promise<ActionResult>;
  lsn(): Promise<LsnReport>;
  /** Reads the configuration file again; the reply says what applied and what waits for a restart. */
  reload(): Promise<{ status: number; json: unknown }>;
}

export interface ApiOptions {
  host: string;
  /** 0 lets the OS pick; the chosen port is returned. */
  port: number;
  token: string | null;
  member: string;
  cluster: string;
  logger: Logger;
  snapshot: () => HealthSnapshot;
  clusterView: () => Promise<ClusterView>;
  actions: ApiActions;
}

export interface ApiServer {
  port: number;
  close(): Promise<void>;
}

type Reply = { status: number; json: unknown } | { status: number; text: string; contentType: string };

interface Route {
  method: 'GET' | 'POST';
  auth: boolean;
  handle(req: IncomingMessage): Promise<Reply>;
}

const HEALTH_ALLOW = 'GET, HEAD, OPTIONS';

function routes(opts: ApiOptions, metrics: MemberMetrics): Map<string, Route> {
  const view = async (): Promise<ClusterView> => {
    try {
      return await opts.clusterView();
    } catch (err) {
      throw new HttpError(503, `cluster state is unavailable: ${errorMessage(err)}`);
    }
  };
  const get = (handle: () => Promise<Reply>): Route => ({ method: 'GET', auth: false, handle });
  const post = (handle: (req: IncomingMessage) => Promise<Reply>): Route => ({ method: 'POST', auth: true, handle });
  const action = (r: ActionResult): Reply => {
    const ok = Number.isInteger(r.status) && r.status >= 200 && r.status <= 599;
    return { status: ok ? r.status : 500, json: { message: r.message } };
  };

  return new Map<string, Route>([
    ['/cluster', get(async () => ({ status: 200, json: clusterBody(await view(), opts.cluster) }))],
    ['/history', get(async () => ({ status: 200, json: historyBody(await view()) }))],
    ['/config', get(async () => ({ status: 200, json: (await view()).config }))],
    ['/lsn', get(async () => ({ status: 200, json: { member: opts.member, ...(await opts.actions.lsn()) } }))],
    [
      '/metrics',
      get(async () => ({ status: 200, text: await metrics.render(opts.snapshot()), contentType: metrics.contentType })),
    ],
    [
      '/switchover',
      post(async (req) => {
        const body = await readJsonBody(req);
        const leader = optionalString(body, 'leader');
        const candidate = optionalString(body, 'candidate');
        return action(await opts.actions.switchover({ leader, candidate }));
      }),
    ],
    [
      '/failover',
      post(async (req) => {
        const candidate = optionalString(await readJsonBody(req), 'candidate');
        return action(await opts.actions.failover({ candidate }));
      }),
    ],
    [
      '/restart',
      post(async (req) => {
        await readJsonBody(req);
        return action(await opts.actions.restart());
      }),
    ],
    [
      '/reload',
      post(async (req) => {
        await readJsonBody(req);
        return opts.actions.reload();
      }),
    ],
    [
      '/reinitialize',
      post(async (req) => {
        await readJsonBody(req);
        return action(await opts.actions.reinitialize());
      }),
    ],
  ]);
}

function allowed(route: Route): string {
  return route.method === 'GET' ? 'GET, HEAD' : 'POST';
}

function send(res: ServerResponse, reply: Reply, head: boolean): void {
  if ('json' in reply) {
    sendJson(res, reply.status, reply.json, { head });
    return;
  }
  res.writeHead(reply.status, { 'Content-Type': reply.contentType, 'Content-Length': Buffer.byteLength(reply.text) });
  res.end(head ? undefined : reply.text);
}

/** Answers one request; returns the status sent and whether it was a health check. */
async function answer(
  req: IncomingMessage,
  res: ServerResponse,
  opts: ApiOptions,
  table: Map<string, Route>,
): Promise<{ status: number; health: boolean }> {
  const method = req.method ?? 'GET';
  const url = new URL(req.url ?? '/', 'http://baton.invalid');
  const path = url.pathname;

  if (isHealthPath(path)) {
    if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS') {
      throw new HttpError(405, `${method} is not allowed on ${path}; use ${HEALTH_ALLOW}`, { Allow: HEALTH_ALLOW });
    }
    // isHealthPath guarantees a result.
    const result = healthCheck(path, url.searchParams, opts.snapshot())!;
    if (method === 'OPTIONS') {
      res.writeHead(result.status, { Allow: HEALTH_ALLOW, 'Content-Length': 0 });
      res.end();
    } else {
      sendJson(res, result.status, result.body, { head: method === 'HEAD' });
    }
    return { status: result.status, health: true };
  }

  const route = table.get(path.replace(/\/+$/, ''));
  if (route === undefined) throw new HttpError(404, `no such endpoint: ${path}`);
  const head = method === 'HEAD' && route.method === 'GET';
  if (method !== route.method && !head) {
    throw new HttpError(405, `${method} is not allowed on ${path}; use ${allowed(route)}`, { Allow: allowed(route) });
  }
  if (route.auth) checkAuth(req, opts.token);
  const reply = await route.handle(req);
  send(res, reply, head);
  return { status: reply.status, health: false };
}

function listenError(err: NodeJS.ErrnoException, host: string, port: number): BatonError {
  if (err.code === 'EADDRINUSE') {
    return new BatonError(
      `REST API port ${host}:${port} is already in use`,
      'change restapi.listen to a free port, or stop the process that holds this one',
      { cause: err },
    );
  }
  return new BatonError(`REST API cannot listen on ${host}:${port}: ${err.message}`, 'check restapi.listen', {
    cause: err,
  });
}

export async function startApi(opts: ApiOptions): Promise<ApiServer> {
  const { logger, member, cluster } = opts;
  const table = routes(opts, createMemberMetrics(cluster, member));

  const server = http.createServer((req, res) => {
    const method = req.method ?? '?';
    const path = (req.url ?? '/').split('?')[0];
    const log = (status: number, level: 'debug' | 'warn', error?: string): void =>
      logger[level]({ member, cluster, method, path, status, error }, 'REST API request answered with an error status');
    req.on('error', (err) => logger.debug({ member, cluster, method, path, err: err.message }, 'REST API request aborted'));

    answer(req, res, opts, table).then(
      ({ status, health }) => {
        // A 503 from a health check is a routine answer (a replica asked "are you primary?").
        if (status >= 400) log(status, status >= 500 && !health ? 'warn' : 'debug');
      },
      (err: unknown) => {
        const status = err instanceof HttpError ? err.status : 500;
        const message = err instanceof HttpError ? err.message : `internal error: ${errorMessage(err)}`;
        log(status, status >= 500 ? 'warn' : 'debug', message);
        if (res.headersSent) {
          res.destroy();
          return;
        }
        const headers = err instanceof HttpError ? err.headers : {};
        try {
          sendJson(res, status, { error: message }, { headers, head: method === 'HEAD' });
        } catch {
          res.destroy();
        }
      },
    );
  });
  // Bound slow or endless uploads; Node's defaults are minutes.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      reject(listenError(err, opts.host, opts.port));
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(opts.port, opts.host);
  });
  server.on('error', (err) => logger.error({ member, cluster, err: err.message }, 'REST API server error'));

  const port = (server.address() as AddressInfo).port;
  logger.info({ member, cluster, host: opts.host, port }, 'REST API listening');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
