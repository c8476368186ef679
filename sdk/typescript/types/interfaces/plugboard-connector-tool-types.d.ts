// Generated from wit/ by scripts/types.mjs (jco). Do not edit.
/// <reference path="./plugboard-connector-ai-types.d.ts" />
declare module 'plugboard:connector/tool-types@0.1.0' {
  export type Message = import('plugboard:connector/ai-types@0.1.0').Message;
  export type FinishReason = import('plugboard:connector/ai-types@0.1.0').FinishReason;
  export type Usage = import('plugboard:connector/ai-types@0.1.0').Usage;
  /**
   * A tool the model may ask to call.
   */
  export interface Tool {
    /**
     * Its name as the model sees it: 1 to 64 of `[A-Za-z0-9_-]`.
     */
    name: string,
    /**
     * What it does, for the model.
     */
    description: string,
    /**
     * A JSON Schema (as JSON text) of its arguments, an object.
     */
    inputSchema: string,
  }
  /**
   * A call the model asked for.
   */
  export interface ToolCall {
    /**
     * The provider's id for the call, which its result names.
     */
    id: string,
    /**
     * The tool.
     */
    name: string,
    /**
     * Its arguments, as JSON text.
     */
    arguments: string,
  }
  /**
   * What a call answered.
   */
  export interface ToolResult {
    /**
     * The call, by its id.
     */
    callId: string,
    /**
     * The answer (JSON text), or what went wrong.
     */
    content: string,
    /**
     * Whether the call failed.
     */
    isError: boolean,
  }
  /**
   * The model's turn that asked for calls, with any text it wrote alongside.
   */
  export interface ToolCalls {
    /**
     * Its text, often empty.
     */
    content: string,
    /**
     * The calls, in order.
     */
    calls: Array<ToolCall>,
  }
  /**
   * One turn of a conversation with tools.
   */
  export type Turn = TurnMessage | TurnCalls | TurnResults;
  /**
   * A message: instructions, the user's words, the model's earlier answer.
   */
  export interface TurnMessage {
    tag: 'message',
    val: Message,
  }
  /**
   * The model asked for calls.
   */
  export interface TurnCalls {
    tag: 'calls',
    val: ToolCalls,
  }
  /**
   * What those calls answered.
   */
  export interface TurnResults {
    tag: 'results',
    val: Array<ToolResult>,
  }
  /**
   * A chat-completion request in which the model may call tools.
   */
  export interface ToolsRequest {
    /**
     * The model; the provider instance's default when absent.
     */
    model?: string,
    /**
     * The conversation so far.
     */
    turns: Array<Turn>,
    /**
     * The tools it may call.
     */
    tools: Array<Tool>,
    /**
     * Sampling temperature; the provider's default when absent.
     */
    temperature?: number,
    /**
     * The most tokens the answer may use.
     */
    maxTokens?: number,
  }
  /**
   * The model's answer: text, or the calls it wants made.
   */
  export interface ToolsResponse {
    /**
     * Its text.
     */
    content: string,
    /**
     * The calls it asked for; none when it answered.
     */
    calls: Array<ToolCall>,
    /**
     * Why it stopped (`tool-calls` when it asked for calls).
     */
    finishReason: FinishReason,
    /**
     * Tokens used.
     */
    usage: Usage,
    /**
     * The model that answered.
     */
    model: string,
    /**
     * The provider's request id.
     */
    requestId?: string,
  }
}
