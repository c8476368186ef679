//! Write plugboard plugins as plain Rust types.
//!
//! A connector is a type that implements [`Connector`], exported with one line:
//!
//! ```no_run
//! use plugboard_sdk::{Connector, Event, Metadata, NewEvent, Error};
//!
//! struct Greeter;
//!
//! impl Connector for Greeter {
//!     fn metadata() -> Metadata {
//!         Metadata::new("greeter", "0.1.0", "Says hello to every event")
//!             .produces("greetings/sent")
//!             .requests(plugboard_sdk::Capability::Log)
//!     }
//!
//!     fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
//!         plugboard_sdk::info!("greeting"; "event" => &event.id);
//!         Ok(vec![NewEvent::json("greetings/sent", &serde_json::json!({ "to": event.source }))?])
//!     }
//! }
//!
//! plugboard_sdk::export_connector!(Greeter);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2` as a `cdylib`: the result is a component the
//! host can load. Host capabilities live in one module each: [`http`], [`kv`], [`log`], [`emit`],
//! [`ai`] and [`config`]. Each call answers [`Error::Denied`] when the operator did not grant the
//! capability.

pub mod ai;
pub mod config;
pub mod emit;
#[doc(hidden)]
pub mod export;
pub mod http;
pub mod kv;
pub mod log;
mod types;

pub use plugboard_sdk_macros::{export_ai_provider, export_connector};
pub use types::*;

#[doc(hidden)]
pub use export as __export;
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// The generated bindings. Not a stable API: use the wrappers in this crate. Generated from the
/// crate's own copy of the contract (`wit/`), so that it builds on its own when published.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod wit {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugboard:connector/host-capabilities",
        generate_unused_types: true,
        additional_derives: [PartialEq],
    });
}

/// A connector: turns webhooks into events, handles routed events and offers actions.
///
/// Only [`Connector::metadata`] is required; the other methods default to "not supported".
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a plugboard connector",
    label = "this type must implement `plugboard_sdk::Connector`",
    note = "add `impl plugboard_sdk::Connector for {Self} {{ fn metadata() -> Metadata {{ .. }} }}`"
)]
pub trait Connector {
    /// Describes the connector: what it produces, offers and requests.
    fn metadata() -> Metadata;

    /// Turns a verified webhook into events and the HTTP reply.
    fn on_webhook(request: WebhookRequest) -> Result<WebhookReply, Error> {
        let _ = request;
        Err(Error::NotFound("this connector receives no webhooks".into()))
    }

    /// Handles an event routed to this instance and returns the events it produces.
    fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
        let _ = event;
        Err(Error::NotFound("this connector handles no events".into()))
    }

    /// Runs `action` with its JSON input and returns its JSON output.
    fn invoke(action: &str, input: serde_json::Value) -> Result<serde_json::Value, Error> {
        let _ = input;
        Err(Error::NotFound(format!("unknown action `{action}`")))
    }

    /// How the actions behave, for AI clients (MCP tool annotations) and operators. An action
    /// without hints is taken to be destructive, and an AI client may call it only where the
    /// operator allows destructive tools.
    fn action_hints() -> Vec<ActionHints> {
        Vec::new()
    }
}

/// An AI provider: runs chat completions against one vendor's API.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a plugboard AI provider",
    label = "this type must implement `plugboard_sdk::AiProvider`"
)]
pub trait AiProvider {
    /// Describes the provider.
    fn metadata() -> ProviderMetadata;

    /// Runs one chat completion.
    fn complete(request: ai::ChatRequest) -> Result<ai::ChatResponse, Error>;

    /// Runs one turn of a conversation with tools (`ai-tools`): the model answers, or asks for
    /// calls. Providers whose API has tool calling map it here; the default says it has none.
    fn complete_with_tools(request: ai::ToolsRequest) -> Result<ai::ToolsResponse, Error> {
        let _ = request;
        Err(Error::Denied("this AI provider does not support tool calling".into()))
    }
}
