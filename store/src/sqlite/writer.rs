//! The writer thread: the jobs waiting (up to 256) are written in one transaction (group
//! commit), then each is answered; and what one batch writes (events, deliveries, attempts,
//! per-minute activity, retention).

use std::sync::mpsc;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use crate::{Append, Appended, Attempt, Outcome, QueuedDelivery, Retention, StoreError, Swept};
use plugboard_runtime::types::Event;

pub(super) enum Work {
    Append(Append, oneshot::Sender<Result<Appended, StoreError>>),
    Outcome {
        delivery: i64,
        attempt: Attempt,
        outcome: Outcome,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    Replay {
        delivery: Option<i64>,
        done: oneshot::Sender<Result<Vec<i64>, StoreError>>,
    },
    Sweep {
        retention: Retention,
        done: oneshot::Sender<Result<Swept, StoreError>>,
    },
}

pub(super) struct Job {
    pub(super) work: Work,
    pub(super) now_ms: u64,
}

/// One minute's activity, added up while a batch is written and stored with it.
#[derive(Default)]
struct MinuteTotals {
    events: i64,
    attempts: i64,
    failures: i64,
    duration_us_sum: i64,
    duration_us_max: i64,
}

/// What a batch adds to each minute's activity.
#[derive(Default)]
struct Activity(std::collections::BTreeMap<i64, MinuteTotals>);

impl Activity {
    fn events(&mut self, at_ms: u64, n: usize) {
        if n > 0 {
            self.0.entry(minute_of(at_ms)).or_default().events += n as i64;
        }
    }

    fn attempt(&mut self, at_ms: u64, failed: bool, duration_us: u64) {
        let totals = self.0.entry(minute_of(at_ms)).or_default();
        let us = i64::try_from(duration_us).unwrap_or(i64::MAX);
        totals.attempts += 1;
        totals.failures += i64::from(failed);
        totals.duration_us_sum = totals.duration_us_sum.saturating_add(us);
        totals.duration_us_max = totals.duration_us_max.max(us);
    }

    fn store(&self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        let mut add = tx.prepare_cached(
            "INSERT INTO minute_stats (minute, events, attempts, failures, duration_us_sum, duration_us_max) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (minute) DO UPDATE SET \
             events = events + excluded.events, attempts = attempts + excluded.attempts, \
             failures = failures + excluded.failures, duration_us_sum = duration_us_sum + excluded.duration_us_sum, \
             duration_us_max = MAX(duration_us_max, excluded.duration_us_max)",
        )?;
        for (minute, t) in &self.0 {
            add.execute(params![
                minute,
                t.events,
                t.attempts,
                t.failures,
                t.duration_us_sum,
                t.duration_us_max
            ])?;
        }
        Ok(())
    }
}

/// A time in ms as SQLite stores it: past `i64::MAX` (an absurd retry delay) it is the end of
/// time, not a negative number that would be due at once.
pub(super) fn sql_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn minute_of(at_ms: u64) -> i64 {
    i64::try_from(at_ms / 60_000).unwrap_or(i64::MAX)
}

fn sweep(tx: &rusqlite::Transaction<'_>, retention: &Retention, now_ms: u64) -> rusqlite::Result<Swept> {
    let age_cutoff = match retention.max_age_ms {
        0 => i64::MIN,
        age => i64::try_from(now_ms.saturating_sub(age)).unwrap_or(i64::MAX),
    };
    let keep = match retention.max_events {
        0 => None,
        n => Some(i64::try_from(n).unwrap_or(i64::MAX)),
    };
    tx.prepare_cached("DELETE FROM minute_stats WHERE minute < ?1")?
        .execute(params![minute_of(now_ms.saturating_sub(crate::MINUTE_STATS_KEPT_MS))])?;
    tx.execute_batch("CREATE TEMP TABLE IF NOT EXISTS swept (id TEXT PRIMARY KEY); DELETE FROM temp.swept;")?;
    tx.prepare_cached(
        "INSERT INTO temp.swept (id) SELECT e.id FROM events e \
         WHERE (e.stored_at_ms < ?1 OR (?2 IS NOT NULL AND e.seq <= (SELECT MAX(seq) FROM events) - ?2)) \
         AND NOT EXISTS (SELECT 1 FROM delivery_queue q WHERE q.event_id = e.id AND q.status = 'pending') \
         ORDER BY e.seq LIMIT ?3",
    )?
    .execute(params![age_cutoff, keep, i64::try_from(retention.chunk).unwrap_or(i64::MAX)])?;
    let attempts = tx.execute(
        "DELETE FROM attempts WHERE delivery IN \
         (SELECT q.id FROM delivery_queue q JOIN temp.swept s ON q.event_id = s.id)",
        [],
    )?;
    let deliveries =
        tx.execute("DELETE FROM delivery_queue WHERE event_id IN (SELECT id FROM temp.swept)", [])?;
    let events = tx.execute("DELETE FROM events WHERE id IN (SELECT id FROM temp.swept)", [])?;
    let dedup_keys = tx.execute(
        "DELETE FROM webhook_deliveries WHERE expires_at_ms < ?1",
        [i64::try_from(now_ms).unwrap_or(i64::MAX)],
    )?;
    Ok(Swept {
        events: events as u64,
        deliveries: deliveries as u64,
        attempts: attempts as u64,
        dedup_keys: dedup_keys as u64,
    })
}

/// What one job's part of a transaction answered, before the commit decides.
enum Answer {
    Append(Appended),
    Outcome,
    /// The delivery was not pending: settled already (a late answer), or not there.
    NotPending,
    Replay(Vec<i64>),
    Sweep(Swept),
}

/// While jobs arrive together, the writer waits for more in steps of this long, for as long as
/// each step brings more (up to [`GATHER_STEPS`]): a commit (its pages written to the log, its
/// fsync) costs about as much for one webhook as for fifty, and on a busy machine that time is
/// better spent by the threads that make the jobs. It stops at the first step that brings
/// nothing (every job in flight is then likely in the batch already, waiting for its commit).
/// After a batch that did not have company, a job is written at once; otherwise a job that
/// turns out to be alone waits one step.
const GATHER_STEP: std::time::Duration = std::time::Duration::from_micros(100);

/// The most steps the writer waits for one batch.
const GATHER_STEPS: usize = 5;

/// A batch this large is written without waiting; and when this many were waiting already,
/// the writer does not wait at all: the commit is shared well enough, and waiting would only
/// delay the answers (jobs that need little work besides their commit, such as webhooks taken
/// in on receipt, come back that fast).
const GATHER_UP_TO: usize = 16;

/// The most jobs one transaction takes. A backlog of jobs (a burst taken in on receipt, a
/// writer that waited for SQLite's lock) is written in transactions of at most this many, so the
/// first answers wait for one commit of bounded size, not for the whole backlog. It bounds jobs,
/// not rows: one job can hold many (an append's events, a replay of every dead letter), each
/// bounded where it is made. Larger batches hardly share the commit better.
const MAX_BATCH: usize = 256;

/// Moves the jobs waiting in `rx` into `batch`, up to [`MAX_BATCH`] in all.
fn take_waiting(rx: &mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    while batch.len() < MAX_BATCH
        && let Ok(more) = rx.try_recv()
    {
        batch.push(more);
    }
}

/// Adds to `batch` the jobs that arrive while waiting (see [`GATHER_STEP`]).
fn gather(rx: &mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    for _ in 0..GATHER_STEPS {
        if batch.len() >= GATHER_UP_TO {
            return;
        }
        std::thread::sleep(GATHER_STEP);
        let before = batch.len();
        take_waiting(rx, batch);
        if batch.len() == before {
            return;
        }
    }
}

/// Takes the jobs waiting (up to [`MAX_BATCH`]), writes them in one transaction, then answers
/// each.
pub(super) fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Job>,
    commits: &tokio::sync::watch::Sender<u64>,
    seen_ids: &std::sync::Arc<super::seen_ids::SeenIds>,
) {
    // Whether the last batch had company: then webhooks are arriving together, and waiting a
    // moment for more costs less than another commit.
    let mut busy = false;
    // Kept from batch to batch: a new one grown job by job was reallocated several times a batch.
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        take_waiting(&rx, &mut batch);
        let waiting = batch.len();
        if busy {
            gather(&rx, &mut batch);
        }
        busy = waiting > 1;
        let result = write_patiently(&mut conn, &batch);
        if let Ok(answers) = &result {
            commits.send_modify(|n| *n = n.wrapping_add(1));
            // Before any webhook is answered: a sender who sends one again is then looked up.
            for (job, answer) in batch.iter().zip(answers) {
                if let (Work::Append(a, _), Answer::Append(_)) = (&job.work, answer)
                    && let Some(id) = &a.delivery_id
                {
                    seen_ids.add(&a.instance, id);
                }
            }
        }
        if batch.iter().any(|j| matches!(j.work, Work::Sweep { .. })) {
            // Hand the pages retention freed back to the file system (a no-op for files made
            // before incremental auto-vacuum: their free pages are reused instead).
            if let Err(e) = conn.execute_batch("PRAGMA incremental_vacuum;") {
                tracing::warn!(error = %e, "incremental vacuum failed");
            }
        }
        for (i, job) in batch.drain(..).enumerate() {
            let failed = || match &result {
                Err(e) => super::store_error(e),
                Ok(_) => StoreError::Failed("the batch answered fewer jobs than it was given".into()),
            };
            let answer = result.as_ref().ok().and_then(|a| a.get(i));
            match (job.work, answer) {
                (Work::Append(_, done), Some(Answer::Append(a))) => drop(done.send(Ok(*a))),
                (Work::Append(_, done), _) => drop(done.send(Err(failed()))),
                (Work::Outcome { done, .. }, Some(Answer::Outcome)) => drop(done.send(Ok(()))),
                (Work::Outcome { delivery, done, .. }, Some(Answer::NotPending)) => {
                    drop(done.send(Err(StoreError::Conflict(format!("delivery {delivery} is not pending")))))
                }
                (Work::Outcome { done, .. }, _) => drop(done.send(Err(failed()))),
                (Work::Replay { done, .. }, Some(Answer::Replay(rows))) => drop(done.send(Ok(rows.clone()))),
                (Work::Replay { done, .. }, _) => drop(done.send(Err(failed()))),
                (Work::Sweep { done, .. }, Some(Answer::Sweep(n))) => drop(done.send(Ok(*n))),
                (Work::Sweep { done, .. }, _) => drop(done.send(Err(failed()))),
            }
        }
    }
}

/// Counts, at start, the attempts the claim journal says were running when the process died:
/// each delivery still pending has at least that many attempts.
pub(super) fn count_unfinished(
    conn: &mut Connection,
    unfinished: &[(i64, u32)],
    now_ms: u64,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut count = tx.prepare_cached(
            "UPDATE delivery_queue SET attempts = MAX(attempts, ?2), updated_at_ms = ?3 \
             WHERE id = ?1 AND status = 'pending'",
        )?;
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        for (delivery, attempt) in unfinished {
            count.execute(params![delivery, attempt, now])?;
        }
    }
    tx.commit()
}

fn insert_events(
    tx: &rusqlite::Transaction<'_>,
    events: &[Event],
    deliveries: &[QueuedDelivery],
    now_ms: u64,
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (id, source, kind, occurred_at_ms, content_type, payload, attributes, stored_at_ms, caused_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for e in events {
        let attributes = serde_json::to_string(&e.attributes).unwrap_or_else(|_| "[]".into());
        let caused_by = crate::log::caused_by(&e.attributes);
        insert.execute(params![
            e.id,
            e.source,
            e.kind,
            e.occurred_at_ms as i64,
            e.content_type,
            e.payload,
            attributes,
            now_ms as i64,
            caused_by
        ])?;
    }
    let mut queue = tx.prepare_cached(
        "INSERT INTO delivery_queue (event_id, route, target, action, order_key, status, attempts, next_at_ms, updated_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)",
    )?;
    for d in deliveries {
        queue.execute(params![d.event_id, d.route, d.target, d.action, d.order_key, now_ms as i64])?;
    }
    Ok(())
}

/// How long the writer keeps trying to take SQLite's write lock for one batch before it answers
/// the batch's jobs with an error. Each try waits the connection's busy timeout (5 s); another
/// connection on the same file that commits again and again (the key-value or call-log
/// connection under load) can win every one of SQLite's polls within one timeout, and an
/// outcome refused then is a delivery run twice.
const WRITE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// [`write_batch`], tried again while the write lock is busy, up to [`WRITE_PATIENCE`]. Safe:
/// a busy batch's transaction was rolled back, so nothing of it was written.
fn write_patiently(conn: &mut Connection, batch: &[Job]) -> Result<Vec<Answer>, rusqlite::Error> {
    let started = std::time::Instant::now();
    loop {
        match write_batch(conn, batch) {
            Err(e) if is_busy(&e) && started.elapsed() < WRITE_PATIENCE => {
                tracing::debug!(error = %e, "the database is busy; writing the batch again");
            }
            done => return done,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn write_batch(conn: &mut Connection, batch: &[Job]) -> Result<Vec<Answer>, rusqlite::Error> {
    // IMMEDIATE: the write lock is taken (waiting up to the busy timeout) before anything is
    // read. A deferred transaction that reads first (an outcome checks that its delivery is
    // still pending) would start from a snapshot, and when the key-value or call-log connection
    // on the same file commits before its first write, SQLite refuses that write at once
    // ("database is locked", with no busy wait): the outcome would be lost and the delivery
    // run again.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut answers = Vec::with_capacity(batch.len());
    // The dashboard's per-minute charts read these totals, not the history.
    let mut activity = Activity::default();
    for job in batch {
        let now = job.now_ms as i64;
        match &job.work {
            Work::Append(a, _) => {
                if let Some(delivery) = &a.delivery_id {
                    let expires = sql_ms(job.now_ms.saturating_add(a.dedup_window_ms));
                    let fresh = tx
                        .prepare_cached(
                            "INSERT INTO webhook_deliveries (instance, delivery_id, expires_at_ms) VALUES (?1, ?2, ?3) \
                             ON CONFLICT (instance, delivery_id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms \
                             WHERE webhook_deliveries.expires_at_ms <= ?4",
                        )?
                        .execute(params![a.instance, delivery, expires, now])?;
                    if fresh == 0 {
                        answers.push(Answer::Append(Appended::Duplicate));
                        continue;
                    }
                }
                insert_events(&tx, &a.events, &a.deliveries, job.now_ms)?;
                activity.events(job.now_ms, a.events.len());
                answers.push(Answer::Append(Appended::Stored));
            }
            Work::Outcome {
                delivery,
                attempt: Attempt { number: attempt, duration_us, handler },
                outcome,
                ..
            } => {
                // Only a pending delivery is settled: a late answer for one already settled is
                // refused, and changes nothing (its claim was lost, see the leases).
                let pending: bool = tx
                    .prepare_cached("SELECT 1 FROM delivery_queue WHERE id = ?1 AND status = 'pending'")?
                    .exists(params![delivery])?;
                if !pending {
                    answers.push(Answer::NotPending);
                    continue;
                }
                let mut output_text = None;
                let (status, next_at, error, kind) = match outcome {
                    Outcome::Delivered { events, deliveries, output } => {
                        insert_events(&tx, events, deliveries, job.now_ms)?;
                        activity.events(job.now_ms, events.len());
                        output_text = output.as_deref();
                        ("delivered", now, None, "delivered")
                    }
                    Outcome::Retry { next_at_ms, error } => {
                        ("pending", sql_ms(*next_at_ms), Some(error.as_str()), "retry")
                    }
                    Outcome::Dead { error, events, deliveries } => {
                        insert_events(&tx, events, deliveries, job.now_ms)?;
                        activity.events(job.now_ms, events.len());
                        ("dead", now, Some(error.as_str()), "dead")
                    }
                };
                tx.prepare_cached(
                    "UPDATE delivery_queue SET status = ?2, attempts = ?3, next_at_ms = ?4, last_error = ?5, updated_at_ms = ?6, \
                     output = ?7 WHERE id = ?1",
                )?
                .execute(params![delivery, status, attempt, next_at, error, now, output_text])?;
                tx.prepare_cached(
                    "INSERT INTO attempts (delivery, attempt, at_ms, duration_us, outcome, detail, handler) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    delivery,
                    attempt,
                    now,
                    *duration_us as i64,
                    kind,
                    error,
                    handler
                ])?;
                activity.attempt(job.now_ms, kind != "delivered", *duration_us);
                answers.push(Answer::Outcome);
            }
            Work::Sweep { retention, .. } => answers.push(Answer::Sweep(sweep(&tx, retention, job.now_ms)?)),
            Work::Replay { delivery, .. } => {
                let rows = tx
                    .prepare_cached(
                        "UPDATE delivery_queue SET status = 'pending', attempts = 0, next_at_ms = ?1, updated_at_ms = ?1 \
                         WHERE status = 'dead' AND (?2 IS NULL OR id = ?2) RETURNING id",
                    )?
                    .query_map(params![now, delivery], |r| r.get(0))?
                    .collect::<Result<Vec<i64>, _>>()?;
                answers.push(Answer::Replay(rows));
            }
        }
    }
    activity.store(&tx)?;
    tx.commit()?;
    Ok(answers)
}
