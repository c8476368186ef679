//! Where events go: routes from instance to instance, schedules that fire actions, and how
//! failed deliveries are retried.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The source of schedule firings (an instance id no plugin may take).
pub const SCHEDULE_SOURCE: &str = "schedule";

/// The source of the host's job notices (an instance id no plugin may take).
pub const JOBS_SOURCE: &str = "jobs";

/// The source of the events that record AI clients' tool calls through the MCP server.
pub const MCP_SOURCE: &str = "mcp";

/// The route of async jobs (a route name no configuration may take).
pub const JOB_ROUTE: &str = "job";

/// The route of job completion callbacks (a route name no configuration may take).
pub const CALLBACK_ROUTE: &str = "job-callback";

/// The route on which a webhook acknowledged on receipt reaches its connector's `on-webhook`
/// (a route name no configuration may take).
pub const WEBHOOK_ROUTE: &str = "webhook";

/// The kind of the event that holds a webhook request acknowledged on receipt, until its
/// connector turns it into events.
pub const WEBHOOK_RECEIVED: &str = "webhook/received";

/// The most missed ticks `missed = "all"` fires at one start: the newest ones; older ones are
/// skipped, and logged.
pub const MAX_CATCH_UP: usize = 1_000;

/// One route, as configured. Unknown keys are refused.
///
/// ```
/// let r: plugboard_manifest::Route =
///     toml::from_str("name = \"orders\"\nfrom = \"shop\"\nkind = \"orders/*\"\nto = \"assess\"").unwrap();
/// assert_eq!(r.kind, "orders/*");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// A name for logs and the dead-letter list.
    pub name: String,
    /// The source instance; `*` for any.
    pub from: String,
    /// The event kind; `*` matches any run of characters, e.g. `orders/*`.
    #[serde(default = "any")]
    pub kind: String,
    /// The target instance.
    pub to: String,
    /// Invoke this action with the payload as input, instead of `handle`.
    #[serde(default)]
    pub action: Option<String>,
    /// Only events whose JSON payload has this value at this JSON Pointer take the route.
    #[serde(default)]
    pub filter: Option<Filter>,
    /// A JSON Pointer into the payload: events with the same value there are delivered one at a
    /// time, in order (FIFO per key, e.g. per customer).
    #[serde(default)]
    pub ordering_key: Option<String>,
    /// The most deliveries of this route running at once.
    #[serde(default)]
    pub concurrency: Option<usize>,
}

fn any() -> String {
    "*".into()
}

/// A condition on an event's JSON payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// A JSON Pointer, e.g. `/customer/country`.
    pub pointer: String,
    /// The value it must equal.
    pub equals: serde_json::Value,
}

/// What to do with the ticks that passed while the server was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missed {
    /// Skip them; log how many and which (the default).
    #[default]
    Skip,
    /// Fire once, for the newest missed tick.
    Once,
    /// Fire each, oldest first, up to [`MAX_CATCH_UP`].
    All,
}

/// One schedule, as configured.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Its name; firings are events of kind `schedule/{name}` from source `schedule`.
    pub name: String,
    /// When, as `sec min hour day-of-month month day-of-week [year]` in UTC, e.g. `0 0 2 * * *`.
    pub cron: String,
    /// The target instance.
    pub to: String,
    /// The action to invoke.
    pub action: String,
    /// The action's input.
    #[serde(default = "empty_object")]
    pub input: serde_json::Value,
    /// What to do with ticks missed while the server was down.
    #[serde(default)]
    pub missed: Missed,
}

impl Schedule {
    /// The route its firings are delivered on: `schedule:{name}`.
    pub fn route(&self) -> String {
        format!("schedule:{}", self.name)
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// When to try a failed delivery again.
///
/// Attempt `n` (from 1) that fails with a retryable error is retried after a delay drawn
/// uniformly from `0..=schedule_ms[n-1]` (full jitter), or after the target's own
/// `rate-limited(retry-after)` when it gave one. After `schedule_ms.len() + 1` attempts, or on an
/// error that cannot succeed on retry (`invalid-input`, `unauthorized`, `denied`, traps), the
/// delivery becomes a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Upper bounds of the delays between attempts, in ms.
    pub schedule_ms: Vec<u64>,
}

impl Default for RetryPolicy {
    /// Modelled on Standard Webhooks: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h.
    fn default() -> Self {
        RetryPolicy { schedule_ms: vec![5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000] }
    }
}

impl RetryPolicy {
    /// The upper bound of the delay after failed attempt `attempt` (from 1), or `None` when
    /// attempts are used up. The dispatcher waits a random time up to it (full jitter).
    pub fn max_delay(&self, attempt: u32) -> Option<Duration> {
        let bound = *self.schedule_ms.get(attempt.checked_sub(1)? as usize)?;
        Some(Duration::from_millis(bound))
    }
}
