//! Counters and histograms in the Prometheus text format (`/metrics`).
//!
//! A small registry of our own: every series is a name plus label values, and each family's
//! help text lives in [`FAMILIES`], so what `/metrics` shows is listed in one place.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// The metric families, with their type and help text.
const FAMILIES: &[(&str, &str, &str)] = &[
    ("plugboard_webhooks_total", "counter", "Webhook requests by instance and outcome."),
    (
        "plugboard_webhook_verification_failures_total",
        "counter",
        "Webhooks refused by signature checks, by instance.",
    ),
    ("plugboard_events_stored_total", "counter", "Events stored, by source instance."),
    (
        "plugboard_deliveries_total",
        "counter",
        "Delivery attempts by route and outcome (delivered, retry, dead).",
    ),
    (
        "plugboard_invocations_total",
        "counter",
        "Plugin invocations by instance and outcome (ok, plugin-error, timeout, out-of-memory, out-of-fuel, stack-overflow, trap, invalid-output, ...).",
    ),
    ("plugboard_invocation_seconds", "histogram", "Plugin invocation duration by instance."),
    (
        "plugboard_prepared_instances_total",
        "counter",
        "Invocations of instances with prepare_ahead, by instance and whether one prepared ahead was ready (yes, no).",
    ),
    (
        "plugboard_store_errors_total",
        "counter",
        "Writes to the event store that failed, by operation (claim, record).",
    ),
    (
        "plugboard_plugin_log_lines_dropped_total",
        "counter",
        "Plugin log lines dropped over max_log_lines or max_log_bytes, by instance.",
    ),
    (
        "plugboard_http_calls_total",
        "counter",
        "Outbound HTTP attempts by instance, host and status (0: no answer).",
    ),
    ("plugboard_http_call_seconds", "histogram", "Outbound HTTP attempt latency by host."),
    ("plugboard_http_denied_total", "counter", "Outbound requests refused by policy, by instance."),
    ("plugboard_recordings_total", "counter", "Invocations recorded for replay, by instance."),
    (
        "plugboard_recordings_dropped_total",
        "counter",
        "Recordings not kept, by instance and reason (too_large: over the size limit; backlog: the \
         writer could not keep up).",
    ),
    (
        "plugboard_http_retries_total",
        "counter",
        "Outbound requests retried by the host, by instance and host.",
    ),
    ("plugboard_rate_limit_waits_total", "counter", "Outbound requests that waited for a rate-limit token."),
    (
        "plugboard_rate_limited_total",
        "counter",
        "Outbound requests refused by a rate limit, by instance and host.",
    ),
    ("plugboard_ai_cache_hits_total", "counter", "AI completions answered from the response cache."),
    ("plugboard_ai_cache_misses_total", "counter", "Cacheable AI completions sent to the provider."),
    ("plugboard_ai_tokens_total", "counter", "AI tokens used, by plugin, provider and kind."),
    (
        "plugboard_mcp_tool_calls_total",
        "counter",
        "MCP tool calls by client and outcome (ok, denied, invalid-input, rate-limited, a plugin error's kind).",
    ),
    ("plugboard_mcp_tool_call_seconds", "histogram", "MCP tool call duration by client."),
];

const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

type Key = (&'static str, Vec<(&'static str, String)>);

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Series of one kind, found by a hash of name and label values, so that updating one that
/// exists allocates nothing (it is done several times per webhook, under the lock).
struct Series<V> {
    buckets: HashMap<u64, Vec<(Key, V)>>,
}

impl<V> Default for Series<V> {
    fn default() -> Self {
        Series { buckets: HashMap::new() }
    }
}

fn hash_of(name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    for (k, v) in labels {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    h.finish()
}

fn same(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    key.0 == name
        && key.1.len() == labels.len()
        && key.1.iter().zip(labels).all(|(a, b)| a.0 == b.0 && a.1 == b.1)
}

impl<V: Default + Clone> Series<V> {
    fn entry(&mut self, name: &'static str, labels: &[(&'static str, &str)]) -> &mut V {
        let bucket = self.buckets.entry(hash_of(name, labels)).or_default();
        let at = match bucket.iter().position(|(k, _)| same(k, name, labels)) {
            Some(at) => at,
            None => {
                let key = (name, labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect());
                bucket.push((key, V::default()));
                bucket.len() - 1
            }
        };
        &mut bucket[at].1
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<&V> {
        let bucket = self.buckets.get(&hash_of(name, labels))?;
        bucket.iter().find(|(k, _)| same(k, name, labels)).map(|(_, v)| v)
    }

    /// Every series, in the order `/metrics` shows them.
    fn sorted(&self) -> BTreeMap<Key, V> {
        self.buckets.values().flatten().cloned().collect()
    }
}

/// The host's metrics.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<Series<u64>>,
    histograms: Mutex<Series<Histogram>>,
}

impl Metrics {
    /// Adds `by` to a counter.
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        if let Ok(mut c) = self.counters.lock() {
            *c.entry(name, labels) += by;
        }
    }

    /// Records one observation, in seconds.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], seconds: f64) {
        if let Ok(mut h) = self.histograms.lock() {
            let h = h.entry(name, labels);
            for (i, le) in BUCKETS.iter().enumerate() {
                if seconds <= *le {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }

    /// A counter's current value (0 when never touched).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let Ok(c) = self.counters.lock() else { return 0 };
        c.get(name, labels).copied().unwrap_or(0)
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let counters = self.counters.lock().map(|c| c.sorted()).unwrap_or_default();
        let histograms = self.histograms.lock().map(|h| h.sorted()).unwrap_or_default();
        let mut out = String::new();
        for (family, kind, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
            for ((_, labels), value) in counters.iter().filter(|((n, _), _)| n == family) {
                let _ = writeln!(out, "{family}{} {value}", render_labels(labels, None));
            }
            for ((_, labels), h) in histograms.iter().filter(|((n, _), _)| n == family) {
                for (le, count) in BUCKETS.iter().zip(h.counts) {
                    let _ = writeln!(
                        out,
                        "{family}_bucket{} {count}",
                        render_labels(labels, Some(&le.to_string()))
                    );
                }
                let _ = writeln!(out, "{family}_bucket{} {}", render_labels(labels, Some("+Inf")), h.count);
                let _ = writeln!(out, "{family}_sum{} {}", render_labels(labels, None), h.sum);
                let _ = writeln!(out, "{family}_count{} {}", render_labels(labels, None), h.count);
            }
        }
        out
    }
}

fn render_labels(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
        })
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_with_escaped_labels() {
        let m = Metrics::default();
        m.add("plugboard_http_calls_total", &[("instance", "a"), ("host", "x\"y"), ("status", "200")], 2);
        m.observe("plugboard_http_call_seconds", &[("host", "x")], 0.003);
        let text = m.render();
        assert!(
            text.contains("plugboard_http_calls_total{instance=\"a\",host=\"x\\\"y\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("plugboard_http_call_seconds_bucket{host=\"x\",le=\"0.0025\"} 0"), "{text}");
        assert!(text.contains("plugboard_http_call_seconds_bucket{host=\"x\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("plugboard_http_call_seconds_count{host=\"x\"} 1"), "{text}");
        assert_eq!(
            m.counter(
                "plugboard_http_calls_total",
                &[("instance", "a"), ("host", "x\"y"), ("status", "200")]
            ),
            2
        );
    }
}
