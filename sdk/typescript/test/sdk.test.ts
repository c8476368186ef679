// The SDK against its fake host, and its export against the contract's shapes: what a plugin
// author relies on in tests and in production.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ai,
  config,
  Connector,
  Denied,
  emit,
  exportConnector,
  hints,
  http,
  Internal,
  InvalidInput,
  kv,
  log,
  Metadata,
  NewEvent,
  NotFound,
  RateLimited,
  Unauthorized,
  Upstream,
  WebhookReply,
  type Event,
  type WebhookRequest,
} from '../src/index.ts';
import { fromWit, toWit } from '../src/errors.ts';
import { event, FakeHost, webhook } from '../src/testing.ts';

test('without a host a call says how to test', () => {
  assert.throws(() => kv.get('x'), /FakeHost/);
});

test('kv keeps JSON values, counters and expiry', () => {
  const host = new FakeHost();
  host.run(() => {
    assert.equal(kv.get('ticket'), undefined);
    kv.set('ticket', { team: 'billing', n: [1, 2] });
    assert.deepEqual(kv.get('ticket'), { team: 'billing', n: [1, 2] });
    assert.equal(kv.increment('seen'), 1);
    assert.equal(kv.increment('seen', 41), 42);
    assert.throws(() => kv.increment('ticket'), (e) => e instanceof InvalidInput && /not a counter/.test(e.message));
    kv.set('short', 1, { ttlSeconds: 10 });
    host.nowMs = Date.now() + 10_001;
    assert.equal(kv.get('short'), undefined);
    assert.equal(kv.remove('ticket'), true);
    assert.equal(kv.remove('ticket'), false);
    assert.throws(() => kv.set('bad', 1n), Internal);
    assert.throws(() => kv.set('undefined', undefined), Internal);
    kv.setBytes('raw', new Uint8Array([0xff]));
    assert.throws(() => kv.get('raw'), InvalidInput);
  });
  assert.equal(host.kvJson('seen'), 42);
});

test('a capability not granted is denied, but logging never fails a handler', () => {
  const host = new FakeHost({ grants: ['kv'] });
  host.run(() => {
    kv.set('a', 1);
    assert.throws(() => config.get('x'), (e) => e instanceof Denied && /`config` is not granted/.test(e.message));
    log.info('dropped quietly', { n: 1 });
    assert.throws(() => log.write('info', 'refused'), Denied);
  });
  assert.deepEqual(host.logs, []);
});

test('log fields become text', () => {
  const host = new FakeHost();
  host.run(() => log.warn('order assessed', { order: 1001, risk: 0.12 }));
  assert.deepEqual(host.logs, [{ level: 'warn', message: 'order assessed', fields: { order: '1001', risk: '0.12' } }]);
});

test('config get and require', () => {
  new FakeHost({ config: { channel: 'C1', n: 3 } }).run(() => {
    assert.equal(config.get('channel'), 'C1');
    assert.equal(config.get('n'), '3');
    assert.equal(config.get('missing', 'fallback'), 'fallback');
    assert.equal(config.get('toString'), undefined);
    assert.throws(() => config.require('missing'), (e) => e instanceof InvalidInput && /`missing` is not set/.test(e.message));
    assert.deepEqual(config.all(), [['channel', 'C1'], ['n', '3']]);
  });
});

test('http builds requests with placeholders and maps failures', () => {
  const host = new FakeHost();
  host.http.on('POST', 'https://api.example.com/v1/things', { status: 201, json: { id: 7 } });
  host.http.on('GET', 'https://api.example.com/v1/slow', { status: 429, headers: [['Retry-After', '3']] });
  host.run(() => {
    const reply = http.post('https://api.example.com/v1/things').bearer(http.secret('example_token')).json({ name: 'widget' }).retry().send();
    assert.ok(reply.isSuccess);
    assert.deepEqual(reply.json(), { id: 7 });
    const slow = http.get('https://api.example.com/v1/slow').send();
    assert.equal(slow.retryAfterMs(), 3000);
    assert.deepEqual(slow.error('listing things'), new RateLimited(3000));
    assert.throws(() => http.get('https://elsewhere.example/').send(), (e) => e instanceof Denied && /no fixture for GET/.test(e.message));
  });
  const sent = host.http.requests[0];
  assert.deepEqual(sent.headers, [['authorization', 'Bearer {{secret:example_token}}'], ['content-type', 'application/json']]);
  assert.equal(new TextDecoder().decode(sent.body), '{"name":"widget"}');
  assert.ok(sent.retries);
  const kinds: [number, Function][] = [[400, InvalidInput], [404, NotFound], [403, Unauthorized], [503, Upstream]];
  for (const [status, kind] of kinds) {
    assert.equal(new http.Response(status).error('x').constructor, kind);
  }
  assert.ok(new http.Response(503).error('x').retryable);
  assert.throws(() => new http.Response(200, [], new TextEncoder().encode('<html>')).json(), Upstream);
});

test('ai chat sends the conversation and parses JSON', () => {
  const host = new FakeHost();
  host.ai.reply({ risk: 'low' }, { model: 'm-1' }).reply('not json').fail(new RateLimited(500));
  const schema = { type: 'object' };
  host.run(() => {
    const answer = new ai.Chat().system('Judge.').user('Order 1').temperature(0).jsonSchema(schema).send();
    assert.deepEqual(answer.json(), { risk: 'low' });
    assert.equal(answer.model, 'm-1');
    assert.throws(() => new ai.Chat().user('again').send().json(), (e) => e instanceof Upstream && /invalid JSON/.test(e.message));
    assert.throws(() => new ai.Chat().user('third').send(), RateLimited);
    assert.throws(() => new ai.Agent().user('fourth').tool('shop.get-order').send(), (e) => e instanceof Denied && /no canned AI reply/.test(e.message));
  });
  const first = host.ai.requests[0] as ai.ChatRequest;
  assert.deepEqual(first.messages, [{ role: 'system', content: 'Judge.' }, { role: 'user', content: 'Order 1' }]);
  assert.deepEqual([first.temperature, first.responseFormat, first.schema], [0, 'json-schema', schema]);
  assert.deepEqual((host.ai.requests[3] as ai.AgentRequest).tools, ['shop.get-order']);
});

test('emit and events', () => {
  const host = new FakeHost();
  host.run(() => assert.equal(emit.publish(NewEvent.json('alerts/raised', { order: 1 }).withAttribute('order_id', 1)), 'emitted-1'));
  assert.deepEqual(host.emitted[0].attributes, [['order_id', '1']]);
  const e = event('orders/create', { id: 1 }, { attributes: [['shop', 'a']] });
  assert.deepEqual(e.json(), { id: 1 });
  assert.equal(e.attribute('shop'), 'a');
  assert.equal(e.attribute('none'), undefined);
  assert.throws(() => event('x/y', undefined, { raw: '{' }).json(), InvalidInput);
  assert.throws(() => NewEvent.json('x/y', { n: 1n }), Internal);
  const w = webhook({ a: 1 }, { headers: [['X-Topic', 'orders/create']] });
  assert.equal(w.header('x-topic'), 'orders/create');
  assert.deepEqual(w.json(), { a: 1 });
});

test('metadata and hints', () => {
  const m = new Metadata('x', '0.1.0', 'd').produces('x/y').action('go', 'Goes').requests('http', 'kv');
  assert.deepEqual(m.capabilities, ['http', 'kv']);
  assert.deepEqual(m.actions[0].inputSchema, { type: 'object' });
  const read = hints('get', { readOnly: true });
  assert.deepEqual([read.destructive, read.idempotent], [false, true]);
  assert.ok(hints('delete').destructive);
});

class Minimal extends Connector {
  metadata() {
    return new Metadata('minimal', '0.1.0', 'd');
  }
}

test('a connector supports only what it overrides', () => {
  new FakeHost().run(() => {
    assert.throws(() => new Minimal().handle(event('a/b', {})), NotFound);
    assert.throws(() => new Minimal().invoke('go', {}), (e) => e instanceof NotFound && /unknown action `go`/.test(e.message));
  });
  assert.deepEqual(new Minimal().actionHints(), []);
});

test('errors map to the contract and back', () => {
  const cases = [
    new InvalidInput('bad'),
    new NotFound('gone'),
    new Denied('no'),
    new Unauthorized('who'),
    new RateLimited(250),
    new RateLimited(),
    new Upstream(502, 'bad gateway'),
    new Internal('bug'),
  ];
  for (const e of cases) {
    assert.deepEqual(fromWit(toWit(e)), e);
  }
  assert.deepEqual(toWit(new RateLimited(250)), { tag: 'rate-limited', val: 250n });
  assert.deepEqual(toWit(new TypeError('x is undefined')), { tag: 'internal', val: 'TypeError: x is undefined' });
  assert.deepEqual(toWit('a string'), { tag: 'internal', val: 'thrown: a string' });
  class Custom extends NotFound {}
  assert.equal(toWit(new Custom('sub')).tag, 'not-found');
});

// What componentize-js calls: the export converts the contract's records and turns every
// exception into the contract's error (as `payload`, which componentize-js hands to the host).
class Echo extends Connector {
  metadata() {
    return new Metadata('echo', '1.2.3', 'Echoes').produces('echo/seen').action('boom', 'Throws').requests('log').verifiesWith('hmac');
  }
  onWebhook(request: WebhookRequest) {
    return WebhookReply.ok([NewEvent.json('echo/seen', request.json())]).withJsonBody({ ok: true });
  }
  handle(e: Event) {
    if (e.kind === 'bad/return') return [{ kind: 'not a NewEvent' }] as unknown as NewEvent[];
    return [new NewEvent('echo/seen', e.payload, e.contentType, 5, [['from', e.source]])];
  }
  invoke(action: string): unknown {
    if (action === 'boom') throw new TypeError('kaboom');
    if (action === 'nothing') return undefined;
    throw new NotFound(`unknown action \`${action}\``);
  }
  actionHints() {
    return [hints('boom', { title: 'Throw', outputSchema: { type: 'object' } })];
  }
}

test('the export speaks the contract', () => {
  const { plugin, actionHints } = exportConnector(Echo);
  assert.deepEqual(plugin.metadata(), {
    name: 'echo',
    version: '1.2.3',
    description: 'Echoes',
    produces: ['echo/seen'],
    actions: [{ name: 'boom', description: 'Throws', inputSchema: '{"type":"object"}' }],
    capabilities: ['log'],
    webhookVerification: 'hmac',
  });
  const payload = new TextEncoder().encode('{"a":1}');
  const witEvent = { id: 'e1', source: 'src', kind: 'a/b', occurredAtMs: 7n, contentType: 'application/json', payload, attributes: [] };
  assert.deepEqual(plugin.handle(witEvent), [
    { kind: 'echo/seen', occurredAtMs: 5n, contentType: 'application/json', payload, attributes: [['from', 'src']] },
  ]);
  const reply = plugin.onWebhook({ method: 'POST', path: '/', query: '', headers: [], body: payload });
  assert.equal(reply.status, 200);
  assert.equal(new TextDecoder().decode(reply.body), '{"ok":true}');
  assert.equal(reply.events[0].kind, 'echo/seen');
  const thrown = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return (e as { payload: unknown }).payload;
    }
    assert.fail('expected a throw');
  };
  assert.deepEqual(thrown(() => plugin.invoke('boom', '{}')), { tag: 'internal', val: 'TypeError: kaboom' });
  assert.deepEqual(thrown(() => plugin.invoke('nope', '{}')), { tag: 'not-found', val: 'unknown action `nope`' });
  assert.equal((thrown(() => plugin.invoke('boom', '{not json')) as { tag: string }).tag, 'invalid-input');
  assert.deepEqual(thrown(() => plugin.invoke('nothing', '{}')), { tag: 'internal', val: 'the output of action `nothing` is not JSON' });
  assert.deepEqual(thrown(() => plugin.handle({ ...witEvent, kind: 'bad/return' })), { tag: 'internal', val: 'expected a NewEvent, got Object' });
  assert.deepEqual(actionHints.actionHints(), [
    { action: 'boom', title: 'Throw', readOnly: false, destructive: true, idempotent: false, openWorld: true, outputSchema: '{"type":"object"}' },
  ]);
});

test('waits and statuses are read as the Rust SDK reads them', () => {
  const wait = (name: string, value: string) => new http.Response(429, [[name, value]]).retryAfterMs();
  assert.equal(wait('Retry-After', '3'), 3000);
  assert.equal(wait('Retry-After', '+3'), 3000);
  assert.equal(wait('Retry-After', '1.5'), undefined);
  assert.equal(wait('Retry-After', 'Wed, 21 Oct 2026 07:28:00 GMT'), undefined);
  assert.equal(wait('retry-after-ms', '250.7'), 250);
  assert.equal(wait('retry-after-ms', '-5'), 0);
  assert.equal(new http.Response(503).error('listing orders').message, 'HTTP 503: listing orders');
  assert.deepEqual(toWit(new http.Response(503).error('x')), { tag: 'upstream', val: { status: 503, message: 'HTTP 503: x' } });
});

test('values the contract cannot carry are refused or brought into range, never a trap', () => {
  assert.deepEqual(toWit(new RateLimited(Infinity)), { tag: 'rate-limited', val: 2n ** 64n - 1n });
  assert.deepEqual(toWit(new RateLimited(NaN)), { tag: 'rate-limited', val: 0n });
  assert.deepEqual(toWit(new RateLimited(1e306 * 1000)), { tag: 'rate-limited', val: 2n ** 64n - 1n });
  assert.deepEqual(toWit(new Upstream(70000, 'x')), { tag: 'upstream', val: { status: 0, message: 'x' } });
  class Odd extends Connector {
    metadata() {
      return new Metadata('odd', '0.1.0', 'd');
    }
    handle() {
      return [new NewEvent('a/b', new Uint8Array(), 'text/plain', NaN)];
    }
    onWebhook() {
      return new WebhookReply(70000);
    }
  }
  const { plugin } = exportConnector(Odd);
  const witEvent = { id: 'e', source: 's', kind: 'k', occurredAtMs: 1n, contentType: 'x', payload: new Uint8Array(), attributes: [] };
  assert.throws(() => plugin.handle(witEvent), (e: any) => e.payload.tag === 'internal' && /occurredAtMs/.test(e.payload.val));
  const request = { method: 'POST', path: '/', query: '', headers: [], body: new Uint8Array() };
  assert.throws(() => plugin.onWebhook(request), (e: any) => e.payload.tag === 'internal' && /status/.test(e.payload.val));
});

test('through connector(), a capability the plugin did not request is denied, as the host does', () => {
  class Forgetful extends Connector {
    metadata() {
      return new Metadata('forgetful', '0.1.0', 'd').requests('log');
    }
    handle() {
      kv.increment('seen');
      return [];
    }
  }
  const host = new FakeHost();
  assert.throws(() => host.connector(Forgetful).handle(event('a/b', {})), (e) => e instanceof Denied && /not requested/.test(e.message));
  // Called directly, the fake host cannot know what it requested.
  assert.deepEqual(host.run(() => new Forgetful().handle()), []);
});
