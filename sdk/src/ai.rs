//! Chat completions through the AI provider the operator configured for this instance.
//!
//! ```no_run
//! use plugboard_sdk::ai::Chat;
//!
//! # fn run() -> Result<(), plugboard_sdk::Error> {
//! let answer = Chat::new()
//!     .system("Rate the fraud risk of this order from 0 to 1. Answer as JSON.")
//!     .user(r#"{"total": "1999.00", "country": "NL"}"#)
//!     .temperature(0.0)
//!     .json_object()
//!     .send()?;
//! let verdict: serde_json::Value = answer.json()?;
//! # let _ = verdict; Ok(()) }
//! ```

use serde::de::DeserializeOwned;

use crate::Error;
use crate::wit::plugboard::connector::ai as raw;
pub use crate::wit::plugboard::connector::ai_types::{
    ChatRequest, ChatResponse, FinishReason, Message, ResponseFormat, Role, Usage,
};

/// Runs one chat completion.
pub fn complete(request: &ChatRequest) -> Result<ChatResponse, Error> {
    raw::complete(request)
}

/// A chat request under construction.
#[derive(Debug, Clone)]
pub struct Chat {
    request: ChatRequest,
}

impl Default for Chat {
    fn default() -> Self {
        Self::new()
    }
}

impl Chat {
    /// An empty conversation with the provider's defaults.
    pub fn new() -> Self {
        Chat {
            request: ChatRequest {
                model: None,
                messages: Vec::new(),
                temperature: None,
                max_tokens: None,
                response_format: ResponseFormat::Text,
                stop: Vec::new(),
            },
        }
    }

    /// Names the model.
    pub fn model(mut self, model: &str) -> Self {
        self.request.model = Some(model.into());
        self
    }

    /// Adds a system message.
    pub fn system(mut self, content: &str) -> Self {
        self.request.messages.push(Message { role: Role::System, content: content.into() });
        self
    }

    /// Adds a user message.
    pub fn user(mut self, content: &str) -> Self {
        self.request.messages.push(Message { role: Role::User, content: content.into() });
        self
    }

    /// Sets the sampling temperature (0 is deterministic, and cacheable by the host).
    pub fn temperature(mut self, t: f32) -> Self {
        self.request.temperature = Some(t);
        self
    }

    /// Caps the answer's length.
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.request.max_tokens = Some(n);
        self
    }

    /// Asks for a JSON object.
    pub fn json_object(mut self) -> Self {
        self.request.response_format = ResponseFormat::JsonObject;
        self
    }

    /// Asks for JSON that conforms to `schema`.
    pub fn json_schema(mut self, schema: &serde_json::Value) -> Self {
        self.request.response_format = ResponseFormat::JsonSchema(schema.to_string());
        self
    }

    /// The request as built.
    pub fn request(&self) -> &ChatRequest {
        &self.request
    }

    /// Sends the request.
    pub fn send(self) -> Result<ChatResponse, Error> {
        complete(&self.request)
    }
}

impl ChatResponse {
    /// Parses the answer's content as JSON; [`Error::Upstream`] when the model answered otherwise.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(&self.content).map_err(|e| {
            Error::Upstream(crate::UpstreamFailure {
                status: 200,
                message: format!("model {} answered with invalid JSON: {e}", self.model),
            })
        })
    }
}

pub use crate::wit::plugboard::connector::ai_tools::{AgentRequest, AgentResponse, ToolRound};
pub use crate::wit::plugboard::connector::tool_types::{
    Tool, ToolCall, ToolCalls, ToolResult, ToolsRequest, ToolsResponse, Turn,
};

/// One model turn with tools the plugin defines and runs itself: the model answers, or asks
/// for calls; the plugin runs them and sends their results in the next turn (`Turn::Calls`,
/// `Turn::Results`). For connector actions as tools, [`Agent`] lets the host run the loop.
pub fn complete_turn(request: &ToolsRequest) -> Result<ToolsResponse, Error> {
    crate::wit::plugboard::connector::ai_tools::complete_turn(request)
}

/// A conversation in which the model may call connector actions as tools; the host runs the
/// calls (each with its own instance's grants) until the model answers. Each action must be in
/// this instance's `grants.ai_tools`.
///
/// ```no_run
/// use plugboard_sdk::ai::Agent;
///
/// # fn run() -> Result<(), plugboard_sdk::Error> {
/// let answer = Agent::new()
///     .system("You answer customers about their orders. Look orders up; never guess.")
///     .user("Where is my order 1001?")
///     .tool("shopify.get-order")
///     .send()?;
/// for round in &answer.rounds {
///     plugboard_sdk::info!("tool call"; "tool" => &round.call.name);
/// }
/// # let _ = answer.content; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Agent {
    request: AgentRequest,
}

impl Default for Agent {
    fn default() -> Self {
        Self::new()
    }
}

impl Agent {
    /// An empty conversation with no tools, the provider's defaults and 4 rounds of calls.
    pub fn new() -> Self {
        Agent {
            request: AgentRequest {
                model: None,
                messages: Vec::new(),
                tools: Vec::new(),
                max_rounds: None,
                temperature: None,
                max_tokens: None,
            },
        }
    }

    /// Names the model.
    pub fn model(mut self, model: &str) -> Self {
        self.request.model = Some(model.into());
        self
    }

    /// Adds instructions.
    pub fn system(mut self, content: &str) -> Self {
        self.request.messages.push(Message { role: Role::System, content: content.into() });
        self
    }

    /// Adds the user's words.
    pub fn user(mut self, content: &str) -> Self {
        self.request.messages.push(Message { role: Role::User, content: content.into() });
        self
    }

    /// Lets the model call a connector action, as `instance.action`.
    pub fn tool(mut self, action: &str) -> Self {
        self.request.tools.push(action.into());
        self
    }

    /// The most model turns that may ask for calls (at most 8).
    pub fn max_rounds(mut self, n: u32) -> Self {
        self.request.max_rounds = Some(n);
        self
    }

    /// Sets the sampling temperature.
    pub fn temperature(mut self, t: f32) -> Self {
        self.request.temperature = Some(t);
        self
    }

    /// Runs the conversation to the model's answer.
    pub fn send(self) -> Result<AgentResponse, Error> {
        crate::wit::plugboard::connector::ai_tools::run(&self.request)
    }
}
