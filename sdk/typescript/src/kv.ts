// The instance's own key-value namespace, with JSON values.
//
//     kv.set('ticket:42', { team: 'billing' }, { ttlSeconds: 3600 });
//     const ticket = kv.get<Ticket>('ticket:42');   // undefined when absent or expired
//     const seen = kv.increment('tickets-seen');

import { Internal, InvalidInput } from './errors.ts';
import { backend } from './host.ts';
import { jsonText } from './types.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The JSON value under `key`; undefined when absent or expired. */
export function get<T = any>(key: string): T | undefined {
  const raw = backend().kvGet(key);
  if (raw === undefined) {
    return undefined;
  }
  try {
    return JSON.parse(decoder.decode(raw)) as T;
  } catch (e) {
    throw new InvalidInput(`kv value of \`${key}\` is not JSON: ${(e as Error).message}`);
  }
}

/** Stores `value` as JSON under `key`, expiring after `ttlSeconds` when given. */
export function set(key: string, value: unknown, options: { ttlSeconds?: number } = {}): void {
  const text = jsonText(value, `kv value of \`${key}\``);
  setBytes(key, encoder.encode(text), options);
}

/** The raw bytes under `key`. */
export function getBytes(key: string): Uint8Array | undefined {
  return backend().kvGet(key);
}

/** Stores raw bytes. */
export function setBytes(key: string, value: Uint8Array, options: { ttlSeconds?: number } = {}): void {
  const ttlMs = options.ttlSeconds === undefined ? undefined : Math.max(0, Math.trunc(options.ttlSeconds * 1000));
  backend().kvSet(key, value, ttlMs);
}

/** Removes `key`; answers whether it existed. */
export function remove(key: string): boolean {
  return backend().kvDelete(key);
}

/** Adds `delta` to the counter under `key` (absent counts as 0); answers the new value. */
export function increment(key: string, delta = 1): number {
  return backend().kvIncrement(key, delta);
}
