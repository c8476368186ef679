//! How AI answers are cached.

use serde::{Deserialize, Serialize};

/// Which completions the cache answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheMode {
    /// Only requests with temperature 0 (the default).
    #[default]
    TemperatureZero,
    /// Every request.
    Always,
    /// None.
    Off,
}

/// How AI calls are cached. Unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AiSettings {
    /// Which requests are cached.
    pub cache: CacheMode,
    /// How long a cached answer is served, in seconds.
    pub cache_ttl_secs: u64,
    /// The most answers kept; the oldest go first.
    pub cache_max_entries: usize,
    /// The most bytes of answers (content and model name) kept; the oldest go first.
    pub cache_max_bytes: usize,
}

impl Default for AiSettings {
    fn default() -> Self {
        AiSettings {
            cache: CacheMode::TemperatureZero,
            cache_ttl_secs: 3600,
            cache_max_entries: 10_000,
            cache_max_bytes: 64 << 20,
        }
    }
}
