//! Why a configuration file is refused.

/// Why a configuration file is refused: it cannot be read, it is not the TOML the types
/// describe, or a value is wrong (`key` is its path in the file).
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

impl ConfigError {
    /// A wrong value at `key`.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), reason: reason.into() }
    }
}
