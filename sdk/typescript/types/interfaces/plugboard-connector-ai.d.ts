// Generated from wit/ by scripts/types.mjs (jco). Do not edit.
/// <reference path="./plugboard-connector-ai-types.d.ts" />
/// <reference path="./plugboard-connector-types.d.ts" />
declare module 'plugboard:connector/ai@0.1.0' {
  /**
   * Runs one chat completion.
   */
  export function complete(request: ChatRequest): ChatResponse;
  export type Error = import('plugboard:connector/types@0.1.0').Error;
  export type ChatRequest = import('plugboard:connector/ai-types@0.1.0').ChatRequest;
  export type ChatResponse = import('plugboard:connector/ai-types@0.1.0').ChatResponse;
}
