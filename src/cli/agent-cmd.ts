// `baton agent --config FILE`: runs one member until SIGTERM/SIGINT.
import { Agent } from '../agent/agent.js';
import { loadMemberConfig } from '../config/load.js';
import { EtcdStore } from '../dcs/etcd-store.js';
import { PostgresInstance } from '../postgres/instance.js';
import { errorMessage } from '../util/errors.js';
import { createLogger } from '../util/log.js';
import { runUntilSignalled } from './service.js';

export async function runAgent(configFile: string): Promise<void> {
  const cfg = loadMemberConfig(configFile);
  const log = createLogger({ cluster: cfg.cluster, member: cfg.name, component: 'agent' });
  const store = new EtcdStore({
    endpoints: cfg.etcdEndpoints,
    cluster: cfg.cluster,
    requestTimeoutMs: cfg.etcdRequestTimeoutMs,
    logger: log.child({ subsystem: 'etcd' }),
  });
  const pg = new PostgresInstance(
    {
      binDir: cfg.pg.binDir,
      dataDir: cfg.pg.dataDir,
      logFile: cfg.pg.logFile,
      listenHost: cfg.pg.listen.host,
      port: cfg.pg.listen.port,
      advertiseHost: cfg.pg.connect.host,
      osUser: cfg.pg.osUser,
      superuser: cfg.pg.superuser,
      replication: cfg.pg.replication,
      memberName: cfg.name,
      parameters: cfg.pg.parameters,
    },
    log.child({ subsystem: 'postgres' }),
  );
  const agent = new Agent(cfg, store, pg, log);
  await runUntilSignalled('agent', log, {
    start: () => agent.start(),
    stop: () => agent.stop(),
    reload: () => {
      // Errors are logged here: the signal has no one to answer to.
      agent.reloadConfig().catch((err: unknown) => log.error({ signal: 'SIGHUP', err: errorMessage(err) }, 'configuration not reloaded; running on as before'));
    },
    cleanup: async () => {
      await pg.close();
      await store.close();
    },
  });
}
