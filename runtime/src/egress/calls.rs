//! The outbound call log: one record per attempt a plugin's request made (refusals included),
//! for operators asking "what did this plugin call, and how did it go?". Query values are
//! redacted before anything is recorded: they often carry tokens.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One outbound attempt, or one refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// When the attempt started, ms since the Unix epoch.
    pub at_ms: u64,
    /// The instance that sent it.
    pub instance: String,
    /// The event being handled, if any.
    pub event_id: Option<String>,
    /// The HTTP method.
    pub method: String,
    /// `scheme://host:port`.
    pub destination: String,
    /// The path, with query values redacted.
    pub path: String,
    /// The answer's status; absent when there was none.
    pub status: Option<u16>,
    /// `ok` (any answer), `intercepted` (answered by the embedder's interceptor), `denied`,
    /// `rate-limited`, `timeout` or `failed`.
    pub outcome: String,
    /// Why it was refused or failed (never a secret).
    pub error: Option<String>,
    /// How long the attempt took, in microseconds.
    pub latency_us: u64,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes.
    pub response_bytes: u64,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
}

/// Which records to return; every field narrows the answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallFilter {
    /// Only this instance's calls.
    pub instance: Option<String>,
    /// Only calls to this host name.
    pub host: Option<String>,
    /// Only answers with this status.
    pub status: Option<u16>,
    /// Only this outcome (`ok`, `denied`, ...).
    pub outcome: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<usize>,
}

impl CallFilter {
    /// Whether `call` passes the filter.
    pub fn matches(&self, call: &CallRecord) -> bool {
        let host = call.destination.split("://").nth(1).and_then(|h| h.rsplit_once(':')).map(|(h, _)| h);
        self.instance.as_ref().is_none_or(|i| *i == call.instance)
            && self.host.as_ref().is_none_or(|h| Some(h.as_str()) == host)
            && self.status.is_none_or(|s| Some(s) == call.status)
            && self.outcome.as_ref().is_none_or(|o| *o == call.outcome)
    }

    /// The limit, defaulted.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(100)
    }
}

/// Where call records go. Recording must not block: it runs on every outbound request.
pub trait CallLog: Send + Sync + 'static {
    /// Keeps one record.
    fn record(&self, call: CallRecord);
    /// The records matching `filter`, newest first.
    fn query(&self, filter: &CallFilter) -> Vec<CallRecord>;
    /// Waits, at most `timeout`, until every record handed to [`CallLog::record`] so far is
    /// kept (a log that writes in the background writes the rest now). For shutdown.
    fn flush(&self, _timeout: std::time::Duration) {}
}

/// The most recent calls, in memory (the default when no store is attached).
pub struct MemoryCallLog {
    capacity: usize,
    calls: Mutex<VecDeque<CallRecord>>,
}

impl MemoryCallLog {
    /// Keeps the last `capacity` records.
    pub fn new(capacity: usize) -> Self {
        MemoryCallLog { capacity, calls: Mutex::new(VecDeque::with_capacity(capacity.min(1024))) }
    }
}

impl CallLog for MemoryCallLog {
    fn record(&self, call: CallRecord) {
        if let Ok(mut calls) = self.calls.lock() {
            if calls.len() == self.capacity {
                calls.pop_front();
            }
            calls.push_back(call);
        }
    }

    fn query(&self, filter: &CallFilter) -> Vec<CallRecord> {
        let Ok(calls) = self.calls.lock() else { return Vec::new() };
        calls.iter().rev().filter(|c| filter.matches(c)).take(filter.limit()).cloned().collect()
    }
}

/// `url`'s path and query with every query value replaced by `REDACTED`.
pub(crate) fn redacted_path(url: &url::Url) -> String {
    let mut path = url.path().to_owned();
    if url.query().is_some() {
        let names: Vec<String> = url.query_pairs().map(|(k, _)| format!("{k}=REDACTED")).collect();
        path.push('?');
        path.push_str(&names.join("&"));
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_redacted() {
        let url = url::Url::parse("https://a.io/v1/x?key=sk-123&page=2").unwrap();
        assert_eq!(redacted_path(&url), "/v1/x?key=REDACTED&page=REDACTED");
        assert_eq!(redacted_path(&url::Url::parse("https://a.io/p").unwrap()), "/p");
    }

    #[test]
    fn memory_log_keeps_the_newest_and_filters() {
        let log = MemoryCallLog::new(2);
        for (i, host) in ["a.io", "b.io", "a.io"].iter().enumerate() {
            log.record(CallRecord {
                at_ms: i as u64,
                instance: "p".into(),
                event_id: None,
                method: "GET".into(),
                destination: format!("https://{host}:443"),
                path: "/".into(),
                status: Some(200),
                outcome: "ok".into(),
                error: None,
                latency_us: 1,
                request_bytes: 0,
                response_bytes: 0,
                attempt: 1,
            });
        }
        let all = log.query(&CallFilter::default());
        assert_eq!(all.iter().map(|c| c.at_ms).collect::<Vec<_>>(), vec![2, 1]);
        let a = log.query(&CallFilter { host: Some("a.io".into()), ..CallFilter::default() });
        assert_eq!(a.len(), 1);
    }
}
