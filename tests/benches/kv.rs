//! The key-value capability on the server's SQLite backend (`SqliteKv`): what one `increment`,
//! `set` and `get` cost a plugin (each its own transaction, with the quota checked on writes),
//! against the floor in the same run: the same counter kept by one prepared upsert in its own
//! transaction, on a bare rusqlite connection with the same settings (WAL, synchronous=NORMAL).
//! The polyglot benchmarks' `handle` counts its events with such an `increment`.
//!
//! Each figure is the median of [`ROUNDS`] rounds of [`CALLS`] calls on one key.

use std::time::Instant;

use plugboard::runtime::keyvalue::{AnsweredAtOnce, KvQuota};
use plugboard::store::SqliteKv;
use rusqlite::{Connection, TransactionBehavior, params};

const CALLS: usize = 2_000;
const ROUNDS: usize = 7;

/// The median time of one call of `f`, in µs.
fn median_us(mut f: impl FnMut()) -> f64 {
    let rounds = (0..ROUNDS).map(|_| {
        let started = Instant::now();
        for _ in 0..CALLS {
            f();
        }
        started.elapsed().as_secs_f64() * 1e6 / CALLS as f64
    });
    plugboard_tests::median(rounds.collect())
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let kv = SqliteKv::open(&dir.path().join("events.db")).unwrap();
    // A quota as an operator grants one, so that each write checks it.
    let quota = KvQuota { max_keys: 1_000, max_bytes: 1 << 20 };
    let increment = median_us(|| {
        kv.increment_now("bench", "events-seen", 1, quota).unwrap();
    });
    let set = median_us(|| kv.set_now("bench", "greeting", b"hello".to_vec(), None, quota).unwrap());
    let get = median_us(|| {
        kv.get_now("bench", "greeting").unwrap().unwrap();
    });

    let mut floor = Connection::open(dir.path().join("floor.db")).unwrap();
    floor
        .execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE counters (namespace TEXT NOT NULL, key TEXT NOT NULL, value INTEGER NOT NULL,
             PRIMARY KEY (namespace, key));",
        )
        .unwrap();
    let floor_increment = median_us(|| {
        let tx = floor.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
        tx.prepare_cached(
            "INSERT INTO counters (namespace, key, value) VALUES (?1, ?2, 1)
             ON CONFLICT (namespace, key) DO UPDATE SET value = value + 1",
        )
        .unwrap()
        .execute(params!["bench", "events-seen"])
        .unwrap();
        tx.commit().unwrap();
    });

    println!("key-value on SQLite (`SqliteKv`), per call, median of {ROUNDS} rounds of {CALLS}:");
    println!(
        "   increment {increment:7.1} µs   (the floor, one prepared upsert in a transaction: {floor_increment:.1} µs)"
    );
    println!("   set       {set:7.1} µs");
    println!("   get       {get:7.1} µs");
}
