// Generated from wit/ by scripts/types.mjs (jco). Do not edit.
declare module 'plugboard:connector/ai-types@0.1.0' {
  /**
   * Who wrote a chat message.
   * # Variants
   * 
   * ## `"system"`
   * 
   * Instructions for the model.
   * ## `"user"`
   * 
   * The end user's words.
   * ## `"assistant"`
   * 
   * The model's earlier answers.
   */
  export type Role = 'system' | 'user' | 'assistant';
  /**
   * One message of a conversation.
   */
  export interface Message {
    /**
     * Who wrote it.
     */
    role: Role,
    /**
     * Its text.
     */
    content: string,
  }
  /**
   * The shape the answer must take.
   */
  export type ResponseFormat = ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema;
  /**
   * Free text.
   */
  export interface ResponseFormatText {
    tag: 'text',
  }
  /**
   * Any valid JSON object.
   */
  export interface ResponseFormatJsonObject {
    tag: 'json-object',
  }
  /**
   * JSON that conforms to this JSON Schema (as JSON text).
   */
  export interface ResponseFormatJsonSchema {
    tag: 'json-schema',
    val: string,
  }
  /**
   * A chat-completion request.
   */
  export interface ChatRequest {
    /**
     * The model; the provider instance's default when absent.
     */
    model?: string,
    /**
     * The conversation so far.
     */
    messages: Array<Message>,
    /**
     * Sampling temperature; the provider's default when absent.
     */
    temperature?: number,
    /**
     * The most tokens the answer may use.
     */
    maxTokens?: number,
    /**
     * The answer's shape.
     */
    responseFormat: ResponseFormat,
    /**
     * Sequences at which the model stops.
     */
    stop: Array<string>,
  }
  /**
   * Why the model stopped.
   * # Variants
   * 
   * ## `"stop"`
   * 
   * A natural end or a stop sequence.
   * ## `"length"`
   * 
   * The token limit.
   * ## `"content-filter"`
   * 
   * The provider's content filter.
   * ## `"tool-calls"`
   * 
   * The model asked for a tool call.
   * ## `"other"`
   * 
   * Anything else.
   */
  export type FinishReason = 'stop' | 'length' | 'content-filter' | 'tool-calls' | 'other';
  /**
   * Tokens accounted by the provider.
   */
  export interface Usage {
    /**
     * Tokens in the request.
     */
    promptTokens: number,
    /**
     * Tokens in the answer.
     */
    completionTokens: number,
  }
  /**
   * A chat-completion answer.
   */
  export interface ChatResponse {
    /**
     * The answer's text.
     */
    content: string,
    /**
     * Why the model stopped.
     */
    finishReason: FinishReason,
    /**
     * Tokens used.
     */
    usage: Usage,
    /**
     * The model that actually answered.
     */
    model: string,
    /**
     * The provider's request id, for support tickets.
     */
    requestId?: string,
  }
}
