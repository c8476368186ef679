//! The one place where Rust bindings for the WIT contract in `wit/` are generated.
//!
//! Both plugin worlds import the same host interfaces, so the `ai-provider` bindings reuse the
//! `connector` bindings' import traits and shared types: one `Host` implementation per capability
//! serves both worlds.

#![allow(missing_docs)]

mod connector_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugboard:connector/connector",
        imports: { default: async },
        exports: { default: async },
        // Recordings keep every value that crosses the contract (`crate::recording`).
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

/// Bindings for another world of the package, whose imports and shared types are the
/// `connector` world's: only its own exports are new.
macro_rules! world_sharing_imports {
    ($world:literal) => {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: $world,
            imports: { default: async },
            exports: { default: async },
            with: {
                "plugboard:connector/types": super::connector_world::plugboard::connector::types,
                "plugboard:connector/ai-types": super::connector_world::plugboard::connector::ai_types,
                "plugboard:connector/tool-types": super::connector_world::plugboard::connector::tool_types,
                "plugboard:connector/http": super::connector_world::plugboard::connector::http,
                "plugboard:connector/kv": super::connector_world::plugboard::connector::kv,
                "plugboard:connector/log": super::connector_world::plugboard::connector::log,
                "plugboard:connector/emit": super::connector_world::plugboard::connector::emit,
                "plugboard:connector/ai": super::connector_world::plugboard::connector::ai,
                "plugboard:connector/ai-tools": super::connector_world::plugboard::connector::ai_tools,
                "plugboard:connector/config": super::connector_world::plugboard::connector::config,
            },
        });
    };
}

mod provider_world {
    world_sharing_imports!("plugboard:connector/ai-provider");
}

/// The optional `action-hints` export of a connector (world `connector-with-hints`): only its
/// export is used, looked up on a connector that may not have it.
mod hints_world {
    world_sharing_imports!("plugboard:connector/connector-with-hints");
}

/// The optional `provider-tools` export of an AI provider (world `ai-provider-with-tools`).
mod provider_tools_world {
    world_sharing_imports!("plugboard:connector/ai-provider-with-tools");
}

pub(crate) use connector_world::plugboard::connector::{ai, ai_tools, config, emit, http, kv, log};
pub(crate) use connector_world::plugboard::connector::{
    ai_types as ai_types_host, tool_types as tool_types_host, types as types_host,
};
pub(crate) use connector_world::{Connector, ConnectorPre};
pub(crate) use hints_world::exports::plugboard::connector::action_hints;
pub(crate) use provider_tools_world::exports::plugboard::connector::provider_tools;
pub(crate) use provider_world::AiProviderPre;
pub(crate) use provider_world::exports::plugboard::connector::provider::ProviderMetadata;

/// The contract's shared types, as the host sees them.
pub mod types {
    pub use super::connector_world::plugboard::connector::ai_types::{
        ChatRequest, ChatResponse, FinishReason, Message, ResponseFormat, Role, Usage,
    };
    pub use super::connector_world::plugboard::connector::tool_types::{
        Tool, ToolCall, ToolCalls, ToolResult, ToolsRequest, ToolsResponse, Turn,
    };
    pub use super::connector_world::plugboard::connector::types::{
        Action, Capability, ConnectorMetadata, Error, Event, HttpRequest, HttpResponse, NewEvent,
        UpstreamFailure, VerificationScheme, WebhookReply, WebhookRequest,
    };
}
