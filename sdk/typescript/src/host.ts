// Who answers the SDK's host calls: the plugboard host through the component's imports
// (`wit-host.ts`, which the build puts in front of the plugin), or a fake host in tests
// (`testing.ts`).

import type { AgentRequest, AgentResponse, ChatRequest, ChatResponse } from './ai.ts';
import type { Request, Response } from './http.ts';
import type { NewEvent } from './types.ts';

/** The host calls, in the SDK's own types; each throws a `PluginError` when refused. */
export interface Backend {
  kvGet(key: string): Uint8Array | undefined;
  kvSet(key: string, value: Uint8Array, ttlMs: number | undefined): void;
  kvDelete(key: string): boolean;
  kvIncrement(key: string, delta: number): number;
  logWrite(level: LogLevel, message: string, fields: [string, string][]): void;
  emitPublish(event: NewEvent): string;
  httpSend(request: Request): Response;
  aiComplete(request: ChatRequest): ChatResponse;
  aiAgent(request: AgentRequest): AgentResponse;
  configGet(key: string): string | undefined;
  configAll(): [string, string][];
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

const fakes: Backend[] = [];
let component: Backend | undefined;

/** Makes `backend` answer inside a component (called once, by `wit-host.ts`). */
export function installComponentHost(backend: Backend): void {
  component = backend;
}

/** Makes `fake` answer until `leave` (a test's fake host). */
export function enter(fake: Backend): void {
  fakes.push(fake);
}

export function leave(fake: Backend): void {
  if (fakes[fakes.length - 1] === fake) {
    fakes.pop();
  }
}

/** The fake host a test entered, else the component's imports. */
export function backend(): Backend {
  const current = fakes[fakes.length - 1] ?? component;
  if (!current) {
    throw new Error(
      'plugboard sdk: no host to call. Inside a component built with build.mjs the plugboard host answers; ' +
        'in tests, call the handler inside `host.run(() => ...)` with a FakeHost (@plugboard/sdk/testing).',
    );
  }
  return current;
}
