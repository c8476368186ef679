// Generated from wit/ by scripts/types.mjs (jco). Do not edit.
/// <reference path="./plugboard-connector-ai-types.d.ts" />
/// <reference path="./plugboard-connector-tool-types.d.ts" />
/// <reference path="./plugboard-connector-types.d.ts" />
declare module 'plugboard:connector/ai-tools@0.1.0' {
  /**
   * Runs the conversation to the model's answer.
   */
  export function run(request: AgentRequest): AgentResponse;
  /**
   * One model turn with tools the plugin defines itself: the model answers, or asks for
   * calls, which the plugin runs and sends back in the next turn. Nothing is run by the host.
   */
  export function completeTurn(request: ToolsRequest): ToolsResponse;
  export type Error = import('plugboard:connector/types@0.1.0').Error;
  export type Message = import('plugboard:connector/ai-types@0.1.0').Message;
  export type Usage = import('plugboard:connector/ai-types@0.1.0').Usage;
  export type ToolCall = import('plugboard:connector/tool-types@0.1.0').ToolCall;
  export type ToolsRequest = import('plugboard:connector/tool-types@0.1.0').ToolsRequest;
  export type ToolsResponse = import('plugboard:connector/tool-types@0.1.0').ToolsResponse;
  /**
   * What to ask, and which actions the model may call.
   */
  export interface AgentRequest {
    /**
     * The model; the provider instance's default when absent.
     */
    model?: string,
    /**
     * The conversation so far.
     */
    messages: Array<Message>,
    /**
     * The actions the model may call, as `instance.action`. The model sees each as a tool
     * named `instance_action`, with the action's description and input schema.
     */
    tools: Array<string>,
    /**
     * The most model turns that may ask for calls (4 when absent, at most 8).
     */
    maxRounds?: number,
    /**
     * Sampling temperature.
     */
    temperature?: number,
    /**
     * The most tokens each answer may use.
     */
    maxTokens?: number,
  }
  /**
   * One call the model made, and what it answered.
   */
  export interface ToolRound {
    /**
     * The call as the model asked for it.
     */
    call: ToolCall,
    /**
     * The action's output (JSON text), or its error.
     */
    output: string,
    /**
     * Whether the call failed.
     */
    isError: boolean,
  }
  /**
   * The model's final answer, and the calls it made on the way.
   */
  export interface AgentResponse {
    /**
     * The answer's text.
     */
    content: string,
    /**
     * Every call, in order.
     */
    rounds: Array<ToolRound>,
    /**
     * Tokens used across all turns.
     */
    usage: Usage,
    /**
     * The model that answered.
     */
    model: string,
  }
}
