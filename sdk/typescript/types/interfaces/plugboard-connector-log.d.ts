// Generated from wit/ by scripts/types.mjs (jco). Do not edit.
/// <reference path="./plugboard-connector-types.d.ts" />
declare module 'plugboard:connector/log@0.1.0' {
  /**
   * Writes one log line with structured `fields`.
   */
  export function write(level: Level, message: string, fields: Fields): void;
  export type Fields = import('plugboard:connector/types@0.1.0').Fields;
  export type Error = import('plugboard:connector/types@0.1.0').Error;
  /**
   * How severe a log line is.
   * # Variants
   * 
   * ## `"trace"`
   * 
   * Very detailed tracing.
   * ## `"debug"`
   * 
   * Debugging detail.
   * ## `"info"`
   * 
   * Normal operation.
   * ## `"warn"`
   * 
   * Something unexpected that the plugin handled.
   * ## `"error"`
   * 
   * A failure.
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}
