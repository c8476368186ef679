//! The operator's configuration file (`plugboard.toml`): the server, the store, and the plugin
//! instances with their grants, limits, config values and webhook verification. Unknown keys are
//! refused with their name and line; secrets are references (`env:NAME`, `file:PATH`), resolved
//! at start, and a missing one is an error that names the key.
//!
//! - [`file`]: what the file says, as serde types that refuse unknown keys;
//! - [`resolve`]: checking it as a whole and resolving it (paths, secrets, verifiers) into
//!   what the server runs.

mod file;
mod resolve;

pub use file::*;
pub use resolve::{Resolved, read_secret};

use std::path::{Path, PathBuf};

/// Why a configuration file is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown or mistyped key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What and where.
        message: String,
    },
    /// A value is wrong; `key` is its path in the file.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key's path, e.g. `plugin[shop].webhook.secrets[0]`.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl Config {
    /// Reads and checks `path`, resolving secrets.
    pub fn load(path: &Path) -> Result<Resolved, ConfigError> {
        let config = Self::parse(path)?;
        config.resolve(&Self::base(path))
    }

    /// Reads `path` without resolving anything (for tools that only need the store).
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

    /// The directory relative paths in `path` are resolved against.
    pub fn base(path: &Path) -> PathBuf {
        path.parent().unwrap_or(Path::new(".")).to_owned()
    }
}
