//! Outbound HTTP on a plugin's behalf. Every request a plugin sends through the `http`
//! capability passes here, in this order:
//!
//! 1. [`policy`]: the destination and method against the instance's allow-list (and again on
//!    every redirect hop); an address written in the URL against the address policy.
//! 2. The instance's concurrent-request slots, then its per-destination token bucket.
//! 3. [`intercept`]: the embedder's interceptor, when it set one, may answer the request itself
//!    (after the secrets it names are checked, before any is filled in).
//! 4. `fill`: [`secrets`] and [`oauth`] placeholders filled in, only for granted secrets bound to
//!    the destination.
//! 5. `exchange`: the request itself, through a pooled client whose resolver ([`dns`]) applies
//!    the address policy to every name it resolves, and each redirect hop checked again.
//! 6. [`retry`]: connection failures of idempotent requests, and `429`/`5xx` answers when the
//!    plugin opted in, are retried within the invocation's deadline.
//! 7. [`calls`]: every attempt and every refusal is recorded, with metrics.

pub mod ai;
pub mod calls;
pub mod dns;
mod exchange;
mod fill;
pub mod intercept;
pub mod oauth;
pub mod policy;
mod retry;
pub mod secrets;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;

use crate::bindings::types::{Error, HttpRequest, HttpResponse, UpstreamFailure};
use crate::clock::now_ms;
use crate::grants::Grants;
use crate::grants::LimitScope;
use crate::keyvalue::KvStore;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::rate_limit::{Bucket, RateLimit, SharedLimit};
use calls::{CallLog, CallRecord};
use intercept::{Interception, Outbound, OutboundInterceptor};
use plugboard_manifest::pattern::Pattern;
use policy::destination;
use secrets::Secret;

/// The most headers an interceptor's answer may carry: as many as the HTTP client accepts in a
/// real answer.
const MAX_INTERCEPTED_HEADERS: usize = 100;

/// Headers the host sets itself: a plugin that could set them could reach another virtual host
/// than the one it was granted, or smuggle a second request.
const RESERVED_HEADERS: [&str; 7] =
    ["host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "proxy-authorization"];

/// The host's side of outbound HTTP: clients, secrets, OAuth2 tokens, the call log, metrics.
pub struct Egress {
    /// One pooled client per set of address exceptions and connect timeout.
    clients: Mutex<HashMap<(Vec<String>, u64), reqwest::Client>>,
    overrides: dns::Overrides,
    /// For operator-configured endpoints (OAuth2 token URLs), not plugin requests.
    operator_http: reqwest::Client,
    secrets: RwLock<HashMap<String, Secret>>,
    tokens: oauth::Tokens,
    calls: Arc<dyn CallLog>,
    /// Where cluster-scoped rate limits are counted (the host's key-value store).
    kv: Arc<dyn KvStore>,
    metrics: Arc<Metrics>,
    interceptor: Option<Arc<dyn OutboundInterceptor>>,
}

/// What one instance holds for its outbound requests: its request slots and rate limits.
pub(crate) struct InstanceEgress {
    slots: Semaphore,
    limits: Vec<DestinationBucket>,
}

/// The rate limit of one destination pattern: a token bucket here, and the counters every
/// node shares when its scope is the cluster (the bucket then stands in while the store cannot
/// be reached).
struct DestinationBucket {
    pattern: Pattern,
    bucket: Bucket,
    shared: Option<SharedLimit>,
    max_wait: Duration,
}

impl InstanceEgress {
    pub(crate) fn new(instance: &str, grants: &Grants, limits: &Limits) -> Self {
        let buckets = grants
            .http
            .rate_limits
            .iter()
            .filter_map(|l| {
                let limit = RateLimit { per_second: l.per_second, burst: l.burst };
                let shared = (l.scope == LimitScope::Cluster)
                    .then(|| SharedLimit::new(instance, &l.destination, limit));
                Some(DestinationBucket {
                    pattern: Pattern::parse(&l.destination).ok()?,
                    bucket: Bucket::new(limit),
                    shared,
                    max_wait: Duration::from_millis(l.max_wait_ms),
                })
            })
            .collect();
        InstanceEgress { slots: Semaphore::new(limits.max_http_concurrency.max(1) as usize), limits: buckets }
    }
}

/// Who is sending: the instance, its grants and limits, and the invocation's deadline.
pub(crate) struct Caller<'a> {
    pub(crate) instance: &'a str,
    pub(crate) event_id: Option<&'a str>,
    pub(crate) grants: &'a Grants,
    pub(crate) limits: &'a Limits,
    pub(crate) state: &'a InstanceEgress,
    pub(crate) deadline: tokio::time::Instant,
}

/// An attempt that got no usable answer.
struct Failure {
    error: Error,
    /// The request may not have reached the server's application (connect failure, reset).
    transport: bool,
}

fn upstream(status: u16, message: String) -> Error {
    Error::Upstream(UpstreamFailure { status, message })
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Egress {
    pub(crate) fn new(
        calls: Arc<dyn CallLog>,
        kv: Arc<dyn KvStore>,
        metrics: Arc<Metrics>,
        interceptor: Option<Arc<dyn OutboundInterceptor>>,
    ) -> Result<Self, reqwest::Error> {
        Ok(Egress {
            kv,
            clients: Mutex::new(HashMap::new()),
            overrides: Arc::new(RwLock::new(HashMap::new())),
            operator_http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?,
            secrets: RwLock::new(HashMap::new()),
            tokens: oauth::Tokens::default(),
            calls,
            metrics,
            interceptor,
        })
    }

    pub(crate) fn set_secret(&self, name: &str, secret: Secret) {
        if let Ok(mut s) = self.secrets.write() {
            s.insert(name.to_owned(), secret);
        }
    }

    pub(crate) fn set_oauth(&self, name: &str, client: oauth::OAuthClient) {
        self.tokens.insert(name, client);
    }

    pub(crate) fn pin(&self, name: &str, addrs: Vec<IpAddr>) {
        if let Ok(mut o) = self.overrides.write() {
            o.insert(name.to_ascii_lowercase(), addrs);
        }
    }

    /// `text` with every configured secret's value (of 4 bytes or more) replaced by
    /// `[REDACTED]`.
    pub(crate) fn redact(&self, text: String) -> String {
        let Ok(secrets) = self.secrets.read() else { return text };
        let mut text = text;
        for secret in secrets.values() {
            let value = secret.value();
            if value.len() >= 4 && text.contains(value) {
                text = text.replace(value, "[REDACTED]");
            }
        }
        text
    }

    /// The call log.
    pub fn calls(&self) -> &Arc<dyn CallLog> {
        &self.calls
    }

    fn secret(&self, name: &str) -> Option<Secret> {
        self.secrets.read().ok()?.get(name).cloned()
    }

    fn client(&self, grants: &Grants, limits: &Limits) -> Result<reqwest::Client, Error> {
        let mut exceptions = grants.http.allow_internal.clone();
        exceptions.sort();
        let key = (exceptions, limits.http_connect_timeout_ms);
        let mut clients = self.clients.lock().map_err(|_| Error::Internal("client table poisoned".into()))?;
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let resolver = dns::GuardedResolver {
            internal_names: policy::internal_names(&grants.http),
            overrides: self.overrides.clone(),
        };
        // No proxy from the environment: a proxy resolves names itself, past the resolver
        // that applies the address policy.
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(resolver))
            .connect_timeout(Duration::from_millis(limits.http_connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Sends `request` for `caller`, or says why not.
    pub(crate) async fn send(
        &self,
        caller: &Caller<'_>,
        request: HttpRequest,
    ) -> Result<HttpResponse, Error> {
        let url = url::Url::parse(&request.url)
            .map_err(|e| Error::InvalidInput(format!("bad URL {:?}: {e}", request.url)))?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| Error::InvalidInput(format!("bad method {:?}", request.method)))?;
        if let Some((name, _)) =
            request.headers.iter().find(|(n, _)| RESERVED_HEADERS.iter().any(|r| n.eq_ignore_ascii_case(r)))
        {
            return Err(Error::InvalidInput(format!("the `{name}` header is set by the host")));
        }
        let cap = caller.limits.max_http_request_bytes as usize;
        if request.body.len() > cap {
            return Err(Error::InvalidInput(format!("request body larger than the limit of {cap} bytes")));
        }
        if let Err(why) = policy::admit(&caller.grants.http, method.as_str(), &url) {
            return Err(self.refuse(caller, &method, &url, why));
        }
        let _slot = tokio::time::timeout_at(caller.deadline, caller.state.slots.acquire())
            .await
            .map_err(|_| {
                Error::Timeout(format!(
                    "all {} outbound request slots stayed busy until the deadline",
                    caller.limits.max_http_concurrency
                ))
            })?
            .map_err(|_| Error::Internal("request slots closed".into()))?;
        let client = self.client(caller.grants, caller.limits)?;
        // The interceptor comes after every limit a real request meets (slot, token, which
        // secrets may go where): whatever it does with the request, the plugin gets no more.
        let mut token_held = false;
        if let Some(interceptor) = &self.interceptor {
            self.take_token(caller, &method, &url, 1).await?;
            token_held = true;
            self.check_placeholders(caller, &method, &url, &request.headers)?;
            let started = Instant::now();
            let outbound = Outbound {
                instance: caller.instance,
                event_id: caller.event_id,
                method: method.as_str(),
                url: &url,
                request: &request,
            };
            match tokio::time::timeout_at(caller.deadline, interceptor.intercept(outbound)).await {
                Ok(Interception::Continue) => {}
                Ok(Interception::Respond(response)) => {
                    return self.intercepted(caller, &method, &url, &request, response, started);
                }
                Err(_) => {
                    let why = "the embedder's interceptor did not decide before the deadline".to_owned();
                    let hop = Hop { method: &method, url: &url, attempt: 1 };
                    self.record(caller, &hop, started, Settled::refused("timeout", why.clone()));
                    return Err(Error::Timeout(why));
                }
            }
        }
        let mut refreshed_oauth = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The first attempt's token was taken before the interceptor let the request go.
            if !std::mem::take(&mut token_held) {
                self.take_token(caller, &method, &url, attempt).await?;
            }
            let (response, headers, oauth_used) =
                match self.follow(caller, &client, method.clone(), url.clone(), &request, attempt).await {
                    Ok(answer) => answer,
                    Err(failure) => {
                        let retry = failure.transport
                            && (retry::is_idempotent(&method) || request.retry)
                            && attempt < caller.limits.http_max_attempts;
                        let wait = retry::backoff(attempt);
                        if retry && self.fits(caller, wait) {
                            self.retrying(caller, &url, wait).await;
                            continue;
                        }
                        return Err(failure.error);
                    }
                };
            if response.status == 401 && !oauth_used.is_empty() && !refreshed_oauth {
                // The API refused a cached token (revoked, rotated): fetch a new one, once.
                for (name, token) in &oauth_used {
                    self.tokens.invalidate(name, token).await;
                }
                refreshed_oauth = true;
                attempt -= 1;
                continue;
            }
            if !request.retry {
                return Ok(response);
            }
            let retryable = match retry::should_retry(&headers) {
                Some(verdict) => verdict,
                None => retry::is_retryable_status(response.status),
            };
            let asked = retry::retry_after(&headers, SystemTime::now());
            let rate_limited = response.status == 429;
            if !retryable || attempt >= caller.limits.http_max_attempts {
                // Out of attempts: a 429 whose wait the server named goes back as
                // `rate-limited(wait)`; otherwise the plugin gets the answer, provider-specific
                // headers (`x-ratelimit-reset-*`, ...) and all, to judge for itself.
                return match asked {
                    Some(wait) if rate_limited && retryable => Err(Error::RateLimited(Some(ms(wait)))),
                    _ => Ok(response),
                };
            }
            let wait = asked.unwrap_or_else(|| retry::backoff(attempt));
            if !self.fits(caller, wait) {
                // Waiting would hold a worker past the deadline: hand the wait to the pipeline.
                return if rate_limited { Err(Error::RateLimited(Some(ms(wait)))) } else { Ok(response) };
            }
            self.retrying(caller, &url, wait).await;
        }
    }

    /// Whether waiting `wait` still leaves time for another attempt before the deadline.
    fn fits(&self, caller: &Caller<'_>, wait: Duration) -> bool {
        // Checked: the wait comes from the server (`Retry-After`) and may be absurd.
        tokio::time::Instant::now()
            .checked_add(wait.saturating_add(Duration::from_millis(10)))
            .is_some_and(|ready| ready < caller.deadline)
    }

    async fn retrying(&self, caller: &Caller<'_>, url: &url::Url, wait: Duration) {
        let host = url.host_str().unwrap_or("");
        self.metrics.add("plugboard_http_retries_total", &[("instance", caller.instance), ("host", host)], 1);
        tokio::time::sleep(wait).await;
    }

    /// Hands the plugin the interceptor's answer, within the limits a real answer has, and
    /// records it.
    fn intercepted(
        &self,
        caller: &Caller<'_>,
        method: &reqwest::Method,
        url: &url::Url,
        request: &HttpRequest,
        response: HttpResponse,
        started: Instant,
    ) -> Result<HttpResponse, Error> {
        let hop = Hop { method, url, attempt: 1 };
        let cap = caller.limits.max_http_response_bytes as usize;
        let headers_ok = response.headers.len() <= MAX_INTERCEPTED_HEADERS
            && response.headers.iter().all(|(n, v)| {
                http::HeaderName::from_bytes(n.as_bytes()).is_ok() && http::HeaderValue::from_str(v).is_ok()
            });
        // Headers count too: the plugin is handed all of it.
        let size = response
            .headers
            .iter()
            .fold(response.body.len(), |n, (k, v)| n.saturating_add(k.len() + v.len()));
        let why = if size > cap {
            Some(format!("the interceptor's answer is larger than the limit of {cap} bytes"))
        } else if !(200..=599).contains(&response.status) || !headers_ok {
            Some("the interceptor's answer is not a valid HTTP response".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            self.record(caller, &hop, started, Settled::refused("failed", why.clone()));
            return Err(Error::Internal(why));
        }
        let bytes = (request.body.len() as u64, response.body.len() as u64);
        self.record(
            caller,
            &hop,
            started,
            Settled { status: Some(response.status), outcome: "intercepted", error: None, bytes },
        );
        Ok(response)
    }

    /// Records a refusal and builds the `denied` answer.
    fn refuse(&self, caller: &Caller<'_>, method: &reqwest::Method, url: &url::Url, why: String) -> Error {
        self.metrics.add("plugboard_http_denied_total", &[("instance", caller.instance)], 1);
        self.record(
            caller,
            &Hop { method, url, attempt: 0 },
            Instant::now(),
            Settled::refused("denied", why.clone()),
        );
        Error::Denied(why)
    }

    /// Takes a token from the bucket of the first rate limit matching `url`, waiting for one
    /// when the wait is short enough.
    async fn take_token(
        &self,
        caller: &Caller<'_>,
        method: &reqwest::Method,
        url: &url::Url,
        attempt: u32,
    ) -> Result<(), Error> {
        let Some(limit) = caller.state.limits.iter().find(|l| policy::matches_url(&l.pattern, url)) else {
            return Ok(());
        };
        let mut waited = false;
        loop {
            match self.take_from(limit).await {
                Ok(()) => return Ok(()),
                Err(wait) if wait <= limit.max_wait && self.fits(caller, wait) => {
                    if !waited {
                        self.metrics.add(
                            "plugboard_rate_limit_waits_total",
                            &[("instance", caller.instance)],
                            1,
                        );
                        waited = true;
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(wait) => {
                    let host = url.host_str().unwrap_or("");
                    self.metrics.add(
                        "plugboard_rate_limited_total",
                        &[("instance", caller.instance), ("host", host)],
                        1,
                    );
                    let why =
                        format!("the rate limit for {host} needs {} ms before the next request", ms(wait));
                    let hop = Hop { method, url, attempt };
                    self.record(caller, &hop, Instant::now(), Settled::refused("rate-limited", why));
                    return Err(Error::RateLimited(Some(ms(wait).max(1))));
                }
            }
        }
    }

    /// Takes room for one request under `limit`, or says how long until there is some.
    async fn take_from(&self, limit: &DestinationBucket) -> Result<(), Duration> {
        if let Some(shared) = &limit.shared {
            match shared.take(self.kv.as_ref(), now_ms()).await {
                Ok(taken) => return taken,
                Err(e) => {
                    self.metrics.add("plugboard_store_errors_total", &[("operation", "rate-limit")], 1);
                    tracing::warn!(error = %e, "a cluster-wide rate limit is counted on this node alone meanwhile");
                }
            }
        }
        limit.bucket.take()
    }

    /// Records one exchange, or one refusal (attempt 0 when refused before any attempt), in the
    /// metrics, the debug log and the call log.
    fn record(&self, caller: &Caller<'_>, hop: &Hop<'_>, started: Instant, settled: Settled<'_>) {
        let Hop { method, url, attempt } = *hop;
        let Settled { status, outcome, error, bytes: (request_bytes, response_bytes) } = settled;
        let elapsed = started.elapsed();
        let host = url.host_str().unwrap_or("");
        if attempt > 0 {
            let code = status.map(|s| s.to_string()).unwrap_or_else(|| "0".into());
            self.metrics.add(
                "plugboard_http_calls_total",
                &[("instance", caller.instance), ("host", host), ("status", &code)],
                1,
            );
            self.metrics.observe("plugboard_http_call_seconds", &[("host", host)], elapsed.as_secs_f64());
        }
        let path = calls::redacted_path(url);
        tracing::debug!(
            instance = caller.instance,
            event = caller.event_id.unwrap_or(""),
            method = method.as_str(),
            host,
            path,
            status = status.unwrap_or(0),
            outcome,
            attempt,
            micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "outbound call"
        );
        self.calls.record(CallRecord {
            at_ms: now_ms().saturating_sub(ms(elapsed)),
            instance: caller.instance.to_owned(),
            event_id: caller.event_id.map(str::to_owned),
            method: method.as_str().to_owned(),
            destination: destination(url).map(|(s, h, p)| format!("{s}://{h}:{p}")).unwrap_or_default(),
            path,
            status,
            outcome: outcome.to_owned(),
            error,
            latency_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            request_bytes,
            response_bytes,
            attempt,
        });
    }
}

/// One request to one URL in one attempt (a redirect is another hop of the same attempt).
#[derive(Clone, Copy)]
struct Hop<'a> {
    method: &'a reqwest::Method,
    url: &'a url::Url,
    attempt: u32,
}

/// How a hop ended, as recorded.
struct Settled<'a> {
    status: Option<u16>,
    /// `ok`, `intercepted`, `denied`, `rate-limited`, `timeout` or `failed`.
    outcome: &'a str,
    error: Option<String>,
    /// Bytes sent and received.
    bytes: (u64, u64),
}

impl<'a> Settled<'a> {
    fn refused(outcome: &'a str, why: String) -> Self {
        Settled { status: None, outcome, error: Some(why), bytes: (0, 0) }
    }
}

fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}
