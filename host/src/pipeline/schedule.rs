//! Schedules: cron-style triggers that invoke a plugin action (periodic analyses, polling APIs
//! that have no webhooks). A firing is an ordinary stored event with a queued delivery, so it
//! gets the same durability, retries and dead letters as everything else.

use std::str::FromStr;
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::Notify;

use crate::Event;
use crate::store::{Append, EventStore, QueuedDelivery};

/// One schedule, as configured.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Its name; firings are events of kind `schedule/{name}` from source `schedule`.
    pub name: String,
    /// When, as `sec min hour day-of-month month day-of-week [year]` in UTC, e.g. `0 0 2 * * *`.
    pub cron: String,
    /// The target instance.
    pub to: String,
    /// The action to invoke.
    pub action: String,
    /// The action's input.
    #[serde(default = "empty_object")]
    pub input: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

impl Schedule {
    /// Parses the cron expression; the error says what is wrong with it.
    pub fn parse(&self) -> Result<cron::Schedule, String> {
        cron::Schedule::from_str(&self.cron).map_err(|e| format!("bad cron expression `{}`: {e}", self.cron))
    }
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
    /// Starts one timer per schedule. Firings missed while the host was down are not made up.
    pub fn spawn(
        store: Arc<dyn EventStore>,
        schedules: Vec<Schedule>,
        wake: Arc<Notify>,
    ) -> Result<Self, String> {
        let mut tasks = Vec::new();
        for s in schedules {
            let cron = s.parse()?;
            let (store, wake) = (store.clone(), wake.clone());
            tasks.push(tokio::spawn(async move {
                for next in cron.upcoming(chrono::Utc) {
                    let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
                    tokio::time::sleep(wait).await;
                    if let Err(e) = fire(store.as_ref(), &s).await {
                        tracing::error!(schedule = %s.name, "could not store a schedule firing: {e}");
                    }
                    wake.notify_one();
                }
            }));
        }
        Ok(Scheduler { tasks })
    }
}

async fn fire(store: &dyn EventStore, s: &Schedule) -> Result<(), String> {
    let event =
        Event::json(&format!("schedule/{}", s.name), "schedule", &s.input).map_err(|e| e.to_string())?;
    let delivery = QueuedDelivery {
        event_id: event.id.clone(),
        route: format!("schedule:{}", s.name),
        target: s.to.clone(),
        action: Some(s.action.clone()),
        order_key: None,
    };
    store
        .append(Append {
            instance: "schedule".into(),
            delivery_id: None,
            dedup_window_ms: 0,
            events: vec![event],
            deliveries: vec![delivery],
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
