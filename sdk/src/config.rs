//! The configuration values the operator set for this instance.
//!
//! ```no_run
//! use plugboard_sdk::config;
//!
//! # fn run() -> Result<(), plugboard_sdk::Error> {
//! let channel = config::require("alert_channel")?;
//! let threshold: f64 = config::get("risk_threshold")?.and_then(|v| v.parse().ok()).unwrap_or(0.7);
//! # let _ = (channel, threshold); Ok(()) }
//! ```

use crate::Error;
use crate::wit::plugboard::connector::config as raw;

/// The value of `key`, if set.
pub fn get(key: &str) -> Result<Option<String>, Error> {
    raw::get(key)
}

/// The value of `key`; [`Error::InvalidInput`] naming the key when it is not set.
pub fn require(key: &str) -> Result<String, Error> {
    get(key)?.ok_or_else(|| Error::InvalidInput(format!("config value `{key}` is not set")))
}

/// Every key and value, sorted by key.
pub fn all() -> Result<Vec<(String, String)>, Error> {
    raw::get_all()
}
