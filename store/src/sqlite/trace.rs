//! Reading an event's path through the pipeline: the event, each delivery of it with every
//! attempt, and, recursively, the events those deliveries produced (linked by their `caused_by`
//! column). What `GET /v1/events/{id}` and the demo show.

use rusqlite::{Connection, params};

use super::SqliteStore;
use super::queries::delivery_from_row;
use crate::{
    EventFilter, EventSummary, EventTrace, MinuteStats, PAYLOAD_PREVIEW_BYTES, PayloadPreview, StoreError,
    TracedDelivery,
};

/// How many hops a trace follows.
const MAX_DEPTH: usize = 8;

fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventSummary> {
    let attributes: String = r.get(4)?;
    Ok(EventSummary {
        id: r.get(0)?,
        source: r.get(1)?,
        kind: r.get(2)?,
        stored_at_ms: r.get::<_, i64>(3)? as u64,
        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
        caused_by: r.get(5)?,
    })
}

const SUMMARY_COLUMNS: &str = "id, source, kind, stored_at_ms, attributes, caused_by";

fn trace(conn: &Connection, id: &str, depth: usize) -> rusqlite::Result<Option<EventTrace>> {
    let sql = format!("SELECT {SUMMARY_COLUMNS} FROM events WHERE id = ?1");
    let Some(event) = conn.prepare_cached(&sql)?.query_map(params![id], summary)?.next().transpose()? else {
        return Ok(None);
    };
    let payload = if depth == 0 {
        conn.prepare_cached(
            "SELECT content_type, substr(payload, 1, ?2), length(payload) FROM events WHERE id = ?1",
        )?
        .query_row(params![id, PAYLOAD_PREVIEW_BYTES as i64], |r| {
            let (content_type, start, bytes): (String, Vec<u8>, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let mut preview = PayloadPreview::of(&content_type, &start);
            preview.bytes = bytes as usize;
            preview.truncated = start.len() < preview.bytes;
            Ok(preview)
        })
        .ok()
    } else {
        None
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, event_id, route, target, status, attempts, last_error, action, output \
         FROM delivery_queue WHERE event_id = ?1 ORDER BY id",
    )?;
    let heads: Vec<(i64, crate::DeliveryRecord, Option<String>, Option<String>)> = stmt
        .query_map(params![id], |r| Ok((r.get(0)?, delivery_from_row(r)?, r.get(7)?, r.get(8)?)))?
        .collect::<Result<_, _>>()?;
    let mut deliveries = Vec::with_capacity(heads.len());
    for (row, d, action, output) in heads {
        let attempts = super::queries::attempts(conn, row)?;
        deliveries.push(TracedDelivery {
            id: d.id,
            route: d.route,
            target: d.target,
            action,
            status: d.status,
            attempts,
            output,
            produced: Vec::new(),
        });
    }
    if depth < MAX_DEPTH {
        // Produced events name the event, not the delivery; attach each to the delivery whose
        // target produced it (its source).
        let children: Vec<(String, String)> = conn
            .prepare_cached("SELECT id, source FROM events WHERE caused_by = ?1 ORDER BY seq")?
            .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (child, source) in children {
            let Some(t) = trace(conn, &child, depth + 1)? else { continue };
            let at = deliveries.iter().position(|d| d.target == source).unwrap_or(0);
            if let Some(d) = deliveries.get_mut(at) {
                d.produced.push(t);
            }
        }
    }
    Ok(Some(EventTrace { event, payload, deliveries }))
}

impl SqliteStore {
    /// Activity per minute since `since_ms`, oldest first: read from the per-minute totals the
    /// writer keeps, so that it costs the same at any history length.
    pub fn stats(&self, since_ms: u64) -> Result<Vec<MinuteStats>, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let mut stmt = conn.prepare_cached(
            "SELECT minute, events, attempts, failures, duration_us_sum, duration_us_max FROM minute_stats \
             WHERE minute >= ?1 ORDER BY minute",
        )?;
        let rows = stmt.query_map(params![(since_ms / 60_000) as i64], |r| {
            let (minute, events, attempts, failures, sum, max): (i64, i64, i64, i64, i64, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
            Ok(MinuteStats {
                minute_ms: minute as u64 * 60_000,
                events: events as u64,
                attempts: attempts as u64,
                failures: failures as u64,
                mean_ms: if attempts > 0 { sum as f64 / attempts as f64 / 1000.0 } else { 0.0 },
                max_ms: max as f64 / 1000.0,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Event `id`'s content type and payload, whole.
    pub fn payload(&self, id: &str) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let mut stmt = conn.prepare_cached("SELECT content_type, payload FROM events WHERE id = ?1")?;
        Ok(stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?.next().transpose()?)
    }

    /// Event `id` and everything that happened because of it.
    pub fn trace(&self, id: &str) -> Result<Option<EventTrace>, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        Ok(trace(&conn, id, 0)?)
    }

    /// A page of events, newest first, each with its position: see [`crate::ReadModel::events`].
    pub fn events(
        &self,
        filter: EventFilter<'_>,
        limit: usize,
    ) -> Result<Vec<(i64, EventSummary)>, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS}, seq FROM events WHERE (?1 IS NULL OR kind GLOB ?1) \
             AND (?2 IS NULL OR source = ?2) AND seq < ?3 ORDER BY seq DESC LIMIT ?4"
        );
        // A plain `seq < ?` (not `?3 IS NULL OR ...`) lets a page start where its cursor points
        // instead of walking down from the newest event.
        let before = filter.before.unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![filter.kind, filter.source, before, limit as i64], |r| {
            Ok((r.get(6)?, summary(r)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` events stored after position `after`, oldest first, with their positions.
    pub fn events_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, EventSummary)>, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        let sql = format!("SELECT {SUMMARY_COLUMNS}, seq FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![after, limit as i64], |r| Ok((r.get(6)?, summary(r)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The position of the newest event, 0 when there is none.
    pub fn last_position(&self) -> Result<i64, StoreError> {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        Ok(conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?)
    }
}
