// Which settings a standby would run with below its primary's (PostgreSQL would refuse to start it).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HOT_STANDBY_PARAMETERS, hotStandbyShortfalls } from '../../src/postgres/hot-standby.js';

const primary = { max_connections: 100, max_worker_processes: 8, max_wal_senders: 10, max_prepared_transactions: 0, max_locks_per_transaction: 64 };

test('equal or higher is fine; each lower one is named with both values', () => {
  assert.deepEqual(hotStandbyShortfalls(primary, primary), []);
  assert.deepEqual(hotStandbyShortfalls({ ...primary, max_connections: 200, max_prepared_transactions: 5 }, primary), []);
  assert.deepEqual(hotStandbyShortfalls({ ...primary, max_connections: 50, max_locks_per_transaction: 32 }, primary), [
    "max_connections = 50 (the primary's: 100)",
    "max_locks_per_transaction = 32 (the primary's: 64)",
  ]);
});

test('a value not known on either side is not judged', () => {
  assert.deepEqual(hotStandbyShortfalls({ max_connections: 50 }, {}), []);
  assert.deepEqual(hotStandbyShortfalls({}, primary), []);
  assert.equal(HOT_STANDBY_PARAMETERS.length, 5);
});
