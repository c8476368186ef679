// The contract's records: events, webhooks, metadata, action hints.

import { Internal, InvalidInput } from './errors.ts';

/** Name-value pairs, in order. */
export type Fields = [string, string][];

/** A host capability a plugin requests; the operator grants it or not. */
export type Capability = 'http' | 'kv' | 'log' | 'emit' | 'ai' | 'config';

/** How the host verifies a connector's webhooks before the plugin sees them. */
export type VerificationScheme = 'none' | 'shopify' | 'slack' | 'stripe' | 'github' | 'standard-webhooks' | 'hmac';

/** JSON, as `JSON.parse` returns it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Objects with their keys sorted, as serde_json writes them. */
function sortedKeys(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return value;
  }
  const object = value as Record<string, unknown>;
  return Object.fromEntries(Object.keys(object).sort().map((k) => [k, object[k]]));
}

/**
 * `value` as JSON text the way serde_json writes it (compact, keys sorted), so that the same
 * value is the same bytes from every SDK: a rewrite replays byte for byte against a Rust build.
 * Throws `Internal` naming `what` when `value` is not JSON.
 */
export function jsonText(value: unknown, what: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, sortedKeys);
  } catch (e) {
    throw new Internal(`${what} is not JSON: ${(e as Error).message}`);
  }
  if (text === undefined) {
    throw new Internal(`${what} is not JSON`);
  }
  return text;
}

function toJson(value: unknown, what: string): Uint8Array {
  return encoder.encode(jsonText(value, what));
}

function parse(bytes: Uint8Array, what: string): any {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch (e) {
    throw new InvalidInput(`${what}: ${(e as Error).message}`);
  }
}

/** An action the connector offers: its name, one line for people and AI clients, and the JSON
 * Schema of its input. */
export interface Action {
  name: string;
  description: string;
  inputSchema: Record<string, unknown>;
}

/** What a connector is, produces, offers and requests. Built with chained calls. */
export class Metadata {
  produced: string[] = [];
  actions: Action[] = [];
  capabilities: Capability[] = [];
  verification?: VerificationScheme;

  constructor(
    readonly name: string,
    readonly version: string,
    readonly description: string,
  ) {}

  /** Declares an event kind it produces. */
  produces(kind: string): this {
    this.produced.push(kind);
    return this;
  }

  /** Declares an action with the JSON Schema of its input (any object when omitted). */
  action(name: string, description: string, inputSchema: Record<string, unknown> = { type: 'object' }): this {
    this.actions.push({ name, description, inputSchema });
    return this;
  }

  /** Requests capabilities; the operator decides what to grant. */
  requests(...capabilities: Capability[]): this {
    this.capabilities.push(...capabilities);
    return this;
  }

  /** Names the webhook signature scheme its provider uses. */
  verifiesWith(scheme: VerificationScheme): this {
    this.verification = scheme;
    return this;
  }
}

/** How one action behaves, for AI clients (MCP tool annotations) and operators. Left out, a
 * field assumes the worst, as for an action without hints: it may delete or overwrite, and
 * repeating it may repeat its effect. A read-only action is neither. */
export interface HintOptions {
  title?: string;
  readOnly?: boolean;
  destructive?: boolean;
  idempotent?: boolean;
  openWorld?: boolean;
  outputSchema?: Record<string, unknown>;
}

/** One action's hints, with every field decided. */
export interface Hints {
  action: string;
  title?: string;
  readOnly: boolean;
  destructive: boolean;
  idempotent: boolean;
  openWorld: boolean;
  outputSchema?: Record<string, unknown>;
}

/** The hints of `action`. */
export function hints(action: string, options: HintOptions = {}): Hints {
  const readOnly = options.readOnly ?? false;
  return {
    action,
    title: options.title,
    readOnly,
    destructive: options.destructive ?? !readOnly,
    idempotent: options.idempotent ?? readOnly,
    openWorld: options.openWorld ?? true,
    outputSchema: options.outputSchema,
  };
}

/** An event delivered to `handle`. */
export class Event {
  constructor(
    readonly id: string,
    readonly source: string,
    readonly kind: string,
    readonly occurredAtMs: number,
    readonly contentType: string,
    readonly payload: Uint8Array,
    readonly attributes: Fields = [],
  ) {}

  /** The payload parsed as JSON; `InvalidInput` (not retried) when it is not JSON. */
  json<T = any>(): T {
    return parse(this.payload, `event ${this.id} payload`);
  }

  /** The payload as UTF-8 text. */
  text(): string {
    try {
      return decoder.decode(this.payload);
    } catch (e) {
      throw new InvalidInput(`event ${this.id} payload: ${(e as Error).message}`);
    }
  }

  /** The first attribute named `name`. */
  attribute(name: string): string | undefined {
    return this.attributes.find(([k]) => k === name)?.[1];
  }
}

/** An event a plugin produces; the host gives it its id, source and time. */
export class NewEvent {
  constructor(
    readonly kind: string,
    readonly payload: Uint8Array = new Uint8Array(),
    readonly contentType = 'application/octet-stream',
    readonly occurredAtMs?: number,
    readonly attributes: Fields = [],
  ) {}

  /** An event whose payload is `value` as JSON. */
  static json(kind: string, value: unknown): NewEvent {
    return new NewEvent(kind, toJson(value, `the payload of ${kind}`), 'application/json');
  }

  /** Adds an attribute (routes and traces can use it). */
  withAttribute(name: string, value: string | number): this {
    this.attributes.push([name, String(value)]);
    return this;
  }

  /** The payload parsed as JSON (for tests). */
  decoded<T = any>(): T {
    return parse(this.payload, `the payload of ${this.kind}`);
  }
}

/** A webhook the host received and verified. Header names are lower case. */
export class WebhookRequest {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly query: string,
    readonly headers: Fields,
    readonly body: Uint8Array,
  ) {}

  /** The first header named `name`. */
  header(name: string): string | undefined {
    const lower = name.toLowerCase();
    return this.headers.find(([k]) => k === lower)?.[1];
  }

  /** The body parsed as JSON; `InvalidInput` otherwise. */
  json<T = any>(): T {
    return parse(this.body, 'webhook body');
  }
}

/** The HTTP answer to a webhook, and the events to store (stored before the answer goes). */
export class WebhookReply {
  constructor(
    public status = 200,
    public headers: Fields = [],
    public body: Uint8Array = new Uint8Array(),
    public events: NewEvent[] = [],
  ) {}

  /** `200 OK` with an empty body, storing `events`. */
  static ok(events: NewEvent[] = []): WebhookReply {
    return new WebhookReply(200, [], new Uint8Array(), [...events]);
  }

  /** Answers `value` as JSON. */
  withJsonBody(value: unknown): this {
    this.body = toJson(value, 'the reply body');
    this.headers.push(['content-type', 'application/json']);
    return this;
  }
}
