// Typed errors that carry what went wrong and what to do about it.

export class BatonError extends Error {
  constructor(
    message: string,
    /** What the operator can do about it. */
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }

  /** One line for the terminal: the problem, then the remedy. */
  describe(): string {
    return this.hint ? `${this.message}\n  ${this.hint}` : this.message;
  }
}

export class ConfigError extends BatonError {}
export class StoreUnavailableError extends BatonError {}
export class PostgresError extends BatonError {}
export class UsageError extends BatonError {}

export function errorMessage(err: unknown): string {
  if (err instanceof BatonError) return err.describe();
  if (err instanceof Error) return err.message;
  return String(err);
}
