//! How an instance receives webhooks: the signature scheme, the secrets that verify it, the
//! sources and rate it accepts.

use serde::{Deserialize, Serialize};

/// Webhook verification for one instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The scheme, e.g. `{ scheme = "shopify" }`.
    pub verify: Scheme,
    /// Secret references (`env:NAME`, `file:PATH`); several during a rotation.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// The window for timestamped schemes, in seconds.
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
    /// Only these source addresses (CIDR blocks) may deliver; any when empty. Others get 403.
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// A rate limit for this instance's webhooks; over it, 429 with `Retry-After`.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// A header carrying the provider's delivery id, for providers the scheme does not know.
    #[serde(default)]
    pub delivery_id_header: Option<String>,
    /// When the provider gets its answer: after the connector ran and its events were stored
    /// (the default), or as soon as the verified request is stored.
    #[serde(default)]
    pub acknowledge: Acknowledge,
}

/// When a webhook is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Acknowledge {
    /// After the connector's `on-webhook` ran and its events were stored: the provider gets the
    /// connector's reply, and a failure makes it send the webhook again.
    #[default]
    AfterProcessing,
    /// As soon as the verified request is stored durably (`200 {"accepted": EVENT_ID}`); the
    /// connector's `on-webhook` then runs as a delivery of that stored request, with the
    /// pipeline's retries, and its reply is discarded. Requests whose answer the connector
    /// computes (Slack's URL verification, slash commands and interactivity) still run at once.
    OnReceipt,
}

fn default_tolerance() -> u64 {
    300
}

/// How a generic HMAC signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Lower- or upper-case hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// A generic HMAC-SHA256 scheme, configured per provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacScheme {
    /// The header that carries the signature, e.g. `X-Signature`.
    pub header: String,
    /// How the signature is encoded.
    pub encoding: Encoding,
    /// A prefix before the signature in the header, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: String,
    /// A header carrying a Unix timestamp (seconds) that is part of the signed content and
    /// checked against the tolerance window.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// What is signed: `{body}`, `{timestamp}` and `{header:Name}` are replaced. Default `{body}`.
    #[serde(default = "default_template")]
    pub signed_content: String,
}

fn default_template() -> String {
    "{body}".into()
}

/// A verification scheme, as configured for an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Scheme {
    /// No verification: only for instances reachable from trusted networks.
    None,
    /// `X-Shopify-Hmac-SHA256`: base64 HMAC-SHA256 of the body.
    Shopify,
    /// `X-Slack-Signature: v0=<hex>` over `v0:{X-Slack-Request-Timestamp}:{body}`.
    Slack,
    /// `Stripe-Signature: t=..,v1=..` over `{t}.{body}`.
    Stripe,
    /// `X-Hub-Signature-256: sha256=<hex>` over the body.
    Github,
    /// Standard Webhooks: `webhook-signature: v1,<base64> ...` over `{id}.{timestamp}.{body}`.
    StandardWebhooks,
    /// A generic HMAC header.
    Hmac(HmacScheme),
}

/// A per-instance rate limit, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// How many may arrive at once after a quiet period.
    pub burst: f64,
}

impl RateLimit {
    /// Whether it can be enforced: a positive rate and a burst of at least one, both finite.
    pub fn is_sound(&self) -> bool {
        self.per_second.is_finite() && self.burst.is_finite() && self.per_second > 0.0 && self.burst >= 1.0
    }
}
