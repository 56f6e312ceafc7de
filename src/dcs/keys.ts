// Where each piece of cluster state lives in etcd: everything sits under /baton/<cluster>/.

export type KeyKind = 'initialize' | 'config' | 'leader' | 'member' | 'sync' | 'switchover' | 'history';

export interface ParsedKey {
  kind: KeyKind;
  /** Member name for 'member', the padded number for 'history'. */
  name?: string;
}

const SINGLE: KeyKind[] = ['initialize', 'config', 'leader', 'sync', 'switchover'];

export class ClusterKeys {
  readonly prefix: string;

  constructor(readonly cluster: string) {
    if (!cluster || cluster.includes('/')) throw new Error(`invalid cluster name ${JSON.stringify(cluster)}`);
    this.prefix = `/baton/${cluster}/`;
  }

  get initialize(): string {
    return this.prefix + 'initialize';
  }
  get config(): string {
    return this.prefix + 'config';
  }
  get leader(): string {
    return this.prefix + 'leader';
  }
  get sync(): string {
    return this.prefix + 'sync';
  }
  get switchover(): string {
    return this.prefix + 'switchover';
  }
  get membersPrefix(): string {
    return this.prefix + 'members/';
  }
  member(name: string): string {
    return this.membersPrefix + name;
  }
  /** Proxies register here; not part of ClusterView (see ClusterStore.listProxies). */
  get proxiesPrefix(): string {
    return this.prefix + 'proxies/';
  }
  proxy(name: string): string {
    return this.proxiesPrefix + name;
  }
  /** Zero-padded so that etcd's byte order is numeric order. */
  history(timelineOrSeq: number): string {
    return this.prefix + 'history/' + String(timelineOrSeq).padStart(10, '0');
  }

  /** What a key under this cluster's prefix holds; null for keys Baton does not know, and for
   * proxies/ keys, which neither the view nor the watch carries. */
  parse(key: string): ParsedKey | null {
    if (!key.startsWith(this.prefix)) return null;
    const rest = key.slice(this.prefix.length);
    if ((SINGLE as string[]).includes(rest)) return { kind: rest as KeyKind };
    const slash = rest.indexOf('/');
    if (slash <= 0 || slash === rest.length - 1) return null;
    const dir = rest.slice(0, slash);
    const name = rest.slice(slash + 1);
    if (dir === 'members' && !name.includes('/')) return { kind: 'member', name };
    if (dir === 'history' && /^\d+$/.test(name)) return { kind: 'history', name };
    return null;
  }
}
