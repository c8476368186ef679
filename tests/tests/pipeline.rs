//! Routing and delivery: events reach their routes' targets at least once; failures are retried
//! with backoff until they succeed or become dead letters; dead letters can be replayed with
//! their original event ids.

mod common;

use std::sync::Arc;
use std::time::Duration;

use plugboard::pipeline::{Dispatcher, RetryPolicy, Route, Routes};
use plugboard::store::{Append, DeliveryRecord, DeliveryStatus, SqliteStore};
use plugboard::{Event, Grants, Limits};
use plugboard_tests::*;
use serde_json::json;

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

async fn wait_for(store: &SqliteStore, status: DeliveryStatus, n: usize) -> Vec<DeliveryRecord> {
    for _ in 0..400 {
        let found = store.deliveries(status, 100).unwrap();
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} `{status}` deliveries after 10 s: {:?}", store.deliveries(status, 100));
}

async fn append(store: &SqliteStore, routes: &Routes, event: Event) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flow_along_routes_and_failures_become_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
    let host = common::host();
    common::load(&host, "sink", ECHO, Grants::all(), Limits::default()).await;
    let short = Limits::default().with_timeout(Duration::from_millis(50));
    common::load(&host, "slow", LOOPER, Grants::none(), short).await;
    common::load(&host, "crash", PANICKER, Grants::none(), Limits::default()).await;
    let routes = Arc::new(Routes::new(vec![
        route("to-sink", "shop", "orders/*", "sink", None),
        route("to-slow", "shop", "orders/paid", "slow", Some("spin")),
        route("to-crash", "shop", "refunds/*", "crash", None),
    ]));
    let policy = RetryPolicy { schedule_ms: vec![5, 5] };
    let dispatcher = Dispatcher::spawn(host.clone(), store.clone(), routes.clone(), policy, 8);

    // An order reaches the sink; the sink's own output is stored too.
    let order = Event::json("orders/create", "shop", &json!({"order": 1})).unwrap();
    append(&store, &routes, order.clone()).await;
    dispatcher.notifier().notify_one();
    let delivered = wait_for(&store, DeliveryStatus::Delivered, 1).await;
    assert_eq!(delivered[0].event_id, order.id);
    assert_eq!(delivered[0].target, "sink");
    assert_eq!(delivered[0].attempts, 1);
    let kinds: Vec<String> = store.recent(10).unwrap().into_iter().map(|e| e.kind).collect();
    assert!(
        kinds.contains(&"echo/replied".to_string()) && kinds.contains(&"echo/seen".to_string()),
        "{kinds:?}"
    );

    // A delivery that keeps timing out is retried, then dead-lettered; a trap is dead at once.
    let paid = Event::json("orders/paid", "shop", &json!({"order": 2})).unwrap();
    append(&store, &routes, paid.clone()).await;
    let refund = Event::json("refunds/create", "shop", &json!({"order": 3})).unwrap();
    append(&store, &routes, refund.clone()).await;
    let dead = wait_for(&store, DeliveryStatus::Dead, 2).await;
    let slow = dead.iter().find(|d| d.target == "slow").unwrap();
    assert_eq!(slow.attempts, 3, "one attempt and two retries");
    assert!(slow.last_error.as_deref().unwrap().contains("gave up after 3 attempts"), "{slow:?}");
    assert_eq!(slow.event_id, paid.id);
    let crash = dead.iter().find(|d| d.target == "crash").unwrap();
    assert_eq!(crash.attempts, 1, "a trap is not retried");
    assert!(crash.last_error.as_deref().unwrap().contains("boom"), "{crash:?}");

    // Replaying a dead letter runs it again with the same event id.
    assert_eq!(store.replay(Some(crash.id)).await.unwrap(), 1);
    assert_eq!(store.replay(Some(crash.id)).await.unwrap(), 0, "only dead letters replay");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = wait_for(&store, DeliveryStatus::Dead, 2).await;
    let crash_again = again.iter().find(|d| d.id == crash.id).unwrap();
    assert_eq!(crash_again.event_id, refund.id);
    assert_eq!(crash_again.attempts, 1);
    // The sink got each order exactly once (`orders/paid` also matches `orders/*`).
    let to_sink = store.deliveries(plugboard::store::DeliveryStatus::Delivered, 100).unwrap();
    let mut ids: Vec<&str> = to_sink.iter().map(|d| d.event_id.as_str()).collect();
    ids.sort();
    let mut expected = vec![order.id.as_str(), paid.id.as_str()];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(to_sink.iter().all(|d| d.target == "sink" && d.attempts == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_keys_keep_per_key_order_and_route_concurrency_is_respected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
    let host = common::host();
    common::load(&host, "sink", ECHO, Grants::all(), Limits::default()).await;
    let deadline = Duration::from_millis(100);
    common::load(&host, "slow", LOOPER, Grants::none(), Limits::default().with_timeout(deadline)).await;
    let ordered = Route {
        ordering_key: Some("/customer".into()),
        ..route("ordered", "shop", "orders/*", "sink", None)
    };
    let one_at_a_time =
        Route { concurrency: Some(1), ..route("serial", "shop", "slow/*", "slow", Some("spin")) };
    let routes = Arc::new(Routes::new(vec![ordered, one_at_a_time]));
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
            &store,
            &routes,
            Event::json("orders/create", "shop", &json!({ "customer": customer, "n": n })).unwrap(),
        )
        .await;
    }
    wait_for(&store, DeliveryStatus::Delivered, 30).await;
    // The sink's replies are stored as each delivery completes: per customer, in order.
    let mut replies = store.recent(1000).unwrap();
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
        append(&store, &routes, Event::json("slow/job", "shop", &json!({ "n": n })).unwrap()).await;
    }
    wait_for(&store, DeliveryStatus::Dead, 4).await;
    assert!(started.elapsed() >= deadline * 4, "ran concurrently: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_invoke_actions_through_the_durable_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
    let host = common::host();
    common::load(&host, "reviews", ECHO, Grants::all(), Limits::default()).await;
    let routes = Arc::new(Routes::default());
    let dispatcher = Dispatcher::spawn(host.clone(), store.clone(), routes, RetryPolicy::default(), 4);
    let every_second = plugboard::pipeline::Schedule {
        name: "tick".into(),
        cron: "* * * * * *".into(),
        to: "reviews".into(),
        action: "kv-roundtrip".into(),
        input: json!({"summary": true}),
        ..Default::default()
    };
    let _scheduler =
        plugboard::pipeline::Scheduler::spawn(store.clone(), vec![every_second], dispatcher.notifier())
            .unwrap();
    let delivered = wait_for(&store, DeliveryStatus::Delivered, 2).await;
    assert!(delivered.iter().all(|d| d.route == "schedule:tick" && d.target == "reviews"));
    let fired = store.recent(10).unwrap();
    assert!(fired.iter().any(|e| e.kind == "schedule/tick" && e.source == "schedule"));

    let bad = plugboard::pipeline::Schedule { cron: "every tuesday".into(), ..Default::default() };
    assert!(bad.parse().unwrap_err().contains("every tuesday"));
}

/// Two echo instances whose events of `kind` are routed to each other, and a first event
/// stored and dispatched.
async fn two_echoes_in_a_cycle(kind: &str) -> (tempfile::TempDir, Arc<SqliteStore>, Dispatcher) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
    let host = common::host();
    common::load(&host, "a", ECHO, Grants::all(), Limits::default()).await;
    common::load(&host, "b", ECHO, Grants::all(), Limits::default()).await;
    let routes = Arc::new(Routes::new(vec![
        route("a-to-b", "a", kind, "b", None),
        route("b-to-a", "b", kind, "a", None),
    ]));
    let dispatcher = Dispatcher::spawn(
        host.clone(),
        store.clone(),
        routes.clone(),
        RetryPolicy { schedule_ms: vec![5] },
        8,
    );
    append(&store, &routes, Event::json("echo/replied", "a", &json!({"n": 1})).unwrap()).await;
    dispatcher.notifier().notify_one();
    (dir, store, dispatcher)
}

/// Routes that form a cycle (a -> b -> a) would deliver forever; the lineage's hop count ends it
/// in a dead letter that says why, after a bounded number of deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_of_routes_ends_in_a_dead_letter() {
    let (_dir, store, _dispatcher) = two_echoes_in_a_cycle("echo/replied").await;
    let dead = wait_for(&store, DeliveryStatus::Dead, 1).await;
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("route loop") && error.contains("limit 16"), "{error}");
    let delivered = store.deliveries(plugboard::store::DeliveryStatus::Delivered, 1000).unwrap().len();
    assert_eq!(
        delivered,
        plugboard::pipeline::MAX_HOPS as usize,
        "one delivery per hop, then the dead letter"
    );
    assert_eq!(store.deliveries(plugboard::store::DeliveryStatus::Pending, 10).unwrap().len(), 0);
}

/// A cycle whose plugins each produce two events per delivery doubles at every hop: the
/// lineage's event budget ends it (well before the hop limit), and the store holds at most the
/// budget's worth of events from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_that_multiplies_events_is_ended_by_the_lineage_budget() {
    use plugboard::pipeline::MAX_LINEAGE_EVENTS;
    // echo answers each event with a reply and publishes a second one: both are routed on.
    let (_dir, store, _dispatcher) = two_echoes_in_a_cycle("*").await;
    let mut pending = usize::MAX;
    for _ in 0..6000 {
        pending = store.deliveries(plugboard::store::DeliveryStatus::Pending, 1).unwrap().len();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pending, 0, "the lineage never stopped");
    let events = store.count().unwrap();
    assert!(events <= u64::from(MAX_LINEAGE_EVENTS) + 1, "{events} events stored");
    let dead = store.deliveries(plugboard::store::DeliveryStatus::Dead, 1).unwrap();
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("route fan-out") && error.contains("10000"), "{error}");
}

/// A store that takes no more writes (its writer closed, as when the disk fails): each run's
/// outcome is lost, yet the runs are counted, so the delivery runs as many times as the policy
/// allows (with a pause between runs), not every few seconds forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_outcomes_cannot_be_stored_runs_at_most_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
    let host = common::host();
    common::load(&host, "sink", ECHO, Grants::all(), Limits::default()).await;
    let routes = Arc::new(Routes::new(vec![route("to-sink", "shop", "*", "sink", None)]));
    append(&store, &routes, Event::json("orders/create", "shop", &json!({"n": 1})).unwrap()).await;
    store.close();
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

/// Each attempt is counted before it runs, so a delivery whose runs never finish (the host
/// dies while running it, every time) ends as a dead letter instead of looping across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_never_finishes_becomes_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let mut store = Arc::new(SqliteStore::open(&path).unwrap());
    let host = common::host();
    common::load(&host, "sink", ECHO, Grants::all(), Limits::default()).await;
    let routes = Arc::new(Routes::new(vec![route("to-sink", "shop", "*", "sink", None)]));
    append(&store, &routes, Event::json("orders/create", "shop", &json!({"n": 1})).unwrap()).await;
    let id = store.deliveries(plugboard::store::DeliveryStatus::Pending, 10).unwrap()[0].id;
    // Attempts 1 and 2 were claimed and never recorded an outcome: the process died running
    // each. Every start counts the attempt that was running.
    for attempt in [1, 2] {
        store.claim(&[(id, attempt)]).unwrap();
        drop(store);
        store = Arc::new(SqliteStore::open(&path).unwrap());
        assert_eq!(
            store.deliveries(plugboard::store::DeliveryStatus::Pending, 10).unwrap()[0].attempts,
            attempt
        );
    }
    let dispatcher = Dispatcher::spawn(
        host.clone(),
        store.clone(),
        routes.clone(),
        RetryPolicy { schedule_ms: vec![5] },
        8,
    );
    dispatcher.notifier().notify_one();
    let dead = wait_for(&store, DeliveryStatus::Dead, 1).await;
    assert_eq!(dead[0].attempts, 2);
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("never finished"), "{error}");
    assert_eq!(store.count().unwrap(), 1, "the poison delivery did not run again");
}

/// A firing of schedule `name` for the tick at `tick_ms`, stored as the scheduler stores one.
async fn store_firing(store: &SqliteStore, name: &str, tick_ms: u64) {
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
fn fired_ticks(store: &SqliteStore, name: &str) -> Vec<u64> {
    let mut ticks: Vec<u64> = store
        .recent(10_000)
        .unwrap()
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_make_up_for_missed_ticks_as_configured() {
    use plugboard::pipeline::{Missed, Schedule, Scheduler};
    let now_ms =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    if now_ms() % 60_000 > 45_000 {
        // Far from the next minute's tick, so that the test does not run across it.
        tokio::time::sleep(Duration::from_secs(16)).await;
    }
    let started_ms = now_ms();
    // Fired last 10 minutes and a few seconds ago, every minute: ten ticks were missed.
    let last_ms = (started_ms / 60_000 - 10) * 60_000;
    let ticks = |store: &SqliteStore, name: &str| -> Vec<u64> {
        fired_ticks(store, name).into_iter().filter(|t| *t < started_ms).collect()
    };
    for (missed, expected) in [
        (Missed::Skip, vec![last_ms]),
        (Missed::Once, vec![last_ms, last_ms + 10 * 60_000]),
        (Missed::All, (0..=10).map(|i| last_ms + i * 60_000).collect()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
        let schedule = Schedule {
            name: "minutely".into(),
            cron: "0 * * * * *".into(),
            to: "reviews".into(),
            action: "ping".into(),
            missed,
            ..Default::default()
        };
        store_firing(&store, "minutely", last_ms).await;
        let _scheduler = Scheduler::spawn(store.clone(), vec![schedule], Arc::default()).unwrap();
        let mut seen = Vec::new();
        for _ in 0..500 {
            seen = ticks(&store, "minutely");
            if seen.len() >= expected.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Give a wrong catch-up time to fire more than it should.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(ticks(&store, "minutely"), expected, "missed = {missed:?}; saw {seen:?}");
    }

    // More missed ticks than are made up (a per-second schedule down for two hours): the
    // newest are fired, not the oldest.
    for (missed, count) in [(Missed::Once, 1), (Missed::All, plugboard::pipeline::MAX_CATCH_UP)] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("events.db")).unwrap());
        let two_hours_ago = now_ms() / 1000 * 1000 - 7_200_000;
        store_firing(&store, "secondly", two_hours_ago).await;
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
            caught_up = fired_ticks(&store, "secondly").into_iter().filter(|t| *t > two_hours_ago).collect();
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
