//! Schedules: cron-style triggers that invoke a plugin action (periodic analyses, polling APIs
//! that have no webhooks). A firing is an ordinary stored event with a queued delivery, so it
//! gets the same durability, retries and dead letters as everything else.
//!
//! Each firing carries the tick it is for in its `plugboard.scheduled_for` attribute (ms since
//! the Unix epoch; plugins cannot set `plugboard.*` attributes). At start the newest firing of
//! each schedule tells which ticks passed while the server was down; the schedule's `missed`
//! says what to do with them, and what was skipped is logged.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::Event;
use crate::store::{Append, EventFilter, EventStore, QueuedDelivery, StoreError};

/// The attribute that says which tick a firing is for.
pub const SCHEDULED_FOR: &str = "plugboard.scheduled_for";

/// The most missed ticks counted for the log line.
const MAX_COUNTED: usize = 1_000_000;

pub use plugboard_manifest::pipeline::{MAX_CATCH_UP, Missed, SCHEDULE_SOURCE, Schedule};

/// Parses a schedule's cron expression; the error says what is wrong with it.
pub fn parse_cron(schedule: &Schedule) -> Result<cron::Schedule, String> {
    cron::Schedule::from_str(&schedule.cron)
        .map_err(|e| format!("bad cron expression `{}`: {e}", schedule.cron))
}

/// Fires schedules until dropped.
pub struct Scheduler {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Scheduler {
    /// Starts one timer per schedule, after making up for missed ticks as each one's `missed`
    /// says.
    pub fn spawn(
        store: Arc<dyn EventStore>,
        schedules: Vec<Schedule>,
        wake: Arc<Notify>,
    ) -> Result<Self, String> {
        let mut tasks = Vec::new();
        for s in schedules {
            let cron = parse_cron(&s)?;
            let (store, wake) = (store.clone(), wake.clone());
            tasks.push(tokio::spawn(async move {
                catch_up(store.as_ref(), &s, &cron, Utc::now()).await;
                wake.notify_one();
                let mut upcoming = cron.upcoming(Utc).peekable();
                while let Some(next) = upcoming.next() {
                    let wait = (next - Utc::now()).to_std().unwrap_or_default();
                    tokio::time::sleep(wait).await;
                    fire_until(store.as_ref(), &s, next, upcoming.peek().copied()).await;
                    wake.notify_one();
                }
            }));
        }
        Ok(Scheduler { tasks })
    }
}

/// The tick the newest stored firing of `s` was for.
async fn last_firing(store: &dyn EventStore, s: &Schedule) -> Result<Option<DateTime<Utc>>, String> {
    let kind = kind(s);
    let filter = EventFilter { kind: Some(&kind), source: Some(SCHEDULE_SOURCE), before: None };
    let newest = store.events(filter, 1).await.map_err(|e| e.to_string())?;
    Ok(newest.into_iter().next().and_then(|(_, event)| {
        let tick =
            event.attributes.iter().find(|(k, _)| k == SCHEDULED_FOR).and_then(|(_, v)| v.parse().ok());
        let ms = tick.unwrap_or(event.stored_at_ms);
        DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)
    }))
}

/// Fires, skips or logs the ticks of `s` between its newest stored firing and `now`.
async fn catch_up(store: &dyn EventStore, s: &Schedule, cron: &cron::Schedule, now: DateTime<Utc>) {
    let last = match last_firing(store, s).await {
        Ok(Some(last)) => last,
        // Never fired: nothing was missed.
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(schedule = %s.name, "cannot tell which ticks were missed: {e}");
            return;
        }
    };
    // The newest ticks are the ones kept; counting stops at MAX_COUNTED (a per-second schedule
    // down for a month has millions).
    let mut newest_ticks = std::collections::VecDeque::with_capacity(MAX_CATCH_UP);
    let (mut count, mut first) = (0usize, None);
    for tick in cron.after(&last).take_while(|t| *t <= now).take(MAX_COUNTED) {
        count += 1;
        first.get_or_insert(tick);
        if newest_ticks.len() == MAX_CATCH_UP {
            newest_ticks.pop_front();
        }
        newest_ticks.push_back(tick);
    }
    let (Some(first), Some(newest)) = (first, newest_ticks.back().copied()) else { return };
    let many = if count == MAX_COUNTED { format!("at least {MAX_COUNTED}") } else { count.to_string() };
    let missed: Vec<DateTime<Utc>> = newest_ticks.into();
    let fired: &[DateTime<Utc>] = match s.missed {
        Missed::Skip => &[],
        Missed::Once => &missed[missed.len() - 1..],
        Missed::All => &missed,
    };
    for tick in fired {
        if let Err(e) = fire(store, s, *tick).await {
            tracing::error!(schedule = %s.name, "could not store a missed firing: {e}");
            return;
        }
    }
    tracing::warn!(
        schedule = %s.name,
        missed = count,
        fired = fired.len(),
        "{many} ticks from {first} to {newest} were missed while the server was down; fired {} \
         of them (missed = \"{}\")",
        fired.len(),
        match s.missed {
            Missed::Skip => "skip",
            Missed::Once => "once",
            Missed::All => "all",
        }
    );
}

/// How long a tick's firing is remembered: longer than nodes' clocks and starts differ.
pub const TICK_DEDUP_WINDOW_MS: u64 = 24 * 3600 * 1000;

fn kind(s: &Schedule) -> String {
    format!("schedule/{}", s.name)
}

/// The longest pause between two tries to store a firing.
const MAX_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// The latest a firing is stored after its tick: a yearly schedule's is not stored months late.
const MAX_LATENESS: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Stores the firing of `s` for `tick`. While the store is unavailable (a NATS cluster electing
/// a leader, a busy disk) it tries again, until the schedule's next tick (`next`) is due or an
/// hour has passed: only then is the tick missed. Every node of a cluster tries, and the log
/// keeps one firing per tick however many succeed.
async fn fire_until(store: &dyn EventStore, s: &Schedule, tick: DateTime<Utc>, next: Option<DateTime<Utc>>) {
    let latest = tick + MAX_LATENESS;
    let give_up_at = next.map_or(latest, |next| next.min(latest));
    let mut pause = std::time::Duration::from_millis(100);
    for tries in 1u64.. {
        let e = match fire(store, s, tick).await {
            Ok(()) => return,
            Err(e) => e,
        };
        let again = Utc::now() + pause;
        if !matches!(e, StoreError::Unavailable(_)) || again >= give_up_at {
            tracing::error!(schedule = %s.name, %tick, "could not store a schedule firing; this tick is missed: {e}");
            return;
        }
        // Once: a yearly schedule may try for a long time.
        if tries == 1 {
            tracing::warn!(schedule = %s.name, %tick, "could not store a schedule firing yet, trying again: {e}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

async fn fire(store: &dyn EventStore, s: &Schedule, tick: DateTime<Utc>) -> Result<(), StoreError> {
    let mut event = Event::json(&kind(s), SCHEDULE_SOURCE, &s.input)
        .map_err(|e| StoreError::Failed(format!("the schedule's input: {e}")))?;
    event.attributes.push((SCHEDULED_FOR.into(), tick.timestamp_millis().to_string()));
    let delivery = QueuedDelivery {
        event_id: event.id.clone(),
        route: s.route(),
        target: s.to.clone(),
        action: Some(s.action.clone()),
        order_key: None,
    };
    store
        .append(Append {
            instance: SCHEDULE_SOURCE.into(),
            // Every node of a cluster fires every tick: the log stores one firing per tick.
            delivery_id: Some(format!("{}@{}", s.name, tick.timestamp_millis())),
            dedup_window_ms: TICK_DEDUP_WINDOW_MS,
            events: vec![event],
            deliveries: vec![delivery],
        })
        .await
        .map(|_| ())
}
