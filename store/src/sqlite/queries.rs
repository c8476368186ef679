//! Reads: what is due for the dispatcher, and the queue, jobs and events as operators see them.
//! With WAL they do not wait for the writer.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};

use super::writer::sql_ms;
use super::{SqliteStore, delivery_id, rowid};
use crate::{
    AttemptOutcome, AttemptRecord, Claimed, DeliveryDetail, DeliveryId, DeliveryRecord, DeliveryStatus,
    JobRecord, JobStatus, QueueStats, StoreError,
};
use plugboard_runtime::types::Event;

/// The due deliveries after a position in the queue, oldest first: what every claim reads.
pub(super) const DUE_ROWS: &str = "SELECT q.id, q.next_at_ms, q.route, q.target, q.action, q.attempts, q.event_id \
     FROM delivery_queue q \
     WHERE q.status = 'pending' AND q.next_at_ms <= ?1 AND (q.next_at_ms, q.id) > (?3, ?4) \
       AND (q.order_key IS NULL OR q.id = (SELECT MIN(p.id) FROM delivery_queue p \
            WHERE p.status = 'pending' AND p.route = q.route AND p.order_key = q.order_key)) \
     ORDER BY q.next_at_ms, q.id LIMIT ?2";

impl SqliteStore {
    /// Up to `limit` pending deliveries due at `now_ms`, oldest due first, after the position
    /// `after` (`(next_at_ms, row)` of the last one seen), without their events; of deliveries
    /// with an ordering key, only the oldest pending one of its route and key (the queue's FIFO
    /// order).
    pub(super) fn due_rows(
        &self,
        now_ms: u64,
        after: Option<(u64, i64)>,
        limit: usize,
    ) -> Result<Vec<DueRow>, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let mut stmt = conn.prepare_cached(DUE_ROWS)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (after_at, after_row) = after.map_or((i64::MIN, i64::MIN), |(at, row)| (sql_ms(at), row));
        let rows = stmt.query_map(params![sql_ms(now_ms), limit, after_at, after_row], |r| {
            let row: i64 = r.get(0)?;
            Ok(DueRow {
                row,
                next_at_ms: r.get::<_, i64>(1)? as u64,
                id: delivery_id(row),
                route: r.get(2)?,
                target: r.get(3)?,
                action: r.get(4)?,
                attempts: r.get::<_, i64>(5)? as u32,
                event_id: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The stored event `id`.
    pub(super) fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, source, kind, occurred_at_ms, content_type, payload, attributes FROM events WHERE id = ?1",
        )?;
        Ok(stmt.query_row(params![id], |r| event_from_row(r, 0)).optional()?)
    }

    /// What a claim at `now_ms` would look at first: up to `limit` due deliveries, leased or
    /// not, with their events; nothing claimed.
    pub fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<Claimed>, StoreError> {
        let mut due = Vec::new();
        for row in self.due_rows(now_ms, None, limit)? {
            let Some(event) = self.event(&row.event_id)? else { continue };
            let attempt = row.attempts.saturating_add(1);
            due.push(row.claimed(event, attempt, 0));
        }
        Ok(due)
    }

    /// One delivery with its event and every attempt.
    pub fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryDetail>, StoreError> {
        let Some(id) = rowid(id) else { return Ok(None) };
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let head = conn
            .query_row(
                "SELECT q.id, q.event_id, q.route, q.target, q.status, q.attempts, q.last_error, e.kind, e.source, e.payload \
                 FROM delivery_queue q JOIN events e ON e.id = q.event_id WHERE q.id = ?1",
                params![id],
                |r| {
                    Ok(DeliveryDetail {
                        delivery: delivery_from_row(r)?,
                        event_kind: r.get(7)?,
                        event_source: r.get(8)?,
                        payload: String::from_utf8_lossy(&r.get::<_, Vec<u8>>(9)?).into_owned(),
                        attempts: Vec::new(),
                    })
                },
            )
            .optional()?;
        let Some(mut detail) = head else { return Ok(None) };
        detail.attempts = attempts(&conn, id)?;
        Ok(Some(detail))
    }

    /// The async job whose id is `id` (the id of its `job/requested` event).
    pub fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        Ok(conn
            .query_row(
                "SELECT status, attempts, output, last_error FROM delivery_queue WHERE event_id = ?1 AND route = 'job'",
                params![id],
                |r| {
                    let status: DeliveryStatus = r.get(0)?;
                    Ok(JobRecord {
                        id: id.to_owned(),
                        status: match status {
                            DeliveryStatus::Delivered => JobStatus::Succeeded,
                            DeliveryStatus::Dead => JobStatus::Failed,
                            DeliveryStatus::Pending => JobStatus::Pending,
                        },
                        attempts: r.get::<_, i64>(1)? as u32,
                        output: r.get::<_, Option<String>>(2)?.and_then(|o| serde_json::from_str(&o).ok()),
                        error: if status == DeliveryStatus::Dead { r.get(3)? } else { None },
                    })
                },
            )
            .optional()?)
    }

    /// The newest `limit` deliveries with `status`, newest first.
    pub fn deliveries(
        &self,
        status: DeliveryStatus,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.deliveries_before(status, None, limit)
    }

    /// The newest `limit` deliveries with `status` queued before the delivery `before` (all
    /// when `None`), newest first: a page, whose last id is the cursor of the next.
    pub fn deliveries_before(
        &self,
        status: DeliveryStatus,
        before: Option<&DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        // An id this backend did not make is no position in it: nothing is before it.
        let before = match before.map(rowid) {
            None => i64::MAX,
            Some(None) => return Ok(Vec::new()),
            Some(Some(row)) => row,
        };
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, event_id, route, target, status, attempts, last_error FROM delivery_queue \
             WHERE status = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![status.as_str(), before, limit as i64], delivery_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether `delivery_id` of `instance` is already stored and not expired.
    pub fn is_duplicate(&self, instance: &str, delivery_id: &str) -> Result<bool, StoreError> {
        if self.seen_ids.as_ref().is_some_and(|seen| !seen.may_hold(instance, delivery_id)) {
            return Ok(false);
        }
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let now = plugboard_runtime::clock::now_ms() as i64;
        // Prepared once: every webhook that carries a delivery id (as every Shopify, GitHub,
        // Stripe and Slack one does) asks this before its connector runs, and parsing the
        // statement each time took about as long as running it.
        let found: Option<i64> = conn
            .prepare_cached(
                "SELECT 1 FROM webhook_deliveries WHERE instance = ?1 AND delivery_id = ?2 AND expires_at_ms > ?3",
            )?
            .query_row(params![instance, delivery_id, now], |r| r.get(0))
            .optional()?;
        Ok(found.is_some())
    }

    /// The most recent `limit` events, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let mut stmt = conn.prepare(
            "SELECT id, source, kind, occurred_at_ms, content_type, payload, attributes \
             FROM events ORDER BY seq DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], |r| event_from_row(r, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The delivery queue's depth, lag and dead letters at `now_ms`.
    pub fn queue_stats(&self, now_ms: u64) -> Result<QueueStats, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        // Three index ranges (pending and dead rows only), not a scan of every delivery ever
        // made: `/metrics` runs this at each scrape.
        let (pending, oldest, dead): (i64, Option<i64>, i64) = conn.query_row(
            "SELECT (SELECT COUNT(*) FROM delivery_queue WHERE status = 'pending'), \
                    (SELECT MIN(next_at_ms) FROM delivery_queue WHERE status = 'pending' AND next_at_ms <= ?1), \
                    (SELECT COUNT(*) FROM delivery_queue WHERE status = 'dead')",
            params![now_ms as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(QueueStats {
            pending: pending as u64,
            lag_ms: oldest.map(|t| now_ms.saturating_sub(t as u64)).unwrap_or(0),
            dead: dead as u64,
        })
    }

    /// How many events are stored.
    pub fn count(&self) -> Result<u64, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        Ok(conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))? as u64)
    }
}

/// A due delivery as a claim first reads it: without its event.
pub(super) struct DueRow {
    pub(super) row: i64,
    pub(super) next_at_ms: u64,
    pub(super) id: DeliveryId,
    pub(super) route: String,
    pub(super) target: String,
    pub(super) action: Option<String>,
    /// Attempts stored so far.
    pub(super) attempts: u32,
    pub(super) event_id: String,
}

impl DueRow {
    /// The claim of this delivery, as attempt `attempt` under lease `lease`, with its event.
    pub(super) fn claimed(self, event: Event, attempt: u32, lease: u64) -> Claimed {
        Claimed {
            id: self.id,
            event,
            route: self.route,
            target: self.target,
            action: self.action,
            attempt,
            lease,
        }
    }
}

/// Every attempt of delivery `id`, oldest first.
pub(super) fn attempts(conn: &Connection, id: i64) -> rusqlite::Result<Vec<AttemptRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT attempt, at_ms, duration_us, outcome, detail, handler FROM attempts WHERE delivery = ?1 ORDER BY rowid",
    )?;
    let rows = stmt.query_map(params![id], |r| {
        Ok(AttemptRecord {
            attempt: r.get::<_, i64>(0)? as u32,
            at_ms: r.get::<_, i64>(1)? as u64,
            duration_us: r.get::<_, i64>(2)? as u64,
            outcome: r.get(3)?,
            detail: r.get(4)?,
            handler: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// Reads `id, event_id, route, target, status, attempts, last_error` from the first columns.
pub(super) fn delivery_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: delivery_id(r.get(0)?),
        event_id: r.get(1)?,
        route: r.get(2)?,
        target: r.get(3)?,
        status: r.get(4)?,
        attempts: r.get::<_, i64>(5)? as u32,
        last_error: r.get(6)?,
    })
}

pub(super) fn event_from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Event> {
    let attributes: String = r.get(at + 6)?;
    Ok(Event {
        id: r.get(at)?,
        source: r.get(at + 1)?,
        kind: r.get(at + 2)?,
        occurred_at_ms: r.get::<_, i64>(at + 3)? as u64,
        content_type: r.get(at + 4)?,
        payload: r.get(at + 5)?,
        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
    })
}

/// A status column, as the schema spells it.
impl FromSql for DeliveryStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let name = value.as_str()?;
        DeliveryStatus::parse(name)
            .ok_or_else(|| FromSqlError::Other(format!("unknown delivery status {name:?}").into()))
    }
}

/// An attempt's outcome column, as the schema spells it.
impl FromSql for AttemptOutcome {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let name = value.as_str()?;
        AttemptOutcome::parse(name)
            .ok_or_else(|| FromSqlError::Other(format!("unknown attempt outcome {name:?}").into()))
    }
}
