//! Structured logs into the host's log, tagged with the instance and the event.
//!
//! ```no_run
//! plugboard_sdk::info!("order assessed"; "order" => 1001, "risk" => 0.12);
//! plugboard_sdk::warn!("no customer email");
//! ```
//!
//! A denied `log` capability is not an error worth failing for, so the macros ignore it;
//! [`write`] returns it.

use crate::Error;
use crate::wit::plugboard::connector::log as raw;

pub use raw::Level;

/// Writes one line with structured fields.
pub fn write(level: Level, message: &str, fields: &[(&str, &str)]) -> Result<(), Error> {
    let fields: Vec<(String, String)> =
        fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    raw::write(level, message, &fields)
}

#[doc(hidden)]
pub fn __write_owned(level: Level, message: &str, fields: &[(&str, String)]) -> Result<(), Error> {
    let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    raw::write(level, message, &fields)
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log {
    ($level:expr, $fmt:literal $(, $arg:expr)* $(; $($key:literal => $value:expr),+ $(,)?)?) => {{
        let _ = $crate::log::__write_owned(
            $level,
            &::std::format!($fmt $(, $arg)*),
            &[$($(($key, ::std::string::ToString::to_string(&$value))),+)?],
        );
    }};
}

/// Logs at `info`: `info!("text {}", x; "key" => value, ...)`; values are anything `Display`.
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::__log!($crate::log::Level::Info, $($t)*) };
}

/// Logs at `warn`.
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::__log!($crate::log::Level::Warn, $($t)*) };
}

/// Logs at `error`.
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::__log!($crate::log::Level::Error, $($t)*) };
}

/// Logs at `debug`.
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => { $crate::__log!($crate::log::Level::Debug, $($t)*) };
}
