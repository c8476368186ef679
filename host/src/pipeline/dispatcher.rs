//! The dispatcher: takes due deliveries from the store, runs them on their target instances,
//! and records each attempt's outcome durably. At-least-once: a delivery is marked done only
//! after its target answered and its output events were stored, so a crash in between means it
//! runs again (targets get the event id to make that harmless).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};

use crate::egress::policy;
use crate::pipeline::Routes;
use crate::runtime::clock::now_ms;
use crate::store::{
    Attempt, Candidate, ClaimId, Claimed, DeliveryId, DeliveryQueue, Outcome, QueuedDelivery,
};
use crate::types::{Error as WitError, Event, UpstreamFailure};
use crate::{Host, InvokeError};

pub use plugboard_manifest::RetryPolicy;

/// The delay after failed attempt `attempt` (from 1): drawn uniformly from zero to the policy's
/// bound for it (full jitter), or `None` when attempts are used up.
fn retry_delay(policy: &RetryPolicy, attempt: u32) -> Option<Duration> {
    let bound = policy.max_delay(attempt)?;
    Some(Duration::from_millis(fastrand::u64(0..=u64::try_from(bound.as_millis()).unwrap_or(u64::MAX))))
}

/// Runs deliveries in the background until dropped.
pub struct Dispatcher {
    notify: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Dispatcher {
    /// Starts dispatching with at most `concurrency` deliveries at once.
    pub fn spawn(
        host: Host,
        store: Arc<dyn DeliveryQueue>,
        routes: Arc<Routes>,
        policy: RetryPolicy,
        concurrency: usize,
    ) -> Self {
        Self::spawn_with_callbacks(host, store, routes, policy, concurrency, None)
    }

    /// Like [`Dispatcher::spawn`], also sending async jobs' completion callbacks. Each delivery
    /// is claimed for [`LEASE`], or for the lease the store fixed (NATS: its consumers' ack
    /// wait), and renewed every third of it while it runs.
    pub fn spawn_with_callbacks(
        host: Host,
        store: Arc<dyn DeliveryQueue>,
        routes: Arc<Routes>,
        policy: RetryPolicy,
        concurrency: usize,
        callbacks: Option<Callbacks>,
    ) -> Self {
        let lease = store.fixed_lease().unwrap_or(LEASE);
        let callbacks = Arc::new(callbacks);
        let notify = Arc::new(Notify::new());
        let wake = notify.clone();
        let task = tokio::spawn(async move {
            let concurrency = concurrency.max(1);
            let slots = Arc::new(Semaphore::new(concurrency));
            // What this dispatcher runs now: by delivery (never claimed twice here, whatever
            // the lease) and by route (each route's own concurrency limit).
            let running: Arc<Mutex<Running>> = Arc::default();
            let lineages: Arc<Lineages> = Arc::default();
            loop {
                let free = free_slots(&slots, concurrency).await;
                let claimed = if free == 0 {
                    Ok(Vec::new())
                } else {
                    let snapshot = running.lock().map(|r| r.clone()).unwrap_or_default();
                    let mut admit = admit(snapshot, &routes);
                    store.claim(now_ms(), free, lease, &mut admit).await
                };
                let claimed = match claimed {
                    Ok(claimed) => claimed,
                    Err(e) => {
                        // Nothing runs unclaimed: the deliveries stay due for a later round.
                        host.metrics().add("plugboard_store_errors_total", &[("operation", "claim")], 1);
                        tracing::error!("claiming due deliveries: {e}");
                        tokio::time::sleep(CLAIM_FAILURE_PAUSE).await;
                        continue;
                    }
                };
                let runnable = end_poisoned(&host, store.as_ref(), &policy, claimed).await;
                if runnable.is_empty() {
                    // New work wakes us; retries come due on their own, so look again soon.
                    let _ = tokio::time::timeout(Duration::from_millis(50), wake.notified()).await;
                    continue;
                }
                for delivery in runnable {
                    let Ok(permit) = slots.clone().acquire_owned().await else { return };
                    // Counted as running until the task ends, however it ends (a panic too).
                    let finished = Finished::start(running.clone(), wake.clone(), &delivery);
                    let callbacks = callbacks.clone();
                    let lineages = lineages.clone();
                    let (host, store, routes, policy) =
                        (host.clone(), store.clone(), routes.clone(), policy.clone());
                    tokio::spawn(async move {
                        let _finished = finished;
                        let claim = delivery.claim_id();
                        let run = deliver(
                            &host,
                            store.as_ref(),
                            &routes,
                            &policy,
                            callbacks.as_ref().as_ref(),
                            &lineages,
                            delivery,
                        );
                        let recorded = renewing(store.as_ref(), &claim, lease, run).await;
                        drop(permit);
                        if !recorded {
                            // Its outcome is not stored, so it is still due: running it again at
                            // once would repeat its side effects in a tight loop. It goes back to
                            // the queue unclaimable for a while, its attempt counted.
                            release_for_later(store.as_ref(), claim).await;
                        }
                    });
                }
            }
        });
        Dispatcher { notify, task }
    }

    /// Wakes the dispatcher when new deliveries are queued.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }
}

/// How many times [`free_slots`] lets other tasks run first.
const CLAIM_YIELDS: usize = 4;

/// The slots free now, after letting other ready tasks run first while fewer than a quarter are
/// free and more keep freeing up. Deliveries whose outcomes one commit stored finish together,
/// and each claim reads the queue past every delivery still running (the oldest due, leased):
/// one claim for all their slots reads it once, where a claim per freed slot read it once per
/// delivery (12% more deliveries per second in `tests/benches/pipeline.rs`).
async fn free_slots(slots: &Semaphore, concurrency: usize) -> usize {
    let mut free = slots.available_permits();
    for _ in 0..CLAIM_YIELDS {
        if free == 0 || free >= concurrency.div_ceil(4) {
            break;
        }
        tokio::task::yield_now().await;
        let now = slots.available_permits();
        if now == free {
            break;
        }
        free = now;
    }
    free
}

/// How long a claim leases a delivery. The dispatcher renews the lease of each delivery it
/// runs every third of it, settles or releases every delivery it claims, and never claims one it
/// is running: a lease ends on its own when its claimer is gone (or, leases being wall-clock
/// times, when the clock jumps ahead by more than two thirds of a lease; then another
/// dispatcher may run the delivery again, and the first one's answer is refused).
pub const LEASE: Duration = Duration::from_secs(300);

/// Runs `run` (a delivery), renewing `claim`'s lease (`lease` long) every third of it while it
/// runs; answers what `run` answers.
async fn renewing(
    store: &dyn DeliveryQueue,
    claim: &ClaimId,
    lease: Duration,
    run: impl Future<Output = bool>,
) -> bool {
    let mut run = std::pin::pin!(run);
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + lease / 3, lease / 3);
    loop {
        tokio::select! {
            recorded = &mut run => return recorded,
            _ = renew.tick() => {
                let until = now_ms().saturating_add(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX));
                if let Err(e) = store.renew(claim.clone(), until).await {
                    tracing::warn!("renewing the lease of {claim}: {e}");
                }
            }
        }
    }
}

/// The deliveries one dispatcher runs now.
#[derive(Debug, Default, Clone)]
struct Running {
    deliveries: HashSet<DeliveryId>,
    per_route: HashMap<String, usize>,
}

/// One delivery counted as running, until dropped (when its task ends, a panic included): then
/// it is not running any more, and the dispatcher looks for more work.
struct Finished {
    running: Arc<Mutex<Running>>,
    wake: Arc<Notify>,
    id: DeliveryId,
    route: String,
}

impl Finished {
    fn start(running: Arc<Mutex<Running>>, wake: Arc<Notify>, d: &Claimed) -> Self {
        if let Ok(mut r) = running.lock() {
            r.deliveries.insert(d.id.clone());
            *r.per_route.entry(d.route.clone()).or_default() += 1;
        }
        Finished { running, wake, id: d.id.clone(), route: d.route.clone() }
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        let mut r = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        r.deliveries.remove(&self.id);
        if let Some(n) = r.per_route.get_mut(&self.route) {
            *n = n.saturating_sub(1);
        }
        drop(r);
        self.wake.notify_one();
    }
}

/// Which deliveries a claim may take, given what runs now: none already running here, and
/// no more per route than the route's concurrency limit (counting those this claim takes).
fn admit(mut running: Running, routes: &Routes) -> impl FnMut(&Candidate<'_>) -> bool + Send + '_ {
    move |d: &Candidate<'_>| {
        if running.deliveries.contains(d.id) {
            return false;
        }
        let n = match running.per_route.get_mut(d.route) {
            Some(n) => n,
            None => running.per_route.entry(d.route.to_owned()).or_default(),
        };
        let ok = routes.concurrency(d.route).is_none_or(|limit| *n < limit);
        if ok {
            *n += 1;
        }
        ok
    }
}

/// Before deliveries run: each claimed one whose previous attempt never recorded an outcome
/// although the policy allowed no more (the process died running it, every time) becomes a
/// dead letter; the rest are returned to run. A dead letter that cannot be stored is given back
/// for later (the others run all the same).
async fn end_poisoned(
    host: &Host,
    store: &dyn DeliveryQueue,
    policy: &RetryPolicy,
    claimed: Vec<Claimed>,
) -> Vec<Claimed> {
    let (poison, runnable): (Vec<_>, Vec<_>) =
        claimed.into_iter().partition(|d| d.attempt > 1 && retry_delay(policy, d.attempt - 1).is_none());
    for d in poison {
        let used = d.attempt - 1;
        let error = format!(
            "attempt {used} never finished (the host stopped while running it) and no attempts are left"
        );
        tracing::error!(event = %d.event.id, instance = %d.target, route = %d.route, attempt = used, "dead letter: {error}");
        let attempt = Attempt { number: used, duration_us: 0, handler: None };
        let outcome = Outcome::Dead { error, events: Vec::new(), deliveries: Vec::new() };
        let claim = d.claim_id();
        if let Err(e) = store.settle(claim.clone(), attempt, outcome).await {
            host.metrics().add("plugboard_store_errors_total", &[("operation", "record")], 1);
            tracing::error!("storing the dead letter of {claim}: {e}");
            release_for_later(store, claim).await;
        }
    }
    runnable
}

/// Gives back a claimed delivery whose outcome could not be stored, claimable again only after
/// [`RECORD_FAILURE_PAUSE`]: running it again at once would repeat its side effects in a tight
/// loop.
async fn release_for_later(store: &dyn DeliveryQueue, claim: ClaimId) {
    let later = now_ms().saturating_add(RECORD_FAILURE_PAUSE.as_millis() as u64);
    if let Err(e) = store.release(claim.clone(), later).await {
        tracing::error!("releasing {claim}: {e}");
    }
}

/// How long the dispatcher waits after a claim could not be written.
const CLAIM_FAILURE_PAUSE: Duration = Duration::from_secs(1);
/// How long a delivery whose outcome could not be stored waits before it may run again.
const RECORD_FAILURE_PAUSE: Duration = Duration::from_secs(10);

/// The longest wait a plugin's `rate-limited(ms)` can put between two attempts.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// When the next attempt is due: after the plugin's `rate-limited` wait when it gave one (at
/// most [`MAX_RETRY_WAIT`]), else after the policy's `delay`; never overflowing the clock.
fn retry_at(now_ms: u64, error: &DeliveryError, delay: Duration) -> u64 {
    let wait = match error {
        DeliveryError::Invoke(InvokeError::Plugin(WitError::RateLimited(Some(ms)))) => {
            Duration::from_millis(*ms).min(MAX_RETRY_WAIT)
        }
        _ => delay,
    };
    now_ms.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
}

/// The attribute of a webhook's events that names the plugin build that made them
/// (`name@version sha256:...`, as attempts record it).
pub const BUILD: &str = "plugboard.build";

/// The attribute that counts the deliveries between an event and the webhook, schedule or job
/// that started its lineage.
pub const HOPS: &str = "plugboard.hops";
/// The most deliveries one lineage may pass through: past it, routes form a loop, and the
/// delivery becomes a dead letter instead of producing more events.
pub const MAX_HOPS: u32 = 16;

/// The attribute naming the event (a webhook's, a schedule firing, a job) that started an
/// event's lineage.
pub const ROOT: &str = "plugboard.root";
/// The most events the deliveries of one lineage may produce (in one process's lifetime): past
/// it, routes multiply events (a cycle whose plugins emit several events each grows
/// exponentially long before [`MAX_HOPS`]), and the delivery becomes a dead letter.
pub const MAX_LINEAGE_EVENTS: u32 = 10_000;

/// Events produced so far per lineage root; forgotten wholesale past [`MAX_LINEAGES`] roots, so
/// that it stays small (a lineage is rarely long-lived).
#[derive(Default)]
struct Lineages(Mutex<HashMap<String, u32>>);

const MAX_LINEAGES: usize = 100_000;

impl Lineages {
    /// Counts `n` more events for `root`; false, counting nothing, when that passes the budget.
    fn spend(&self, root: &str, n: usize) -> bool {
        let Ok(mut counts) = self.0.lock() else { return true };
        if counts.len() >= MAX_LINEAGES && !counts.contains_key(root) {
            counts.clear();
        }
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        // The root's own key is allocated only the first time it spends.
        let count = match counts.get_mut(root) {
            Some(count) => count,
            None => counts.entry(root.to_owned()).or_default(),
        };
        let next = count.saturating_add(n);
        if next > MAX_LINEAGE_EVENTS {
            return false;
        }
        *count = next;
        true
    }
}

/// The root of `event`'s lineage: the event itself when it started one.
fn root(event: &Event) -> &str {
    event.attributes.iter().find(|(k, _)| k == ROOT).map_or(event.id.as_str(), |(_, v)| v.as_str())
}

fn hops(event: &Event) -> u32 {
    event.attributes.iter().find(|(k, _)| k == HOPS).and_then(|(_, v)| v.parse().ok()).unwrap_or(0)
}

pub use crate::capabilities::emit::{CALLBACK_URL, CAUSED_BY};

/// The route name of async jobs (the store reads a job's state from its delivery on it).
pub use crate::store::JOB_ROUTE;

pub use plugboard_manifest::pipeline::{CALLBACK_ROUTE, JOBS_SOURCE, WEBHOOK_ROUTE};

/// How job completion callbacks are sent: signed per Standard Webhooks, only to the
/// destinations the operator allows, through the same address policy as plugins' requests.
///
/// A callback URL comes from whoever holds the jobs token, so it is as untrusted as a plugin's
/// request: it must match `destinations.allow`, may reach internal addresses only as
/// `destinations.allow_internal` says (checked on the address dialled, after DNS), and
/// redirects are not followed.
#[derive(Clone)]
pub struct Callbacks {
    secret: Vec<u8>,
    destinations: crate::HttpGrant,
    client: reqwest::Client,
}

impl Callbacks {
    /// Callbacks signed with `secret` (the decoded bytes of a `whsec_` secret), allowed to
    /// `destinations`.
    pub fn new(secret: Vec<u8>, destinations: crate::HttpGrant) -> Result<Self, String> {
        destinations.validate()?;
        let resolver = crate::egress::dns::GuardedResolver::new(policy::internal_names(&destinations));
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(resolver))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Callbacks { secret, destinations, client })
    }

    /// Why `url` may not be called back, if it may not.
    fn refuse(&self, url: &str) -> Option<String> {
        let parsed = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return Some(format!("callback_url {url:?} is not a URL: {e}")),
        };
        if let Err(why) = policy::check(&self.destinations, "POST", &parsed) {
            return Some(format!("callback_url: {why} (allow it in jobs.callback_allow)"));
        }
        let why = policy::admit_address(&self.destinations, &parsed).err()?;
        Some(format!("callback_url: {why} (allow it in jobs.callback_allow_internal)"))
    }
}

/// Why a delivery failed: the plugin it went to, or the host's own job callback (no plugin
/// involved, and said so).
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// The callback may not be sent; sending it again cannot help.
    #[error("job callback refused: {0}")]
    CallbackRefused(String),
    /// The callback was sent and failed, or never got an answer; worth retrying.
    #[error("job callback failed: {0}")]
    CallbackFailed(String),
}

impl DeliveryError {
    fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Invoke(e) => e.is_retryable(),
            DeliveryError::CallbackRefused(_) => false,
            DeliveryError::CallbackFailed(_) => true,
        }
    }
}

/// Signs and POSTs a job's completion notice to its callback URL.
async fn send_callback(callbacks: Option<&Callbacks>, url: &str, event: &Event) -> Result<(), DeliveryError> {
    let callbacks = callbacks.ok_or_else(|| {
        DeliveryError::CallbackRefused("no callback secret is configured ([jobs] callback_secret)".into())
    })?;
    if let Some(why) = callbacks.refuse(url) {
        return Err(DeliveryError::CallbackRefused(why));
    }
    let timestamp = (now_ms() / 1000).to_string();
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&callbacks.secret)
        .map_err(|e| DeliveryError::CallbackRefused(format!("the callback secret: {e}")))?;
    for part in [event.id.as_bytes(), b".", timestamp.as_bytes(), b".", &event.payload] {
        hmac::Mac::update(&mut mac, part);
    }
    use base64::Engine as _;
    let signature = base64::engine::general_purpose::STANDARD.encode(hmac::Mac::finalize(mac).into_bytes());
    let response = callbacks
        .client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &event.id)
        .header("webhook-timestamp", &timestamp)
        .header("webhook-signature", format!("v1,{signature}"))
        .body(event.payload.clone())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| match crate::egress::dns::blocked_cause(&e) {
            Some(why) => DeliveryError::CallbackRefused(format!("{url}: {why}")),
            None => DeliveryError::CallbackFailed(format!("{url}: {e}")),
        })?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(DeliveryError::CallbackFailed(format!("{url} answered {}", response.status())))
    }
}

/// A job's completion notice and its callback delivery, when the job asked for one.
fn completion(
    d: &Claimed,
    status: &str,
    output: Option<&str>,
    error: Option<&str>,
) -> (Vec<Event>, Vec<QueuedDelivery>) {
    let Some(url) = d.event.attributes.iter().find(|(k, _)| k == CALLBACK_URL).map(|(_, v)| v.clone()) else {
        return (Vec::new(), Vec::new());
    };
    let output: serde_json::Value =
        output.and_then(|o| serde_json::from_str(o).ok()).unwrap_or(serde_json::Value::Null);
    let payload = serde_json::json!({ "id": d.event.id, "status": status, "output": output, "error": error });
    let Ok(mut event) = Event::json("job/completed", JOBS_SOURCE, &payload) else {
        return (Vec::new(), Vec::new());
    };
    // The job's trace links to its notice, and the notice's to its callback's attempts.
    event.attributes.push((CAUSED_BY.into(), d.event.id.clone()));
    event.attributes.push((HOPS.into(), (hops(&d.event) + 1).to_string()));
    let delivery = QueuedDelivery {
        event_id: event.id.clone(),
        route: CALLBACK_ROUTE.into(),
        target: "callback".into(),
        action: Some(url),
        order_key: None,
    };
    (vec![event], vec![delivery])
}

/// Runs the connector's `on-webhook` on a request stored when it was acknowledged on receipt;
/// answers the build that ran and the events to store. The sender was answered already, so the
/// reply goes nowhere; but a reply that says the connector failed is a failure: retried when it
/// may pass later (429, 5xx), else a dead letter, as the sender would have treated it.
async fn run_stored_webhook(host: &Host, d: &Claimed) -> Result<(String, Vec<Event>), DeliveryError> {
    let request = super::receipt::stored_request(&d.event, &d.target)
        .map_err(|why| InvokeError::Plugin(WitError::InvalidInput(why)))?;
    let inv = host.on_webhook(&d.target, request).await?;
    let status = inv.output.status;
    let message = format!("the connector replied {status}");
    if status == 429 || status >= 500 {
        return Err(InvokeError::Plugin(WitError::Upstream(UpstreamFailure { status, message })).into());
    }
    if status >= 400 {
        return Err(InvokeError::Plugin(WitError::InvalidInput(message)).into());
    }
    let events = webhook_events(inv.output.events, inv.emitted, &inv.handler);
    Ok((inv.handler, events))
}

/// The events a connector's `on-webhook` made (its reply's, then those it emitted), each naming
/// the build that made them.
pub fn webhook_events(mut events: Vec<Event>, emitted: Vec<Event>, build: &str) -> Vec<Event> {
    events.extend(emitted);
    for event in &mut events {
        event.attributes.push((BUILD.into(), build.to_owned()));
    }
    events
}

/// Runs one delivery and stores its outcome; answers whether the outcome was stored.
async fn deliver(
    host: &Host,
    store: &dyn DeliveryQueue,
    routes: &Routes,
    policy: &RetryPolicy,
    callbacks: Option<&Callbacks>,
    lineages: &Lineages,
    d: Claimed,
) -> bool {
    let attempt = d.attempt;
    let started = Instant::now();
    // The build that ran: from the invocation when it finished, else the one loaded now.
    let mut handler = host.build_of(&d.target);
    let result: Result<(Vec<Event>, Option<String>), DeliveryError> = if d.route == CALLBACK_ROUTE {
        let url = d.action.clone().unwrap_or_default();
        handler = None;
        send_callback(callbacks, &url, &d.event).await.map(|()| (Vec::new(), None))
    } else if d.route == WEBHOOK_ROUTE {
        run_stored_webhook(host, &d).await.map(|(build, events)| {
            handler = Some(build);
            (events, None)
        })
    } else {
        match &d.action {
            None => host.handle(&d.target, d.event.clone()).await.map(|inv| {
                handler = Some(inv.handler);
                let mut events = inv.output;
                events.extend(inv.emitted);
                (events, None)
            }),
            Some(action) => match serde_json::from_slice::<serde_json::Value>(&d.event.payload) {
                Ok(input) => {
                    host.invoke_for_event(&d.target, action, &input, Some(&d.event.id)).await.map(|inv| {
                        handler = Some(inv.handler);
                        (inv.emitted, Some(inv.output.to_string()))
                    })
                }
                Err(e) => {
                    Err(InvokeError::Plugin(WitError::InvalidInput(format!("payload is not JSON: {e}"))))
                }
            },
        }
        .map_err(DeliveryError::from)
    };
    let is_job = d.route == JOB_ROUTE;
    let dead = |error: String| {
        let (events, deliveries) =
            if is_job { completion(&d, "failed", None, Some(&error)) } else { Default::default() };
        Outcome::Dead { error, events, deliveries }
    };
    let root = root(&d.event);
    let outcome = match result {
        Ok((events, _)) if !events.is_empty() && hops(&d.event) >= MAX_HOPS => dead(format!(
            "route loop: this delivery produced events {} hops after the webhook or schedule that \
             started it (limit {MAX_HOPS}); check the routes for a cycle",
            hops(&d.event) + 1
        )),
        Ok((events, _)) if !events.is_empty() && !lineages.spend(root, events.len()) => dead(format!(
            "route fan-out: the deliveries that followed event {} produced more than \
                 {MAX_LINEAGE_EVENTS} events; check the routes for a cycle that multiplies events",
            root
        )),
        Ok((mut events, output)) => {
            // Each event a delivery produced names the event it came from, and how many
            // deliveries away from its origin it is: an event's timeline can then follow it
            // through every hop, and a cycle of routes ends in a dead letter.
            let depth = (hops(&d.event) + 1).to_string();
            let lineage = root.to_owned();
            for e in &mut events {
                e.attributes.push((CAUSED_BY.into(), d.event.id.clone()));
                // A webhook's events start their lineages, whenever the connector ran: the
                // stored request they came from counts as no hop.
                if d.route != WEBHOOK_ROUTE {
                    e.attributes.push((HOPS.into(), depth.clone()));
                    e.attributes.push((ROOT.into(), lineage.clone()));
                }
            }
            let mut deliveries = routes.deliveries(&events);
            if is_job {
                let (notice, callback) = completion(&d, "succeeded", output.as_deref(), None);
                events.extend(notice);
                deliveries.extend(callback);
            }
            Outcome::Delivered { deliveries, events, output }
        }
        Err(e) if !e.is_retryable() => dead(e.to_string()),
        Err(e) => match retry_delay(policy, attempt) {
            None => dead(format!("gave up after {attempt} attempts: {e}")),
            Some(delay) => Outcome::Retry { next_at_ms: retry_at(now_ms(), &e, delay), error: e.to_string() },
        },
    };
    let took = started.elapsed();
    let ms = took.as_millis() as u64;
    let (event, instance, route) = (d.event.id.as_str(), d.target.as_str(), d.route.as_str());
    match &outcome {
        Outcome::Delivered { events, .. } => {
            tracing::info!(event, instance, route, attempt, ms, produced = events.len(), "delivered")
        }
        Outcome::Retry { next_at_ms, error } => {
            let retry_in_ms = next_at_ms.saturating_sub(now_ms());
            tracing::warn!(
                event,
                instance,
                route,
                attempt,
                ms,
                retry_in_ms,
                "delivery failed, will retry: {error}"
            )
        }
        Outcome::Dead { error, .. } => {
            tracing::warn!(event, instance, route, attempt, ms, "dead letter: {error}")
        }
    }
    let (label, produced) = match &outcome {
        Outcome::Delivered { events, .. } => ("delivered", events.len() as u64),
        Outcome::Retry { .. } => ("retry", 0),
        Outcome::Dead { events, .. } => ("dead", events.len() as u64),
    };
    let metrics = host.metrics();
    metrics.add("plugboard_deliveries_total", &[("route", &d.route), ("outcome", label)], 1);
    if produced > 0 {
        metrics.add("plugboard_events_stored_total", &[("source", &d.target)], produced);
    }
    let attempt = Attempt { number: attempt, duration_us: took.as_micros() as u64, handler };
    match store.settle(d.claim_id(), attempt, outcome).await {
        Ok(()) => true,
        Err(e) => {
            host.metrics().add("plugboard_store_errors_total", &[("operation", "record")], 1);
            tracing::error!(
                delivery = %d.id,
                "recording a delivery outcome: {e}; it runs again in {RECORD_FAILURE_PAUSE:?}"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Append, Attempt, EventStore, MemoryStore, Outcome, QueuedDelivery, SqliteStore};

    /// Every backend of the ports, each with one event queued for one delivery.
    async fn backends_with_one_delivery() -> Vec<(Arc<dyn EventStore>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let sqlite: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
        let memory: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        for store in [&sqlite, &memory] {
            let event = Event::json("orders/create", "shop", &serde_json::json!({})).unwrap();
            let delivery = QueuedDelivery {
                event_id: event.id.clone(),
                route: "orders".into(),
                target: "assess".into(),
                action: None,
                order_key: None,
            };
            let append = Append {
                instance: "shop".into(),
                delivery_id: None,
                dedup_window_ms: 0,
                events: vec![event],
                deliveries: vec![delivery],
            };
            store.append(append).await.unwrap();
        }
        vec![(sqlite, dir), (memory, tempfile::tempdir().unwrap())]
    }

    /// What another node claiming every `every` for `rounds` rounds gets.
    async fn another_node_claims(
        store: &dyn EventStore,
        lease: Duration,
        every: Duration,
        rounds: u32,
    ) -> Vec<Claimed> {
        let mut taken = Vec::new();
        for _ in 0..rounds {
            tokio::time::sleep(every).await;
            taken.extend(store.claim(now_ms(), 10, lease, &mut |_| true).await.unwrap());
        }
        taken
    }

    /// A delivery that runs for several leases keeps its lease while it runs: another claimer
    /// (another node, or this one after a restart) finds nothing to take, and the run's own
    /// claim settles it afterwards. Without the renewals the same claimer takes it (the control,
    /// so that the test can fail).
    #[tokio::test]
    async fn a_delivery_running_longer_than_its_lease_keeps_it() {
        let lease = Duration::from_millis(1_500);
        let every = Duration::from_millis(500);
        for (store, _dir) in backends_with_one_delivery().await {
            let claimed = store.claim(now_ms(), 10, lease, &mut |_| true).await.unwrap();
            assert_eq!(claimed.len(), 1);
            let claim = claimed[0].claim_id();
            // The run lasts 4 s, over two leases, while the other node tries every 0.5 s.
            let run = async { another_node_claims(store.as_ref(), lease, every, 8).await.is_empty() };
            assert!(
                renewing(store.as_ref(), &claim, lease, run).await,
                "another claimer took a running delivery"
            );
            let attempt = Attempt { number: claim.attempt, duration_us: 4_000_000, handler: None };
            let delivered = Outcome::Delivered { events: Vec::new(), deliveries: Vec::new(), output: None };
            store.settle(claim, attempt, delivered).await.unwrap();
            assert!(store.claim(now_ms(), 10, lease, &mut |_| true).await.unwrap().is_empty());
        }
        for (store, _dir) in backends_with_one_delivery().await {
            let claimed = store.claim(now_ms(), 10, lease, &mut |_| true).await.unwrap();
            assert_eq!(claimed.len(), 1);
            let taken = another_node_claims(store.as_ref(), lease, every, 5).await;
            assert!(!taken.is_empty(), "an unrenewed lease ends and the delivery is claimed again");
            assert_eq!(taken[0].attempt, 2);
        }
    }

    #[test]
    fn a_plugins_absurd_retry_after_is_capped_not_overflowed() {
        let forever = InvokeError::Plugin(WitError::RateLimited(Some(u64::MAX))).into();
        let now = 1_700_000_000_000;
        assert_eq!(retry_at(now, &forever, Duration::from_secs(1)), now + MAX_RETRY_WAIT.as_millis() as u64);
        assert_eq!(retry_at(u64::MAX - 5, &forever, Duration::from_secs(1)), u64::MAX);
        let soon = InvokeError::Plugin(WitError::RateLimited(Some(1500))).into();
        assert_eq!(retry_at(now, &soon, Duration::from_secs(60)), now + 1500);
        let other = InvokeError::Timeout(Duration::from_secs(1)).into();
        assert_eq!(retry_at(now, &other, Duration::from_secs(60)), now + 60_000);
    }
}
