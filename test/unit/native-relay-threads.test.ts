// The native relay's threads: balance.c's decisions (where a new session goes, when a busy thread
// spreads its sessions and when quiet threads pack them together), and sessions moving between
// threads with their bytes intact, over real loopback sockets.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import { loadNativeRelay, socketFd, STATE, type Handover, type RelayHandle, type ThreadLoad } from '../../src/proxy/native-relay.js';
import { encodeCommandComplete, encodeQuery, encodeReadyForQuery } from '../../src/proxy/protocol-encode.js';
import { readExactly, relaySockets } from '../helpers/loopback.js';

const { relay, error } = loadNativeRelay();
const { spill: SPILL, quiet: QUIET, pack: PACK } = relay?.balanceLimits ?? { spill: 0, quiet: 0, pack: 0 };

const threadsArb = fc.array(fc.record({ sessions: fc.nat({ max: 50 }), load: fc.nat({ max: 1000 }) }), { minLength: 1, maxLength: 16 });

describe('balance (where sessions go)', { skip: !relay && (error ?? 'no relay') }, () => {
  it('a new session goes to the first thread not busier than the spill mark, else to the least busy', () => {
    fc.assert(
      fc.property(threadsArb, (t) => {
        const { pick } = relay!.balance(t, 0);
        const first = t.findIndex((x) => x.load <= SPILL);
        if (first >= 0) assert.equal(pick, first);
        else assert.equal(t[pick]!.load, Math.min(...t.map((x) => x.load)));
      }),
      { numRuns: 2000 },
    );
  });

  it('a thread moves sessions only to another thread: half to the quietest when busy, all to an earlier one when both are quiet', () => {
    fc.assert(
      fc.property(threadsArb, fc.nat({ max: 15 }), (t, selfRaw) => {
        const self = selfRaw % t.length;
        const me = t[self]!;
        const { to, count } = relay!.balance(t, self);
        if (to < 0) {
          assert.equal(count, 0);
          if (me.sessions === 0) return;
          // Staying put: not busy with someone quiet to take over, and no earlier thread to pack into.
          const quiet = t.some((x, i) => i !== self && x.load < QUIET);
          assert.ok(!(me.load > SPILL && me.sessions >= 2 && quiet), `busy thread ${self} kept its sessions: ${JSON.stringify(t)}`);
          if (me.load <= SPILL || me.sessions < 2) assert.ok(!t.slice(0, self).some((x) => x.load + me.load < PACK), `thread ${self} did not pack: ${JSON.stringify(t)}`);
          return;
        }
        assert.notEqual(to, self);
        assert.ok(to < t.length);
        if (me.load > SPILL && me.sessions >= 2) {
          assert.equal(count, Math.floor(me.sessions / 2));
          assert.ok(t[to]!.load < QUIET);
          assert.equal(t[to]!.load, Math.min(...t.filter((_, i) => i !== self).map((x) => x.load)));
        } else {
          assert.equal(count, me.sessions);
          assert.ok(to < self && t[to]!.load + me.load < PACK);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('sessions spread from a busy thread are never packed straight back (the loads of the two add up past the mark)', () => {
    fc.assert(
      fc.property(threadsArb, fc.nat({ max: 15 }), (t, selfRaw) => {
        const self = selfRaw % t.length;
        const { to, count } = relay!.balance(t, self);
        if (to < 0 || t[self]!.load <= SPILL) return;
        // After the move, the load splits in proportion to the sessions moved.
        const moved = Math.round((t[self]!.load * count) / t[self]!.sessions);
        const after: ThreadLoad[] = t.map((x) => ({ ...x }));
        after[self] = { sessions: t[self]!.sessions - count, load: t[self]!.load - moved };
        after[to] = { sessions: t[to]!.sessions + count, load: t[to]!.load + moved };
        const high = Math.max(self, to);
        const back = relay!.balance(after, high);
        assert.ok(back.to !== Math.min(self, to) || after[high]!.load > SPILL, `packed back: ${JSON.stringify({ t, after, back })}`);
      }),
      { numRuns: 2000 },
    );
  });
});

/** One relayed session over loopback: app client <-> [relay] <-> app server. */
interface Pair {
  handle: RelayHandle;
  app: net.Socket;
  db: net.Socket;
  proxySides: net.Socket[];
}

describe('sessions moving between relay threads', { skip: !relay && (error ?? 'no relay') }, () => {
  const server = net.createServer();
  const pairs: Pair[] = [];
  const handbacks: Handover[] = [];

  before(async () => {
    relay!.threads(2);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    for (let i = 0; i < 4; i++) {
      const { app, proxyClient, proxyServer, db } = await relaySockets(server);
      const state = new Float64Array(new ArrayBuffer(STATE.length * 8));
      const handle = relay!.attach(socketFd(proxyClient)!, socketFd(proxyServer)!, state, false, 1 << 20, (h) => handbacks.push(h));
      pairs.push({ handle, app, db, proxySides: [proxyClient, proxyServer] });
    }
  });

  after(async () => {
    for (const p of pairs) {
      relay!.detach(p.handle);
      for (const s of [p.app, p.db, ...p.proxySides]) s.destroy();
    }
    await new Promise((r) => server.close(r));
  });

  /** A query and its answer through every session; the bytes must arrive as sent. */
  async function roundTrips(tag: string): Promise<void> {
    await Promise.all(
      pairs.map(async (p, i) => {
        const query = encodeQuery(`SELECT '${tag}-${i}'`);
        const gotQuery = readExactly(p.db, query.length);
        p.app.write(query);
        assert.deepEqual(await gotQuery, query);
        const answer = Buffer.concat([encodeCommandComplete(`SELECT ${tag} ${i}`), encodeReadyForQuery('I')]);
        const gotAnswer = readExactly(p.app, answer.length);
        p.db.write(answer);
        assert.deepEqual(await gotAnswer, answer);
      }),
    );
  }

  async function until(what: string, ok: (t: ThreadLoad[]) => boolean): Promise<ThreadLoad[]> {
    const t0 = Date.now();
    for (let round = 0; ; round++) {
      const t = relay!.threadLoads();
      assert.equal(t.reduce((n, x) => n + x.sessions, 0), 4, `sessions lost or doubled: ${JSON.stringify(t)}`);
      if (ok(t)) return t;
      if (Date.now() - t0 > 10_000) assert.fail(`${what}: still ${JSON.stringify(t)}`);
      await roundTrips(`r${round}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('quiet sessions share one thread; asked to, they move to another with every byte intact, then pack back', async () => {
    const start = relay!.threadLoads();
    assert.equal(start.length, 2);
    assert.deepEqual(start.map((t) => t.sessions), [4, 0], 'new sessions on an idle relay go to the first thread');
    await roundTrips('before');
    relay!.moveSessions(0, 1);
    await until('moving to thread 1', (t) => t[1]!.sessions === 4);
    // Thread 1 is quiet and so is thread 0: at the end of a window thread 1 packs them into thread 0.
    await until('packing back into thread 0', (t) => t[0]!.sessions === 4);
    await roundTrips('after');
    assert.deepEqual(handbacks, [], 'no session was handed back to TypeScript');
  });

  it('moveSessions refuses threads that do not exist or are the same', () => {
    assert.throws(() => relay!.moveSessions(0, 0), /two different started threads/);
    assert.throws(() => relay!.moveSessions(0, 5), /two different started threads/);
    assert.throws(() => relay!.moveSessions(-1, 1), /two different started threads/);
  });

  it('the relay threads are named baton-relay-N (top -H, ps -L)', async () => {
    const fs = await import('node:fs');
    const names = fs.readdirSync('/proc/self/task').map((t) => fs.readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim());
    assert.deepEqual(names.filter((n) => n.startsWith('baton-relay-')).sort(), ['baton-relay-0', 'baton-relay-1']);
  });

  it('attach refuses descriptors it cannot relay, names why, and counts no session for them', async () => {
    const sessions = (): number => relay!.threadLoads().reduce((n, t) => n + t.sessions, 0);
    const before = sessions();
    const state = new Float64Array(new ArrayBuffer(STATE.length * 8));
    assert.throws(() => relay!.attach(1_000_000, 1_000_001, state, false, 1 << 20, () => undefined), /duplicating a session's descriptors: Bad file descriptor/);
    // A regular file is no socket: epoll will not watch it.
    const fs = await import('node:fs');
    const fd = fs.openSync(process.execPath, 'r');
    try {
      assert.throws(() => relay!.attach(fd, fd, state, false, 1 << 20, () => undefined), /watching a session's descriptors: Operation not permitted/);
    } finally {
      fs.closeSync(fd);
    }
    assert.throws(() => relay!.attach(fd, fd, new Float64Array(2), false, 1 << 20, () => undefined), /state must be a Float64Array of the relay's layout/);
    assert.equal(sessions(), before, 'the refused attaches left the threads\' session counts as they were');
    await roundTrips('after refusals');
  });
});
