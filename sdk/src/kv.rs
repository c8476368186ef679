//! The instance's own key-value namespace, with typed values through serde.
//!
//! ```no_run
//! use std::time::Duration;
//! use plugboard_sdk::kv;
//!
//! # fn run() -> Result<(), plugboard_sdk::Error> {
//! kv::set("ticket:42", &serde_json::json!({ "team": "billing" }), Some(Duration::from_secs(3600)))?;
//! let ticket: Option<serde_json::Value> = kv::get("ticket:42")?;
//! let seen = kv::increment("tickets-seen", 1)?;
//! # let _ = (ticket, seen); Ok(()) }
//! ```

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use crate::Error;
use crate::wit::plugboard::connector::kv as raw;

/// Reads `key` as JSON into `T`; `None` when absent or expired.
pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    match raw::get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::InvalidInput(format!("kv value of `{key}`: {e}"))),
    }
}

/// Stores `value` as JSON under `key`, expiring after `ttl` when given.
pub fn set<T: Serialize + ?Sized>(key: &str, value: &T, ttl: Option<Duration>) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Internal(e.to_string()))?;
    set_bytes(key, &bytes, ttl)
}

/// Reads raw bytes.
pub fn get_bytes(key: &str) -> Result<Option<Vec<u8>>, Error> {
    raw::get(key)
}

/// Stores raw bytes.
pub fn set_bytes(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), Error> {
    let ttl_ms = ttl.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    raw::set(key, value, ttl_ms)
}

/// Removes `key`; answers whether it existed.
pub fn delete(key: &str) -> Result<bool, Error> {
    raw::delete(key)
}

/// Adds `delta` to the counter under `key` and returns the new value.
pub fn increment(key: &str, delta: i64) -> Result<i64, Error> {
    raw::increment(key, delta)
}
