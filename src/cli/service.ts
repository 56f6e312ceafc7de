// Running a long-lived process (agent, proxy) until SIGTERM or SIGINT, with one graceful stop.
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/log.js';

export async function runUntilSignalled(what: string, log: Logger, service: {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Releases what was opened when start() refused. */
  cleanup(): Promise<void>;
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
  try {
    await service.start();
  } catch (err) {
    log.fatal({ err: errorMessage(err) }, `${what} refused to start`);
    await service.cleanup().catch(() => undefined);
    throw err;
  }
}
