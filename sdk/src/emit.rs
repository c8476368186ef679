//! Publishing new events into the router, besides those a handler returns.
//!
//! ```no_run
//! use plugboard_sdk::{emit, NewEvent};
//!
//! # fn run() -> Result<(), plugboard_sdk::Error> {
//! let id = emit::publish(NewEvent::json("alerts/raised", &serde_json::json!({"order": 1001}))?)?;
//! # let _ = id; Ok(()) }
//! ```

use crate::wit::plugboard::connector::emit as raw;
use crate::{Error, NewEvent};

/// Publishes `event`; answers the id the host gave it.
pub fn publish(event: NewEvent) -> Result<String, Error> {
    raw::publish(&event)
}
