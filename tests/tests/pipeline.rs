//! Routing and delivery: events reach their routes' targets at least once; failures are retried
//! with backoff until they succeed or become dead letters; dead letters can be replayed with
//! their original event ids.
//!
//! The pipeline works over the storage ports alone, so every test here runs on each backend:
//! SQLite, in memory, and NATS JetStream on a real `nats-server` of its own
//! (`pipeline::<test>::sqlite`, `::memory` and `::nats`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use plugboard::pipeline::{Dispatcher, RetryPolicy, Route, Routes, Schedule};
use plugboard::store::nats::{NatsSettings, NatsStore, QueueSettings};
use plugboard::store::{
    Append, DeliveryRecord, DeliveryStatus, EventFilter, EventStore, MemoryStore, SqliteStore,
};
use plugboard::{Event, Grants, Limits};
use plugboard_tests::nats::NatsServers;
use plugboard_tests::*;
use serde_json::json;

/// Which backend of the ports a test runs on.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Memory,
    Nats,
}

/// Stops a store taking writes, as a failed disk does (NATS: its log stream is sealed).
type Close = Box<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A store of one backend, with what it needs to live (the SQLite file's directory, the NATS
/// server).
struct Opened {
    store: Arc<dyn EventStore>,
    close: Close,
    _dir: tempfile::TempDir,
    _nats: Option<NatsServers>,
}

/// The lease of the queue on NATS: short, so that a test sees a dead claimer's lease run out.
const NATS_LEASE: Duration = Duration::from_secs(2);

impl Backend {
    /// A new store, empty. On NATS its queue runs `routes` and the `schedules`' routes, as a
    /// node configured with them does.
    async fn open(self, routes: &[Route], schedules: &[Schedule]) -> Opened {
        let dir = tempfile::tempdir().unwrap();
        match self {
            Backend::Sqlite => {
                let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
                let closing = store.clone();
                let close: Close = Box::new(move || {
                    closing.close();
                    Box::pin(async {})
                });
                Opened { store, close, _dir: dir, _nats: None }
            }
            Backend::Memory => {
                let store = Arc::new(MemoryStore::new());
                let closing = store.clone();
                let close: Close = Box::new(move || {
                    closing.close();
                    Box::pin(async {})
                });
                Opened { store, close, _dir: dir, _nats: None }
            }
            Backend::Nats => {
                let servers = NatsServers::start(1, true);
                let settings = NatsSettings::new(&servers.urls[0]);
                let queue = QueueSettings {
                    lease: NATS_LEASE,
                    routes: plugboard::run::queue_routes(routes, schedules),
                    fan_out: true,
                };
                let store = connect_nats(&servers, &settings, queue).await;
                let url = servers.urls[0].clone();
                let close: Close = Box::new(move || Box::pin(seal(url.clone(), settings.stream.clone())));
                Opened { store, close, _dir: dir, _nats: Some(servers) }
            }
        }
    }
}

/// Connects to the test's server, trying again while it starts.
async fn connect_nats(
    servers: &NatsServers,
    settings: &NatsSettings,
    queue: QueueSettings,
) -> Arc<NatsStore> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match NatsStore::connect(settings, queue.clone()).await {
            Ok(store) => return store,
            Err(e) if Instant::now() < deadline => {
                eprintln!("NATS not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("nats-server never became ready: {e}\n{}", servers.logs()),
        }
    }
}

/// Seals the log's stream: it keeps what it holds and takes no more messages.
async fn seal(url: String, stream: String) {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut config = js.get_stream(&stream).await.unwrap().info().await.unwrap().config.clone();
    config.sealed = true;
    js.update_stream(config).await.unwrap();
}

/// Runs `async fn $test(backend: Backend)` once per backend, as `$test::sqlite`,
/// `$test::memory` and `$test::nats`.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test(super::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$test(super::Backend::Memory).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nats() {
                super::$test(super::Backend::Nats).await
            }
        }
    )*};
}

on_every_backend!(
    events_flow_along_routes_and_failures_become_dead_letters,
    ordering_keys_keep_per_key_order_and_route_concurrency_is_respected,
    schedules_invoke_actions_through_the_durable_pipeline,
    a_cycle_of_routes_ends_in_a_dead_letter,
    a_cycle_that_multiplies_events_is_ended_by_the_lineage_budget,
    a_delivery_whose_outcomes_cannot_be_stored_runs_at_most_its_attempts,
    a_delivery_whose_claimers_die_becomes_a_dead_letter,
    schedules_make_up_for_missed_ticks_as_configured,
);

fn route(name: &str, from: &str, kind: &str, to: &str, action: Option<&str>) -> Route {
    Route {
        name: name.into(),
        from: from.into(),
        kind: kind.into(),
        to: to.into(),
        action: action.map(Into::into),
        filter: None,
        ordering_key: None,
        concurrency: None,
    }
}

/// The newest `limit` deliveries with `status`, through the read model.
async fn deliveries(store: &dyn EventStore, status: DeliveryStatus, limit: usize) -> Vec<DeliveryRecord> {
    store.deliveries(status, None, limit).await.unwrap()
}

async fn wait_for(store: &dyn EventStore, status: DeliveryStatus, n: usize) -> Vec<DeliveryRecord> {
    for _ in 0..400 {
        let found = deliveries(store, status, 100).await;
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} `{status}` deliveries after 10 s: {:?}", deliveries(store, status, 100).await);
}

/// The newest `limit` events with their payloads, newest first.
async fn recent(store: &dyn EventStore, limit: usize) -> Vec<Event> {
    let mut events = Vec::new();
    for (_, e) in store.events(EventFilter::default(), limit).await.unwrap() {
        let (content_type, payload) = store.payload(&e.id).await.unwrap().unwrap();
        let kind = e.kind;
        events.push(Event {
            id: e.id,
            source: e.source,
            kind,
            occurred_at_ms: 0,
            content_type,
            payload,
            attributes: e.attributes,
        });
    }
    events
}

/// How many events are stored.
async fn count(store: &dyn EventStore) -> usize {
    store.events(EventFilter::default(), usize::MAX).await.unwrap().len()
}

async fn append(store: &dyn EventStore, routes: &Routes, event: Event) {
    let deliveries = routes.deliveries(std::slice::from_ref(&event));
    store
        .append(Append {
            instance: event.source.clone(),
            delivery_id: None,
            dedup_window_ms: 0,
            events: vec![event],
            deliveries,
        })
        .await
        .unwrap();
}

async fn events_flow_along_routes_and_failures_become_dead_letters(backend: Backend) {
    let routes = vec![
        route("to-sink", "shop", "orders/*", "sink", None),
        route("to-slow", "shop", "orders/paid", "slow", Some("spin")),
        route("to-crash", "shop", "refunds/*", "crash", None),
    ];
    let opened = backend.open(&routes, &[]).await;
    let routes = Arc::new(Routes::new(routes));
    let store = opened.store.clone();
    let host = common::host();
    common::load(&host, "sink", ECHO, Grants::all(), Limits::default()).await;
    let short = Limits::default().with_timeout(Duration::from_millis(50));
    common::load(&host, "slow", LOOPER, Grants::none(), short).await;
    common::load(&host, "crash", PANICKER, Grants::none(), Limits::default()).await;
    let policy = RetryPolicy { schedule_ms: vec![5, 5] };
    let dispatcher = Dispatcher::spawn(host.clone(), store.clone(), routes.clone(), policy, 8);

    // An order reaches the sink; the sink's own output is stored too.
    let order = Event::json("orders/create", "shop", &json!({"order": 1})).unwrap();
    append(store.as_ref(), &routes, order.clone()).await;
    dispatcher.notifier().notify_one();
    let delivered = wait_for(store.as_ref(), DeliveryStatus::Delivered, 1).await;
    assert_eq!(delivered[0].event_id, order.id);
    assert_eq!(delivered[0].target, "sink");
    assert_eq!(delivered[0].attempts, 1);
    let kinds: Vec<String> = recent(store.as_ref(), 10).await.into_iter().map(|e| e.kind).collect();
    assert!(
        kinds.contains(&"echo/replied".to_string()) && kinds.contains(&"echo/seen".to_string()),
        "{kinds:?}"
    );

    // A delivery that keeps timing out is retried, then dead-lettered; a trap is dead at once.
    let paid = Event::json("orders/paid", "shop", &json!({"order": 2})).unwrap();
    append(store.as_ref(), &routes, paid.clone()).await;
    let refund = Event::json("refunds/create", "shop", &json!({"order": 3})).unwrap();
    append(store.as_ref(), &routes, refund.clone()).await;
    let dead = wait_for(store.as_ref(), DeliveryStatus::Dead, 2).await;
    let slow = dead.iter().find(|d| d.target == "slow").unwrap();
    assert_eq!(slow.attempts, 3, "one attempt and two retries");
    assert!(slow.last_error.as_deref().unwrap().contains("gave up after 3 attempts"), "{slow:?}");
    assert_eq!(slow.event_id, paid.id);
    let crash = dead.iter().find(|d| d.target == "crash").unwrap();
    assert_eq!(crash.attempts, 1, "a trap is not retried");
    assert!(crash.last_error.as_deref().unwrap().contains("boom"), "{crash:?}");

    // Replaying a dead letter runs it again with the same event id.
    assert_eq!(store.replay(Some(crash.id.clone())).await.unwrap(), 1);
    assert_eq!(store.replay(Some(crash.id.clone())).await.unwrap(), 0, "only dead letters replay");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = wait_for(store.as_ref(), DeliveryStatus::Dead, 2).await;
    let crash_again = again.iter().find(|d| d.id == crash.id).unwrap();
    assert_eq!(crash_again.event_id, refund.id);
    assert_eq!(crash_again.attempts, 1);
    // The sink got each order exactly once (`orders/paid` also matches `orders/*`).
    let to_sink = deliveries(store.as_ref(), DeliveryStatus::Delivered, 100).await;
    let mut ids: Vec<&str> = to_sink.iter().map(|d| d.event_id.as_str()).collect();
    ids.sort();
    let mut expected = vec![order.id.as_str(), paid.id.as_str()];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(to_sink.iter().all(|d| d.target == "sink" && d.attempts == 1));
}

async fn ordering_keys_keep_per_key_order_and_route_concurrency_is_respected(backend: Backend) {
    let ordered = Route {
        ordering_key: Some("/customer".into()),
        ..route("ordered", "shop", "orders/*", "sink", None)
    };
    let one_at_a_time =
        Route { concurrency: Some(1), ..route("serial", "shop", "slow/*", "slow", Some("spin")) };
    let routes = vec![ordered, one_at_a_time];
    let opened = backend.open(&routes, &[]).await;
    let routes = Arc::new(Routes::new(routes));
    let store = opened.store.clone();
    let host = common::host();
    common::load(&host, "sink", ECHO, Grants::all(), Limits::default()).await;
    let deadline = Duration::from_millis(100);
    common::load(&host, "slow", LOOPER, Grants::none(), Limits::default().with_timeout(deadline)).await;
    let _dispatcher = Dispatcher::spawn(
        host.clone(),
        store.clone(),
        routes.clone(),
        RetryPolicy { schedule_ms: vec![] },
        16,
    );

    for n in 0..30 {
        let customer = ["a", "b", "c"][n % 3];
        append(
            store.as_ref(),
            &routes,
            Event::json("orders/create", "shop", &json!({ "customer": customer, "n": n })).unwrap(),
        )
        .await;
    }
    wait_for(store.as_ref(), DeliveryStatus::Delivered, 30).await;
    // The sink's replies are stored as each delivery completes: per customer, in order.
    let mut replies = recent(store.as_ref(), 1000).await;
    replies.reverse();
    for customer in ["a", "b", "c"] {
        let seen: Vec<u64> = replies
            .iter()
            .filter(|e| e.kind == "echo/replied")
            .filter_map(|e| serde_json::from_slice::<serde_json::Value>(&e.payload).ok())
            .filter(|p| p["customer"] == customer)
            .map(|p| p["n"].as_u64().unwrap())
            .collect();
        assert_eq!(seen.len(), 10);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "customer {customer}: {seen:?}");
    }

    // Four deliveries that each run into a 100 ms deadline, one at a time: at least 400 ms.
    let started = std::time::Instant::now();
    for n in 0..4 {
        append(store.as_ref(), &routes, Event::json("slow/job", "shop", &json!({ "n": n })).unwrap()).await;
    }
    wait_for(store.as_ref(), DeliveryStatus::Dead, 4).await;
    assert!(started.elapsed() >= deadline * 4, "ran concurrently: {:?}", started.elapsed());
}

async fn schedules_invoke_actions_through_the_durable_pipeline(backend: Backend) {
    let every_second = Schedule {
        name: "tick".into(),
        cron: "* * * * * *".into(),
        to: "reviews".into(),
        action: "kv-roundtrip".into(),
        input: json!({"summary": true}),
        ..Default::default()
    };
    let opened = backend.open(&[], std::slice::from_ref(&every_second)).await;
    let store = opened.store.clone();
    let host = common::host();
    common::load(&host, "reviews", ECHO, Grants::all(), Limits::default()).await;
    let routes = Arc::new(Routes::default());
    let dispatcher = Dispatcher::spawn(host.clone(), store.clone(), routes, RetryPolicy::default(), 4);
    let _scheduler =
        plugboard::pipeline::Scheduler::spawn(store.clone(), vec![every_second], dispatcher.notifier())
            .unwrap();
    let delivered = wait_for(store.as_ref(), DeliveryStatus::Delivered, 2).await;
    assert!(delivered.iter().all(|d| d.route == "schedule:tick" && d.target == "reviews"));
    let fired = recent(store.as_ref(), 10).await;
    assert!(fired.iter().any(|e| e.kind == "schedule/tick" && e.source == "schedule"));

    let bad = Schedule { cron: "every tuesday".into(), ..Default::default() };
    assert!(plugboard::pipeline::parse_cron(&bad).unwrap_err().contains("every tuesday"));
}

/// Two echo instances whose events of `kind` are routed to each other, and a first event
/// stored and dispatched.
async fn two_echoes_in_a_cycle(backend: Backend, kind: &str) -> (Opened, Dispatcher) {
    let routes = vec![route("a-to-b", "a", kind, "b", None), route("b-to-a", "b", kind, "a", None)];
    let opened = backend.open(&routes, &[]).await;
    let routes = Arc::new(Routes::new(routes));
    let store = opened.store.clone();
    let host = common::host();
    common::load(&host, "a", ECHO, Grants::all(), Limits::default()).await;
    common::load(&host, "b", ECHO, Grants::all(), Limits::default()).await;
    let dispatcher = Dispatcher::spawn(
        host.clone(),
        store.clone(),
        routes.clone(),
        RetryPolicy { schedule_ms: vec![5] },
        8,
    );
    append(store.as_ref(), &routes, Event::json("echo/replied", "a", &json!({"n": 1})).unwrap()).await;
    dispatcher.notifier().notify_one();
    (opened, dispatcher)
}

/// Routes that form a cycle (a -> b -> a) would deliver forever; the lineage's hop count ends it
/// in a dead letter that says why, after a bounded number of deliveries.
async fn a_cycle_of_routes_ends_in_a_dead_letter(backend: Backend) {
    let (opened, _dispatcher) = two_echoes_in_a_cycle(backend, "echo/replied").await;
    let store = opened.store.clone();
    let dead = wait_for(store.as_ref(), DeliveryStatus::Dead, 1).await;
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("route loop") && error.contains("limit 16"), "{error}");
    let delivered = deliveries(store.as_ref(), DeliveryStatus::Delivered, 1000).await.len();
    assert_eq!(
        delivered,
        plugboard::pipeline::MAX_HOPS as usize,
        "one delivery per hop, then the dead letter"
    );
    assert_eq!(deliveries(store.as_ref(), DeliveryStatus::Pending, 10).await.len(), 0);
}

/// A cycle whose plugins each produce two events per delivery doubles at every hop: the
/// lineage's event budget ends it (well before the hop limit), and the store holds at most the
/// budget's worth of events from it.
async fn a_cycle_that_multiplies_events_is_ended_by_the_lineage_budget(backend: Backend) {
    use plugboard::pipeline::MAX_LINEAGE_EVENTS;
    // echo answers each event with a reply and publishes a second one: both are routed on.
    let (opened, _dispatcher) = two_echoes_in_a_cycle(backend, "*").await;
    let store = opened.store.clone();
    // Up to 10,000 deliveries: minutes on a loaded machine with a debug build.
    let started = Instant::now();
    let mut pending = usize::MAX;
    while started.elapsed() < Duration::from_secs(300) {
        pending = deliveries(store.as_ref(), DeliveryStatus::Pending, 1).await.len();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pending, 0, "the lineage never stopped");
    let events = count(store.as_ref()).await as u64;
    assert!(events <= u64::from(MAX_LINEAGE_EVENTS) + 1, "{events} events stored");
    let dead = deliveries(store.as_ref(), DeliveryStatus::Dead, 1).await;
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("route fan-out") && error.contains("10000"), "{error}");
}

/// A store of `backend` holding one order, routed to an echo instance `sink`.
async fn one_order_for_the_sink(backend: Backend) -> (Opened, plugboard::Host, Arc<Routes>) {
    let routes = vec![route("to-sink", "shop", "*", "sink", None)];
    let opened = backend.open(&routes, &[]).await;
    let routes = Arc::new(Routes::new(routes));
    let host = common::host();
    common::load(&host, "sink", ECHO, Grants::all(), Limits::default()).await;
    let order = Event::json("orders/create", "shop", &json!({"n": 1})).unwrap();
    append(opened.store.as_ref(), &routes, order).await;
    (opened, host, routes)
}

/// A store that takes no more writes (its writer closed, as when the disk fails): each run's
/// outcome is lost, yet the runs are counted, so the delivery runs as many times as the policy
/// allows (with a pause between runs), not every few seconds forever.
async fn a_delivery_whose_outcomes_cannot_be_stored_runs_at_most_its_attempts(backend: Backend) {
    let (opened, host, routes) = one_order_for_the_sink(backend).await;
    let store = opened.store.clone();
    (opened.close)().await;
    let policy = RetryPolicy { schedule_ms: vec![5] };
    let dispatcher = Dispatcher::spawn(host.clone(), store.clone(), routes, policy, 8);
    dispatcher.notifier().notify_one();
    // Two attempts, 10 s apart; a third would come 10 s after the second.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let metrics = host.metrics().render();
    let runs: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("plugboard_deliveries_total{route=\"to-sink\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(runs, 2, "{metrics}");
}

/// Each attempt is counted when it is claimed, so a delivery whose claimers die running it
/// (their leases run out, every time) ends as a dead letter instead of looping.
async fn a_delivery_whose_claimers_die_becomes_a_dead_letter(backend: Backend) {
    let (opened, host, routes) = one_order_for_the_sink(backend).await;
    let store = opened.store.clone();
    // Two claimers take it in turn, each with a short lease (on NATS: the queue's), and die
    // before settling it.
    let lease = store.fixed_lease().unwrap_or(Duration::from_millis(10));
    let first = claim_when_due(store.as_ref(), lease).await;
    assert_eq!(first.iter().map(|c| c.attempt).collect::<Vec<_>>(), [1]);
    let now = plugboard::runtime::clock::now_ms();
    assert!(store.claim(now, 10, lease, &mut |_| true).await.unwrap().is_empty(), "the lease holds");
    let second = claim_when_due(store.as_ref(), lease).await;
    assert_eq!(
        second.iter().map(|c| (c.id.clone(), c.attempt)).collect::<Vec<_>>(),
        [(first[0].id.clone(), 2)]
    );
    tokio::time::sleep(lease * 2).await;
    dispatch_the_poisoned_delivery(&host, store, routes).await;
}

/// Claims what is due as soon as there is any (on NATS a delivery is claimable once the
/// fan-out queued it, and again once its consumer hands it out after the lease), for 10 s.
async fn claim_when_due(store: &dyn EventStore, lease: Duration) -> Vec<plugboard::store::Claimed> {
    let started = Instant::now();
    loop {
        let now = plugboard::runtime::clock::now_ms();
        let claimed = store.claim(now, 10, lease, &mut |_| true).await.unwrap();
        if !claimed.is_empty() || started.elapsed() > Duration::from_secs(10) {
            return claimed;
        }
        tokio::time::sleep(lease.min(Duration::from_millis(100)) / 4).await;
    }
}

/// Dispatches with two attempts allowed, when the only delivery has used both without an
/// outcome: it becomes a dead letter that says why, and does not run again.
async fn dispatch_the_poisoned_delivery(
    host: &plugboard::Host,
    store: Arc<dyn EventStore>,
    routes: Arc<Routes>,
) {
    let dispatcher =
        Dispatcher::spawn(host.clone(), store.clone(), routes, RetryPolicy { schedule_ms: vec![5] }, 8);
    dispatcher.notifier().notify_one();
    let dead = wait_for(store.as_ref(), DeliveryStatus::Dead, 1).await;
    assert_eq!(dead[0].attempts, 2);
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("never finished"), "{error}");
    assert_eq!(count(store.as_ref()).await, 1, "the poison delivery did not run again");
}

/// On SQLite the claimer that dies is the process: each start counts the attempt that was
/// running (from the claim journal), so a delivery that kills the host ends as a dead letter
/// instead of looping across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_kills_the_process_becomes_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let mut store = Arc::new(SqliteStore::open(&path).unwrap());
    let host = common::host();
    common::load(&host, "sink", ECHO, Grants::all(), Limits::default()).await;
    let routes = Arc::new(Routes::new(vec![route("to-sink", "shop", "*", "sink", None)]));
    append(store.as_ref(), &routes, Event::json("orders/create", "shop", &json!({"n": 1})).unwrap()).await;
    for attempt in [1, 2] {
        let now = plugboard::runtime::clock::now_ms();
        let claimed = store.claim(now, 10, Duration::from_secs(3600), &mut |_| true).unwrap();
        assert_eq!(claimed.iter().map(|c| c.attempt).collect::<Vec<_>>(), [attempt]);
        drop(store);
        store = Arc::new(SqliteStore::open(&path).unwrap());
        assert_eq!(store.deliveries(DeliveryStatus::Pending, 10).unwrap()[0].attempts, attempt);
    }
    dispatch_the_poisoned_delivery(&host, store, routes).await;
}

/// A firing of schedule `name` for the tick at `tick_ms`, stored as the scheduler stores one.
async fn store_firing(store: &dyn EventStore, name: &str, tick_ms: u64) {
    let mut fired = Event::json(&format!("schedule/{name}"), "schedule", &json!({})).unwrap();
    fired.attributes.push((plugboard::pipeline::SCHEDULED_FOR.into(), tick_ms.to_string()));
    let append = Append {
        instance: "schedule".into(),
        delivery_id: None,
        dedup_window_ms: 0,
        events: vec![fired],
        deliveries: vec![],
    };
    store.append(append).await.unwrap();
}

/// The ticks the stored firings of schedule `name` are for, oldest first.
async fn fired_ticks(store: &dyn EventStore, name: &str) -> Vec<u64> {
    let mut ticks: Vec<u64> = recent(store, 10_000)
        .await
        .into_iter()
        .filter(|e| e.kind == format!("schedule/{name}"))
        .filter_map(|e| {
            let tick = e.attributes.iter().find(|(k, _)| k == plugboard::pipeline::SCHEDULED_FOR);
            tick.map(|(_, v)| v.parse().unwrap())
        })
        .collect();
    ticks.sort();
    ticks
}

/// Ticks missed while the server was down are skipped (and logged), fired once, or each
/// fired, as the schedule's `missed` says; each firing says which tick it is for.
async fn schedules_make_up_for_missed_ticks_as_configured(backend: Backend) {
    use plugboard::pipeline::{Missed, Scheduler};
    let now_ms =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    if now_ms() % 60_000 > 45_000 {
        // Far from the next minute's tick, so that the test does not run across it.
        tokio::time::sleep(Duration::from_secs(16)).await;
    }
    let started_ms = now_ms();
    // Fired last 10 minutes and a few seconds ago, every minute: ten ticks were missed.
    let last_ms = (started_ms / 60_000 - 10) * 60_000;
    let ticks = async |store: &dyn EventStore, name: &str| -> Vec<u64> {
        fired_ticks(store, name).await.into_iter().filter(|t| *t < started_ms).collect()
    };
    for (missed, expected) in [
        (Missed::Skip, vec![last_ms]),
        (Missed::Once, vec![last_ms, last_ms + 10 * 60_000]),
        (Missed::All, (0..=10).map(|i| last_ms + i * 60_000).collect()),
    ] {
        let opened = backend.open(&[], &[]).await;
        let store = opened.store.clone();
        let schedule = Schedule {
            name: "minutely".into(),
            cron: "0 * * * * *".into(),
            to: "reviews".into(),
            action: "ping".into(),
            missed,
            ..Default::default()
        };
        store_firing(store.as_ref(), "minutely", last_ms).await;
        let _scheduler = Scheduler::spawn(store.clone(), vec![schedule], Arc::default()).unwrap();
        let mut seen = Vec::new();
        for _ in 0..500 {
            seen = ticks(store.as_ref(), "minutely").await;
            if seen.len() >= expected.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Give a wrong catch-up time to fire more than it should.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(ticks(store.as_ref(), "minutely").await, expected, "missed = {missed:?}; saw {seen:?}");
    }

    // More missed ticks than are made up (a per-second schedule down for two hours): the
    // newest are fired, not the oldest.
    for (missed, count) in [(Missed::Once, 1), (Missed::All, plugboard::pipeline::MAX_CATCH_UP)] {
        let opened = backend.open(&[], &[]).await;
        let store = opened.store.clone();
        let two_hours_ago = now_ms() / 1000 * 1000 - 7_200_000;
        store_firing(store.as_ref(), "secondly", two_hours_ago).await;
        let started_ms = now_ms();
        let schedule = Schedule {
            name: "secondly".into(),
            cron: "* * * * * *".into(),
            to: "reviews".into(),
            action: "ping".into(),
            missed,
            ..Default::default()
        };
        let _scheduler = Scheduler::spawn(store.clone(), vec![schedule], Arc::default()).unwrap();
        let mut caught_up = Vec::new();
        for _ in 0..500 {
            caught_up = fired_ticks(store.as_ref(), "secondly")
                .await
                .into_iter()
                .filter(|t| *t > two_hours_ago)
                .collect();
            if caught_up.len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(caught_up.len() >= count, "{missed:?}: {}", caught_up.len());
        // The oldest tick fired is among the newest missed (regular firings are newer still).
        let oldest = *caught_up.iter().min().unwrap();
        let window = (count as u64 + 5) * 1000;
        assert!(
            oldest + window >= started_ms,
            "{missed:?}: a tick {}s old was fired",
            started_ms.saturating_sub(oldest) / 1000
        );
    }
}

/// A tick that falls while the store refuses writes for a moment (on NATS, its stream full, as
/// while a cluster fails over) is stored once writes are taken again, before the next tick is
/// due: the scheduler tries again instead of missing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_the_store_refuses_for_a_moment_is_stored_when_it_takes_writes_again() {
    use async_nats::jetstream::stream::DiscardPolicy;
    let every_ten = Schedule {
        name: "ten".into(),
        cron: "*/10 * * * * *".into(),
        to: "reviews".into(),
        action: "ping".into(),
        ..Default::default()
    };
    let opened = Backend::Nats.open(&[], std::slice::from_ref(&every_ten)).await;
    let store = opened.store.clone();
    let _scheduler =
        plugboard::pipeline::Scheduler::spawn(store.clone(), vec![every_ten], Arc::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let fired = loop {
        if let Some(last) = fired_ticks(store.as_ref(), "ten").await.last() {
            break *last;
        }
        assert!(Instant::now() < deadline, "the schedule never fired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The stream takes no more messages until its limit is lifted.
    let url = opened._nats.as_ref().unwrap().urls[0].clone();
    let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
    let mut stream = js.get_stream("PLUGBOARD").await.unwrap();
    let info = stream.info().await.unwrap();
    let (open, held) = (info.config.clone(), info.state.messages);
    let full = async_nats::jetstream::stream::Config {
        max_messages: held as i64,
        discard: DiscardPolicy::New,
        ..open.clone()
    };
    js.update_stream(full).await.unwrap();
    // A second past the next tick: its firing has been refused.
    let next = fired + 10_000;
    let wait = (next + 1_000).saturating_sub(plugboard::runtime::clock::now_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;
    assert!(!fired_ticks(store.as_ref(), "ten").await.contains(&next), "the full stream took a firing");
    js.update_stream(open).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while !fired_ticks(store.as_ref(), "ten").await.contains(&next) {
        assert!(
            Instant::now() < deadline,
            "the tick at {next} was never stored: {:?}",
            fired_ticks(store.as_ref(), "ten").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
