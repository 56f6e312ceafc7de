// One local PostgreSQL instance: create it (initdb or clone), configure, start, stop, promote, rewind, inspect.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { ensureDirFor, runAsFor, type RunAs } from '../util/os-user.js';
import { ConfigError, PostgresError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { batonConf, pgHbaConf, postgresqlConf, SOCKET_TOKEN_FILE, socketDirFor } from './conf.js';
import { HOT_STANDBY_PARAMETERS, hotStandbyShortfalls } from './hot-standby.js';
import { Postmaster, type ExitListener } from './process.js';
import * as q from './queries.js';
import { waitUntilAccepting, withClient, type ConnectTarget } from './startup.js';
import * as tools from './tools.js';
import type { CloneProgress, InstanceOptions, LocalStatus, ManagedSettings, PgParameters, ReplicationRow, StopMode } from './types.js';

/** Files pg_rewind overwrites with the source's copies; restored afterwards. */
const OWN_FILES = ['postgresql.conf', 'baton.conf', 'pg_hba.conf', 'pg_ident.conf', 'postgresql.auto.conf'];

const NO_SETTINGS: ManagedSettings = { upstream: null, synchronousStandbyNames: '', memberHosts: [] };

export type { ControlData } from './tools.js';

export class PostgresInstance {
  readonly opts: InstanceOptions;
  private readonly runAs: RunAs | null;
  private readonly log: Logger;
  private readonly pm: Postmaster;
  private pool: pg.Pool | null = null;
  private lastSettings: ManagedSettings | null = null;
  /** Written beside the Unix socket at every start and published in the member record, so that a
   * proxy on this host can tell this server's socket from another that happens to have the same path. */
  private readonly socketToken = crypto.randomBytes(16).toString('hex');
  /** pg_basebackup is filling the data directory: nothing else may write into it. */
  private cloning = false;

  constructor(opts: InstanceOptions, logger: Logger) {
    this.opts = { ...opts, dataDir: path.resolve(opts.dataDir), logFile: path.resolve(opts.logFile) };
    this.runAs = runAsFor(opts.osUser);
    this.log = logger.child({ port: opts.port });
    this.pm = new Postmaster(opts.binDir, this.opts.dataDir, this.opts.logFile, this.runAs, this.log);
  }

  private get ctx(): tools.ToolContext {
    return { opts: this.opts, runAs: this.runAs, log: this.log };
  }

  private file(name: string): string {
    return path.join(this.opts.dataDir, name);
  }

  /** Where the agent connects: the listen address, or loopback when listening on every address. */
  private target(): ConnectTarget {
    const first = this.opts.listenHost.split(',')[0]!.trim();
    const host = first === '*' || first === '0.0.0.0' || first === '' ? '127.0.0.1' : first === '::' ? '::1' : first;
    return { host, port: this.opts.port, user: this.opts.superuser.username, password: this.opts.superuser.password };
  }

  /** Superuser connection to another member. */
  private sourceConfig(source: { host: string; port: number }): pg.ClientConfig {
    return { ...this.target(), host: source.host, port: source.port, database: 'postgres', connectionTimeoutMillis: 5000 };
  }

  hasDataDir(): boolean {
    return fs.existsSync(this.file('PG_VERSION'));
  }

  /** standby.signal present: the data directory was last started (or prepared) as a standby. */
  hasStandbySignal(): boolean {
    return fs.existsSync(this.file('standby.signal'));
  }

  /** The Unix socket this instance listens on, and the token beside it that says it is this one. */
  localSocket(): { path: string; token: string } {
    return { path: path.join(socketDirFor(this.opts.dataDir), `.s.PGSQL.${this.opts.port}`), token: this.socketToken };
  }

  removeDataDir(): void {
    if (this.isRunning()) throw new PostgresError(`cannot remove ${this.opts.dataDir}: PostgreSQL is running`);
    this.log.warn({ dataDir: this.opts.dataDir }, 'removing data directory');
    fs.rmSync(this.opts.dataDir, { recursive: true, force: true });
    fs.rmSync(socketDirFor(this.opts.dataDir), { recursive: true, force: true });
  }

  /**
   * initdb, write the configuration, start as a primary and create the replication role.
   * Leaves the new primary RUNNING (the agent would start it next anyway).
   */
  async initdb(settings: ManagedSettings = this.lastSettings ?? NO_SETTINGS): Promise<void> {
    if (this.hasDataDir()) throw new PostgresError(`refusing to initdb: ${this.opts.dataDir} already holds a data directory`);
    tools.makeDataDir(this.ctx);
    this.log.info({ dataDir: this.opts.dataDir }, 'initdb');
    await tools.runInitdb(this.ctx);
    this.writeConfig(settings);
    await this.start({ standby: false });
    const { replication, superuser } = this.opts;
    if (replication.username !== superuser.username) {
      const role = pg.escapeIdentifier(replication.username);
      await withClient({ ...this.target(), database: 'postgres', connectionTimeoutMillis: 2000 }, async (c) => {
        await c.query("SET log_statement = 'none'"); // keep the password out of the server log
        await c.query(`CREATE ROLE ${role} WITH REPLICATION LOGIN PASSWORD ${pg.escapeLiteral(replication.password)}`);
      });
    }
    this.log.info({ replicationUser: replication.username }, 'new cluster initialised and running');
  }

  /**
   * Makes this member a copy of source with pg_basebackup through `slot` (created on the source first, so
   * the WAL the copy needs is kept), then writes standby.signal and the configuration (streaming from source).
   * The data directory must be absent or hold no data directory.
   */
  async cloneFrom(source: { host: string; port: number }, slot: string, onProgress?: (p: CloneProgress) => void): Promise<void> {
    this.cloning = true;
    try {
      await this.clone(source, slot, onProgress);
    } finally {
      this.cloning = false;
    }
  }

  private async clone(source: { host: string; port: number }, slot: string, onProgress?: (p: CloneProgress) => void): Promise<void> {
    tools.prepareEmptyDataDir(this.ctx);
    try {
      const created = await withClient(this.sourceConfig(source), (c) => q.ensureSlot(c, slot));
      if (created) this.log.info({ slot, source }, 'created replication slot on the source');
    } catch (err) {
      throw new PostgresError(`could not create slot ${slot} on ${source.host}:${source.port}: ${(err as Error).message}`);
    }
    this.log.info({ source, slot }, 'cloning with pg_basebackup');
    await tools.runBasebackup(this.ctx, source, slot, onProgress);
    const base = this.lastSettings ?? NO_SETTINGS;
    const hosts = base.memberHosts.includes(source.host) ? base.memberHosts : [...base.memberHosts, source.host];
    this.writeConfig({ ...base, memberHosts: hosts, upstream: { host: source.host, port: source.port, slot } });
    this.writeOwned('standby.signal', '');
    this.log.info({ source }, 'clone complete');
  }

  private writeOwned(name: string, content: string): boolean {
    return tools.writeOwnedFile(this.file(name), content, this.runAs);
  }

  private writeAll(settings: ManagedSettings): boolean {
    this.lastSettings = settings;
    const a = this.writeOwned('postgresql.conf', postgresqlConf(this.opts));
    const b = this.writeOwned('baton.conf', batonConf(this.opts, settings));
    const c = this.writeOwned('pg_hba.conf', pgHbaConf(this.opts, settings));
    return a || b || c;
  }

  writeConfig(settings: ManagedSettings): void {
    this.writeAll(settings);
  }

  /** Rewrites the configuration; reloads a running server when anything changed. Returns whether it changed. */
  async applyManagedSettings(settings: ManagedSettings): Promise<boolean> {
    const changed = this.writeAll(settings);
    const pid = this.postmasterPid();
    if (changed && pid !== null) {
      this.log.info({ upstream: settings.upstream, sync: settings.synchronousStandbyNames }, 'configuration changed; reloading');
      await this.reloadServer(pid);
    }
    return changed;
  }

  /** Makes a running server read its files again. */
  private async reloadServer(pid: number): Promise<void> {
    try {
      await this.getPool().query('SELECT pg_reload_conf()');
    } catch {
      try {
        process.kill(pid, 'SIGHUP'); // not accepting connections yet: the signal does the same
      } catch {
        /* exited meanwhile: it reads the files when it starts */
      }
    }
  }

  /**
   * New postgresql.parameters (a configuration reload): checked by PostgreSQL itself (`postgres -C`
   * on the whole candidate file) before they replace postgresql.conf, so that a wrong value never
   * reaches a file the next start would fail on; then a running server reloads. Throws a
   * ConfigError naming each problem, the files untouched. Returns the settings that wait for a
   * restart of PostgreSQL.
   */
  async setParameters(parameters: PgParameters): Promise<{ pendingRestart: string[] }> {
    const text = postgresqlConf({ ...this.opts, parameters });
    const conf = this.file('postgresql.conf');
    const unmade = (): boolean => !fs.existsSync(this.file('PG_VERSION')) || this.cloning;
    if (unmade()) {
      // No data directory yet, or pg_basebackup is filling it: the new values are written with the
      // rest of the configuration when it is made. PostgreSQL checks them now, on a scratch copy.
      await this.checkDetached(text);
      if (unmade()) {
        this.opts.parameters = parameters;
        return { pendingRestart: [] };
      }
      // The copy finished meanwhile, with the old values: on as for any data directory.
    }
    const candidate = this.file('postgresql.conf.baton-candidate');
    tools.writeOwnedFile(candidate, text, this.runAs);
    try {
      await this.checkCandidate(candidate);
    } catch (err) {
      fs.rmSync(candidate, { force: true });
      throw err;
    }
    // No await between these two: the HA loop, which rewrites the files from opts, sees both or neither.
    fs.renameSync(candidate, conf);
    this.opts.parameters = parameters;
    const pid = this.postmasterPid();
    if (pid === null) return { pendingRestart: [] };
    await this.reloadServer(pid);
    try {
      return { pendingRestart: await q.settingsPendingRestart(this.getPool()) };
    } catch (err) {
      // The new file is in place and the server told to read it; only the report is missing.
      this.log.warn({ err: (err as Error).message }, 'parameters applied, but PostgreSQL could not be asked which wait for a restart');
      return { pendingRestart: [] };
    }
  }

  /** Throws a ConfigError when PostgreSQL would not start with a candidate postgresql.conf: a value it
   * refuses, or, on a standby, a hot-standby setting below the primary's (which the standby's control
   * file holds). */
  private async checkCandidate(candidate: string): Promise<void> {
    refuseProblems(await tools.checkConfigFile(this.ctx, candidate));
    if (!this.hasStandbySignal()) return;
    const primary = (await tools.runControlData(this.ctx)).hotStandbySettings;
    const values = await Promise.all(HOT_STANDBY_PARAMETERS.map(async (name) => [name, Number(await tools.configValue(this.ctx, candidate, name))] as const));
    const short = hotStandbyShortfalls(Object.fromEntries(values.filter(([, v]) => Number.isInteger(v))), primary);
    if (short.length > 0) {
      throw new ConfigError(
        `a standby must not run with less of these than its primary, or PostgreSQL refuses to start it: ${short.join('; ')}`,
        "raise them to at least the primary's values and reload again; to lower them, lower them on the leader first",
      );
    }
  }

  /** checkCandidate's first half for a postgresql.conf that has no data directory to go to yet: the
   * file, with the two it reads (empty), in a scratch directory of its own. */
  private async checkDetached(text: string): Promise<void> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-conf-check-'));
    try {
      if (this.runAs) fs.chownSync(dir, this.runAs.uid, this.runAs.gid);
      const file = path.join(dir, 'postgresql.conf');
      tools.writeOwnedFile(file, text, this.runAs);
      for (const empty of ['baton.conf', 'postgresql.auto.conf']) tools.writeOwnedFile(path.join(dir, empty), '', this.runAs);
      refuseProblems(await tools.checkConfigFile({ ...this.ctx, opts: { ...this.opts, dataDir: dir } }, file));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  /**
   * Starts the postmaster directly (detached, output appended to logFile), as a standby or not, and waits until
   * it accepts connections. Retries (every 100 ms, up to 5 s) while the old shared memory is still held by a killed postmaster's backends.
   */
  async start(opts: { standby: boolean; timeoutMs?: number }): Promise<void> {
    if (!this.hasDataDir()) throw new PostgresError(`no data directory in ${this.opts.dataDir}`);
    const running = this.postmasterPid();
    if (running !== null) throw new PostgresError(`PostgreSQL is already running in ${this.opts.dataDir} (pid ${running})`);
    const socketDir = socketDirFor(this.opts.dataDir);
    ensureDirFor(socketDir, this.runAs, 0o755);
    try {
      fs.writeFileSync(path.join(socketDir, SOCKET_TOKEN_FILE), this.socketToken, { mode: 0o644 });
    } catch (err) {
      // Not a reason to keep the server down: without the token a proxy on this host uses TCP.
      this.log.warn({ err: (err as Error).message, socketDir }, 'cannot write the socket token: proxies on this host will connect over TCP');
    }
    if (opts.standby) this.writeOwned('standby.signal', '');
    else fs.rmSync(this.file('standby.signal'), { force: true });
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    for (let attempt = 1; ; attempt++) {
      const { pid, logOffset } = this.pm.spawn();
      const res = await waitUntilAccepting({
        target: this.target(),
        alive: () => this.pm.spawnedAndAlive(),
        logFile: this.opts.logFile,
        logOffset,
        deadline,
        dataDir: this.opts.dataDir,
      });
      if (res.ok) {
        this.log.info({ pid, standby: opts.standby, ms: res.ms }, 'PostgreSQL accepts connections');
        return;
      }
      // The backends of a killed postmaster exit within moments of noticing; retry briskly until they have.
      if (res.shmemInUse && attempt <= 50 && Date.now() < deadline) {
        if (attempt === 1) this.log.warn('shared memory still in use by an old postmaster; retrying every 100 ms');
        await sleep(100);
        continue;
      }
      throw new PostgresError(
        `postgres on port ${this.opts.port} exited during startup${res.portInUse ? ` (port ${this.opts.port} is already in use)` : ''}:\n${res.logTail}`,
        res.portInUse ? `another server listens on ${this.opts.listenHost}:${this.opts.port}` : `see ${this.opts.logFile}`,
      );
    }
  }

  postmasterPid(): number | null {
    return this.pm.currentPid();
  }

  isRunning(): boolean {
    return this.postmasterPid() !== null;
  }

  /** Calls cb whenever the postmaster exits (spawned: child exit event; adopted: 100 ms polling). Returns an unsubscribe. */
  onExit(cb: ExitListener): () => void {
    return this.pm.onExit(cb);
  }

  async stop(mode: StopMode, timeoutMs = 60_000): Promise<void> {
    await this.pm.stop(mode, timeoutMs);
  }

  /** pg_promote(wait => true) and then waits until recovery has ended. */
  async promote(): Promise<void> {
    await withClient({ ...this.target(), database: 'postgres', connectionTimeoutMillis: 2000 }, async (c) => {
      const res = await c.query<{ ok: boolean }>('SELECT pg_promote(true, 60) AS ok');
      if (res.rows[0]?.ok !== true) throw new PostgresError('pg_promote did not complete within 60 s');
      const deadline = Date.now() + 60_000;
      while (await q.queryInRecovery(c)) {
        if (Date.now() > deadline) throw new PostgresError('still in recovery 60 s after pg_promote');
        await sleep(100);
      }
    });
    this.log.info('promoted');
  }

  private getPool(): pg.Pool {
    this.pool ??= q.createPool({ ...this.target(), database: 'postgres' }, this.log);
    return this.pool;
  }

  /** Never throws: running=false (nothing running) or accepting=false (running, not connectable yet). */
  async status(): Promise<LocalStatus> {
    if (!this.isRunning()) return q.notRunningStatus(false);
    try {
      return await q.queryStatus(this.getPool());
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'status query failed');
      return q.notRunningStatus(this.isRunning());
    }
  }

  async replication(): Promise<ReplicationRow[]> {
    return q.queryReplication(this.getPool());
  }

  async ensureSlots(names: string[]): Promise<void> {
    for (const name of names) if (await q.ensureSlot(this.getPool(), name)) this.log.info({ slot: name }, 'created replication slot');
  }

  async dropSlot(name: string): Promise<void> {
    if (await q.dropSlot(this.getPool(), name)) this.log.info({ slot: name }, 'dropped replication slot');
  }

  async currentWalLsn(): Promise<number> {
    return q.queryCurrentLsn(this.getPool());
  }

  async openTransactions(): Promise<q.OpenTransaction[]> {
    return q.queryOpenTransactions(this.getPool());
  }

  /** Small helper for the agent (2 s statement timeout). */
  async query<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
    return (await this.getPool().query<T>(sql, params)).rows;
  }

  /**
   * pg_rewind this (stopped) data directory from source. pg_rewind copies the source's configuration files,
   * so ours are restored afterwards (and rewritten from the last ManagedSettings when there are some).
   */
  async rewind(source: { host: string; port: number }): Promise<'rewound' | 'not needed'> {
    if (this.isRunning()) throw new PostgresError('cannot rewind: PostgreSQL is running', 'stop it first');
    const saved = new Map<string, string>();
    for (const name of OWN_FILES) {
      try {
        saved.set(name, fs.readFileSync(this.file(name), 'utf8'));
      } catch {
        /* not there: nothing to restore */
      }
    }
    await this.checkpointSource(source);
    this.log.info({ source }, 'pg_rewind');
    const result = await tools.runRewind(this.ctx, source).catch((err: Error) => {
      throw new PostgresError(err.message, 'a failed pg_rewind can leave the data directory unusable: clone it again (baton reinit)');
    });
    if (result === 'rewound') {
      for (const [name, content] of saved) this.writeOwned(name, content);
      if (this.lastSettings) this.writeAll(this.lastSettings);
    }
    this.log.info({ source, result }, 'pg_rewind finished');
    return result;
  }

  /**
   * A just-promoted PostgreSQL 15 keeps the old timeline in pg_control until its first checkpoint, and pg_rewind
   * reads the source's timeline from there: without this it would say "no rewind required" for a forked target.
   */
  private async checkpointSource(source: { host: string; port: number }): Promise<void> {
    try {
      await withClient(this.sourceConfig(source), (c) => c.query('CHECKPOINT'));
    } catch (err) {
      throw new PostgresError(`could not run CHECKPOINT on the rewind source ${source.host}:${source.port}: ${(err as Error).message}`);
    }
  }

  async controlData(): Promise<tools.ControlData> {
    return tools.runControlData(this.ctx);
  }

  async close(): Promise<void> {
    this.pm.close();
    const pool = this.pool;
    this.pool = null;
    if (pool) await pool.end().catch(() => undefined);
  }
}

/** What `postgres -C` found wrong with new parameters, as the error a reload answers with. */
function refuseProblems(problems: string[]): void {
  if (problems.length === 0) return;
  throw new ConfigError(
    `PostgreSQL refuses postgresql.parameters: ${problems.join('; ')}`,
    'fix them in the configuration file and reload again; PostgreSQL keeps running with its current settings',
  );
}
