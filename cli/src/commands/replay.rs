//! `plugboard replay`, `plugboard recordings` and `plugboard plugin shadow`: recorded
//! invocations, read from the store a server uses, run again in this process with every host
//! call answered from the recording (no network, no store writes), on the recorded build or
//! another one.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use plugboard::config::Resolved;
use plugboard::printable;
use plugboard::runtime::recording::{Answer, Outcome, Recording, RecordingLog, off_sequence};
use plugboard::runtime::replay::{Replayed, ShadowExample, ShadowReport};
use plugboard::runtime::text::clip;
use plugboard::store::SqliteRecordingLog;
use plugboard::types::NewEvent;
use plugboard::{Host, HostBuilder};

use super::server::ConfigArgs;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The recording's id, or an event's id (its newest recording).
    #[arg(required_unless_present = "from", conflicts_with = "from")]
    id: Option<String>,
    /// Replay a recording exported to a file (`--export`) instead of one from the store.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// Replay on this build instead of the instance's configured one. Without a configuration
    /// the instance is granted what it requests: every answer but `emit` and `log` comes from
    /// the recording anyway.
    #[arg(long, value_name = "WASM")]
    with: Option<PathBuf>,
    /// Write the recording to DIR/<id>.json, a fixture for the plugin's own tests, instead of
    /// replaying it.
    #[arg(long, value_name = "DIR", conflicts_with = "from")]
    export: Option<PathBuf>,
    /// Print the recording and the replay as JSON.
    #[arg(long)]
    json: bool,
}

/// The largest recording file `--from` reads.
const MAX_FIXTURE_BYTES: u64 = 64 << 20;

#[derive(Debug, Args)]
pub struct RecordingsArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only this instance's.
    #[arg(long)]
    instance: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ShadowArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The instance whose recordings are replayed.
    instance: String,
    /// The candidate build.
    wasm: PathBuf,
    /// How many of the instance's newest recordings to replay.
    #[arg(long, default_value_t = 20)]
    last: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The recordings in the store of the configuration at `path`.
fn open_recordings(path: &Path) -> anyhow::Result<(Resolved, SqliteRecordingLog)> {
    let resolved = Resolved::load(path)?;
    let path = SqliteRecordingLog::path_beside(&resolved.store_path);
    let log = SqliteRecordingLog::open(&path, resolved.config.recordings.retain)
        .with_context(|| format!("opening the recordings in {}", path.display()))?;
    Ok((resolved, log))
}

/// A host with instance `id` loaded as the configuration declares it, from `with` if given.
/// It has no store and no secrets: a replay needs neither.
async fn host_with_instance(
    builder: HostBuilder,
    resolved: &Resolved,
    id: &str,
    with: Option<&Path>,
) -> anyhow::Result<Host> {
    let Some(spec) = resolved.specs.iter().find(|s| s.id == id) else {
        anyhow::bail!("the configuration has no instance `{}`", printable(id));
    };
    let mut spec = spec.clone();
    spec.record = None;
    if let Some(with) = with {
        spec.wasm = with.to_owned();
        spec.precompiled = None;
    }
    let host = builder.fuel_metering(resolved.uses_fuel()).build()?;
    host.load(spec).await?;
    Ok(host)
}

/// `plugboard replay ID`, `--from FILE`, `--export DIR`.
pub async fn replay(builder: HostBuilder, args: ReplayArgs) -> anyhow::Result<()> {
    let (recording, resolved) = match (&args.from, &args.id) {
        (Some(file), _) => (read_fixture(file)?, None),
        (None, Some(id)) => {
            let (resolved, log) = open_recordings(args.config.path())?;
            let found = tokio::task::spawn_blocking({
                let id = id.clone();
                move || log.get(&id)
            })
            .await?;
            let recording =
                found.with_context(|| format!("no recording or recorded event `{}`", printable(id)))?;
            (recording, Some(resolved))
        }
        (None, None) => anyhow::bail!("name a recording, or a file with --from"),
    };
    if let Some(dir) = &args.export {
        return export(&recording, dir);
    }
    let host = match (resolved, &args.with) {
        (Some(resolved), with) => {
            host_with_instance(builder, &resolved, &recording.instance, with.as_deref()).await?
        }
        // A fixture on a given build: no configuration needed.
        (None, Some(wasm)) => {
            let host = builder.build()?;
            let spec =
                plugboard::PluginSpec::new(&recording.instance, wasm).with_grants(plugboard::Grants::all());
            host.load(spec).await?;
            host
        }
        (None, None) => {
            let resolved = Resolved::load(args.config.path()).context(
                "a recording from a file replays on the configuration's instance, or on --with WASM",
            )?;
            host_with_instance(builder, &resolved, &recording.instance, None).await?
        }
    };
    let replayed = host.replay(&recording.instance, &recording).await?;
    let identical = replayed.identical_to(&recording);
    if args.json {
        let both =
            serde_json::json!({ "identical": identical, "recording": recording, "replayed": replayed });
        say!("{}", serde_json::to_string_pretty(&both)?);
    } else {
        say!("recording   {}", describe_recording(&recording));
        say!("recorded    {}  {}", printable(&recording.build), ending(&recording.outcome));
        say!("replayed    {}  {}", printable(&replayed.build), ending(&replayed.outcome));
        let recorded = recording.calls.iter().filter(|c| !off_sequence(&c.call)).count();
        let answered = recorded.saturating_sub(replayed.unasked);
        let ambient = recording.calls.len() - recorded;
        say!("host calls  {recorded} recorded, {answered} answered from the recording");
        say!(
            "readings    {ambient} clock and config values recorded, {} more read live",
            replayed.live_readings
        );
        say!("");
        if identical {
            say!("identical: the same host calls, the same events, the same answer");
        } else {
            say!("different:");
            for line in differences(&recording.outcome, &replayed) {
                say!("  {line}");
            }
        }
    }
    if !identical {
        anyhow::bail!("the replay differs from the recording");
    }
    Ok(())
}

/// A recording exported by `--export`: read whole, at most [`MAX_FIXTURE_BYTES`].
fn read_fixture(file: &Path) -> anyhow::Result<Recording> {
    use std::io::Read as _;
    let opened = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let mut text = String::new();
    opened
        .take(MAX_FIXTURE_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", file.display()))?;
    if text.len() as u64 > MAX_FIXTURE_BYTES {
        anyhow::bail!("{} is over {} MiB: not a recording", file.display(), MAX_FIXTURE_BYTES >> 20);
    }
    serde_json::from_str(&text).with_context(|| format!("{} is not a recording", file.display()))
}

/// Writes `recording` to `dir/<id>.json` and says how to run it.
fn export(recording: &Recording, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // The id is the host's (a UUID), but the file name must not leave `dir` whatever it holds.
    let name: String =
        recording.id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(64).collect();
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(recording)?)
        .with_context(|| format!("writing {}", path.display()))?;
    say!("{}", path.display());
    eprintln!(
        "replay it on a build with: plugboard replay --from {} --with your-build.wasm \
         (or from the Python and TypeScript SDKs' tests: replay_fixture / replayFixture)",
        path.display()
    );
    Ok(())
}

/// `plugboard recordings`.
pub async fn list(args: RecordingsArgs) -> anyhow::Result<()> {
    let (_, log) = open_recordings(args.config.path())?;
    let (instance, limit) = (args.instance.clone(), args.limit);
    let summaries = tokio::task::spawn_blocking(move || log.summaries(instance.as_deref(), limit)).await?;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&summaries)?);
        return Ok(());
    }
    if summaries.is_empty() {
        say!("no recordings (an instance records with `record = \"all\"`, `\"failures\"` or a rate)");
    }
    for s in summaries {
        let outcome = match &s.error {
            None => "ok".to_owned(),
            Some(e) => format!("failed: {}", clip(e, 120)),
        };
        say!(
            "{}  {}  {:<12} {:<16} {:>3} calls  {}  {}",
            printable(&s.id),
            super::events::when(s.recorded_at_ms),
            printable(&s.instance),
            printable(&s.call),
            s.host_calls,
            printable(&s.build),
            printable(&outcome)
        );
    }
    Ok(())
}

/// `plugboard plugin shadow INSTANCE WASM`.
pub async fn shadow(builder: HostBuilder, args: ShadowArgs) -> anyhow::Result<()> {
    let (resolved, log) = open_recordings(args.config.path())?;
    let (instance, last) = (args.instance.clone(), args.last);
    let recordings = tokio::task::spawn_blocking(move || log.recent(Some(&instance), last)).await?;
    if recordings.is_empty() {
        anyhow::bail!("instance `{}` has no recordings to replay", printable(&args.instance));
    }
    let host = host_with_instance(builder, &resolved, &args.instance, None).await?;
    let component =
        tokio::fs::read(&args.wasm).await.with_context(|| format!("reading {}", args.wasm.display()))?;
    let candidate = host.candidate(&args.instance, &component).await?;
    let report = host.shadow(&candidate, &recordings).await;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&args.instance, &report)?;
    }
    if !report.clean() {
        anyhow::bail!(
            "the candidate differs on {} and fails on {} of {} recordings",
            report.different,
            report.failed,
            report.replayed
        );
    }
    Ok(())
}

fn print_report(instance: &str, report: &ShadowReport) -> anyhow::Result<()> {
    say!(
        "shadow {}: candidate {} over the last {} recordings",
        printable(instance),
        printable(&report.build),
        report.replayed
    );
    say!("  identical  {}", report.identical);
    say!("  different  {}", report.different);
    say!("  failed     {}", report.failed);
    for ShadowExample { verdict, recording, event_id, recorded_build, recorded, replayed, error } in
        &report.examples
    {
        let event = event_id.as_deref().map(|e| format!(", event {e}")).unwrap_or_default();
        say!("");
        say!(
            "{verdict}: recording {}{} (recorded on {})",
            printable(recording),
            printable(&event),
            printable(recorded_build)
        );
        match (replayed, error) {
            (Some(replayed), _) => {
                for line in differences(recorded, replayed) {
                    say!("  {line}");
                }
            }
            (None, Some(error)) => say!("  could not replay: {}", printable(error)),
            (None, None) => {}
        }
    }
    Ok(())
}

/// `ID (instance, call, event, when)`.
fn describe_recording(r: &Recording) -> String {
    let s = r.summary();
    let event = s.event_id.as_deref().map(|e| format!(", event {e}")).unwrap_or_default();
    printable(&format!(
        "{} ({}, {}{event}, {})",
        s.id,
        s.instance,
        s.call,
        super::events::when(s.recorded_at_ms)
    ))
}

/// `ok, 2 events published` or `failed: ...`.
fn ending(outcome: &Outcome) -> String {
    let published = match outcome.emitted.len() {
        1 => "1 event published".to_owned(),
        n => format!("{n} events published"),
    };
    match &outcome.error {
        None => format!("ok, {published}"),
        Some(e) => format!("failed ({published}): {}", printable(&clip(e, 200))),
    }
}

/// What differs between the recorded outcome and the replay, one line each.
fn differences(recorded: &Outcome, replayed: &Replayed) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(d) = &replayed.divergence {
        let asked = format!("`{}` {}", printable(&d.call), clip(&d.args, 200));
        let there = match &d.recorded {
            Some((call, args)) => {
                format!("the recording has `{}` {} there", printable(call), clip(args, 200))
            }
            None => "the recording has no more calls".to_owned(),
        };
        lines.push(format!(
            "left the recording at call {}: the build asked {asked}; {there}. It was answered with an error.",
            d.index + 1
        ));
    }
    if replayed.unasked > 0 && replayed.divergence.is_none() {
        lines.push(format!("{} recorded calls were never asked", replayed.unasked));
    }
    let now = &replayed.outcome;
    if recorded.error != now.error {
        lines.push(format!(
            "error: recorded {}; replayed {}",
            recorded.error.as_deref().map(|e| printable(&clip(e, 300))).unwrap_or_else(|| "none".into()),
            now.error.as_deref().map(|e| printable(&clip(e, 300))).unwrap_or_else(|| "none".into())
        ));
    }
    let count = recorded.emitted.len().max(now.emitted.len());
    for i in 0..count {
        let (before, after) = (recorded.emitted.get(i), now.emitted.get(i));
        if before.map(event_json) != after.map(event_json) {
            lines.push(format!("published event {}:", i + 1));
            lines.push(format!("  recorded  {}", before.map(show_event).unwrap_or_else(|| "(none)".into())));
            lines.push(format!("  replayed  {}", after.map(show_event).unwrap_or_else(|| "(none)".into())));
        }
    }
    let (before, after) = (recorded.answer.as_ref().map(show_answer), now.answer.as_ref().map(show_answer));
    if before != after {
        lines.push("answer:".into());
        lines.push(format!("  recorded  {}", before.unwrap_or_else(|| "(none)".into())));
        lines.push(format!("  replayed  {}", after.unwrap_or_else(|| "(none)".into())));
    }
    if lines.is_empty() {
        lines.push("the outcomes differ".into());
    }
    lines
}

fn event_json(event: &NewEvent) -> Option<serde_json::Value> {
    serde_json::to_value(event).ok()
}

/// `kind payload` with the payload as text when it is UTF-8, cut and made printable.
fn show_event(event: &NewEvent) -> String {
    let attributes: Vec<String> = event.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let attributes =
        if attributes.is_empty() { String::new() } else { format!(" [{}]", attributes.join(", ")) };
    format!("{} {}{}", printable(&event.kind), payload(&event.payload), printable(&clip(&attributes, 200)))
}

fn show_answer(answer: &Answer) -> String {
    match answer {
        Answer::Events(events) => {
            let shown: Vec<String> = events.iter().map(show_event).collect();
            format!("{} events returned: {}", events.len(), shown.join("; "))
        }
        Answer::Reply(reply) => format!("reply {} {}", reply.status, payload(&reply.body)),
        Answer::Output(text) => format!("output {}", printable(&clip(text, 300))),
    }
}

fn payload(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => printable(&clip(text, 300)),
        Err(_) => format!("({} bytes, not UTF-8)", bytes.len()),
    }
}
