// Outbound HTTP through the host. The host checks each request against the instance's grant and
// fills `{{secret:NAME}}`, `{{basic:NAME}}` and `{{oauth:NAME}}` placeholders in header values on
// the way out, so a secret never enters the plugin:
//
//     const reply = http.post('https://api.example.com/v1/things')
//       .bearer(http.secret('example_token'))
//       .json({ name: 'widget' })
//       .send();
//     const created = reply.json();

import { Internal, InvalidInput, NotFound, type PluginError, RateLimited, Unauthorized, Upstream } from './errors.ts';
import { backend } from './host.ts';
import { type Fields, jsonText } from './types.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The placeholder the host replaces with the secret `name` (never seen by the plugin). */
export function secret(name: string): string {
  return `{{secret:${name}}}`;
}

/** An outbound request under construction. */
export class Request {
  headers: Fields = [];
  body: Uint8Array = new Uint8Array();
  retries = false;

  constructor(
    readonly method: string,
    readonly url: string,
  ) {}

  /** Adds a header. */
  header(name: string, value: string): this {
    this.headers.push([name, value]);
    return this;
  }

  /** `Authorization: Bearer <token>`; `token` is usually `secret('NAME')`. */
  bearer(token: string): this {
    return this.header('authorization', `Bearer ${token}`);
  }

  /** `Authorization: Bearer` with an OAuth2 access token the host obtains, caches and refreshes
   * for the client the operator configured as `name`. */
  oauth(name: string): this {
    return this.header('authorization', `Bearer {{oauth:${name}}}`);
  }

  /** `Authorization: Basic ...` from the secret `secretName`, which holds `user:password`. */
  basicAuth(secretName: string): this {
    return this.header('authorization', `{{basic:${secretName}}}`);
  }

  /** Lets the host retry this request on 429 and 5xx answers (honouring `Retry-After`) and on
   * connection failures. Only for requests that are safe to repeat (a read, an idempotency key).
   * When the retries cannot fit, a 429 comes back as `RateLimited`, and the pipeline reschedules
   * the event. */
  retry(): this {
    this.retries = true;
    return this;
  }

  /** Sets a raw body. */
  withBody(body: Uint8Array | string): this {
    this.body = typeof body === 'string' ? encoder.encode(body) : body;
    return this;
  }

  /** Sets a JSON body and its content type. */
  json(value: unknown): this {
    const text = jsonText(value, 'request body');
    this.body = encoder.encode(text);
    return this.header('content-type', 'application/json');
  }

  /** Sends the request through the host and waits for the answer. Any HTTP status is an answer:
   * check `status` (or `isSuccess`). */
  send(): Response {
    return backend().httpSend(this);
  }
}

/** A `GET` request. */
export const get = (url: string) => new Request('GET', url);
/** A `POST` request. */
export const post = (url: string) => new Request('POST', url);
/** A request with any method. */
export const request = (method: string, url: string) => new Request(method.toUpperCase(), url);

/** The answer to a request. */
export class Response {
  constructor(
    readonly status: number,
    readonly headers: Fields = [],
    readonly body: Uint8Array = new Uint8Array(),
  ) {}

  /** Whether the status is 2xx. */
  get isSuccess(): boolean {
    return this.status >= 200 && this.status < 300;
  }

  /** The first header named `name`, compared without case. */
  header(name: string): string | undefined {
    const lower = name.toLowerCase();
    return this.headers.find(([k]) => k.toLowerCase() === lower)?.[1];
  }

  /** The body as text. */
  text(): string {
    return decoder.decode(this.body);
  }

  /** The body parsed as JSON; `Upstream` when it is not JSON. */
  json<T = any>(): T {
    try {
      return JSON.parse(this.text()) as T;
    } catch (e) {
      throw new Upstream(this.status, `response body is not JSON: ${(e as Error).message}`);
    }
  }

  /** How long the server asked to wait: `retry-after-ms`, or `Retry-After` in whole seconds (an
   * HTTP date is not read). */
  retryAfterMs(): number | undefined {
    const ms = this.header('retry-after-ms')?.trim();
    if (ms !== undefined && ms !== '' && !Number.isNaN(Number(ms))) {
      return Math.max(0, Math.trunc(Number(ms)));
    }
    const seconds = this.header('retry-after')?.trim().replace(/^\+/, '');
    if (seconds !== undefined && /^[0-9]+$/.test(seconds)) {
      return Number(seconds) * 1000;
    }
    return undefined;
  }

  /** The contract error for a failed answer, by status: 400/409/413/422 -> `InvalidInput`,
   * 404 -> `NotFound`, 401/403 -> `Unauthorized`, 429 -> `RateLimited` (with the server's
   * wait), anything else -> `Upstream` (retried). `message` says what was asked. */
  error(message: string): PluginError {
    const text = `HTTP ${this.status}: ${message}`;
    if ([400, 409, 413, 422].includes(this.status)) return new InvalidInput(text);
    if (this.status === 404) return new NotFound(text);
    if (this.status === 401 || this.status === 403) return new Unauthorized(text);
    if (this.status === 429) return new RateLimited(this.retryAfterMs());
    return new Upstream(this.status, text);
  }
}
