// Whether the server owes a client an answer, for pipelining clients too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { countAnswered, countSent } from '../../src/proxy/in-flight.js';
import { STATE } from '../../src/proxy/native-relay.js';

const send = (state: Float64Array, types: string) => {
  for (const t of types) countSent(state, t.charCodeAt(0));
};
const busy = (state: Float64Array) => state[STATE.busy] === 1;

test('busy until the last ReadyForQuery owed, whether batches end in Sync, Query or FunctionCall', () => {
  const state = new Float64Array(STATE.length);
  assert.equal(busy(state), false);
  send(state, 'QQ'); // two simple queries at once
  countAnswered(state);
  assert.equal(busy(state), true, 'the second query is still due');
  countAnswered(state);
  assert.equal(busy(state), false);
  send(state, 'PBDES' + 'BES' + 'F');
  countAnswered(state);
  countAnswered(state);
  assert.equal(busy(state), true);
  countAnswered(state);
  assert.equal(busy(state), false);
});

test('a message sent after the last Sync keeps the session busy; COPY data does not count', () => {
  const state = new Float64Array(STATE.length);
  send(state, 'QPH'); // a query, then a Parse and a Flush with no Sync yet
  countAnswered(state);
  assert.equal(busy(state), true, 'the Parse is still being answered');
  send(state, 'S');
  countAnswered(state);
  assert.equal(busy(state), false);
  send(state, 'Q'); // COPY FROM STDIN
  send(state, 'ddc');
  countAnswered(state);
  assert.equal(busy(state), false);
  countAnswered(state); // a ReadyForQuery nobody asked for does not go below zero
  assert.equal(state[STATE.syncs], 0);
  send(state, 'Q');
  assert.equal(busy(state), true);
});
