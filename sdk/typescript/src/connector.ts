/// <reference path="../types/connector.d.ts" />
// The connector base class, and its export as the component's `plugin` and `action-hints`
// interfaces (what componentize-js builds from the module's `plugin` and `actionHints`).

// The contract's records as componentize-js passes them (u64 as bigint, options as undefined)
// are declared in types/, generated from wit/.
import type {
  Event as WitEvent,
  NewEvent as WitNewEvent,
  WebhookRequest as WitWebhookRequest,
} from 'plugboard:connector/types@0.1.0';
import { Internal, InvalidInput, NotFound, toWit } from './errors.ts';
import { Event, type Hints, jsonText, type Metadata, NewEvent, WebhookReply, WebhookRequest } from './types.ts';

/** A connector: turns webhooks into events, handles routed events and offers actions.
 *
 * Only `metadata` is required; the other methods answer "not supported" (`NotFound`) until
 * overridden. A fresh object serves each call, as a fresh instance does in the host: keep state
 * in `kv`, not in fields. */
export abstract class Connector {
  /** Describes the connector: what it produces, offers and requests. */
  abstract metadata(): Metadata;

  /** Turns a verified webhook into events and the HTTP reply. */
  onWebhook(_request: WebhookRequest): WebhookReply {
    throw new NotFound('this connector receives no webhooks');
  }

  /** Handles an event routed to this instance; returns the events it produces. */
  handle(_event: Event): NewEvent[] {
    throw new NotFound('this connector handles no events');
  }

  /** Runs `action` with its JSON input (already parsed); returns its JSON output. */
  invoke(action: string, _input: any): unknown {
    throw new NotFound(`unknown action \`${action}\``);
  }

  /** How the actions behave, for AI clients and operators. An action without hints is taken to
   * be destructive. */
  actionHints(): Hints[] {
    return [];
  }
}

/** The WIT record of an event a plugin produces. */
export function newEventToWit(e: unknown): WitNewEvent {
  if (!(e instanceof NewEvent)) {
    throw new Internal(`expected a NewEvent, got ${describe(e)}`);
  }
  if (typeof e.kind !== 'string' || typeof e.contentType !== 'string') {
    throw new Internal("an event's kind and content type must be strings");
  }
  const at = e.occurredAtMs;
  if (at !== undefined && !(Number.isSafeInteger(at) && at >= 0)) {
    throw new Internal(`occurredAtMs must be a whole number of ms, not ${String(at)}`);
  }
  return {
    kind: e.kind,
    occurredAtMs: at === undefined ? undefined : BigInt(at),
    contentType: e.contentType,
    payload: bytes(e.payload, `the payload of ${e.kind}`),
    attributes: fields(e.attributes, `the attributes of ${e.kind}`),
  };
}

/** `value` as the contract's list of (name, value) text pairs; a typed error rather than a trap
 * when componentize-js lowers something else. */
function fields(value: unknown, what: string): [string, string][] {
  if (!Array.isArray(value) || !value.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && typeof p[1] === 'string')) {
    throw new Internal(`${what} must be [name, value] pairs of strings`);
  }
  return value.map(([k, v]) => [k, v]);
}

function bytes(value: unknown, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new Internal(`${what} must be a Uint8Array, not ${describe(value)}`);
  }
  return value;
}

function describe(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? value.constructor.name : typeof value;
}

function eventsToWit(events: unknown, what: string): WitNewEvent[] {
  if (!Array.isArray(events)) {
    throw new Internal(`${what} must return an array of NewEvent, not ${describe(events)}`);
  }
  return events.map(newEventToWit);
}

/** Runs a handler: any exception becomes the contract's error, which componentize-js passes to
 * the host when it carries `payload`. */
function guarded<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    const wit = toWit(e);
    throw Object.assign(new Error(String(wit.val ?? wit.tag)), { payload: wit });
  }
}

/** The module exports componentize-js builds for `connector`:
 *
 *     export const { plugin, actionHints } = exportConnector(MyConnector);
 */
export function exportConnector(connector: new () => Connector) {
  const plugin = {
    metadata() {
      const m = new connector().metadata();
      return {
        name: m.name,
        version: m.version,
        description: m.description,
        produces: [...m.produced],
        actions: m.actions.map((a) => ({ name: a.name, description: a.description, inputSchema: JSON.stringify(a.inputSchema) })),
        capabilities: [...m.capabilities],
        webhookVerification: m.verification,
      };
    },
    onWebhook(request: WitWebhookRequest) {
      return guarded(() => {
        const req = new WebhookRequest(request.method, request.path, request.query, request.headers, request.body);
        const reply = new connector().onWebhook(req);
        if (!(reply instanceof WebhookReply)) {
          throw new Internal(`onWebhook must return a WebhookReply, not ${describe(reply)}`);
        }
        if (!(Number.isInteger(reply.status) && reply.status >= 0 && reply.status <= 65535)) {
          throw new Internal(`onWebhook's reply status must be a number, not ${String(reply.status)}`);
        }
        return {
          status: reply.status,
          headers: fields(reply.headers, "onWebhook's reply headers"),
          body: bytes(reply.body, "onWebhook's reply body"),
          events: eventsToWit(reply.events, "onWebhook's reply"),
        };
      });
    },
    handle(event: WitEvent) {
      return guarded(() => {
        const e = new Event(event.id, event.source, event.kind, Number(event.occurredAtMs), event.contentType, event.payload, event.attributes);
        return eventsToWit(new connector().handle(e), 'handle');
      });
    },
    invoke(action: string, inputJson: string) {
      return guarded(() => {
        let input: unknown;
        try {
          input = JSON.parse(inputJson);
        } catch (e) {
          throw new InvalidInput(`action input is not JSON: ${(e as Error).message}`);
        }
        const output = new connector().invoke(action, input);
        return jsonText(output, `the output of action \`${action}\``);
      });
    },
  };
  const actionHints = {
    actionHints() {
      return new connector().actionHints().map((h) => ({
        action: h.action,
        title: h.title,
        readOnly: h.readOnly,
        destructive: h.destructive,
        idempotent: h.idempotent,
        openWorld: h.openWorld,
        outputSchema: h.outputSchema === undefined ? undefined : JSON.stringify(h.outputSchema),
      }));
    },
  };
  // Checked against the contract: what componentize-js expects the module to export.
  return {
    plugin: plugin satisfies typeof import('plugboard:connector/plugin@0.1.0'),
    actionHints: actionHints satisfies typeof import('plugboard:connector/action-hints@0.1.0'),
  };
}
