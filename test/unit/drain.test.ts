// The drain before a switchover's shutdown: which proxies and transactions the old leader waits for,
// and that the wait is bounded and never fails the switchover.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { drainBeforeHandover, LATE_START_MS, proxiesNotHolding, transactionsToWaitFor, type DrainDeps } from '../../src/agent/drain.js';
import type { ProxyRecord, SwitchoverRequest } from '../../src/dcs/types.js';
import type { OpenTransaction } from '../../src/postgres/queries.js';
import { silentLogger } from '../../src/util/log.js';

const req: SwitchoverRequest = {
  kind: 'switchover',
  from: 'a',
  to: 'b',
  requestedAt: '2026-12-01T01:00:00.000Z',
  phase: 'demoting',
  deadline: Date.now() + 60_000,
  reason: 'test',
};

function proxy(name: string, holding: string | null): ProxyRecord {
  return { name, readWrite: '127.0.0.1:1', readOnly: '127.0.0.1:2', admin: '127.0.0.1:3', startedAt: req.requestedAt, holding };
}

test('a proxy counts as holding only for this switchover', () => {
  const proxies = [proxy('p1', req.requestedAt), proxy('p2', null), proxy('p3', '2026-11-30T00:00:00.000Z')];
  assert.deepEqual(proxiesNotHolding(proxies, req), ['p2', 'p3']);
  assert.deepEqual(proxiesNotHolding([], req), []);
});

test('transactions begun before the proxies held (and a moment after) are waited for, later ones are not', () => {
  const heldAt = 1_000_000;
  const open: OpenTransaction[] = [
    { pid: 1, startedAt: heldAt - 5000 },
    { pid: 2, startedAt: heldAt + LATE_START_MS },
    { pid: 3, startedAt: heldAt + LATE_START_MS + 1 },
  ];
  assert.deepEqual(transactionsToWaitFor(open, heldAt).map((t) => t.pid), [1, 2]);
});

/** Deps whose proxies confirm after `holdAfter` calls and whose transactions end after `endAfter` calls. */
function scripted(opts: { holdAfter: number; endAfter: number; proxiesFail?: boolean; pgFails?: boolean }): DrainDeps & { calls: { proxies: number; tx: number } } {
  const calls = { proxies: 0, tx: 0 };
  const start = Date.now() - 1000;
  return {
    calls,
    log: silentLogger(),
    store: {
      listProxies: async () => {
        calls.proxies++;
        if (opts.proxiesFail) throw new Error('etcd unreachable');
        return [proxy('p1', calls.proxies > opts.holdAfter ? req.requestedAt : null)];
      },
    },
    openTransactions: async () => {
      calls.tx++;
      if (opts.pgFails) throw new Error('connection refused');
      return calls.tx > opts.endAfter ? [] : [{ pid: 7, startedAt: start }];
    },
  };
}

test('waits for the proxies, then for the open transactions', async () => {
  const deps = scripted({ holdAfter: 2, endAfter: 3 });
  const out = await drainBeforeHandover(deps, req, 5000);
  assert.deepEqual(out.proxiesNotHolding, []);
  assert.equal(out.waitedFor, 1);
  assert.equal(out.cutOff, 0);
  assert.equal(deps.calls.proxies, 3);
  assert.equal(deps.calls.tx, 4);
});

test('the wait ends at the timeout: what is still open is reported as cut off', async () => {
  const deps = scripted({ holdAfter: 0, endAfter: Infinity });
  const out = await drainBeforeHandover(deps, req, 150);
  assert.equal(out.waitedFor, 1);
  assert.equal(out.cutOff, 1);
  assert.ok(out.ms >= 150 && out.ms < 5000, `${out.ms} ms`);
});

test('a proxy that never confirms is named, and the transactions are still drained', async () => {
  const deps = scripted({ holdAfter: Infinity, endAfter: 0 });
  const out = await drainBeforeHandover(deps, req, 100);
  assert.deepEqual(out.proxiesNotHolding, ['p1']);
  assert.equal(out.cutOff, 0);
});

test('etcd or PostgreSQL trouble ends the wait without failing the switchover; timeout 0 does not wait at all', async () => {
  const broken = await drainBeforeHandover(scripted({ holdAfter: 0, endAfter: 0, proxiesFail: true, pgFails: true }), req, 5000);
  assert.deepEqual(broken, { ...broken, proxiesNotHolding: [], waitedFor: 0, cutOff: 0 });
  assert.ok(broken.ms < 1000);
  const off = scripted({ holdAfter: Infinity, endAfter: Infinity });
  const none = await drainBeforeHandover(off, req, 0);
  assert.equal(none.cutOff, 0);
  assert.deepEqual(off.calls, { proxies: 0, tx: 0 });
});
