//! A backend of the event ports that keeps everything in this process's memory: nothing is
//! durable, and nothing is ever deleted (no retention). It exists to prove the ports' boundary:
//! the pipeline's tests run on it and on SQLite alike. Its semantics are the ports' (dedup
//! windows, leases, FIFO per ordering key, atomic appends and settlements), each written
//! plainly over maps, for clarity rather than volume: a claim looks at every delivery ever
//! queued, under one lock. It is not a production backend.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{
    Admit, Append, Appended, Attempt, AttemptOutcome, AttemptRecord, Candidate, ClaimId, Claimed,
    DeliveryDetail, DeliveryId, DeliveryQueue, DeliveryRecord, DeliveryStatus, EventFilter, EventLog,
    EventSummary, EventTrace, JobRecord, JobStatus, MinuteStats, Outcome, PayloadPreview, QueueStats,
    QueuedDelivery, ReadModel, Retention, StoreError, StoreFuture, Swept, TracedDelivery,
};
use plugboard_runtime::clock::now_ms;
use plugboard_runtime::types::Event;

/// How many hops a trace follows (as the SQLite backend).
const MAX_DEPTH: usize = 8;

/// The event ports in memory.
pub struct MemoryStore {
    state: Mutex<State>,
    commits: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    closed: bool,
    /// Events by position.
    events: BTreeMap<i64, Stored>,
    /// Position of each event id.
    positions: HashMap<String, i64>,
    /// (instance, delivery id) -> when it may be stored again, ms.
    dedup: HashMap<(String, String), u64>,
    deliveries: BTreeMap<u64, Row>,
    next_delivery: u64,
    leases: HashMap<u64, Lease>,
    /// The last lease given.
    serials: u64,
    /// Minute -> (events, attempts, failures, duration sum, duration max), µs.
    minutes: BTreeMap<u64, [u64; 5]>,
}

struct Stored {
    event: Event,
    stored_at_ms: u64,
    caused_by: Option<String>,
}

struct Row {
    queued: QueuedDelivery,
    status: DeliveryStatus,
    attempts: u32,
    next_at_ms: u64,
    last_error: Option<String>,
    output: Option<String>,
    history: Vec<AttemptRecord>,
}

impl Row {
    /// A delivery just queued, due at `now`.
    fn queued(queued: QueuedDelivery, now: u64) -> Self {
        Row {
            queued,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_at_ms: now,
            last_error: None,
            output: None,
            history: Vec::new(),
        }
    }
}

/// See the SQLite backend's lease: the attempt counted, until when nobody claims it again, and
/// which claim took it.
#[derive(Clone, Copy)]
struct Lease {
    attempt: u32,
    until_ms: u64,
    serial: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore { state: Mutex::default(), commits: tokio::sync::watch::Sender::new(0) }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops taking writes, as a closed SQLite store does: writes fail with
    /// [`StoreError::Closed`]; reads go on.
    pub fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
    }

    /// The state. A panic while it was held (in a claim's `admit`, which runs before the claim
    /// changes anything) leaves it whole, so the lock's poison is ignored.
    fn state(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        Ok(self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The state, to write: refused once closed.
    fn writer(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let state = self.state()?;
        if state.closed {
            return Err(StoreError::Closed);
        }
        Ok(state)
    }

    fn committed(&self) {
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl State {
    /// Stores events and their deliveries, all or none: an event id already stored is a
    /// conflict (the SQLite backend's unique constraint).
    fn insert(
        &mut self,
        events: &[Event],
        deliveries: &[QueuedDelivery],
        now: u64,
    ) -> Result<(), StoreError> {
        let mut ids = std::collections::HashSet::new();
        for e in events {
            if self.positions.contains_key(&e.id) || !ids.insert(e.id.as_str()) {
                return Err(StoreError::Conflict(format!("event {} is already stored", e.id)));
            }
        }
        for e in events {
            let position = self.events.last_key_value().map_or(1, |(p, _)| p + 1);
            let caused_by = crate::log::caused_by(&e.attributes).map(Into::into);
            self.positions.insert(e.id.clone(), position);
            self.events.insert(position, Stored { event: e.clone(), stored_at_ms: now, caused_by });
        }
        for d in deliveries {
            self.next_delivery += 1;
            self.deliveries.insert(self.next_delivery, Row::queued(d.clone(), now));
        }
        if !events.is_empty() {
            self.minute(now)[0] += events.len() as u64;
        }
        Ok(())
    }

    /// The delivery `claim` holds: a conflict when its lease was lost (or never was).
    fn held(&self, claim: &ClaimId) -> Result<u64, StoreError> {
        number(&claim.delivery)
            .filter(|id| {
                self.leases.get(id).is_some_and(|l| l.attempt == claim.attempt && l.serial == claim.lease)
            })
            .filter(|id| self.deliveries.get(id).is_some_and(|r| r.status == DeliveryStatus::Pending))
            .ok_or_else(|| StoreError::Conflict(format!("{claim} is not claimed here (its lease was lost)")))
    }

    /// Keeps `claim`'s lease until `until_ms`.
    fn hold(&mut self, claim: &ClaimId, until_ms: u64) -> Result<(), StoreError> {
        let id = self.held(claim)?;
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.until_ms = until_ms;
        }
        Ok(())
    }

    fn minute(&mut self, at_ms: u64) -> &mut [u64; 5] {
        self.minutes.entry(at_ms / 60_000).or_default()
    }

    /// Counts one attempt in its minute's totals.
    fn count_attempt(&mut self, at_ms: u64, outcome: AttemptOutcome, duration_us: u64) {
        let totals = self.minute(at_ms);
        totals[1] += 1;
        totals[2] += u64::from(outcome != AttemptOutcome::Delivered);
        totals[3] = totals[3].saturating_add(duration_us);
        totals[4] = totals[4].max(duration_us);
    }

    fn summary(&self, position: i64) -> Option<(i64, EventSummary)> {
        let s = self.events.get(&position)?;
        Some((
            position,
            EventSummary {
                id: s.event.id.clone(),
                source: s.event.source.clone(),
                kind: s.event.kind.clone(),
                stored_at_ms: s.stored_at_ms,
                attributes: s.event.attributes.clone(),
                caused_by: s.caused_by.clone(),
            },
        ))
    }

    fn event(&self, id: &str) -> Option<&Stored> {
        self.events.get(self.positions.get(id)?)
    }

    /// Whether delivery `id` may run now by its ordering key: it is the oldest pending one of
    /// its route and key.
    fn is_head(&self, id: u64, row: &Row) -> bool {
        let Some(key) = &row.queued.order_key else { return true };
        !self.deliveries.range(..id).any(|(_, p)| {
            p.status == DeliveryStatus::Pending
                && p.queued.route == row.queued.route
                && p.queued.order_key.as_ref() == Some(key)
        })
    }

    fn record(&self, id: u64, row: &Row) -> DeliveryRecord {
        DeliveryRecord {
            id: DeliveryId::new(id.to_string()),
            event_id: row.queued.event_id.clone(),
            route: row.queued.route.clone(),
            target: row.queued.target.clone(),
            status: row.status,
            attempts: row.attempts,
            last_error: row.last_error.clone(),
        }
    }

    fn trace(&self, id: &str, depth: usize) -> Option<EventTrace> {
        let position = *self.positions.get(id)?;
        let (_, event) = self.summary(position)?;
        let stored = self.events.get(&position)?;
        let payload =
            (depth == 0).then(|| PayloadPreview::of(&stored.event.content_type, &stored.event.payload));
        let mut deliveries: Vec<TracedDelivery> = self
            .deliveries
            .iter()
            .filter(|(_, r)| r.queued.event_id == id)
            .map(|(n, r)| TracedDelivery {
                id: DeliveryId::new(n.to_string()),
                route: r.queued.route.clone(),
                target: r.queued.target.clone(),
                action: r.queued.action.clone(),
                status: r.status,
                attempts: r.history.clone(),
                output: r.output.clone(),
                produced: Vec::new(),
            })
            .collect();
        if depth < MAX_DEPTH {
            let children = self.events.values().filter(|s| s.caused_by.as_deref() == Some(id));
            for child in children {
                let Some(t) = self.trace(&child.event.id, depth + 1) else { continue };
                let at = deliveries.iter().position(|d| d.target == child.event.source).unwrap_or(0);
                if let Some(d) = deliveries.get_mut(at) {
                    d.produced.push(t);
                }
            }
        }
        Some(EventTrace { event, payload, deliveries })
    }
}

/// One attempt at a delivery, as a log kept elsewhere recorded it (see
/// [`MemoryStore::project`]).
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) struct ProjectedAttempt {
    pub(crate) delivery: u64,
    pub(crate) record: AttemptRecord,
    pub(crate) output: Option<String>,
}

/// A read model of a log kept elsewhere (the NATS backend's): each node folds the shared log
/// into one of these, at the positions and delivery ids that log gave, so that its listings,
/// traces and stats are the whole cluster's.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
impl MemoryStore {
    /// Folds in one append of that log: its events (at their positions), their deliveries
    /// (with their ids), and the attempt it settles, if any.
    pub(crate) fn project(
        &self,
        stored_at_ms: u64,
        events: Vec<(i64, Event)>,
        deliveries: Vec<(u64, QueuedDelivery)>,
        settles: Option<ProjectedAttempt>,
    ) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = events.len() as u64;
        for (position, event) in events {
            let caused_by = crate::log::caused_by(&event.attributes).map(Into::into);
            state.positions.insert(event.id.clone(), position);
            state.events.insert(position, Stored { event, stored_at_ms, caused_by });
        }
        for (id, queued) in deliveries {
            state.deliveries.insert(id, Row::queued(queued, stored_at_ms));
        }
        if count > 0 {
            state.minute(stored_at_ms)[0] += count;
        }
        if let Some(ProjectedAttempt { delivery, record, output }) = settles {
            state.count_attempt(record.at_ms, record.outcome, record.duration_us);
            if let Some(row) = state.deliveries.get_mut(&delivery) {
                // An earlier attempt's outcome stored after a later one's (its claimer was slow
                // to settle) is history, not the delivery's state.
                if record.attempt >= row.attempts {
                    row.status = match record.outcome {
                        AttemptOutcome::Delivered => DeliveryStatus::Delivered,
                        AttemptOutcome::Retry => DeliveryStatus::Pending,
                        AttemptOutcome::Dead => DeliveryStatus::Dead,
                    };
                    row.attempts = record.attempt;
                    row.last_error = record.detail.clone();
                    row.output = output;
                }
                row.history.push(record);
            }
        }
        drop(state);
        self.committed();
    }

    /// A dead letter put back in that log's queue: pending again, its attempts from zero.
    pub(crate) fn project_replay(&self, delivery: u64) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(row) = state.deliveries.get_mut(&delivery).filter(|r| r.status == DeliveryStatus::Dead) {
            row.status = DeliveryStatus::Pending;
            row.attempts = 0;
        }
    }

    /// Whether that log's delivery `id` is listed.
    pub(crate) fn lists_delivery(&self, id: u64) -> bool {
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.deliveries.contains_key(&id)
    }

    /// Where the event `id` is in that log.
    pub(crate) fn position_of(&self, id: &str) -> Option<i64> {
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.positions.get(id).copied()
    }

    /// Where `retention` cuts that log at `now_ms`: the position of the newest event past it
    /// (stored longer ago than its age, or older than its newest `max_events`, and in either
    /// case longer ago than its `min_age_ms`), with the position of the oldest event kept, if
    /// any. `None` when no event is past.
    pub(crate) fn retention_cut(&self, now_ms: u64, retention: &Retention) -> Option<(i64, Option<i64>)> {
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let floor = now_ms.saturating_sub(retention.min_age_ms);
        let too_old = match retention.max_age_ms {
            0 => 0,
            age => now_ms.saturating_sub(age),
        };
        let keep = usize::try_from(retention.max_events).unwrap_or(usize::MAX);
        let mut kept = None;
        // Newest first: positions follow the order events were stored in.
        for (newer, (position, stored)) in state.events.iter().rev().enumerate() {
            let beyond = (keep > 0 && newer >= keep) || stored.stored_at_ms < too_old;
            if beyond && stored.stored_at_ms < floor {
                return Some((*position, kept));
            }
            kept = Some(*position);
        }
        None
    }

    /// Forgets what that log no longer holds: the events before `position` and their
    /// deliveries and attempts, except the events with a delivery still pending and all their
    /// deliveries (their queue holds them, and they are shown until they end, as on SQLite);
    /// and the minute totals before `stats_before_ms`.
    pub(crate) fn forget_before(&self, position: i64, stats_before_ms: u64) -> Swept {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let state = &mut *state;
        let mut swept = Swept::default();
        let first_kept = u64::try_from(position).unwrap_or(0);
        // An event stays, with all its deliveries, while one of them is pending (as on SQLite).
        let pending: std::collections::HashSet<String> = state
            .deliveries
            .range(..first_kept)
            .filter(|(_, row)| row.status == DeliveryStatus::Pending)
            .map(|(_, row)| row.queued.event_id.clone())
            .collect();
        let finished: Vec<u64> = state
            .deliveries
            .range(..first_kept)
            .filter(|(_, row)| !pending.contains(&row.queued.event_id))
            .map(|(id, _)| *id)
            .collect();
        for id in finished {
            if let Some(row) = state.deliveries.remove(&id) {
                swept.deliveries += 1;
                swept.attempts += row.history.len() as u64;
            }
        }
        let old: Vec<i64> = state
            .events
            .range(..position)
            .filter(|(_, stored)| !pending.contains(&stored.event.id))
            .map(|(p, _)| *p)
            .collect();
        for p in old {
            if let Some(stored) = state.events.remove(&p) {
                state.positions.remove(&stored.event.id);
                swept.events += 1;
            }
        }
        state.minutes = state.minutes.split_off(&(stats_before_ms / 60_000));
        swept
    }
}

/// A delivery's number in this store: `None` for an id it did not make.
fn number(id: &DeliveryId) -> Option<u64> {
    id.number()
}

/// Whether `text` matches `pattern`, whose `*` matches any run of characters and `?` any one
/// (the kinds filter's wildcards, as SQLite's GLOB has them; GLOB's `[...]` classes, which the
/// filter does not promise, are matched literally here).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative wildcard matching with one backtrack point: linear in practice, never
    // exponential on a hostile pattern.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn ready<'a, T: Send + 'a>(result: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(result))
}

impl EventLog for MemoryStore {
    fn append(&self, append: Append) -> StoreFuture<'_, Appended> {
        let result = (|| {
            let now = now_ms();
            let mut state = self.writer()?;
            if let Some(id) = &append.delivery_id {
                let key = (append.instance.clone(), id.clone());
                if state.dedup.get(&key).is_some_and(|expires| *expires > now) {
                    return Ok(Appended::Duplicate);
                }
                state.insert(&append.events, &append.deliveries, now)?;
                state.dedup.insert(key, now.saturating_add(append.dedup_window_ms));
            } else {
                state.insert(&append.events, &append.deliveries, now)?;
            }
            drop(state);
            self.committed();
            Ok(Appended::Stored)
        })();
        ready(result)
    }

    fn is_duplicate<'a>(&'a self, instance: &'a str, delivery_id: &'a str) -> StoreFuture<'a, bool> {
        let now = now_ms();
        ready(self.state().map(|s| {
            s.dedup.get(&(instance.to_owned(), delivery_id.to_owned())).is_some_and(|expires| *expires > now)
        }))
    }

    fn events_after(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<(i64, EventSummary)>> {
        ready(self.state().map(|s| {
            let after = after.saturating_add(1);
            s.events.range(after..).take(limit).filter_map(|(p, _)| s.summary(*p)).collect()
        }))
    }

    fn last_position(&self) -> StoreFuture<'_, i64> {
        ready(self.state().map(|s| s.events.last_key_value().map_or(0, |(p, _)| *p)))
    }

    fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
    }

    fn writable(&self) -> bool {
        self.state().is_ok_and(|s| !s.closed)
    }
}

impl DeliveryQueue for MemoryStore {
    fn claim<'a>(
        &'a self,
        now_ms: u64,
        limit: usize,
        lease: Duration,
        admit: &'a mut Admit<'a>,
    ) -> StoreFuture<'a, Vec<Claimed>> {
        let result = (|| {
            // Leases are bookkeeping, not stored outcomes: a closed store still hands out work,
            // as the SQLite one does (its claims go to the journal, not the closed writer).
            let mut state = self.state()?;
            let mut due: Vec<(u64, u64)> = state
                .deliveries
                .iter()
                .filter(|(_, r)| r.status == DeliveryStatus::Pending && r.next_at_ms <= now_ms)
                .filter(|(id, r)| state.is_head(**id, r))
                .filter(|(id, _)| state.leases.get(*id).is_none_or(|l| l.until_ms <= now_ms))
                .map(|(id, r)| (r.next_at_ms, *id))
                .collect();
            due.sort_unstable();
            let mut taken = Vec::new();
            for (_, id) in due {
                if taken.len() == limit {
                    break;
                }
                let (Some(row), counted) = (state.deliveries.get(&id), state.leases.get(&id)) else {
                    continue;
                };
                let Some(stored) = state.event(&row.queued.event_id) else { continue };
                let delivery = DeliveryId::new(id.to_string());
                let attempt = row.attempts.max(counted.map_or(0, |l| l.attempt)).saturating_add(1);
                let candidate = Candidate {
                    id: &delivery,
                    route: &row.queued.route,
                    target: &row.queued.target,
                    attempt,
                };
                if admit(&candidate) {
                    let claimed = Claimed {
                        id: delivery,
                        event: stored.event.clone(),
                        route: row.queued.route.clone(),
                        target: row.queued.target.clone(),
                        action: row.queued.action.clone(),
                        attempt,
                        lease: 0,
                    };
                    taken.push((id, claimed));
                }
            }
            let until_ms = now_ms.saturating_add(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX));
            for (id, claimed) in &mut taken {
                state.serials += 1;
                claimed.lease = state.serials;
                state.leases.insert(*id, Lease { attempt: claimed.attempt, until_ms, serial: claimed.lease });
            }
            Ok(taken.into_iter().map(|(_, c)| c).collect())
        })();
        ready(result)
    }

    fn settle(&self, claim: ClaimId, attempt: Attempt, outcome: Outcome) -> StoreFuture<'_, ()> {
        let result = (|| {
            let now = now_ms();
            let mut state = self.writer()?;
            let id = state.held(&claim)?;
            let (status, next_at_ms, error, output, kind) = match &outcome {
                Outcome::Delivered { events, deliveries, output } => {
                    state.insert(events, deliveries, now)?;
                    (DeliveryStatus::Delivered, now, None, output.clone(), AttemptOutcome::Delivered)
                }
                Outcome::Retry { next_at_ms, error } => {
                    (DeliveryStatus::Pending, *next_at_ms, Some(error.clone()), None, AttemptOutcome::Retry)
                }
                Outcome::Dead { error, events, deliveries } => {
                    state.insert(events, deliveries, now)?;
                    (DeliveryStatus::Dead, now, Some(error.clone()), None, AttemptOutcome::Dead)
                }
            };
            state.count_attempt(now, kind, attempt.duration_us);
            state.leases.remove(&id);
            if let Some(row) = state.deliveries.get_mut(&id) {
                row.status = status;
                row.attempts = attempt.number;
                row.next_at_ms = next_at_ms;
                row.last_error = error.clone();
                row.output = output;
                row.history.push(AttemptRecord {
                    attempt: attempt.number,
                    at_ms: now,
                    duration_us: attempt.duration_us,
                    outcome: kind,
                    detail: error,
                    handler: attempt.handler,
                });
            }
            drop(state);
            self.committed();
            Ok(())
        })();
        ready(result)
    }

    fn renew(&self, claim: ClaimId, until_ms: u64) -> StoreFuture<'_, ()> {
        ready(self.state().and_then(|mut state| state.hold(&claim, until_ms)))
    }

    fn release(&self, claim: ClaimId, not_before_ms: u64) -> StoreFuture<'_, ()> {
        ready(self.state().and_then(|mut state| state.hold(&claim, not_before_ms)))
    }

    fn replay(&self, delivery: Option<DeliveryId>) -> StoreFuture<'_, u64> {
        let result = (|| {
            let now = now_ms();
            let mut state = self.writer()?;
            let only = match delivery.as_ref().map(number) {
                Some(None) => return Ok(0),
                only => only.flatten(),
            };
            let mut replayed = Vec::new();
            for (id, row) in &mut state.deliveries {
                if row.status == DeliveryStatus::Dead && only.is_none_or(|o| o == *id) {
                    row.status = DeliveryStatus::Pending;
                    row.attempts = 0;
                    row.next_at_ms = now;
                    replayed.push(*id);
                }
            }
            // Their attempts count from zero again, whatever lease was left.
            for id in &replayed {
                state.leases.remove(id);
            }
            let n = replayed.len() as u64;
            drop(state);
            self.committed();
            Ok(n)
        })();
        ready(result)
    }

    fn queue_stats(&self, now_ms: u64) -> StoreFuture<'_, QueueStats> {
        ready(self.state().map(|s| {
            let pending = s.deliveries.values().filter(|r| r.status == DeliveryStatus::Pending);
            let oldest = pending.clone().filter(|r| r.next_at_ms <= now_ms).map(|r| r.next_at_ms).min();
            QueueStats {
                pending: pending.count() as u64,
                lag_ms: oldest.map_or(0, |t| now_ms.saturating_sub(t)),
                dead: s.deliveries.values().filter(|r| r.status == DeliveryStatus::Dead).count() as u64,
            }
        }))
    }
}

impl ReadModel for MemoryStore {
    fn events<'a>(
        &'a self,
        filter: EventFilter<'a>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(i64, EventSummary)>> {
        ready(self.state().map(|s| {
            s.events
                .range(..filter.before.unwrap_or(i64::MAX))
                .rev()
                .filter(|(_, e)| filter.kind.is_none_or(|k| glob(k, &e.event.kind)))
                .filter(|(_, e)| filter.source.is_none_or(|src| src == e.event.source))
                .take(limit)
                .filter_map(|(p, _)| s.summary(*p))
                .collect()
        }))
    }

    fn payload<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<(String, Vec<u8>)>> {
        ready(
            self.state()
                .map(|s| s.event(id).map(|e| (e.event.content_type.clone(), e.event.payload.clone()))),
        )
    }

    fn trace<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<EventTrace>> {
        ready(self.state().map(|s| s.trace(id, 0)))
    }

    fn deliveries(
        &self,
        status: DeliveryStatus,
        before: Option<DeliveryId>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DeliveryRecord>> {
        let before = match before.as_ref().map(number) {
            None => u64::MAX,
            Some(None) => return ready(Ok(Vec::new())),
            Some(Some(n)) => n,
        };
        ready(self.state().map(|s| {
            s.deliveries
                .range(..before)
                .rev()
                .filter(|(_, r)| r.status == status)
                .take(limit)
                .map(|(id, r)| s.record(*id, r))
                .collect()
        }))
    }

    fn delivery(&self, id: DeliveryId) -> StoreFuture<'_, Option<DeliveryDetail>> {
        ready(self.state().map(|s| {
            let (n, row) = number(&id).and_then(|n| Some((n, s.deliveries.get(&n)?)))?;
            let stored = s.event(&row.queued.event_id)?;
            Some(DeliveryDetail {
                delivery: s.record(n, row),
                event_kind: stored.event.kind.clone(),
                event_source: stored.event.source.clone(),
                payload: String::from_utf8_lossy(&stored.event.payload).into_owned(),
                attempts: row.history.clone(),
            })
        }))
    }

    fn job<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<JobRecord>> {
        ready(self.state().map(|s| {
            let row = s
                .deliveries
                .values()
                .find(|r| r.queued.event_id == id && r.queued.route == crate::JOB_ROUTE)?;
            Some(JobRecord {
                id: id.to_owned(),
                status: match row.status {
                    DeliveryStatus::Delivered => JobStatus::Succeeded,
                    DeliveryStatus::Dead => JobStatus::Failed,
                    DeliveryStatus::Pending => JobStatus::Pending,
                },
                attempts: row.attempts,
                output: row.output.as_deref().and_then(|o| serde_json::from_str(o).ok()),
                error: if row.status == DeliveryStatus::Dead { row.last_error.clone() } else { None },
            })
        }))
    }

    fn stats(&self, since_ms: u64) -> StoreFuture<'_, Vec<MinuteStats>> {
        ready(self.state().map(|s| {
            s.minutes
                .range(since_ms / 60_000..)
                .map(|(minute, [events, attempts, failures, sum, max])| MinuteStats {
                    minute_ms: minute * 60_000,
                    events: *events,
                    attempts: *attempts,
                    failures: *failures,
                    mean_ms: if *attempts > 0 { *sum as f64 / *attempts as f64 / 1000.0 } else { 0.0 },
                    max_ms: *max as f64 / 1000.0,
                })
                .collect()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn kinds_match_like_sqlite_glob() {
        assert!(glob("orders/*", "orders/create"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("orders/*", "refunds/create"));
        assert!(glob("*/paid", "orders/paid"));
        assert!(!glob("a*b*c", "aXbY"));
        // A hostile pattern does not blow up.
        assert!(!glob(&"*a".repeat(50), &"a".repeat(40)));
    }

    /// A log's attempts folded out of order (a claimer whose lease ran out stored its
    /// outcome after the next claimer's): the delivery shows the later attempt's outcome, and
    /// both attempts in its history.
    #[cfg(feature = "nats")]
    #[tokio::test]
    async fn an_earlier_attempt_folded_late_does_not_change_the_delivery() {
        use super::*;
        let store = MemoryStore::new();
        let event = Event::json("orders/create", "shop", &serde_json::json!({})).unwrap();
        let queued = QueuedDelivery {
            event_id: event.id.clone(),
            route: "orders".into(),
            target: "assess".into(),
            action: None,
            order_key: None,
        };
        store.project(1, vec![(1 << 20, event)], vec![(1 << 20, queued)], None);
        let settled = |attempt, outcome, detail: Option<&str>| ProjectedAttempt {
            delivery: 1 << 20,
            record: AttemptRecord {
                attempt,
                at_ms: 2,
                duration_us: 1,
                outcome,
                detail: detail.map(Into::into),
                handler: None,
            },
            output: None,
        };
        store.project(2, vec![], vec![], Some(settled(2, AttemptOutcome::Delivered, None)));
        store.project(3, vec![], vec![], Some(settled(1, AttemptOutcome::Retry, Some("late"))));
        let listed = store.deliveries(DeliveryStatus::Delivered, None, 10).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].attempts, listed[0].last_error.as_deref()), (2, None));
        let detail = store.delivery(listed[0].id.clone()).await.unwrap().unwrap();
        assert_eq!(detail.attempts.len(), 2);
    }
}
