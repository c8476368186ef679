//! Whether an instance's plugin instances are kept for more than one invocation (`reuse = { ... }`
//! on a `[[plugin]]`): by default every invocation runs in a fresh instance, so nothing one event
//! leaves in the plugin's memory reaches the next.

use serde::{Deserialize, Serialize};

/// Keeps a connector's instances alive across invocations, trading isolation for speed: a
/// language runtime (Python, JavaScript) set up once instead of for every event. What one
/// invocation leaves in the plugin's memory (globals, caches, a half-built object) is seen by the
/// next ones that instance serves, whatever event or caller they are for; the host's own
/// per-invocation state (event id, deadline, fuel, emitted events, log lines, output budget) is
/// reset for each. An instance is dropped, never reused, after a trap, a timeout, or running out
/// of fuel or memory, after `calls` invocations, and after `idle_secs` without one. A recorded invocation
/// always runs in a fresh instance, so that its recording holds everything it depended on.
///
/// In the file: `reuse = { calls = 1000 }` or `reuse = { calls = 1000, idle_secs = 30 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reuse {
    /// How many invocations one instance serves before it is dropped (at least 1, at most
    /// 1,000,000): bounds what a leak in the plugin can grow to, and how long a state that one
    /// invocation left behind can matter.
    pub calls: u32,
    /// How long an unused instance is kept, in seconds (default 60, at most a day). Each one kept
    /// holds its memory and one of the host's instance slots.
    #[serde(default = "default_idle_secs")]
    pub idle_secs: u64,
}

fn default_idle_secs() -> u64 {
    60
}

/// Why `prepare_ahead` is refused beside `reuse`.
pub const PREPARE_AHEAD_WITH_REUSE: &str = "is for a fresh instance per invocation; with `reuse`, kept \
     instances already spare invocations their instantiation";

/// How long an instance prepared ahead (`prepare_ahead`) waits for an invocation before it is
/// dropped, in seconds (a day): the operator asked for it to be ready, and it holds one of the
/// host's instance slots and what instantiating wrote to its memory meanwhile.
pub const PREPARED_IDLE_SECS: u64 = MAX_IDLE_SECS;

/// The most invocations one reused instance may serve.
pub const MAX_REUSE_CALLS: u32 = 1_000_000;

/// The longest an unused instance may be kept, in seconds.
pub const MAX_IDLE_SECS: u64 = 24 * 3600;

impl Reuse {
    /// Why these values are refused, if they are.
    pub fn problem(&self) -> Option<String> {
        if self.calls == 0 || self.calls > MAX_REUSE_CALLS {
            return Some(format!("calls = {}: expected 1 to {MAX_REUSE_CALLS}", self.calls));
        }
        if self.idle_secs == 0 || self.idle_secs > MAX_IDLE_SECS {
            return Some(format!("idle_secs = {}: expected 1 to {MAX_IDLE_SECS}", self.idle_secs));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Table {
        reuse: Reuse,
    }

    #[test]
    fn reuse_is_read_with_its_default_and_bad_values_are_named() {
        let read = |s: &str| toml::from_str::<Table>(s).map(|t| t.reuse).map_err(|e| e.to_string());
        assert_eq!(read("reuse = { calls = 10 }"), Ok(Reuse { calls: 10, idle_secs: 60 }));
        assert_eq!(read("reuse = { calls = 1, idle_secs = 5 }"), Ok(Reuse { calls: 1, idle_secs: 5 }));
        assert!(read("reuse = { calls = 10, forever = true }").unwrap_err().contains("forever"));
        assert!(read("reuse = { idle_secs = 5 }").unwrap_err().contains("calls"));
        assert!(read("reuse = { calls = -1 }").is_err());
        let problem = |calls, idle_secs| Reuse { calls, idle_secs }.problem();
        assert_eq!(problem(0, 60).as_deref(), Some("calls = 0: expected 1 to 1000000"));
        assert!(problem(MAX_REUSE_CALLS + 1, 60).is_some());
        assert!(problem(10, 0).unwrap().contains("idle_secs"));
        assert!(problem(10, MAX_IDLE_SECS + 1).is_some());
        assert_eq!(problem(10, 60), None);
    }

    #[test]
    fn a_config_file_with_reuse_out_of_range_is_refused_with_its_key() {
        let file =
            |reuse: &str| format!("[[plugin]]\nid = \"risk\"\nwasm = \"risk.wasm\"\nreuse = {reuse}\n");
        let config = crate::Config::from_toml(&file("{ calls = 1000 }"), "plugboard.toml").unwrap();
        assert_eq!(config.plugins[0].reuse, Some(Reuse { calls: 1000, idle_secs: 60 }));
        config.validate().unwrap();
        let config = crate::Config::from_toml(&file("{ calls = 0 }"), "plugboard.toml").unwrap();
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "plugin[risk].reuse: calls = 0: expected 1 to 1000000"
        );
    }

    #[test]
    fn prepare_ahead_is_read_and_refused_beside_reuse() {
        let file = |more: &str| format!("[[plugin]]\nid = \"risk\"\nwasm = \"risk.wasm\"\n{more}\n");
        let config = crate::Config::from_toml(&file(""), "plugboard.toml").unwrap();
        assert!(!config.plugins[0].prepare_ahead, "off unless asked for");
        let config = crate::Config::from_toml(&file("prepare_ahead = true"), "plugboard.toml").unwrap();
        assert!(config.plugins[0].prepare_ahead);
        config.validate().unwrap();
        let both = file("prepare_ahead = true\nreuse = { calls = 10 }");
        let config = crate::Config::from_toml(&both, "plugboard.toml").unwrap();
        let refused = config.validate().unwrap_err().to_string();
        assert!(refused.starts_with("plugin[risk].prepare_ahead: is for a fresh instance"), "{refused}");
        assert!(crate::Config::from_toml(&file("prepare_ahead = 1"), "plugboard.toml").is_err());
    }
}
