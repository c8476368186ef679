// A connector written in JavaScript, built into a component with componentize-js (build.mjs).
// It shows that the contract admits plugins from JavaScript: `handle` counts events in kv and
// answers with a `js/seen` event; `invoke("shout")` upper-cases `input.text`. A WIT `error` is
// thrown as `{ tag, val }`.
import { increment } from 'plugboard:connector/kv@0.1.0';
import { write } from 'plugboard:connector/log@0.1.0';

export const plugin = {
  metadata() {
    return {
      name: 'js-shout',
      version: '0.1.0',
      description: 'A connector written in JavaScript',
      produces: ['js/seen'],
      actions: [{ name: 'shout', description: 'Upper-cases input.text', inputSchema: '{"type": "object"}' }],
      capabilities: ['kv', 'log'],
      webhookVerification: undefined,
    };
  },
  onWebhook(request) {
    throw { tag: 'not-found', val: 'no webhooks' };
  },
  handle(event) {
    const count = increment('seen', 1n);
    write('info', 'javascript saw ' + event.kind, [['event', event.id]]);
    const payload = new TextEncoder().encode(JSON.stringify({ kind: event.kind, count: Number(count) }));
    return [{ kind: 'js/seen', occurredAtMs: undefined, contentType: 'application/json', payload, attributes: [] }];
  },
  invoke(action, inputJson) {
    if (action !== 'shout') throw { tag: 'not-found', val: 'unknown action ' + action };
    const text = JSON.parse(inputJson).text ?? '';
    return JSON.stringify({ text: text.toUpperCase() });
  },
};
