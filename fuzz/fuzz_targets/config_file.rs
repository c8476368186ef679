//! A hostile or mistaken `plugboard.toml`: any text is parsed and resolved (cross-references,
//! grants, routes, schedules, limits) into a configuration or a clear error, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plugboard::config::{Config, Resolved};

fuzz_target!(|text: &str| {
    let Ok(config) = Config::from_toml(text, "fuzz.toml") else { return };
    // Relative paths and `file:` secrets resolve under a directory that does not exist, so
    // nothing outside the input decides the outcome.
    let _ = Resolved::resolve(config, std::path::Path::new("/nonexistent/plugboard-fuzz"));
});
