// Data-directory creation and repair through PostgreSQL's programs: initdb, pg_basebackup, pg_rewind, pg_controldata.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureDirFor, type RunAs } from '../util/os-user.js';
import { parseLsn } from '../util/lsn.js';
import { PostgresError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { lastLines, runTool } from './run.js';
import { conninfo } from './conf.js';
import { CONTROL_DATA_FIELD, HOT_STANDBY_PARAMETERS, type HotStandbyParameter } from './hot-standby.js';
import type { CloneProgress, InstanceOptions } from './types.js';

export interface ToolContext {
  opts: InstanceOptions;
  runAs: RunAs | null;
  log: Logger;
}

export interface ControlData {
  state: string;
  timeline: number;
  checkpointLsn: number;
  systemId: string;
  /** The values of the hot-standby settings the control file holds: on a standby, its primary's. */
  hotStandbySettings: Partial<Record<HotStandbyParameter, number>>;
}

/** Runs initdb (checksums, SCRAM, the superuser's password from a temporary file the run-as user can read). */
export async function runInitdb(ctx: ToolContext): Promise<void> {
  const { opts, runAs } = ctx;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-initdb-'));
  const pwfile = path.join(tmp, 'pw');
  try {
    if (runAs) fs.chownSync(tmp, runAs.uid, runAs.gid);
    fs.writeFileSync(pwfile, opts.superuser.password + '\n', { mode: 0o600 });
    if (runAs) fs.chownSync(pwfile, runAs.uid, runAs.gid);
    await runTool(
      'initdb',
      [
        '-D',
        opts.dataDir,
        '-U',
        opts.superuser.username,
        `--pwfile=${pwfile}`,
        '--auth=scram-sha-256',
        '--data-checksums',
        '--encoding=UTF8',
        '--locale=C',
      ],
      { binDir: opts.binDir, runAs, logger: ctx.log, timeoutMs: 300_000 },
    );
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

const PROGRESS = /(\d+)\/(\d+) kB \((\d+)%\)/;

/** pg_basebackup into the (empty) data directory through the slot, streaming WAL alongside. */
export async function runBasebackup(
  ctx: ToolContext,
  source: { host: string; port: number },
  slot: string,
  onProgress?: (p: CloneProgress) => void,
): Promise<void> {
  const { opts, runAs } = ctx;
  let lastReport = 0;
  const args = ['-D', opts.dataDir, '-h', source.host, '-p', String(source.port), '-U', opts.replication.username];
  args.push('-X', 'stream', '-S', slot, '--checkpoint=fast', '-P', '-v');
  await runTool('pg_basebackup', args, {
    binDir: opts.binDir,
    runAs,
    logger: ctx.log,
    env: { PGPASSWORD: opts.replication.password, PGCONNECT_TIMEOUT: '10', PGAPPNAME: opts.memberName },
    onStderrLine: (line) => {
      const m = PROGRESS.exec(line);
      if (!m) {
        if (line.startsWith('pg_basebackup:')) ctx.log.debug({ line }, 'pg_basebackup');
        return;
      }
      const p: CloneProgress = { doneBytes: Number(m[1]) * 1024, totalBytes: Number(m[2]) * 1024 };
      onProgress?.(p);
      if (Date.now() - lastReport > 5000) {
        lastReport = Date.now();
        ctx.log.info({ ...p, percent: Number(m[3]) }, 'cloning');
      }
    },
  });
}

/**
 * pg_rewind from a running source. The password goes in PGPASSWORD rather than on the command line.
 * pg_rewind 15 runs single-user crash recovery itself when the target was not shut down cleanly.
 */
export async function runRewind(ctx: ToolContext, source: { host: string; port: number }): Promise<'rewound' | 'not needed'> {
  const { opts, runAs } = ctx;
  const server = conninfo({
    host: source.host,
    port: source.port,
    user: opts.superuser.username,
    dbname: 'postgres',
    connect_timeout: 10,
  });
  const res = await runTool(
    'pg_rewind',
    [`--target-pgdata=${opts.dataDir}`, `--source-server=${server}`, '--progress'],
    { binDir: opts.binDir, runAs, logger: ctx.log, env: { PGPASSWORD: opts.superuser.password }, timeoutMs: 0 },
  );
  const out = res.stdout + res.stderr;
  ctx.log.debug({ output: out.split('\n').filter((l) => l && !/^\s*\d+\/\d+ kB/.test(l)).slice(-12) }, 'pg_rewind output');
  return /no rewind required/.test(out) ? 'not needed' : 'rewound';
}

export async function runControlData(ctx: ToolContext): Promise<ControlData> {
  const res = await runTool('pg_controldata', ['-D', ctx.opts.dataDir], {
    binDir: ctx.opts.binDir,
    runAs: ctx.runAs,
    timeoutMs: 30_000,
  });
  const fields = new Map<string, string>();
  for (const line of res.stdout.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) fields.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  const get = (k: string): string => {
    const v = fields.get(k);
    if (v === undefined) throw new PostgresError(`pg_controldata output lacks "${k}"`);
    return v;
  };
  return {
    state: get('Database cluster state'),
    timeline: Number(get("Latest checkpoint's TimeLineID")),
    checkpointLsn: parseLsn(get('Latest checkpoint location')),
    systemId: get('Database system identifier'),
    hotStandbySettings: Object.fromEntries(
      HOT_STANDBY_PARAMETERS.flatMap((name) => {
        const v = Number(fields.get(CONTROL_DATA_FIELD[name]));
        return Number.isInteger(v) ? [[name, v]] : [];
      }),
    ),
  };
}

/**
 * Prepares an empty data directory for a clone: refuses one that holds a data directory (PG_VERSION),
 * removes any other leftover (a failed clone), and creates it owned by the run-as user.
 */
export function prepareEmptyDataDir(ctx: ToolContext): void {
  const dir = ctx.opts.dataDir;
  if (fs.existsSync(path.join(dir, 'PG_VERSION'))) {
    throw new PostgresError(
      `refusing to clone into ${dir}: it already holds a PostgreSQL data directory`,
      'remove it first (baton reinit does) if this member should be rebuilt from the primary',
    );
  }
  if (fs.existsSync(dir)) {
    if (path.resolve(dir) === path.parse(path.resolve(dir)).root) throw new PostgresError(`refusing to empty ${dir}`);
    ctx.log.info({ dataDir: dir }, 'removing leftover data directory contents before cloning');
    fs.rmSync(dir, { recursive: true, force: true });
  }
  makeDataDir(ctx);
}

/** Creates the data directory (0700, owned by the run-as user); missing parents get 0755 so it can reach it. */
export function makeDataDir(ctx: ToolContext): void {
  fs.mkdirSync(path.dirname(ctx.opts.dataDir), { recursive: true, mode: 0o755 });
  ensureDirFor(ctx.opts.dataDir, ctx.runAs, 0o700);
}

/** Writes a file atomically, owned by the run-as user, mode 0600. True if its content changed. */
export function writeOwnedFile(dest: string, content: string, runAs: RunAs | null): boolean {
  try {
    if (fs.readFileSync(dest, 'utf8') === content) return false;
  } catch {
    /* absent: write it */
  }
  const tmp = `${dest}.baton-tmp`;
  fs.writeFileSync(tmp, content, { mode: 0o600 });
  if (runAs) fs.chownSync(tmp, runAs.uid, runAs.gid);
  fs.renameSync(tmp, dest);
  return true;
}

/** `postgres -C name` with a candidate postgresql.conf: prints the setting's value as a start would
 * have it, includes and all, and works while the server runs. */
function postgresC(ctx: ToolContext, file: string, name: string, resolveOnExitCode: boolean) {
  return runTool('postgres', ['-D', ctx.opts.dataDir, '-C', name, '-c', `config_file=${file}`], {
    binDir: ctx.opts.binDir,
    runAs: ctx.runAs,
    logger: ctx.log,
    timeoutMs: 30_000,
    resolveOnExitCode,
  });
}

/** The value a setting would have with this postgresql.conf, as PostgreSQL prints it. */
export async function configValue(ctx: ToolContext, file: string, name: string): Promise<string> {
  return (await postgresC(ctx, file, name, false)).stdout.trim();
}

/** What `postgres -C` says is wrong with a candidate postgresql.conf, one line per problem (the
 * server's own words, e.g. `invalid value for parameter "work_mem": "lots"`); empty when PostgreSQL
 * would start with it. The check reads the file as a start would, includes and all, and works while
 * the server runs. */
export async function checkConfigFile(ctx: ToolContext, file: string): Promise<string[]> {
  const r = await postgresC(ctx, file, 'port', true);
  if (r.code === 0) return [];
  const said = r.stderr
    .split('\n')
    .map((l) => /(?:LOG|ERROR|FATAL|DETAIL):\s+(.*)$/.exec(l)?.[1])
    .filter((l): l is string => !!l && !/contains errors$/.test(l));
  return said.length > 0 ? said : [lastLines(r.stderr || r.stdout, 3) || `postgres -C exited with code ${r.code}`];
}
