// Chat completions through the AI provider the operator configured for this instance.
//
//     const answer = new ai.Chat()
//       .system('Rate the fraud risk of this order from 0 to 1. Answer as JSON.')
//       .user('{"total": "1999.00", "country": "NL"}')
//       .temperature(0)
//       .jsonObject()
//       .send();
//     const verdict = answer.json();
//
// `Agent` runs a conversation in which the model may call connector actions as tools; the host
// runs each call with that instance's own grants.

import { Upstream } from './errors.ts';
import { backend } from './host.ts';

export type Role = 'system' | 'user' | 'assistant';
export type FinishReason = 'stop' | 'length' | 'content-filter' | 'tool-calls' | 'other';

export interface Message {
  role: Role;
  content: string;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

/** A chat completion request. With `responseFormat` `json-schema`, `schema` is the JSON Schema. */
export interface ChatRequest {
  model?: string;
  messages: Message[];
  temperature?: number;
  maxTokens?: number;
  responseFormat: 'text' | 'json-object' | 'json-schema';
  schema?: Record<string, unknown>;
  stop: string[];
}

/** The model's answer. */
export class ChatResponse {
  constructor(
    readonly content: string,
    readonly model: string,
    readonly finishReason: FinishReason = 'stop',
    readonly usage: Usage = { promptTokens: 0, completionTokens: 0 },
    readonly requestId?: string,
  ) {}

  /** The content parsed as JSON; `Upstream` (retried) when the model answered otherwise. */
  json<T = any>(): T {
    try {
      return JSON.parse(this.content) as T;
    } catch (e) {
      throw new Upstream(200, `model ${this.model} answered with invalid JSON: ${(e as Error).message}`);
    }
  }
}

/** What a chat and an agent conversation are built with alike. */
abstract class Conversation<R extends { model?: string; messages: Message[]; temperature?: number }> {
  abstract readonly request: R;

  /** Names the model (the provider instance's default otherwise). */
  model(model: string): this {
    this.request.model = model;
    return this;
  }

  /** Adds a system message: instructions. */
  system(content: string): this {
    this.request.messages.push({ role: 'system', content });
    return this;
  }

  /** Adds a user message. */
  user(content: string): this {
    this.request.messages.push({ role: 'user', content });
    return this;
  }

  /** Sets the sampling temperature (0 is deterministic, and cacheable by the host). */
  temperature(t: number): this {
    this.request.temperature = t;
    return this;
  }
}

/** A chat request under construction. */
export class Chat extends Conversation<ChatRequest> {
  readonly request: ChatRequest = { messages: [], responseFormat: 'text', stop: [] };

  /** Adds an earlier answer of the model. */
  assistant(content: string): this {
    this.request.messages.push({ role: 'assistant', content });
    return this;
  }

  /** Caps the answer's length. */
  maxTokens(n: number): this {
    this.request.maxTokens = n;
    return this;
  }

  /** Stops the answer at any of `sequences`. */
  stop(...sequences: string[]): this {
    this.request.stop.push(...sequences);
    return this;
  }

  /** Asks for a JSON object. */
  jsonObject(): this {
    this.request.responseFormat = 'json-object';
    this.request.schema = undefined;
    return this;
  }

  /** Asks for JSON that conforms to `schema`. */
  jsonSchema(schema: Record<string, unknown>): this {
    this.request.responseFormat = 'json-schema';
    this.request.schema = schema;
    return this;
  }

  /** Runs the completion. */
  send(): ChatResponse {
    return backend().aiComplete(this.request);
  }
}

/** A call the model asked for: `name` is `instance_action`, `arguments` JSON text. */
export interface ToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** One call and what it answered (the action's output as JSON text, or its error). */
export interface ToolRound {
  call: ToolCall;
  output: string;
  isError: boolean;
}

/** A conversation in which the model may call `tools` (`instance.action`). */
export interface AgentRequest {
  model?: string;
  messages: Message[];
  tools: string[];
  maxRounds?: number;
  temperature?: number;
  maxTokens?: number;
}

/** The model's final answer, and the calls it made on the way. */
export interface AgentResponse {
  content: string;
  model: string;
  rounds: ToolRound[];
  usage: Usage;
}

/** A conversation in which the model may call connector actions as tools. Each action must be
 * in this instance's `grants.ai_tools`; the host runs the calls until the model answers. */
export class Agent extends Conversation<AgentRequest> {
  readonly request: AgentRequest = { messages: [], tools: [] };

  /** Lets the model call a connector action, as `instance.action`. */
  tool(action: string): this {
    this.request.tools.push(action);
    return this;
  }

  /** The most model turns that may ask for calls (at most 8). */
  maxRounds(n: number): this {
    this.request.maxRounds = n;
    return this;
  }

  /** Runs the conversation to the model's answer. */
  send(): AgentResponse {
    return backend().aiAgent(this.request);
  }
}
