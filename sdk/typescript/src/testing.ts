// Testing handlers without building a component: a fake host in memory.
//
//     import { FakeHost, event } from '@plugboard/sdk/testing';
//
//     test('a risky order is announced', () => {
//       const host = new FakeHost({ config: { alert_channel: 'C1' } });
//       host.ai.reply({ risk: 'high', risk_score: 0.9 });
//       host.http.on('POST', 'https://shop.example/admin/api/2025-07/graphql.json', { json: { data: {} } });
//       const out = host.run(() => new OrderRisk().handle(event('orders/create', { id: 1 })));
//       assert.deepEqual(out.map((e) => e.kind), ['orders/assessed', 'alerts/slack']);
//     });
//
// The same tests run against the built component in the real host: call the connector through
// `host.connector(MyConnector)` (`.handle`, `.invoke`, `.onWebhook`), and set
// `PLUGBOARD_COMPONENT=my.wasm` (with `PLUGBOARD_BIN`, else `plugboard` on PATH, and
// `PLUGBOARD_CACHE_DIR` to compile it once). Each call then runs `plugboard plugin call --json`
// with the fake host's grants and config, and its logs and emitted events are recorded the same
// way. The real host answers http and ai for real, and keeps kv for one call only, so a test that
// needs fixtures, canned replies or stored values runs on the fake host alone (it throws
// `ComponentModeError` saying so).
//
// What the fake host does, as the real one would: `kv` keeps values in memory (with their
// expiry), `log` and `emit` are recorded, `config` answers from an object, `http` answers from
// the fixtures you add (a request with none is `Denied`, as an unlisted destination is), `ai`
// answers the canned replies in order. Secret placeholders are left as written: the plugin never
// sees a secret, and a test can check which one it asked for. With `grants`, a capability left
// out is `Denied`.

import { spawnSync } from 'node:child_process';

import type { AgentRequest, AgentResponse, ChatRequest } from './ai.ts';
import { ChatResponse } from './ai.ts';
import type { Connector } from './connector.ts';
import { Denied, fromWit, InvalidInput, type PluginError } from './errors.ts';
import { type Backend, enter, type LogLevel, leave } from './host.ts';
import { type Request, Response } from './http.ts';
import { type Capability, Event, type Fields, NewEvent, WebhookReply, WebhookRequest } from './types.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
let ids = 0;

/** An event as the host would deliver it: `payload` as JSON, or `raw` bytes. */
export function event(
  kind: string,
  payload?: unknown,
  options: { source?: string; id?: string; attributes?: Fields; raw?: Uint8Array | string; contentType?: string } = {},
): Event {
  const raw = options.raw ?? JSON.stringify(payload ?? null);
  return new Event(
    options.id ?? `test-${++ids}`,
    options.source ?? 'test',
    kind,
    Date.now(),
    options.contentType ?? 'application/json',
    typeof raw === 'string' ? encoder.encode(raw) : raw,
    options.attributes ?? [],
  );
}

/** A verified webhook as the host hands it over: `body` as JSON, or `raw` bytes. Header names
 * are made lower case, as the host does. */
export function webhook(
  body?: unknown,
  options: { headers?: Fields; method?: string; path?: string; query?: string; raw?: Uint8Array | string } = {},
): WebhookRequest {
  const raw = options.raw ?? JSON.stringify(body ?? null);
  return new WebhookRequest(
    options.method ?? 'POST',
    options.path ?? '/',
    options.query ?? '',
    (options.headers ?? []).map(([k, v]) => [k.toLowerCase(), v]),
    typeof raw === 'string' ? encoder.encode(raw) : raw,
  );
}

/** One line a plugin logged. */
export interface LogLine {
  level: LogLevel;
  message: string;
  fields: Record<string, string>;
}

interface Fixture {
  method: string;
  url: string;
  response: Response;
}

/** Outbound HTTP answered by fixtures; `requests` records what the plugin sent. */
export class FakeHttp {
  readonly fixtures: Fixture[] = [];
  readonly requests: Request[] = [];

  /** Answers every `method` request to exactly `url` (query included) with `status` and `json`
   * (or a raw `body`). The latest fixture for a request wins. */
  on(method: string, url: string, answer: { status?: number; json?: unknown; body?: string | Uint8Array; headers?: Fields } = {}): this {
    const headers: Fields = [...(answer.headers ?? [])];
    let body = answer.body ?? new Uint8Array();
    if (answer.json !== undefined) {
      body = JSON.stringify(answer.json);
      headers.push(['content-type', 'application/json']);
    }
    const bytes = typeof body === 'string' ? encoder.encode(body) : body;
    this.fixtures.push({ method: method.toUpperCase(), url, response: new Response(answer.status ?? 200, headers, bytes) });
    return this;
  }

  send(request: Request): Response {
    this.requests.push(request);
    const fixture = [...this.fixtures].reverse().find((f) => f.method === request.method.toUpperCase() && f.url === request.url);
    if (!fixture) {
      throw new Denied(`no fixture for ${request.method} ${request.url}: add host.http.on(...) in the test`);
    }
    return fixture.response;
  }
}

/** The AI provider, answering canned replies in order; `requests` records what was asked. */
export class FakeAi {
  readonly replies: (ChatResponse | PluginError)[] = [];
  readonly requests: (ChatRequest | AgentRequest)[] = [];

  /** Queues an answer: text, or anything else as JSON. */
  reply(content: unknown, options: { model?: string; usage?: [number, number] } = {}): this {
    const text = typeof content === 'string' ? content : JSON.stringify(content);
    const [promptTokens, completionTokens] = options.usage ?? [10, 5];
    this.replies.push(new ChatResponse(text, options.model ?? 'canned-model', 'stop', { promptTokens, completionTokens }));
    return this;
  }

  /** Queues a failure (say `new RateLimited(1000)`), thrown when its turn comes. */
  fail(error: PluginError): this {
    this.replies.push(error);
    return this;
  }

  next(request: ChatRequest | AgentRequest): ChatResponse {
    this.requests.push(structuredClone(request));
    const answer = this.replies.shift();
    if (answer === undefined) {
      throw new Denied('no canned AI reply left: add host.ai.reply(...) in the test');
    }
    if (!(answer instanceof ChatResponse)) {
      throw answer;
    }
    return answer;
  }
}

/** A host in memory for tests: `host.run(() => ...)` calls the connector with it answering. */
export class FakeHost implements Backend {
  readonly config: Record<string, string>;
  readonly grants?: Set<string>;
  readonly kv = new Map<string, Uint8Array>();
  readonly kvExpiresMs = new Map<string, number>();
  readonly logs: LogLine[] = [];
  readonly emitted: NewEvent[] = [];
  readonly http = new FakeHttp();
  readonly ai = new FakeAi();
  /** The fake clock for expiry (the real clock when unset). */
  nowMs?: number;

  constructor(options: { config?: Record<string, string | number>; grants?: Capability[]; kv?: Record<string, unknown> } = {}) {
    this.config = Object.fromEntries(Object.entries(options.config ?? {}).map(([k, v]) => [k, String(v)]));
    this.grants = options.grants ? new Set(options.grants) : undefined;
    for (const [k, v] of Object.entries(options.kv ?? {})) {
      this.kv.set(k, encoder.encode(JSON.stringify(v)));
    }
  }

  /** Runs `f` with this host answering the SDK's calls. */
  run<T>(f: () => T): T {
    enter(this);
    try {
      return f();
    } finally {
      leave(this);
    }
  }

  /** Calls `connector` as the host would: in this process with this fake host answering, or the
   * built component in the real host when `PLUGBOARD_COMPONENT` names one. */
  connector(connector: new () => Connector): ConnectorRunner {
    return new ConnectorRunner(this, connector, process.env.PLUGBOARD_COMPONENT || undefined);
  }

  /** What the plugin stored under `key`, parsed (undefined when absent or expired). */
  kvJson(key: string): any {
    const expired = (this.kvExpiresMs.get(key) ?? Infinity) <= this.now();
    const raw = expired ? undefined : this.kv.get(key);
    return raw === undefined ? undefined : JSON.parse(decoder.decode(raw));
  }

  /** What the connector being called requests (`connector(...)` sets it for its calls). */
  requested?: Set<string>;

  private check(capability: Capability): void {
    if (this.grants && !this.grants.has(capability)) {
      throw new Denied(`capability \`${capability}\` is not granted`);
    }
    if (this.requested && !this.requested.has(capability)) {
      // As the host does: a capability counts only where it is requested and granted.
      throw new Denied(`capability \`${capability}\` is not requested in the plugin's metadata`);
    }
  }

  private now(): number {
    return this.nowMs ?? Date.now();
  }

  kvGet(key: string): Uint8Array | undefined {
    this.check('kv');
    if ((this.kvExpiresMs.get(key) ?? Infinity) <= this.now()) {
      this.kv.delete(key);
      this.kvExpiresMs.delete(key);
    }
    return this.kv.get(key);
  }

  kvSet(key: string, value: Uint8Array, ttlMs: number | undefined): void {
    this.check('kv');
    this.kv.set(key, new Uint8Array(value));
    this.kvExpiresMs.delete(key);
    if (ttlMs !== undefined) {
      this.kvExpiresMs.set(key, this.now() + ttlMs);
    }
  }

  kvDelete(key: string): boolean {
    const existed = this.kvGet(key) !== undefined;
    this.kv.delete(key);
    this.kvExpiresMs.delete(key);
    return existed;
  }

  kvIncrement(key: string, delta: number): number {
    const raw = this.kvGet(key);
    const text = raw === undefined ? '0' : decoder.decode(raw);
    if (!/^-?\d+$/.test(text)) {
      throw new InvalidInput(`kv value of \`${key}\` is not a counter`);
    }
    const value = BigInt(text) + BigInt(Math.trunc(delta));
    if (value >= 2n ** 63n || value < -(2n ** 63n)) {
      throw new InvalidInput(`kv counter \`${key}\` would overflow`);
    }
    this.kv.set(key, encoder.encode(value.toString()));
    return Number(value);
  }

  logWrite(level: LogLevel, message: string, fields: [string, string][]): void {
    this.check('log');
    this.logs.push({ level, message, fields: Object.fromEntries(fields) });
  }

  emitPublish(event: NewEvent): string {
    this.check('emit');
    this.emitted.push(event);
    return `emitted-${this.emitted.length}`;
  }

  httpSend(request: Request): Response {
    this.check('http');
    return this.http.send(request);
  }

  aiComplete(request: ChatRequest): ChatResponse {
    this.check('ai');
    return this.ai.next(request);
  }

  aiAgent(request: AgentRequest): AgentResponse {
    this.check('ai');
    const answer = this.ai.next(request);
    return { content: answer.content, model: answer.model, rounds: [], usage: answer.usage };
  }

  configGet(key: string): string | undefined {
    this.check('config');
    return Object.hasOwn(this.config, key) ? this.config[key] : undefined;
  }

  configAll(): [string, string][] {
    this.check('config');
    return Object.entries(this.config).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }
}

/** A test needs what only the fake host offers (fixtures, canned replies, stored values). */
export class ComponentModeError extends Error {}

const CAPABILITIES: Capability[] = ['http', 'kv', 'log', 'emit', 'ai', 'config'];

interface HostEvent {
  kind: string;
  content_type: string;
  occurred_at_ms?: number;
  payload_base64: string;
  attributes: [string, string][];
}

function newEvent(e: HostEvent): NewEvent {
  return new NewEvent(e.kind, bytes(e.payload_base64), e.content_type, e.occurred_at_ms, e.attributes);
}

const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');
const bytes = (b64: string) => new Uint8Array(Buffer.from(b64, 'base64'));

/** A connector called as the host calls it (`FakeHost.connector`). */
export class ConnectorRunner {
  constructor(
    readonly host: FakeHost,
    readonly connector: new () => Connector,
    readonly component?: string,
  ) {}

  private inProcess<T>(call: (c: Connector) => T): T {
    this.host.requested = new Set(new this.connector().metadata().capabilities);
    try {
      return this.host.run(() => call(new this.connector()));
    } finally {
      this.host.requested = undefined;
    }
  }

  /** Delivers `event`; the events it returned. */
  handle(event: Event): NewEvent[] {
    if (!this.component) return this.inProcess((c) => c.handle(event));
    const args = ['handle', '--kind', event.kind, '--content-type', event.contentType, '--payload-base64', base64(event.payload)];
    args.push('--id', event.id, '--source', event.source);
    for (const [k, v] of event.attributes) args.push('--attribute', `${k}=${v}`);
    return (this.call(args).returned as HostEvent[]).map(newEvent);
  }

  /** Runs `action` with `input`; its output. */
  invoke(action: string, input: unknown): unknown {
    if (!this.component) return this.inProcess((c) => c.invoke(action, input));
    return this.call(['invoke', action, '--input', JSON.stringify(input)]).output;
  }

  /** Hands over a verified webhook; the reply. */
  onWebhook(request: WebhookRequest): WebhookReply {
    if (!this.component) return this.inProcess((c) => c.onWebhook(request));
    const args = ['webhook', '--method', request.method, '--path', request.path, '--query', request.query];
    args.push('--body-base64', base64(request.body));
    for (const [k, v] of request.headers) args.push('--header', `${k}=${v}`);
    const answer = this.call(args);
    const reply = answer.output as { status: number; headers: [string, string][]; body_base64: string };
    const events = (answer.returned as HostEvent[]).map(newEvent);
    return new WebhookReply(reply.status, reply.headers, bytes(reply.body_base64), events);
  }

  private call(args: string[]): Record<string, unknown> {
    const host = this.host;
    const missing = [
      ['http fixtures', host.http.fixtures.length > 0],
      ['canned AI replies', host.ai.replies.length > 0],
      ['kv values', host.kv.size > 0],
    ]
      .filter(([, present]) => present)
      .map(([what]) => what);
    if (missing.length) {
      throw new ComponentModeError(`this test sets ${missing.join(', ')}, which only the fake host answers: run it without PLUGBOARD_COMPONENT`);
    }
    const binary = process.env.PLUGBOARD_BIN || 'plugboard';
    const command = ['plugin', 'call', this.component as string, '--json'];
    for (const capability of host.grants ? [...host.grants].sort() : CAPABILITIES) command.push('--grant', capability);
    for (const [k, v] of Object.entries(host.config).sort()) command.push('--config', `${k}=${v}`);
    const done = spawnSync(binary, [...command, ...args], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
    let answer: Record<string, any>;
    try {
      answer = JSON.parse(done.stdout);
    } catch {
      throw new ComponentModeError(`${binary} plugin call failed: ${done.error?.message ?? done.stderr.trim()}`);
    }
    for (const line of answer.logs ?? []) {
      host.logs.push({ level: line.level, message: line.message, fields: Object.fromEntries(line.fields) });
    }
    host.emitted.push(...(answer.emitted ?? []).map(newEvent));
    if (answer.error) {
      const e = answer.error;
      const val = e.case === 'upstream' ? { status: e.status, message: e.message } : e.case === 'rate-limited' ? e.retry_after_ms : e.message;
      // A failure outside the contract (a trap, out of memory): the host answers `internal`.
      const known = ['invalid-input', 'unauthorized', 'not-found', 'denied', 'rate-limited', 'timeout', 'upstream', 'internal', 'quota-exceeded'];
      throw fromWit(known.includes(e.case) ? { tag: e.case, val } : { tag: 'internal', val: `${e.case}: ${e.message}` });
    }
    return answer;
  }
}

/** What `replayFixture` found: whether the build replayed the recording exactly, and the report
 * `plugboard replay --json` printed (the recording, the replay, the first divergence). */
export interface Replayed {
  identical: boolean;
  report: Record<string, any>;
}

/**
 * Replays a recording exported with `plugboard replay ID --export DIR` on a built component
 * (`component`, else `PLUGBOARD_COMPONENT`) in the real host: the recorded input, every host call
 * answered from the recording, clocks and random included. A production failure becomes a test:
 * `assert.ok(replayFixture('fixtures/x.json').identical)`.
 */
export function replayFixture(path: string, component?: string): Replayed {
  const wasm = component ?? process.env.PLUGBOARD_COMPONENT;
  if (!wasm) {
    throw new ComponentModeError('replaying a fixture needs the built component: pass it or set PLUGBOARD_COMPONENT');
  }
  const binary = process.env.PLUGBOARD_BIN || 'plugboard';
  const done = spawnSync(binary, ['replay', '--from', path, '--with', wasm, '--json'], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  let report: Record<string, any>;
  try {
    report = JSON.parse(done.stdout);
  } catch {
    throw new ComponentModeError(`${binary} replay failed: ${done.error?.message ?? done.stderr.trim()}`);
  }
  return { identical: report.identical === true, report };
}
