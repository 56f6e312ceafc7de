// bench/lib/run.ts: what a benchmark asks to put back after its cluster stops runs once, however
// often stop is called (the end of main, a signal and the final cleanup may all call it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BenchLifecycle } from '../../bench/lib/run.js';

test('whenStopped callbacks run once, after the others are stopped', async () => {
  const order: string[] = [];
  const life = new BenchLifecycle(() => undefined, () => void order.push('others'));
  life.whenStopped(() => order.push('host setting restored'));
  await Promise.all([life.stop(), life.stop()]);
  await life.stop();
  assert.deepEqual(order, ['others', 'host setting restored']);
  assert.equal(life.aborted, true);
});
