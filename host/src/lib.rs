//! plugboard: a host for integration plugins written as WebAssembly components, with the server,
//! the durable store and the pipeline around it.
//!
//! The runtime that loads and runs plugins is its own crate, [`plugboard_runtime`], which
//! embedders can depend on alone; its modules are re-exported here under the same names. The
//! storage ports and their backends are another, [`plugboard_store`], re-exported as [`store`].
//!
//! Where things are:
//! - [`runtime`]: loading components and running invocations within their limits.
//! - [`capabilities`]: one module per host interface a plugin may import, each checking the
//!   instance's grant first.
//! - [`egress`]: outbound HTTP on plugins' behalf (allow-lists, address policy, secrets, OAuth2,
//!   rate limits, retries, the call log) and AI routing (cache, token budgets).
//! - [`ingress`]: where webhooks enter: verification, deduplication, storing what the
//!   connector made of them.
//! - [`api`]: the HTTP server around it: the admin and jobs APIs, the event stream, the
//!   dashboard, metrics and health checks.
//! - [`store`]: where events, deliveries, key-value data and the call log are stored: the
//!   ports the pipeline and the API use, and their SQLite and in-memory backends.
//! - [`pipeline`]: routes, the dispatcher with retries and dead letters, schedules.
//! - [`mcp`]: where AI clients enter: connector actions as MCP tools, over Streamable HTTP
//!   (`/mcp`) and stdio (`plugboard mcp`).
//! - [`config`]: the `plugboard.toml` file: its types and checks are [`manifest`]
//!   (`plugboard-manifest`); this module resolves secrets, paths and verifiers.

pub mod api;
pub mod config;
pub mod ingress;
pub mod mcp;
pub mod pipeline;
#[cfg(test)]
mod proptests;
pub mod run;

pub use plugboard_manifest as manifest;
pub use plugboard_runtime as runtime;
pub use plugboard_runtime::{
    Capability, Error, Grants, Host, HostBuilder, HttpGrant, InstanceState, Invocation, InvokeError, Limits,
    LoadError, PluginInfo, PluginKind, PluginSpec, Reuse, Session, UPLOADED, WebhookOutcome, printable,
};
pub use plugboard_runtime::{Event, NewEvent, capabilities, egress, limits, metrics, rate_limit, types};
pub use plugboard_store as store;
