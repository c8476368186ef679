// Generated from wit/ by scripts/types.mjs (jco). Do not edit.
/// <reference path="./plugboard-connector-types.d.ts" />
declare module 'plugboard:connector/config@0.1.0' {
  /**
   * Returns the value of `key`, if set.
   */
  export function get(key: string): string | undefined;
  /**
   * Returns every key and value, sorted by key.
   */
  export function getAll(): Array<[string, string]>;
  export type Error = import('plugboard:connector/types@0.1.0').Error;
}
