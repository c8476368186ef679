// {{name}}'s tests: `npm test` (node's test runner), against a fake host, no component needed.
//
// After `npm run build`, the same tests run against the built component in the real host:
// `PLUGBOARD_COMPONENT={{name}}.wasm npm test` (plugboard on PATH, or PLUGBOARD_BIN).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { InvalidInput, NotFound } from '@plugboard/sdk';
import { event, FakeHost, webhook } from '@plugboard/sdk/testing';

import { {{class}}, summarize } from '../app.ts';

test('summarize counts fields', () => {
  assert.deepEqual(summarize({ id: 1, total: '9.99' }), { fields: 2, has_id: true });
  assert.deepEqual(summarize('not an object'), { fields: 0, has_id: false });
});

test('an event is summarized and logged', () => {
  // The grants an operator would give it: only `log`.
  const host = new FakeHost({ grants: ['log'] });
  const out = host.connector({{class}}).handle(event('orders/create', { id: 1, total: '9.99' }, { id: 'e-1' }));
  assert.deepEqual(out.map((e) => e.kind), ['{{name}}/summarized']);
  assert.deepEqual(out[0].decoded(), { fields: 2, has_id: true });
  assert.deepEqual(host.logs.map((l) => [l.message, l.fields]), [['summarizing orders/create', { event: 'e-1' }]]);
});

test('a payload that is not JSON is invalid input', () => {
  assert.throws(() => new FakeHost().connector({{class}}).handle(event('orders/create', undefined, { raw: 'not json' })), InvalidInput);
});

test('a webhook becomes an event', () => {
  const reply = new FakeHost().connector({{class}}).onWebhook(webhook({ id: 7 }));
  assert.equal(reply.status, 200);
  assert.deepEqual(reply.events.map((e) => [e.kind, e.decoded()]), [['{{name}}/received', { id: 7 }]]);
});

test('actions', () => {
  const plugin = new FakeHost().connector({{class}});
  assert.deepEqual(plugin.invoke('greet', { name: 'Ada' }), { greeting: 'hello, Ada' });
  assert.throws(() => plugin.invoke('no-such-action', {}), NotFound);
});
