//! Which invocations an instance records for replay (`record = ...` on a `[[plugin]]`), and how
//! many recordings are kept (`[recordings]`).

use serde::{Deserialize, Serialize};

/// Which of an instance's invocations are recorded: every answer the host gave it (http, kv, ai,
/// config, emit, clocks, random), so that `plugboard replay` can run it again without the network.
///
/// In the file: `record = "all"`, `record = "failures"` or a sampling rate such as
/// `record = 0.05` (one invocation in twenty, chosen at random).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RecordValue", into = "RecordValue")]
pub enum Record {
    /// Every invocation.
    All,
    /// Every invocation is recorded; only those that fail (an error, a trap, a limit) are kept.
    Failures,
    /// This fraction of invocations, between 0 and 1.
    Sampled(f64),
}

/// How `record` is written in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum RecordValue {
    Mode(String),
    Rate(f64),
}

impl TryFrom<RecordValue> for Record {
    type Error = String;

    fn try_from(value: RecordValue) -> Result<Self, String> {
        match value {
            RecordValue::Mode(mode) if mode == "all" => Ok(Record::All),
            RecordValue::Mode(mode) if mode == "failures" => Ok(Record::Failures),
            RecordValue::Mode(mode) => Err(format!(
                "record = {mode:?}: expected \"all\", \"failures\" or a sampling rate between 0 and 1"
            )),
            RecordValue::Rate(rate) if (0.0..=1.0).contains(&rate) => Ok(Record::Sampled(rate)),
            RecordValue::Rate(rate) => Err(format!("record = {rate}: a sampling rate is between 0 and 1")),
        }
    }
}

impl From<Record> for RecordValue {
    fn from(record: Record) -> Self {
        match record {
            Record::All => RecordValue::Mode("all".into()),
            Record::Failures => RecordValue::Mode("failures".into()),
            Record::Sampled(rate) => RecordValue::Rate(rate),
        }
    }
}

/// Where recordings are kept: in the store's file, the newest `retain` of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingsConfig {
    /// How many of the newest recordings are kept.
    pub retain: u64,
    /// The largest recording kept, in bytes (its inputs and every answer, as JSON). An invocation
    /// whose recording would be larger is not recorded, and a counter says so.
    pub max_bytes: u64,
}

impl Default for RecordingsConfig {
    fn default() -> Self {
        RecordingsConfig { retain: 10_000, max_bytes: 1 << 20 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Table {
        record: Record,
    }

    #[test]
    fn modes_and_rates_are_read_and_anything_else_is_refused_by_name() {
        let read = |s: &str| toml::from_str::<Table>(s).map(|t| t.record).map_err(|e| e.to_string());
        assert_eq!(read("record = \"all\""), Ok(Record::All));
        assert_eq!(read("record = \"failures\""), Ok(Record::Failures));
        assert_eq!(read("record = 0.25"), Ok(Record::Sampled(0.25)));
        assert!(read("record = \"some\"").unwrap_err().contains("expected \"all\", \"failures\""));
        assert!(read("record = 1.5").unwrap_err().contains("between 0 and 1"));
        assert!(read("record = nan").is_err());
    }
}
