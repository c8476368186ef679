// Generated from wit/ by scripts/types.mjs (jco). Do not edit.
declare module 'plugboard:connector/types@0.1.0' {
  /**
   * A failure reported by a remote service.
   */
  export interface UpstreamFailure {
    /**
     * The HTTP status the service answered with (0 when there was no HTTP response).
     */
    status: number,
    /**
     * What the service said, without secrets.
     */
    message: string,
  }
  /**
   * Why an operation failed, phrased so that the caller knows what to do next.
   * 
   * `invalid-input`, `unauthorized`, `denied` and `quota-exceeded` cannot succeed on retry; `rate-limited`,
   * `timeout` and `upstream` may; `not-found` and `internal` depend on the caller.
   */
  export type Error = ErrorInvalidInput | ErrorUnauthorized | ErrorNotFound | ErrorDenied | ErrorRateLimited | ErrorTimeout | ErrorUpstream | ErrorInternal | ErrorQuotaExceeded;
  /**
   * The input was malformed or failed validation. Retrying the same input cannot succeed.
   */
  export interface ErrorInvalidInput {
    tag: 'invalid-input',
    val: string,
  }
  /**
   * Credentials were missing, expired or refused.
   */
  export interface ErrorUnauthorized {
    tag: 'unauthorized',
    val: string,
  }
  /**
   * The requested object or action does not exist.
   */
  export interface ErrorNotFound {
    tag: 'not-found',
    val: string,
  }
  /**
   * The plugin called a capability that its operator did not grant, or asked for a
   * destination, secret or resource outside its grant. Never retried.
   */
  export interface ErrorDenied {
    tag: 'denied',
    val: string,
  }
  /**
   * Too many requests. Retry after this many milliseconds when given, otherwise back off.
   */
  export interface ErrorRateLimited {
    tag: 'rate-limited',
    val: bigint | undefined,
  }
  /**
   * The operation did not finish in time.
   */
  export interface ErrorTimeout {
    tag: 'timeout',
    val: string,
  }
  /**
   * A remote service answered with a failure.
   */
  export interface ErrorUpstream {
    tag: 'upstream',
    val: UpstreamFailure,
  }
  /**
   * An unexpected condition; a bug in the plugin or the host.
   */
  export interface ErrorInternal {
    tag: 'internal',
    val: string,
  }
  /**
   * A quota the operator set is spent: the instance's key-value space, or its daily AI
   * token budget. Retrying cannot succeed until the operator raises it or it resets.
   */
  export interface ErrorQuotaExceeded {
    tag: 'quota-exceeded',
    val: string,
  }
  /**
   * Name/value pairs, in order; a name may repeat.
   */
  export type Fields = Array<[string, string]>;
  /**
   * An event as stored and routed by the host.
   */
  export interface Event {
    /**
     * Unique id assigned by the host. Plugins use it to make their side effects idempotent:
     * delivery is at-least-once.
     */
    id: string,
    /**
     * The id of the plugin instance that produced the event.
     */
    source: string,
    /**
     * What happened, as `noun/verb`, e.g. `orders/create`.
     */
    kind: string,
    /**
     * When it happened, in milliseconds since the Unix epoch.
     */
    occurredAtMs: bigint,
    /**
     * The media type of `payload`, e.g. `application/json`.
     */
    contentType: string,
    /**
     * The event's body.
     */
    payload: Uint8Array,
    /**
     * Extra metadata (shop domain, delivery id, ...).
     */
    attributes: Fields,
  }
  /**
   * An event a plugin produces. The host assigns its id and records the producing instance
   * as its source, so that a plugin cannot forge either.
   */
  export interface NewEvent {
    /**
     * What happened, as `noun/verb`, e.g. `orders/create`.
     */
    kind: string,
    /**
     * When it happened, in ms since the Unix epoch; the host's clock when absent.
     */
    occurredAtMs?: bigint,
    /**
     * The media type of `payload`.
     */
    contentType: string,
    /**
     * The event's body.
     */
    payload: Uint8Array,
    /**
     * Extra metadata.
     */
    attributes: Fields,
  }
  /**
   * An outbound HTTP request, sent by the host on the plugin's behalf.
   */
  export interface HttpRequest {
    /**
     * `GET`, `POST`, ...
     */
    method: string,
    /**
     * An absolute `http` or `https` URL.
     */
    url: string,
    /**
     * Request headers. A value may hold placeholders that the host fills in on the way out,
     * so that a secret never enters the plugin: `{{secret:NAME}}` (the value),
     * `{{basic:NAME}}` (`Basic ` and the base64 of a `user:password` secret) and
     * `{{oauth:NAME}}` (a current OAuth2 access token the host obtains and refreshes).
     */
    headers: Fields,
    /**
     * The request body; empty for none.
     */
    body: Uint8Array,
    /**
     * Let the host retry this request on `429` and `5xx` answers (honouring `Retry-After`)
     * and on connection failures, whatever its method. Set it only when repeating the
     * request is safe, e.g. it carries an idempotency key. Without it the host retries only
     * connection failures of idempotent methods (`GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`)
     * and hands every answer to the plugin as it came.
     */
    retry: boolean,
  }
  /**
   * The answer to an `http-request`.
   */
  export interface HttpResponse {
    /**
     * The HTTP status code.
     */
    status: number,
    /**
     * Response headers.
     */
    headers: Fields,
    /**
     * The response body.
     */
    body: Uint8Array,
  }
  /**
   * A webhook request that the host received and already verified.
   */
  export interface WebhookRequest {
    /**
     * The HTTP method, e.g. `POST`.
     */
    method: string,
    /**
     * The path below `/hooks/{instance}`, starting with `/` (just `/` for none).
     */
    path: string,
    /**
     * The raw query string, without `?`; empty for none.
     */
    query: string,
    /**
     * Request headers, names in lower case.
     */
    headers: Fields,
    /**
     * The raw body bytes, exactly as signed by the provider.
     */
    body: Uint8Array,
  }
  /**
   * What a connector makes of a webhook: the immediate HTTP reply and the events to store.
   */
  export interface WebhookReply {
    /**
     * The HTTP status to answer with, e.g. 200.
     */
    status: number,
    /**
     * Reply headers.
     */
    headers: Fields,
    /**
     * Reply body, e.g. Slack's `url_verification` challenge.
     */
    body: Uint8Array,
    /**
     * Events to store and route.
     */
    events: Array<NewEvent>,
  }
  /**
   * A host capability a plugin may import. The effective set of an instance is what the
   * plugin requests in its metadata intersected with what the operator grants.
   * # Variants
   * 
   * ## `"http"`
   * 
   * Outbound HTTP through the host (`http` interface).
   * ## `"kv"`
   * 
   * The instance's own key-value namespace (`kv` interface).
   * ## `"log"`
   * 
   * Structured logs (`log` interface).
   * ## `"emit"`
   * 
   * Publishing new events into the router (`emit` interface).
   * ## `"ai"`
   * 
   * Chat completions through the configured AI provider (`ai` interface).
   * ## `"config"`
   * 
   * Reading the operator's configuration values (`config` interface).
   */
  export type Capability = 'http' | 'kv' | 'log' | 'emit' | 'ai' | 'config';
  /**
   * How the host verifies an incoming webhook before the plugin sees it.
   * # Variants
   * 
   * ## `"none"`
   * 
   * No verification (only for trusted networks).
   * ## `"shopify"`
   * 
   * `X-Shopify-Hmac-SHA256`: base64 HMAC-SHA256 of the body.
   * ## `"slack"`
   * 
   * `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`.
   * ## `"stripe"`
   * 
   * `Stripe-Signature: t=..,v1=..` over `{t}.{body}`.
   * ## `"github"`
   * 
   * `X-Hub-Signature-256: sha256=<hex>`.
   * ## `"standard-webhooks"`
   * 
   * The Standard Webhooks specification (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
   * ## `"hmac"`
   * 
   * A generic HMAC header whose details the operator configures.
   */
  export type VerificationScheme = 'none' | 'shopify' | 'slack' | 'stripe' | 'github' | 'standard-webhooks' | 'hmac';
  /**
   * An operation a connector offers through `invoke`.
   */
  export interface Action {
    /**
     * The action's name, e.g. `add-order-tags`.
     */
    name: string,
    /**
     * What it does, for operators.
     */
    description: string,
    /**
     * A JSON Schema (as JSON text) describing the action's input.
     */
    inputSchema: string,
  }
  /**
   * What a connector is and what it asks for. Shown to an operator before install.
   */
  export interface ConnectorMetadata {
    /**
     * A short machine name, e.g. `shopify`.
     */
    name: string,
    /**
     * The connector's version (semver).
     */
    version: string,
    /**
     * One line for humans.
     */
    description: string,
    /**
     * The event kinds the connector produces, e.g. `orders/create`.
     */
    produces: Array<string>,
    /**
     * The actions it offers through `invoke`.
     */
    actions: Array<Action>,
    /**
     * The capabilities it requests.
     */
    capabilities: Array<Capability>,
    /**
     * The webhook verification scheme it expects, if it receives webhooks.
     */
    webhookVerification?: VerificationScheme,
  }
}
