//! `plugboard.toml`, the operator's configuration file, as data: the server, the store, the
//! plugin instances with their grants, limits, config values and webhook verification, the
//! routes, schedules, secrets and OAuth clients. Every table refuses unknown keys, naming the
//! key and its line; every field is documented with the default an omitted key takes.
//!
//! [`Config::validate`] checks what needs no runtime, no files and no secrets: names used
//! twice, references to instances, secrets and OAuth clients that do not exist, reserved
//! names, and grants that are not well formed. The server resolves a valid file (reads the
//! secrets, builds the verifiers) before it runs it.
//!
//! ```
//! let config = plugboard_manifest::Config::from_toml(r#"
//!     [[plugin]]
//!     id = "shop"
//!     wasm = "shopify.wasm"
//!     grants = { capabilities = ["http"], http = { allow = ["https://*.myshopify.com"] } }
//!
//!     [[route]]
//!     name = "orders"
//!     from = "shop"
//!     to = "nowhere"
//! "#, "example.toml").unwrap();
//! let refused = config.validate().unwrap_err();
//! assert_eq!(refused.to_string(), "route[0].to: no instance named `nowhere`");
//! ```

pub mod address;
pub mod ai;
mod error;
mod file;
pub mod grants;
pub mod limits;
pub mod mcp;
pub mod pattern;
pub mod pipeline;
pub mod record;
pub mod reuse;
mod validate;
pub mod webhook;

use std::path::{Path, PathBuf};

pub use ai::{AiSettings, CacheMode};
pub use error::ConfigError;
pub use file::*;
pub use grants::{Capability, DestinationLimit, Grants, HttpGrant, LimitScope};
pub use limits::Limits;
pub use mcp::{McpClientConfig, McpConfig, ToolPattern};
pub use pipeline::{Filter, Missed, RetryPolicy, Route, Schedule};
pub use record::{Record, RecordingsConfig};
pub use reuse::{PREPARE_AHEAD_WITH_REUSE, PREPARED_IDLE_SECS, Reuse};
pub use webhook::{Acknowledge, Encoding, HmacScheme, RateLimit, Scheme, WebhookConfig};

impl Config {
    /// Reads `path` and parses it, without checking references or reading secrets.
    pub fn parse(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses configuration text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: origin.to_owned(), message: e.to_string() })
    }

    /// The directory relative paths in the file at `path` are resolved against.
    pub fn base(path: &Path) -> PathBuf {
        path.parent().unwrap_or(Path::new(".")).to_owned()
    }
}
