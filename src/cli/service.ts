// Running a long-lived process (agent, proxy) until SIGTERM or SIGINT, with one graceful stop; SIGHUP
// reloads what the service can reload, and never stops it (Node's default would).
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/log.js';

export async function runUntilSignalled(what: string, log: Logger, service: {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Releases what was opened when start() refused. */
  cleanup(): Promise<void>;
  /** Reads the configuration again (SIGHUP); throws why when it cannot. Without it SIGHUP is logged and ignored. */
  reload?(): void;
}): Promise<void> {
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    service.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err: errorMessage(err) }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => {
    if (stopping) return;
    if (!service.reload) return log.warn({ signal: 'SIGHUP' }, `the ${what} has no configuration to reload while running: restart it to apply changes`);
    try {
      service.reload();
    } catch (err) {
      log.error({ signal: 'SIGHUP', err: errorMessage(err) }, 'configuration not reloaded; running on as before');
    }
  });
  try {
    await service.start();
  } catch (err) {
    log.fatal({ err: errorMessage(err) }, `${what} refused to start`);
    await service.cleanup().catch(() => undefined);
    throw err;
  }
}
