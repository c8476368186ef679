//! Where stored events go next: routes match events to target instances, and the dispatcher
//! delivers them at least once, with retries, backoff and dead letters.

mod dispatcher;
pub mod receipt;
mod routes;
mod schedule;

pub use dispatcher::{
    BUILD, CALLBACK_ROUTE, CALLBACK_URL, CAUSED_BY, Callbacks, Dispatcher, HOPS, JOB_ROUTE, JOBS_SOURCE,
    LEASE, MAX_HOPS, MAX_LINEAGE_EVENTS, ROOT, RetryPolicy, webhook_events,
};
pub use routes::{Filter, Route, Routes};
pub use schedule::{
    MAX_CATCH_UP, Missed, SCHEDULE_SOURCE, SCHEDULED_FOR, Schedule, Scheduler, TICK_DEDUP_WINDOW_MS,
    parse_cron,
};
