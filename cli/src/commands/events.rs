//! `plugboard events` and `plugboard jobs`: what the store holds, read directly from the
//! database a server uses (SQLite lets both run at once) or from the NATS cluster.

use clap::Subcommand;
use plugboard::store::{EventFilter, EventTrace};

use super::server::{ConfigArgs, open_store};

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The newest events.
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// Only this kind (`*` wildcards, e.g. `orders/*`).
        #[arg(long)]
        kind: Option<String>,
        /// Only from this instance.
        #[arg(long)]
        source: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One event's path: each delivery and attempt, and what each produced.
    Show {
        #[command(flatten)]
        config: ConfigArgs,
        /// The event's id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Write the event's payload to stdout, byte for byte, and nothing else.
        #[arg(long, conflicts_with = "json")]
        raw: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// An async job's status and output.
    Show {
        #[command(flatten)]
        config: ConfigArgs,
        /// The job's id.
        id: String,
    },
}

pub(super) fn when(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_default()
}

fn print_trace(trace: &EventTrace, depth: usize) -> anyhow::Result<()> {
    let pad = "    ".repeat(depth);
    let e = &trace.event;
    say!("{pad}{}  {} from {}  {}", when(e.stored_at_ms), e.kind, e.source, e.id);
    for d in &trace.deliveries {
        let action = d.action.as_deref().unwrap_or("handle");
        say!("{pad}  route {} -> {} ({action}): {}", d.route, d.target, d.status);
        for a in &d.attempts {
            // Failure details quote plugins' own error messages.
            let detail =
                a.detail.as_deref().map(|d| format!(": {}", plugboard::printable(d))).unwrap_or_default();
            let handler = a.handler.as_deref().map(|h| format!(" by {h}")).unwrap_or_default();
            say!(
                "{pad}    attempt {} at {} took {:.1} ms{handler}: {}{detail}",
                a.attempt,
                when(a.at_ms),
                a.duration_us as f64 / 1000.0,
                a.outcome
            );
        }
        for child in &d.produced {
            print_trace(child, depth + 1)?;
        }
    }
    Ok(())
}

pub async fn events(cmd: EventsCommand) -> anyhow::Result<()> {
    match cmd {
        EventsCommand::List { config, kind, source, limit, json } => {
            let filter = EventFilter { kind: kind.as_deref(), source: source.as_deref(), before: None };
            let events: Vec<_> =
                open_store(&config).await?.events(filter, limit).await?.into_iter().map(|(_, e)| e).collect();
            if json {
                say!("{}", serde_json::to_string_pretty(&events)?);
            } else if events.is_empty() {
                say!("no events");
            }
            if !json {
                for e in events {
                    let cause = e.caused_by.map(|c| format!("  (from {c})")).unwrap_or_default();
                    say!("{}  {:<24} {:<16} {}{cause}", when(e.stored_at_ms), e.kind, e.source, e.id);
                }
            }
            Ok(())
        }
        EventsCommand::Show { config, id, json, raw } => {
            let store = open_store(&config).await?;
            if raw {
                let (_, payload) =
                    store.payload(&id).await?.ok_or_else(|| anyhow::anyhow!("no event {id}"))?;
                use std::io::Write as _;
                std::io::stdout().lock().write_all(&payload)?;
                return Ok(());
            }
            let trace = store.trace(&id).await?.ok_or_else(|| anyhow::anyhow!("no event {id}"))?;
            if json {
                say!("{}", serde_json::to_string_pretty(&trace)?);
            } else {
                if let Some(p) = &trace.payload {
                    let more = if p.truncated { " (the start; --raw prints it all)" } else { "" };
                    say!("payload: {} bytes of {}{more}", p.bytes, p.content_type);
                    say!("{}", p.text);
                }
                print_trace(&trace, 0)?;
            }
            Ok(())
        }
    }
}

pub async fn jobs(cmd: JobsCommand) -> anyhow::Result<()> {
    match cmd {
        JobsCommand::Show { config, id } => {
            let job =
                open_store(&config).await?.job(&id).await?.ok_or_else(|| anyhow::anyhow!("no job {id}"))?;
            say!("{}", serde_json::to_string_pretty(&job)?);
            Ok(())
        }
    }
}
