// order-risk's tests against the SDK's fake host: `npm test`.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { InvalidInput, RateLimited, Upstream } from '@plugboard/sdk';
import { event, FakeHost } from '@plugboard/sdk/testing';

import { describe, fixed2, OrderRisk } from '../app.ts';

const GRAPHQL = 'https://shop.example/admin/api/2025-07/graphql.json';
const ORDER = {
  id: 1001,
  name: '#1001',
  email: 'jon@example.com',
  total_price: '1249.00',
  currency: 'EUR',
  note: 'ship to a different address, card mismatch',
  customer: { id: 7 },
  billing_address: { address1: '1 Main St', zip: '1011', city: 'Amsterdam' },
  shipping_address: { address1: '9 Dock Rd', zip: '3011', city: 'Rotterdam' },
};
const RISKY = { risk: 'high', risk_score: 0.91, sentiment: 'negative', reasons: ['address mismatch'] };

function host(config: Record<string, string> = {}) {
  const h = new FakeHost({ config: { alert_channel: 'C0FRAUD', shopify_base_url: 'https://shop.example', ...config } });
  h.http.on('POST', GRAPHQL, { json: { data: { customer: { numberOfOrders: '3' } } } });
  return h;
}

test('a risky order is assessed, announced and tagged', () => {
  const h = host();
  h.ai.reply(RISKY, { model: 'gpt-test' });
  const out = h.run(() => new OrderRisk().handle(event('orders/create', ORDER, { id: 'e-1' })));
  assert.deepEqual(out.map((e) => e.kind), ['orders/assessed', 'alerts/slack', 'alerts/shopify-tag']);
  assert.deepEqual(out[0].decoded(), {
    order_id: 1001,
    name: '#1001',
    risk: 'high',
    risk_score: 0.91,
    sentiment: 'negative',
    reasons: ['address mismatch'],
    risky: true,
    model: 'gpt-test',
  });
  assert.deepEqual(out[0].attributes, [['order_id', '1001']]);
  assert.equal(out[1].decoded().channel, 'C0FRAUD');
  assert.match(out[1].decoded().text, /looks risky: high risk, score 0\.91/);
  assert.deepEqual(out[2].decoded(), { id: 1001, tags: ['fraud-risk-high'] });
  // The order count came from the Admin API with the token's placeholder, never the token.
  const sent = h.http.requests[0];
  assert.ok(sent.headers.some(([k, v]) => k === 'x-shopify-access-token' && v === '{{secret:shopify_access_token}}'));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(sent.body)).variables, { id: 'gid://shopify/Customer/7' });
  const request = h.ai.requests[0] as { messages: { content: string }[]; responseFormat: string };
  assert.match(request.messages[1].content, /customer with 2 previous orders/);
  assert.match(request.messages[1].content, /card mismatch/);
  assert.equal(request.responseFormat, 'json-schema');
});

test('a calm order is only assessed', () => {
  const h = host();
  h.ai.reply({ risk: 'low', risk_score: 0.1, sentiment: 'positive', reasons: [] });
  const out = h.run(() => new OrderRisk().handle(event('orders/create', { ...ORDER, note: 'Thanks!' })));
  assert.deepEqual(out.map((e) => e.kind), ['orders/assessed']);
  assert.equal(out[0].decoded().risky, false);
});

test('without the order count the model is told and the reason logged', () => {
  const h = new FakeHost({ config: { alert_channel: 'C0FRAUD', shopify_base_url: 'https://shop.example' } });
  h.http.on('POST', GRAPHQL, { status: 403, json: { errors: 'forbidden' } });
  h.ai.reply(RISKY);
  h.run(() => new OrderRisk().handle(event('orders/create', ORDER)));
  const request = h.ai.requests[0] as { messages: { content: string }[] };
  assert.match(request.messages[1].content, /order history unknown/);
  assert.equal(h.logs[0].level, 'warn');
  assert.match(h.logs[0].message, /Unauthorized/);
});

test('other events and bad orders', () => {
  host().run(() => {
    assert.deepEqual(new OrderRisk().handle(event('orders/paid', ORDER)), []);
    assert.throws(() => new OrderRisk().handle(event('orders/create', { name: '#1' })), (e) => e instanceof InvalidInput && /no id/.test(e.message));
    assert.throws(() => new OrderRisk().handle(event('orders/create', undefined, { raw: '[1, 2' })), InvalidInput);
  });
});

test('a model answer that is not an assessment is retried, and so is a rate limit', () => {
  const h = host();
  h.ai.reply({ risk: 'high' }).fail(new RateLimited(2000));
  h.run(() => {
    assert.throws(() => new OrderRisk().handle(event('orders/create', ORDER)), (e) => e instanceof Upstream && /not an assessment/.test(e.message));
    assert.throws(() => new OrderRisk().handle(event('orders/create', ORDER)), RateLimited);
  });
});

test('describe tolerates missing fields', () => {
  assert.equal(
    describe({}, undefined),
    "Order ? for ?  by unknown email (customer's order history unknown).\nBilling address: ?,  \nShipping address: ?,  \nCustomer note: (none)",
  );
});

test('two decimals as the Rust step writes them', () => {
  assert.deepEqual([0.125, 0.375, 0.91, 0.08, 1, -0, -0.125].map(fixed2), ['0.12', '0.38', '0.91', '0.08', '1.00', '-0.00', '-0.12']);
});

test('a score that is not a finite number is not an assessment', () => {
  const h = host();
  h.ai.reply('{"risk": "high", "risk_score": 1e400, "sentiment": "neutral", "reasons": []}');
  assert.throws(() => h.run(() => new OrderRisk().handle(event('orders/create', ORDER))), Upstream);
});
