// Structured logging: every line names the cluster and the member it concerns.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(fields: { cluster: string; member?: string; component: string }): Logger {
  const level = process.env.BATON_LOG_LEVEL ?? 'info';
  return pino({ level, base: { ...fields, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}

/** A logger that writes nothing, for library callers and tests that do not care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
