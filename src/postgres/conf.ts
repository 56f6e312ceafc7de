// Pure generators for the files Baton owns in a data directory: postgresql.conf, baton.conf, pg_hba.conf.
import net from 'node:net';
import path from 'node:path';
import type { InstanceOptions, ManagedSettings } from './types.js';

/** A value in postgresql.conf syntax: single-quoted, quotes doubled, backslashes escaped (the lexer reads escapes). */
export function quoteConfValue(value: string): string {
  const body = value
    .replace(/\\/g, '\\\\')
    .replace(/'/g, "''")
    .replace(/\n/g, '\\n')
    .replace(/\r/g, '\\r');
  return `'${body}'`;
}

/** A libpq connection-string value: single-quoted, backslash and quote escaped with a backslash. */
export function quoteConninfoValue(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** Builds "k1='v1' k2='v2'" from pairs (values quoted for libpq). */
export function conninfo(pairs: Record<string, string | number>): string {
  return Object.entries(pairs)
    .map(([k, v]) => `${k}=${quoteConninfoValue(String(v))}`)
    .join(' ');
}

/** Replication slot name for a member: lowercase, anything outside [a-z0-9_] becomes _, at most 63 characters. */
export function slotName(member: string): string {
  return member
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_')
    .slice(0, 63);
}

/** The file beside the socket that holds the instance's token (MemberRecord.localSocket). */
export const SOCKET_TOKEN_FILE = 'baton-socket-token';

/**
 * Where the Unix sockets go: next to the data directory, not in it. In the data directory (the obvious place)
 * pg_rewind 15 fails copying the source's socket file ("could not open file .s.PGSQL.5432 ... No such device
 * or address"), and a failed pg_rewind leaves the target unusable.
 */
export function socketDirFor(dataDir: string): string {
  return `${path.resolve(dataDir)}.sock`;
}

function confLine(name: string, value: string | number | boolean): string {
  if (typeof value === 'number') return `${name} = ${value}`;
  if (typeof value === 'boolean') return `${name} = ${value ? 'on' : 'off'}`;
  return `${name} = ${quoteConfValue(value)}`;
}

const HEADER = '# Written by Baton; edits are overwritten. Add settings under postgresql.parameters instead.\n';

/** The whole postgresql.conf; run-time settings come from baton.conf, included last. */
export function postgresqlConf(opts: Pick<InstanceOptions, 'listenHost' | 'port' | 'dataDir' | 'parameters'>): string {
  const base: Array<[string, string | number | boolean]> = [
    ['listen_addresses', opts.listenHost],
    ['port', opts.port],
    // Our own socket directory: no need for /var/run/postgresql, no clash between instances.
    ['unix_socket_directories', socketDirFor(opts.dataDir)],
    ['max_connections', 100],
    ['shared_buffers', '32MB'],
    ['password_encryption', 'scram-sha-256'],
    ['wal_level', 'replica'],
    ['wal_log_hints', true],
    ['hot_standby', true],
    ['hot_standby_feedback', true],
    ['max_wal_senders', 10],
    ['max_replication_slots', 10],
    ['wal_keep_size', '128MB'],
    ['max_slot_wal_keep_size', '2GB'],
    ['wal_receiver_status_interval', '1s'],
    // A standby whose upstream went away retries after 100 ms instead of the default 5 s.
    ['wal_retrieve_retry_interval', '100ms'],
    ['logging_collector', false],
    ['log_destination', 'stderr'],
    ['log_line_prefix', '%m [%p] '],
    // English messages: Baton reads the server log (startup failures).
    ['lc_messages', 'C'],
    ['lc_monetary', 'C'],
    ['lc_numeric', 'C'],
    ['lc_time', 'C'],
  ];
  const lines = base.map(([k, v]) => confLine(k, v));
  const extra = Object.entries(opts.parameters);
  if (extra.length > 0) {
    lines.push('', '# postgresql.parameters');
    for (const [k, v] of extra) {
      if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(k)) throw new Error(`invalid PostgreSQL parameter name: ${JSON.stringify(k)}`);
      lines.push(confLine(k, v));
    }
  }
  lines.push('', "include 'baton.conf'", '');
  return HEADER + lines.join('\n');
}

/** baton.conf: where to stream from and synchronous replication; reloadable without a restart. */
export function batonConf(
  opts: Pick<InstanceOptions, 'replication' | 'memberName'>,
  settings: Pick<ManagedSettings, 'upstream' | 'synchronousStandbyNames'>,
): string {
  const up = settings.upstream;
  const info = up
    ? conninfo({
        host: up.host,
        port: up.port,
        user: opts.replication.username,
        password: opts.replication.password,
        application_name: opts.memberName,
        connect_timeout: 2,
        keepalives: 1,
        keepalives_idle: 5,
        keepalives_interval: 2,
        keepalives_count: 3,
      })
    : '';
  const lines = [
    confLine('primary_conninfo', info),
    confLine('primary_slot_name', up ? up.slot : ''),
    confLine('synchronous_standby_names', settings.synchronousStandbyNames),
    confLine('recovery_target_timeline', 'latest'),
  ];
  return HEADER + lines.join('\n') + '\n';
}

function hbaUser(name: string): string {
  return /^[A-Za-z0-9_]+$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/** An address field for pg_hba.conf: IPs get a single-host mask, names stay as they are. */
function hbaAddress(host: string): string {
  const kind = net.isIP(host);
  if (kind === 4) return `${host}/32`;
  if (kind === 6) return `${host}/128`;
  return host;
}

/**
 * pg_hba.conf: passwords (SCRAM) on the Unix socket, over TCP from loopback and from member hosts only;
 * replication (streaming, pg_basebackup) for the replication user and the superuser from the same places.
 * Nothing is open to other addresses.
 */
export function pgHbaConf(
  opts: Pick<InstanceOptions, 'superuser' | 'replication'>,
  settings: Pick<ManagedSettings, 'memberHosts'>,
): string {
  const hosts = ['127.0.0.1', '::1', ...settings.memberHosts.filter((h) => h.trim() !== '')];
  const unique = [...new Set(hosts.map(hbaAddress))];
  const users = [...new Set([opts.replication.username, opts.superuser.username])].map(hbaUser);
  // Passwords on the socket too: a proxy on this host relays its clients' logins through it, and
  // peer would check the proxy's OS user instead of the client's password.
  const lines = ['# TYPE  DATABASE     USER  ADDRESS  METHOD', 'local all all scram-sha-256'];
  for (const addr of unique) lines.push(`host all all ${addr} scram-sha-256`);
  for (const addr of unique) for (const u of users) lines.push(`host replication ${u} ${addr} scram-sha-256`);
  return HEADER + lines.join('\n') + '\n';
}
