// libpq's multi-host connection strings for node-postgres, which lacks them:
// postgresql://user@h1:p1,h2:p2/db?target_session_attrs=read-write tries each host in turn and keeps
// the first that accepts writes, as libpq does.
import pg from 'pg';

export interface MultiHostTarget {
  hosts: { host: string; port: number }[];
  user: string;
  password?: string;
  database: string;
  targetSessionAttrs: 'read-write' | 'any' | 'read-only' | 'prefer-standby';
  connectTimeoutMs: number;
}

export function parseMultiHostUri(uri: string, password?: string): MultiHostTarget {
  const m = /^postgres(?:ql)?:\/\/(?:([^:@/]+)(?::([^@/]*))?@)?([^/?]+)(?:\/([^?]*))?(?:\?(.*))?$/.exec(uri);
  if (!m) throw new Error(`not a PostgreSQL URI: ${uri}`);
  const params = new URLSearchParams(m[5] ?? '');
  const hosts = m[3]!.split(',').map((hp) => {
    const i = hp.lastIndexOf(':');
    return i < 0 ? { host: hp, port: 5432 } : { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) };
  });
  const attrs = params.get('target_session_attrs') ?? 'any';
  if (!['read-write', 'any', 'read-only', 'prefer-standby'].includes(attrs)) throw new Error(`unsupported target_session_attrs=${attrs}`);
  const pw = m[2] !== undefined ? decodeURIComponent(m[2]) : password;
  return {
    hosts,
    user: decodeURIComponent(m[1] ?? 'postgres'),
    ...(pw !== undefined && { password: pw }),
    database: decodeURIComponent(m[4] || 'postgres'),
    targetSessionAttrs: attrs as MultiHostTarget['targetSessionAttrs'],
    connectTimeoutMs: Number(params.get('connect_timeout') ?? '2') * 1000,
  };
}

/** Connects to the first host that matches target_session_attrs; throws the last error otherwise. */
export async function connectMultiHost(t: MultiHostTarget): Promise<pg.Client> {
  let lastError: unknown = new Error('no hosts');
  const wantStandby = t.targetSessionAttrs === 'read-only' || t.targetSessionAttrs === 'prefer-standby';
  const passes = t.targetSessionAttrs === 'prefer-standby' ? [true, false] : [wantStandby];
  for (const standby of passes) {
    for (const h of t.hosts) {
      const client = new pg.Client({
        host: h.host,
        port: h.port,
        user: t.user,
        password: t.password,
        database: t.database,
        connectionTimeoutMillis: t.connectTimeoutMs,
      });
      client.on('error', () => undefined);
      try {
        await client.connect();
        if (t.targetSessionAttrs !== 'any') {
          const r = await client.query<{ ro: boolean }>('SELECT pg_is_in_recovery() AS ro');
          if (r.rows[0]?.ro !== standby) {
            await client.end();
            lastError = new Error(`${h.host}:${h.port} is ${r.rows[0]?.ro ? 'a standby' : 'a primary'}`);
            continue;
          }
        }
        return client;
      } catch (err) {
        lastError = err;
        await client.end().catch(() => undefined);
      }
    }
  }
  throw lastError;
}
