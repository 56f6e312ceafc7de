// What the agent needs from one local PostgreSQL instance. Implemented by PostgresInstance (instance.ts).

/** postgresql.parameters: settings written into postgresql.conf as given. */
export type PgParameters = Record<string, string | number | boolean>;

export interface Credentials {
  username: string;
  password: string;
}

export interface InstanceOptions {
  /** Directory holding postgres, pg_ctl, initdb, pg_basebackup, pg_rewind, pg_controldata. */
  binDir: string;
  dataDir: string;
  /** Where this instance's server log goes (appended). */
  logFile: string;
  /** Address PostgreSQL listens on (listen_addresses) and the port. */
  listenHost: string;
  port: number;
  /** Address peers and clients use to reach it. */
  advertiseHost: string;
  /** OS user that runs PostgreSQL and its tools when the agent runs as root; ignored otherwise. */
  osUser: string;
  superuser: Credentials;
  replication: Credentials;
  /** Used as application_name in primary_conninfo and as the replication slot name (sanitised). */
  memberName: string;
  /** Extra settings from the member's config (postgresql.parameters). */
  parameters: PgParameters;
}

export interface UpstreamTarget {
  host: string;
  port: number;
  /** application_name the upstream sees; the slot on the upstream is slotName(memberName). */
  slot: string;
}

/** Settings Baton manages at run time; written to baton.conf (included from postgresql.conf). */
export interface ManagedSettings {
  /** For a replica: where to stream from. null = no upstream (primary, or replica waiting). */
  upstream: UpstreamTarget | null;
  /** synchronous_standby_names; '' for asynchronous. */
  synchronousStandbyNames: string;
  /** Addresses (IPs) of every member, for pg_hba replication entries. */
  memberHosts: string[];
}

export interface LocalStatus {
  running: boolean;
  /** Accepts connections (pg_isready-like). */
  accepting: boolean;
  inRecovery: boolean | null;
  timeline: number | null;
  /** Primary: pg_current_wal_lsn(). Replica: pg_last_wal_receive_lsn() (or replay LSN if none). */
  receivedLsn: number | null;
  replayedLsn: number | null;
  /** Replica: walreceiver status is 'streaming'. */
  streaming: boolean;
  /** Replica: the host:port its walreceiver is connected to, if streaming. */
  upstream: string | null;
  systemId: string | null;
  /** Physical replication slots on this instance (empty when not running). */
  slots: LocalSlot[];
}

export interface LocalSlot {
  name: string;
  /** A walsender (or pg_basebackup) is using it now. */
  active: boolean;
}

export interface ReplicationRow {
  applicationName: string;
  clientAddr: string | null;
  state: string;
  syncState: string;
  sentLsn: number | null;
  writeLsn: number | null;
  flushLsn: number | null;
  replayLsn: number | null;
}

export interface CloneProgress {
  doneBytes: number;
  totalBytes: number | null;
}

export type StopMode = 'smart' | 'fast' | 'immediate';
