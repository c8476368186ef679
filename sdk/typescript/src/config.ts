// The configuration values the operator set for this instance.
//
//     const channel = config.require('alert_channel');
//     const threshold = Number(config.get('risk_threshold') ?? '0.7');

import { InvalidInput } from './errors.ts';
import { backend } from './host.ts';

/** The value of `key`, or `fallback` when it is not set. */
export function get(key: string): string | undefined;
export function get(key: string, fallback: string): string;
export function get(key: string, fallback?: string): string | undefined {
  return backend().configGet(key) ?? fallback;
}

/** The value of `key`; `InvalidInput` naming the key when it is not set. */
export function require(key: string): string {
  const value = backend().configGet(key);
  if (value === undefined) {
    throw new InvalidInput(`config value \`${key}\` is not set`);
  }
  return value;
}

/** Every key and value, sorted by key. */
export function all(): [string, string][] {
  return backend().configAll();
}
