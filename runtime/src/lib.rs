//! plugboard's plugin runtime: what an embedder depends on to run integration plugins written as
//! WebAssembly components.
//!
//! Each integration (Shopify, Slack, OpenAI, ...) is a component implementing the WIT contract in
//! `wit/`. The [`Host`] loads it sandboxed, gives it only the capabilities and limits its operator
//! granted, and invokes it once per event, each time in a fresh instance. Nothing here serves
//! HTTP, opens a database or parses a command line: the `plugboard` crate builds the server and
//! the pipeline on top of this one, `plugboard-store` the durable store, `plugboard-cli` the
//! command. What an operator writes in `plugboard.toml` ([`Grants`], [`Limits`], ...) is defined
//! by `plugboard-manifest`, re-exported as [`manifest`].
//!
//! Where things are (each module uses only modules listed before it, never one that uses it
//! back; `tests/tests/architecture.rs` checks that):
//! - [`grants`], [`limits`], [`PluginSpec`]: what an operator grants and allows one instance.
//! - [`keyvalue`]: the key-value port ([`keyvalue::KvStore`]) and its in-memory implementation.
//! - [`egress`]: outbound HTTP on plugins' behalf (allow-lists, address policy, secrets, OAuth2,
//!   rate limits, retries, the call log) and AI routing (cache, token budgets).
//! - [`capabilities`]: one module per host interface a plugin may import, each with its view
//!   and `add_to_linker`, checking the instance's grant first.
//! - `instance`: a loaded instance and one invocation's store state, and the linker that
//!   composes the capabilities over it.
//! - [`Host`]: the engine, the linker, the loaded plugins; loading (`load`) and invoking
//!   (`invoke`) are its methods, each in its own file.
//! - [`reply`]: what a webhook answer may contain before the server sends it.
//! - [`compile_cache`]: compiled components kept on disk across restarts.
//!
//! Embedding the host in another program:
//!
//! ```no_run
//! use plugboard_runtime::{Capability, Grants, Host, Limits, PluginSpec};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = Host::builder().compile_cache_dir("/var/cache/plugboard").build()?;
//! let info = host
//!     .load(
//!         PluginSpec::new("echo", "echo.wasm")
//!             .with_grants(Grants::none().with(Capability::Log).with(Capability::Kv))
//!             .with_limits(Limits::default().with_memory_mib(16).with_timeout(std::time::Duration::from_secs(2)))
//!             .with_config("greeting", "hi"),
//!     )
//!     .await?;
//! println!("loaded {} {} with {:?}", info.name, info.version, info.effective);
//! let done = host.handle("echo", plugboard_runtime::Event::json("demo/ping", "cli", &serde_json::json!({"n": 1}))?).await?;
//! for event in done.output {
//!     println!("{} {}", event.kind, String::from_utf8_lossy(&event.payload));
//! }
//! # Ok(()) }
//! ```

mod bindings;
pub mod capabilities;
pub mod clock;
pub mod compile_cache;
pub mod egress;
mod engine;
mod error;
pub mod grants;
mod host;
mod instance;
mod invoke;
pub mod keyvalue;
pub mod limits;
mod load;
pub mod metrics;
mod pool;
pub mod precompiled;
#[cfg(test)]
mod proptests;
pub mod rate_limit;
mod recorder;
pub mod recording;
pub mod replay;
pub mod reply;
mod shared;
mod spec;
mod tape;
pub mod text;

pub use bindings::types;
pub use capabilities::{Capability, Grants, HttpGrant};
pub use error::{InvokeError, LoadError, describe as describe_error};
pub use host::{Host, HostBuilder};
pub use instance::InstanceState;
pub(crate) use instance::Plugin;
pub use invoke::{Invocation, Session, WebhookOutcome};
pub use limits::Limits;
/// The configuration types ([`Grants`], [`Limits`], ...) come from the manifest crate.
pub use plugboard_manifest as manifest;
pub use reply::{HOST_OWNED_HEADERS, MAX_REPLY_HEADER_BYTES, MAX_REPLY_HEADERS};
pub use spec::{ActionHints, ActionInfo, PluginInfo, PluginKind, PluginSpec, Reuse, UPLOADED};
pub use text::printable;
pub use types::{Event, NewEvent};
/// The wasmtime this runtime is built on, for embedders' own imports ([`HostBuilder::link_instance`]).
pub use wasmtime;

/// Why the host itself could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// wasmtime refused the engine configuration.
    #[error("cannot set up the wasm engine: {0}")]
    Engine(String),
    /// A file or thread could not be set up.
    #[error("cannot set up {what}: {source}")]
    Io {
        /// What was being set up.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Event {
    /// A new event with a JSON payload, a fresh id and the current time, as if `source` had
    /// produced it. For embedders and tests that feed events in by hand.
    pub fn json(kind: &str, source: &str, payload: &serde_json::Value) -> Result<Event, serde_json::Error> {
        Ok(Event {
            id: capabilities::emit::new_event_id(),
            source: source.to_owned(),
            kind: kind.to_owned(),
            occurred_at_ms: clock::now_ms(),
            content_type: "application/json".into(),
            payload: serde_json::to_vec(payload)?,
            attributes: Vec::new(),
        })
    }
}
