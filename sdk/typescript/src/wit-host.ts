// The host calls through the component's imports. `build.mjs` puts this module in front of the
// plugin; outside a component the `plugboard:connector/*` modules do not exist.

import * as ai from 'plugboard:connector/ai@0.1.0';
import * as aiTools from 'plugboard:connector/ai-tools@0.1.0';
import * as config from 'plugboard:connector/config@0.1.0';
import * as emit from 'plugboard:connector/emit@0.1.0';
import * as http from 'plugboard:connector/http@0.1.0';
import * as kv from 'plugboard:connector/kv@0.1.0';
import * as log from 'plugboard:connector/log@0.1.0';
import type { AgentRequest, AgentResponse, ChatRequest, ChatResponse as Answer } from './ai.ts';
import { ChatResponse } from './ai.ts';
import { newEventToWit } from './connector.ts';
import { fromWit, type WitError } from './errors.ts';
import { installComponentHost } from './host.ts';
import { jsonText } from './types.ts';
import { type Request, Response } from './http.ts';

/** Calls an import; the contract error it throws (a ComponentError with `payload`) becomes the
 * SDK's exception. */
function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    const payload = (e as { payload?: WitError }).payload;
    if (payload && typeof payload.tag === 'string') {
      throw fromWit(payload);
    }
    throw e;
  }
}

function format(request: ChatRequest) {
  if (request.responseFormat === 'json-schema') {
    return { tag: 'json-schema' as const, val: jsonText(request.schema ?? {}, 'the JSON schema') };
  }
  return { tag: request.responseFormat };
}

const optionalU32 = (n: number | undefined) => (n === undefined ? undefined : Math.max(0, Math.trunc(n)));

installComponentHost({
  kvGet: (key) => call(() => kv.get(key)),
  kvSet: (key, value, ttlMs) => call(() => kv.set(key, value, ttlMs === undefined ? undefined : BigInt(ttlMs))),
  kvDelete: (key) => call(() => kv.delete(key)),
  kvIncrement: (key, delta) => Number(call(() => kv.increment(key, BigInt(Math.trunc(delta))))),
  logWrite: (level, message, fields) => call(() => log.write(level, message, fields)),
  emitPublish: (event) => call(() => emit.publish(newEventToWit(event))),
  httpSend(request: Request): Response {
    const r = call(() =>
      http.send({ method: request.method, url: request.url, headers: request.headers, body: request.body, retry: request.retries }),
    );
    return new Response(r.status, r.headers, r.body);
  },
  aiComplete(request: ChatRequest): Answer {
    const r = call(() =>
      ai.complete({
        model: request.model,
        messages: request.messages,
        temperature: request.temperature,
        maxTokens: optionalU32(request.maxTokens),
        responseFormat: format(request),
        stop: request.stop,
      }),
    );
    const usage = { promptTokens: r.usage.promptTokens, completionTokens: r.usage.completionTokens };
    return new ChatResponse(r.content, r.model, r.finishReason, usage, r.requestId);
  },
  aiAgent(request: AgentRequest): AgentResponse {
    const r = call(() =>
      aiTools.run({
        model: request.model,
        messages: request.messages,
        tools: request.tools,
        maxRounds: optionalU32(request.maxRounds),
        temperature: request.temperature,
        maxTokens: optionalU32(request.maxTokens),
      }),
    );
    return {
      content: r.content,
      model: r.model,
      rounds: r.rounds.map((x) => ({ call: { ...x.call }, output: x.output, isError: x.isError })),
      usage: { promptTokens: r.usage.promptTokens, completionTokens: r.usage.completionTokens },
    };
  },
  configGet: (key) => call(() => config.get(key)),
  configAll: () => call(() => config.getAll()),
});
