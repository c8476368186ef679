// Generated from wit/ by scripts/types.mjs (jco). Do not edit.
/// <reference path="./plugboard-connector-types.d.ts" />
declare module 'plugboard:connector/emit@0.1.0' {
  /**
   * Publishes `event`; answers the id the host gave it.
   */
  export function publish(event: NewEvent): string;
  export type NewEvent = import('plugboard:connector/types@0.1.0').NewEvent;
  export type Error = import('plugboard:connector/types@0.1.0').Error;
}
