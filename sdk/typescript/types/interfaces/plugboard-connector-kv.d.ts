// Generated from wit/ by scripts/types.mjs (jco). Do not edit.
/// <reference path="./plugboard-connector-types.d.ts" />
declare module 'plugboard:connector/kv@0.1.0' {
  /**
   * Returns the value stored under `key`, if any (expired values are absent).
   */
  export function get(key: string): Uint8Array | undefined;
  /**
   * Stores `value` under `key`, expiring after `ttl-ms` milliseconds when given.
   */
  export function set(key: string, value: Uint8Array, ttlMs: bigint | undefined): void;
  /**
   * Removes `key`; answers whether it existed.
   */
  export { _delete as delete };
  function _delete(key: string): boolean;
  /**
   * Adds `delta` to the signed 64-bit counter under `key` (absent counts as 0) and returns the
   * new value. Fails with `invalid-input` when the value is not a counter.
   */
  export function increment(key: string, delta: bigint): bigint;
  export type Error = import('plugboard:connector/types@0.1.0').Error;
}
