// Generated from wit/ by scripts/types.mjs (jco). Do not edit.
/// <reference path="./plugboard-connector-types.d.ts" />
declare module 'plugboard:connector/plugin@0.1.0' {
  /**
   * Describes the connector. Called once when the host loads it; must not use capabilities.
   */
  export function metadata(): ConnectorMetadata;
  /**
   * Turns a webhook request, already verified by the host, into events and the HTTP reply.
   */
  export function onWebhook(request: WebhookRequest): WebhookReply;
  /**
   * Handles an event routed to this instance; returns the events it produces.
   */
  export function handle(event: Event): Array<NewEvent>;
  /**
   * Runs `action` with `input-json` (which conforms to the action's input schema) and returns
   * the output as JSON text.
   */
  export function invoke(action: string, inputJson: string): string;
  export type ConnectorMetadata = import('plugboard:connector/types@0.1.0').ConnectorMetadata;
  export type WebhookRequest = import('plugboard:connector/types@0.1.0').WebhookRequest;
  export type WebhookReply = import('plugboard:connector/types@0.1.0').WebhookReply;
  export type Event = import('plugboard:connector/types@0.1.0').Event;
  export type NewEvent = import('plugboard:connector/types@0.1.0').NewEvent;
  export type Error = import('plugboard:connector/types@0.1.0').Error;
}
