//! The plugins' key-value port on a JetStream bucket: the port's own checks (listing, counters
//! incremented from many tasks at once), quotas, TTLs, and two nodes sharing one namespace.

use std::sync::Arc;
use std::time::Duration;

use super::{Connect as _, Servers};
use crate::nats::NatsKv;
use plugboard_runtime::keyvalue::{KvError, KvQuota, KvStore};

/// A node's bucket, through server `i`, each entry on `replicas` servers.
async fn node(servers: &Servers, i: usize, replicas: usize) -> Arc<NatsKv> {
    // Once the servers (and the cluster's leaders) are ready.
    let _ready = servers.connect(i, replicas).await;
    Arc::new(NatsKv::connect(&servers.settings(i, replicas)).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_keeps_the_ports_semantics() {
    let servers = Servers::start(1, true);
    let kv = node(&servers, 0, 1).await;
    plugboard_runtime::keyvalue::check_entries(kv.as_ref()).await;
    plugboard_runtime::keyvalue::check_counters(kv.clone()).await;

    let quota = KvQuota { max_keys: 2, max_bytes: 100 };
    kv.set("q", "k", b"v".to_vec(), None, quota).await.unwrap();
    assert_eq!(kv.increment("q", "n", 41, quota).await.unwrap(), 41);
    let third = kv.set("q", "third", b"v".to_vec(), None, quota).await;
    assert!(matches!(third, Err(KvError::QuotaExceeded(_))), "{third:?}");
    let past = kv.set("q", "n", b"x".repeat(98), None, quota).await;
    assert!(matches!(past, Err(KvError::QuotaExceeded(_))), "past the bytes: {past:?}");
    assert_eq!(kv.get("q", "n").await.unwrap(), Some(b"41".to_vec()), "a refused write changes nothing");
    // A deleted key gives its room back; an expired one is reclaimed when room is needed.
    assert!(kv.delete("q", "k").await.unwrap());
    assert!(!kv.delete("q", "k").await.unwrap());
    kv.set("q", "short", b"s".to_vec(), Some(Duration::from_millis(50)), quota).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(kv.get("q", "short").await.unwrap(), None);
    kv.set("q", "new", b"v".to_vec(), None, quota).await.unwrap();
    assert_eq!(kv.increment("q", "new", 1, quota).await, Err(KvError::NotACounter("new".into())));

    // Any key a plugin may use is a key, and only its own: dots, wildcards, the empty key,
    // 512 bytes.
    let u = KvQuota::UNLIMITED;
    for key in ["a.b", "*", ">", "", "usage", "$KV.x", &"k".repeat(512)] {
        kv.set("h", key, key.as_bytes().to_vec(), None, u).await.unwrap();
    }
    for key in ["a.b", "*", ">", "", "usage", "$KV.x", &"k".repeat(512)] {
        assert_eq!(kv.get("h", key).await.unwrap(), Some(key.as_bytes().to_vec()), "{key:?}");
        assert_eq!(kv.get("h.>", key).await.unwrap(), None, "{key:?} in another namespace");
    }
    assert_eq!(kv.entries("h", "").await.unwrap().len(), 7);
}

/// Two nodes share one namespace, each through another server of a three-server cluster (whose
/// replicas may answer a read before they have the newest write): what one writes the other
/// reads, their increments all count, and the quota holds for both together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_keys_counters_and_quotas() {
    let servers = Servers::start(3, true);
    let (first, second) = (node(&servers, 0, 3).await, node(&servers, 1, 3).await);
    let u = KvQuota::UNLIMITED;
    first.set("shop", "token", b"abc".to_vec(), None, u).await.unwrap();
    assert_eq!(second.get("shop", "token").await.unwrap(), Some(b"abc".to_vec()));
    let counting = |kv: Arc<NatsKv>| {
        tokio::spawn(async move {
            for _ in 0..40 {
                kv.increment("shop", "orders", 1, u).await.unwrap();
            }
        })
    };
    let (a, b) = (counting(first.clone()), counting(second.clone()));
    a.await.unwrap();
    b.await.unwrap();
    assert_eq!(first.increment("shop", "orders", 0, u).await.unwrap(), 80);

    let quota = KvQuota { max_keys: 10, max_bytes: 1_000 };
    let filling = |kv: Arc<NatsKv>, node: &'static str| {
        tokio::spawn(async move {
            let mut stored = 0;
            for i in 0..10 {
                if kv.set("full", &format!("{node}-{i}"), vec![b'x'; 10], None, quota).await.is_ok() {
                    stored += 1;
                }
            }
            stored
        })
    };
    let (a, b) = (filling(first.clone(), "a"), filling(second.clone(), "b"));
    let stored = a.await.unwrap() + b.await.unwrap();
    assert_eq!(stored, 10, "ten keys fit, whichever node wrote them");
    assert_eq!(second.entries("full", "").await.unwrap().len(), 10);
}
