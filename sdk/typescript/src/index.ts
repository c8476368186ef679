// Write plugboard plugins in TypeScript.
//
// A connector is a subclass of `Connector`, exported with one line:
//
//     import { Connector, Metadata, NewEvent, exportConnector, log, type Event } from '@plugboard/sdk';
//
//     class Greeter extends Connector {
//       metadata() {
//         return new Metadata('greeter', '0.1.0', 'Says hello to every event').produces('greetings/sent').requests('log');
//       }
//       handle(event: Event) {
//         log.info('greeting', { event: event.id });
//         return [NewEvent.json('greetings/sent', { to: event.source })];
//       }
//     }
//
//     export const { plugin, actionHints } = exportConnector(Greeter);
//
// Host capabilities live in one module each: `http`, `kv`, `log`, `emit`, `ai`, `config`. Each
// call throws `Denied` when the operator did not grant the capability. `build.mjs` builds the
// component; `@plugboard/sdk/testing` has a fake host for tests.

export * as ai from './ai.ts';
export * as config from './config.ts';
export { Connector, exportConnector } from './connector.ts';
export * as emit from './emit.ts';
export {
  Denied,
  type ErrorCase,
  Internal,
  InvalidInput,
  NotFound,
  PluginError,
  QuotaExceeded,
  RateLimited,
  Timeout,
  Unauthorized,
  Upstream,
} from './errors.ts';
export * as http from './http.ts';
export * as kv from './kv.ts';
export * as log from './log.ts';
export {
  type Action,
  type Capability,
  Event,
  type Fields,
  type HintOptions,
  type Hints,
  hints,
  type Json,
  Metadata,
  NewEvent,
  type VerificationScheme,
  WebhookReply,
  WebhookRequest,
} from './types.ts';

/** The componentize-js release the SDK builds with. */
export const COMPONENTIZE_JS = '0.23.0';
