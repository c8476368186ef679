// The contract's errors, as exceptions. Throw one from a handler and the host gets the matching
// case of the WIT `error` variant; a host call that fails throws one. `RateLimited`, `Timeout`
// and `Upstream` are retried by the host, the others are not (a dead letter, to inspect and
// replay). Any other exception a handler lets escape reaches the host as `internal`, with its
// name and message.

/** The cases of the WIT `error` variant. */
export type ErrorCase =
  | 'invalid-input'
  | 'unauthorized'
  | 'not-found'
  | 'denied'
  | 'rate-limited'
  | 'timeout'
  | 'upstream'
  | 'internal'
  | 'quota-exceeded';

/** A failure the contract names; subclasses are the cases of the WIT `error` variant. */
export class PluginError extends Error {
  readonly case: ErrorCase = 'internal';
  constructor(message = '') {
    super(message);
    this.name = new.target.name;
  }
  /** Whether the host retries the operation that failed with it. */
  get retryable(): boolean {
    return false;
  }
}

/** The input cannot be handled, now or later (bad JSON, a missing field). */
export class InvalidInput extends PluginError {
  override readonly case = 'invalid-input';
}

/** Credentials were refused. */
export class Unauthorized extends PluginError {
  override readonly case = 'unauthorized';
}

/** What was asked for does not exist (an unknown action, a missing record). */
export class NotFound extends PluginError {
  override readonly case = 'not-found';
}

/** The operator did not grant what was asked (a capability, a destination, a secret). */
export class Denied extends PluginError {
  override readonly case = 'denied';
}

/** Too many requests; `retryAfterMs` is how long to wait, when known. Retried. */
export class RateLimited extends PluginError {
  override readonly case = 'rate-limited';
  constructor(readonly retryAfterMs?: number) {
    super(retryAfterMs === undefined ? 'rate limited' : `rate limited (retry after ${retryAfterMs} ms)`);
  }
  override get retryable(): boolean {
    return true;
  }
}

/** Something took too long. Retried. */
export class Timeout extends PluginError {
  override readonly case = 'timeout';
  override get retryable(): boolean {
    return true;
  }
}

/** The service behind answered with a failure (`status`, what it said). Retried. */
export class Upstream extends PluginError {
  override readonly case = 'upstream';
  constructor(
    readonly status: number,
    readonly upstreamMessage: string,
  ) {
    super(upstreamMessage);
  }
  override get retryable(): boolean {
    return true;
  }
}

/** A bug or an unexpected state in the plugin. */
export class Internal extends PluginError {
  override readonly case = 'internal';
}

/** A budget the operator set is spent (AI tokens per day). Not retried. */
export class QuotaExceeded extends PluginError {
  override readonly case = 'quota-exceeded';
}

export const U64_MAX = 2n ** 64n - 1n;

/** `n` as the contract's u64: whole, at least 0, at most 2^64-1 (NaN is 0, Infinity the most). */
export function u64(n: number): bigint {
  if (Number.isNaN(n) || n <= 0) return 0n;
  if (!Number.isFinite(n)) return U64_MAX;
  const whole = BigInt(Math.trunc(n));
  return whole > U64_MAX ? U64_MAX : whole;
}

/** A WIT `error` value as componentize-js passes it: `{ tag, val }`. */
export interface WitError {
  tag: string;
  val?: unknown;
}

const BY_TAG: Record<string, new (message: string) => PluginError> = {
  'invalid-input': InvalidInput,
  unauthorized: Unauthorized,
  'not-found': NotFound,
  denied: Denied,
  timeout: Timeout,
  internal: Internal,
  'quota-exceeded': QuotaExceeded,
};

/** The exception for a WIT `error` value. */
export function fromWit(e: WitError): PluginError {
  if (e.tag === 'rate-limited') {
    return new RateLimited(e.val === undefined || e.val === null ? undefined : Number(e.val));
  }
  if (e.tag === 'upstream') {
    const v = (e.val ?? {}) as { status?: number; message?: string };
    return new Upstream(Number(v.status ?? 0), String(v.message ?? ''));
  }
  const cls = BY_TAG[e.tag] ?? Internal;
  return new cls(String(e.val ?? ''));
}

/** The WIT `error` value for any exception: a `PluginError` keeps its case, anything else is
 * `internal` with its name and message (rather than a trap, which says nothing). */
export function toWit(e: unknown): WitError {
  if (e instanceof RateLimited) {
    return { tag: 'rate-limited', val: e.retryAfterMs === undefined ? undefined : u64(e.retryAfterMs) };
  }
  if (e instanceof Upstream) {
    const status = Number.isInteger(e.status) && e.status >= 0 && e.status <= 65535 ? e.status : 0;
    return { tag: 'upstream', val: { status, message: String(e.upstreamMessage) } };
  }
  if (e instanceof PluginError) {
    return { tag: e.case, val: e.message };
  }
  if (e instanceof Error) {
    return { tag: 'internal', val: `${e.name}: ${e.message}` };
  }
  return { tag: 'internal', val: `thrown: ${String(e)}` };
}
