// {{name}}: a plugboard connector.
//
// - Webhooks sent to `/hooks/<instance>` become `{{name}}/received` events.
// - Each event delivered to it is summarised into a `{{name}}/summarized` event.
// - Action `greet` answers `{"greeting": "hello, <name>"}`.
//
// Keep decisions in plain functions (like `summarize`): the tests check them directly. The host
// calls around them (log here; kv, http, ai, config, emit) are answered by the SDK's FakeHost in
// tests and by plugboard in production.

import {
  Connector,
  type Event,
  exportConnector,
  hints,
  log,
  Metadata,
  NewEvent,
  NotFound,
  WebhookReply,
  type WebhookRequest,
} from '@plugboard/sdk';

/** What the plugin makes of an event's JSON payload. */
export function summarize(payload: unknown): { fields: number; has_id: boolean } {
  const object = typeof payload === 'object' && payload !== null && !Array.isArray(payload);
  return { fields: object ? Object.keys(payload).length : 0, has_id: object && 'id' in payload };
}

export class {{class}} extends Connector {
  metadata() {
    return new Metadata('{{name}}', '0.1.0', 'Describe what {{name}} does in one line')
      .produces('{{name}}/received')
      .produces('{{name}}/summarized')
      .action('greet', 'Greets someone', { type: 'object', properties: { name: { type: 'string' } } })
      .requests('log')
      .verifiesWith('hmac');
  }

  onWebhook(request: WebhookRequest) {
    return WebhookReply.ok([NewEvent.json('{{name}}/received', request.json())]);
  }

  handle(event: Event) {
    log.info(`summarizing ${event.kind}`, { event: event.id });
    return [NewEvent.json('{{name}}/summarized', summarize(event.json()))];
  }

  invoke(action: string, input: any) {
    if (action === 'greet') {
      return { greeting: `hello, ${typeof input?.name === 'string' ? input.name : 'world'}` };
    }
    throw new NotFound(`unknown action \`${action}\``);
  }

  // For AI clients and operators: `greet` only reads (an action without hints counts as
  // destructive).
  actionHints() {
    return [hints('greet', { title: 'Greet someone', readOnly: true })];
  }
}

// What componentize-js builds into the component's exports.
export const { plugin, actionHints } = exportConnector({{class}});
