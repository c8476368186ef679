// Generated from wit/ by scripts/types.mjs (jco). Do not edit.
/// <reference path="./plugboard-connector-types.d.ts" />
declare module 'plugboard:connector/http@0.1.0' {
  /**
   * Sends `request` and waits for the answer. Any HTTP status is an `ok` answer; `error` is for
   * requests that were refused or never answered.
   */
  export function send(request: HttpRequest): HttpResponse;
  export type HttpRequest = import('plugboard:connector/types@0.1.0').HttpRequest;
  export type HttpResponse = import('plugboard:connector/types@0.1.0').HttpResponse;
  export type Error = import('plugboard:connector/types@0.1.0').Error;
}
