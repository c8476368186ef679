//! The tape of one invocation (what `crate::recording` keeps and `crate::replay` answers from): every answer the host gave the plugin, in order (host calls and
//! WASI clock readings), and the seed of its random numbers. While recording, each answer is
//! appended as it is given; while replaying, each call is answered from the tape instead of
//! being run, and the first call that is not the recorded one (another call, other arguments, or
//! one past the end) is kept as the divergence and answered with a typed error.
//!
//! The tape is shared between the store's state (host calls) and the WASI context (clocks),
//! which owns its clock objects: hence one mutex, taken once per call. Random numbers are not on
//! it one by one: a recorded invocation draws them from a generator seeded for it
//! ([`SeededRandom`]), and its replay from the same seed.
//!
//! What a plugin can make a tape hold is bounded: every entry, the plugin's answer and the
//! events it published count against the recording's limit (arguments and answers by their size
//! before they are written out, so that an oversized call is never serialized), and a tape over
//! its limit stops taking anything.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::TryRng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::bindings::types::{Error, NewEvent, WebhookReply};

/// The longest rendering of a call's arguments kept in a [`Divergence`].
const SHOWN_ARGS_BYTES: usize = 1 << 10;

/// One answer the host gave: the call (`kv.get`, `http.send`, `clock.wall`, ...), its arguments
/// and the answer, both as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TapeEntry {
    /// The interface and function.
    pub call: String,
    /// The arguments, as the plugin passed them.
    pub args: Box<RawValue>,
    /// What the host answered.
    pub answer: Box<RawValue>,
}

/// What the plugin answered, before the host checked and stamped it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    /// The events `handle` returned.
    Events(Vec<NewEvent>),
    /// The reply `on-webhook` returned.
    Reply(WebhookReply),
    /// The output `invoke` returned, as JSON text.
    Output(String),
}

/// Where a replay left the recording: the first call the run made that was not the recorded
/// one. That call, and every later one, was answered with an `internal` error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// Its position among the recorded calls, from 0.
    pub index: usize,
    /// The call the run made.
    pub call: String,
    /// Its arguments (JSON, cut to 1 KiB, printable).
    pub args: String,
    /// The call recorded at that position, with its arguments; none past the recording's end.
    pub recorded: Option<(String, String)>,
}

/// One invocation's tape; cheap to clone (the clones share it).
#[derive(Clone)]
pub struct Tape {
    state: Arc<Mutex<State>>,
    /// What `wasi:random/insecure-seed` answers: a constant of the context, kept with the tape.
    pub(crate) insecure_seed: u128,
    /// The seed of the invocation's random numbers (`wasi:random/random` and `insecure`).
    pub(crate) random_seed: [u8; 32],
}

struct State {
    mode: Mode,
    /// Events the plugin published, as it wrote them.
    emitted: Vec<NewEvent>,
    /// What the plugin answered, once it has.
    answer: Option<Answer>,
}

enum Mode {
    Recording {
        entries: Vec<TapeEntry>,
        /// Bytes of JSON recorded so far, against `limit`.
        bytes: usize,
        limit: usize,
        /// Set once the recording outgrew its limit: it is no longer kept.
        overflowed: bool,
    },
    Replaying {
        entries: Vec<TapeEntry>,
        /// Where the next host call is looked for (ambient readings in between are skipped).
        next: usize,
        /// Host calls answered so far.
        asked: usize,
        divergence: Option<Divergence>,
        /// Per clock: where its next recorded reading is looked for.
        ambient: Vec<(&'static str, usize)>,
        /// Readings and config values the recording had none for, answered live.
        live: usize,
    },
}

/// What a finished tape holds.
pub(crate) struct Played {
    pub(crate) entries: Vec<TapeEntry>,
    /// Recording: whether it outgrew its limit. Replaying: unused.
    pub(crate) overflowed: bool,
    /// Replaying: the first call that was not the recorded one.
    pub(crate) divergence: Option<Divergence>,
    /// Replaying: recorded host calls the run never asked for.
    pub(crate) unasked: usize,
    /// Replaying: clock readings past what the recording holds, and config values it does not
    /// hold, answered live.
    pub(crate) live: usize,
    /// Events the plugin published, as it wrote them.
    pub(crate) emitted: Vec<NewEvent>,
    /// What the plugin answered, if it did.
    pub(crate) answer: Option<Answer>,
}

/// `value` as JSON, kept as written (serde_json's own output needs no second parse).
fn to_json<T: Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    // Serializing the contract's types cannot fail: no maps with non-string keys, no I/O.
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// How much of the common start a divergence shows before the arguments part.
const PARTING_CONTEXT: usize = 60;

/// The byte offset where `a` and `b` first differ.
fn parting(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// `args` from about byte `from` (with `…` when it starts later), cut to 1 KiB, printable.
fn shown(args: &str, from: usize) -> String {
    let mut start = from.min(args.len());
    while !args.is_char_boundary(start) {
        start -= 1;
    }
    let rest = &args[start..];
    let mut end = rest.len().min(SHOWN_ARGS_BYTES);
    while !rest.is_char_boundary(end) {
        end -= 1;
    }
    let lead = if start > 0 { "…" } else { "" };
    let tail = if end < rest.len() { "…" } else { "" };
    crate::printable(&format!("{lead}{}{tail}", &rest[..end]))
}

impl Tape {
    /// An empty tape that records, keeping at most `limit` bytes of JSON.
    pub(crate) fn recording(limit: usize) -> Tape {
        Tape {
            state: Arc::new(Mutex::new(State {
                mode: Mode::Recording { entries: Vec::new(), bytes: 0, limit, overflowed: false },
                emitted: Vec::new(),
                answer: None,
            })),
            insecure_seed: rand::random(),
            random_seed: rand::random(),
        }
    }

    /// A tape that answers from `entries`.
    pub(crate) fn replaying(entries: Vec<TapeEntry>, insecure_seed: u128, random_seed: [u8; 32]) -> Tape {
        Tape {
            state: Arc::new(Mutex::new(State {
                mode: Mode::Replaying {
                    entries,
                    next: 0,
                    asked: 0,
                    divergence: None,
                    ambient: Vec::new(),
                    live: 0,
                },
                emitted: Vec::new(),
                answer: None,
            })),
            insecure_seed,
            random_seed,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the tape half-written (every update is a
        // push or an index bump), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this tape answers calls instead of letting them run.
    pub(crate) fn is_replaying(&self) -> bool {
        matches!(self.lock().mode, Mode::Replaying { .. })
    }

    /// What the tape holds once the invocation is over.
    pub(crate) fn finish(&self) -> Played {
        let mut state = self.lock();
        let emitted = std::mem::take(&mut state.emitted);
        let answer = state.answer.take();
        match &mut state.mode {
            Mode::Recording { entries, overflowed, .. } => Played {
                live: 0,
                entries: std::mem::take(entries),
                overflowed: *overflowed,
                divergence: None,
                unasked: 0,
                emitted,
                answer,
            },
            Mode::Replaying { entries, next, divergence, live, .. } => Played {
                unasked: entries[(*next).min(entries.len())..]
                    .iter()
                    .filter(|e| !off_sequence(&e.call))
                    .count(),
                live: *live,
                entries: Vec::new(),
                overflowed: false,
                divergence: divergence.take(),
                emitted,
                answer,
            },
        }
    }

    /// Keeps what the plugin answered (for the outcome), counted against the limit.
    pub(crate) fn answered(&self, answer: Answer) {
        if self.count(answer.weight()) {
            self.lock().answer = Some(answer);
        }
    }

    /// Adds `bytes` to what a recording holds; false (and the recording is given up) when that
    /// is past its limit. Always true while replaying.
    pub(crate) fn count(&self, bytes: usize) -> bool {
        let mut state = self.lock();
        let Mode::Recording { bytes: held, limit, overflowed, .. } = &mut state.mode else {
            return true;
        };
        if *overflowed {
            return false;
        }
        *held = held.saturating_add(bytes);
        if *held > *limit {
            drop(state);
            self.give_up();
            return false;
        }
        true
    }

    /// Gives the recording up: it is over its limit, and keeps nothing more.
    fn give_up(&self) {
        let mut state = self.lock();
        if let Mode::Recording { entries, overflowed, .. } = &mut state.mode {
            *overflowed = true;
            *entries = Vec::new();
            state.emitted = Vec::new();
            state.answer = None;
        }
    }

    fn push(&self, call: &str, args: Box<RawValue>, answer: Box<RawValue>) {
        // Arguments and answers were counted by their estimate before they were written out;
        // what they came to is counted now.
        if !self.count(call.len() + args.get().len() + answer.get().len()) {
            return;
        }
        if let Mode::Recording { entries, .. } = &mut self.lock().mode {
            entries.push(TapeEntry { call: call.to_owned(), args, answer });
        }
    }

    /// Whether a call whose arguments or answer weigh about `estimate` bytes can still be
    /// recorded: false once the recording is over its limit or would be with them (it is then
    /// given up, and nothing more is written out). Always true while replaying.
    fn has_room(&self, estimate: usize) -> bool {
        let state = self.lock();
        match &state.mode {
            Mode::Recording { bytes, limit, overflowed, .. } => {
                let room = !*overflowed && bytes.saturating_add(estimate) <= *limit;
                drop(state);
                if !room {
                    self.give_up();
                }
                room
            }
            Mode::Replaying { .. } => true,
        }
    }

    /// While replaying: the recorded answer to `call` with `args` (JSON), or, when the run has
    /// left the recording, the divergence as an error. `None` while recording. With `loose`,
    /// only the call's name must match (an `emit` whose event changed is a difference in the
    /// outcome, not in the conversation).
    fn answer(&self, call: &str, args: &str, loose: bool) -> Option<Result<String, String>> {
        let mut state = self.lock();
        let Mode::Replaying { entries, next, asked, divergence, live, .. } = &mut state.mode else {
            return None;
        };
        if is_lookup(call) {
            // The operator's values, read in any order: the recorded value where there is one,
            // else the instance's own (the caller runs the call; it has no side effect).
            let found = entries.iter().find(|e| e.call == call && e.args.get() == args);
            if found.is_none() {
                *live += 1;
            }
            return found.map(|e| Ok(e.answer.get().to_owned()));
        }
        if let Some(d) = divergence {
            return Some(Err(format!("the replay already left the recording at call {}", d.index + 1)));
        }
        while entries.get(*next).is_some_and(|e| off_sequence(&e.call)) {
            *next += 1;
        }
        let recorded = entries.get(*next);
        let matches = recorded.is_some_and(|e| e.call == call && (loose || e.args.get() == args));
        if let (true, Some(entry)) = (matches, recorded) {
            *next += 1;
            *asked += 1;
            return Some(Ok(entry.answer.get().to_owned()));
        }
        // Where both have the same call, show both arguments from a little before they part.
        let from = match recorded {
            Some(e) if e.call == call => parting(args, e.args.get()).saturating_sub(PARTING_CONTEXT),
            _ => 0,
        };
        let d = Divergence {
            index: *asked,
            call: call.to_owned(),
            args: shown(args, from),
            recorded: recorded.map(|e| (e.call.clone(), shown(e.args.get(), from))),
        };
        let message = match &d.recorded {
            Some((c, _)) => format!(
                "replay: call {} was `{c}` when recorded, not `{call}` with these arguments",
                d.index + 1
            ),
            None => format!("replay: the recording has no call {} (`{call}`)", d.index + 1),
        };
        *divergence = Some(d);
        Some(Err(message))
    }

    /// Records an event the plugin published (for the outcome), counted against the limit.
    fn emitted(&self, event: &NewEvent) {
        if self.count(event_weight(event)) {
            self.lock().emitted.push(event.clone());
        }
    }

    /// While replaying: the next recorded value of ambient call `call` whose arguments are
    /// `args`, in the order recorded (`Some(None)` when the recording has no more: the caller
    /// answers live). `None` while recording.
    ///
    /// Clocks are read by language runtimes as much as by the plugin's own code, so another
    /// build (another language, another runtime version) reads them at other points: they are
    /// answered in their own order, apart from the host calls, and never make a replay leave
    /// the recording. The same build reads them exactly as recorded.
    fn ambient(&self, call: &'static str, args: &str) -> Option<Option<String>> {
        let mut state = self.lock();
        let Mode::Replaying { entries, ambient, live, .. } = &mut state.mode else { return None };
        let cursor = match ambient.iter_mut().find(|(c, _)| *c == call) {
            Some((_, cursor)) => cursor,
            None => {
                ambient.push((call, 0));
                &mut ambient.last_mut()?.1
            }
        };
        let found = entries[(*cursor).min(entries.len())..].iter().position(|e| e.call == call);
        match found.map(|i| *cursor + i) {
            Some(i) if entries[i].args.get() == args => {
                *cursor = i + 1;
                Some(Some(entries[i].answer.get().to_owned()))
            }
            _ => {
                // No more: later readings go live without looking again.
                *cursor = entries.len();
                *live += 1;
                Some(None)
            }
        }
    }

    /// A clock reading: the recorded one while replaying, else `live()` (recorded).
    fn reading(&self, call: &'static str, live: impl FnOnce() -> u64) -> u64 {
        if let Some(answer) = self.ambient(call, "null") {
            return answer.and_then(|a| serde_json::from_str(&a).ok()).unwrap_or_else(live);
        }
        let value = live();
        self.push(call, RawValue::NULL.to_owned(), to_json(&value));
        value
    }
}

/// Calls answered apart from the sequence of host calls, so that reading them at other points
/// does not make a replay leave the recording: clock readings, in their own order
/// ([`Tape::ambient`]), and the operator's config values, by key.
pub fn off_sequence(call: &str) -> bool {
    call.starts_with("clock.") || is_lookup(call)
}

/// What `bytes` bytes come to in a recording: JSON writes each as a number and a comma.
pub(crate) fn bytes_weight(bytes: usize) -> usize {
    bytes.saturating_mul(4)
}

/// What name-value pairs (headers, attributes) come to in a recording, about.
pub(crate) fn pairs_weight(pairs: &[(String, String)]) -> usize {
    pairs.iter().map(|(k, v)| k.len() + v.len() + 8).sum()
}

/// What a published or returned event comes to in a recording, about.
pub(crate) fn event_weight(event: &NewEvent) -> usize {
    bytes_weight(event.payload.len())
        + event.kind.len()
        + event.content_type.len()
        + pairs_weight(&event.attributes)
        + 96
}

impl Answer {
    /// What it comes to in a recording, about.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Answer::Events(events) => events.iter().map(event_weight).sum(),
            Answer::Reply(reply) => {
                reply.events.iter().map(event_weight).sum::<usize>()
                    + bytes_weight(reply.body.len())
                    + pairs_weight(&reply.headers)
            }
            Answer::Output(text) => text.len() + 2,
        }
    }
}

fn is_lookup(call: &str) -> bool {
    call.starts_with("config.")
}

/// The tape, if any, with the call's arguments as JSON: taken before the call runs, since the
/// call may consume them.
///
/// `bytes` is how many bytes of byte strings the arguments carry (a body, a value): a call whose
/// arguments would take the recording past its limit gives the recording up instead of being
/// written out, and runs untaped.
pub(crate) fn on_tape<'t, A: Serialize + ?Sized>(
    tape: Option<&'t Tape>,
    args: &A,
    bytes: usize,
) -> Option<(&'t Tape, Box<RawValue>)> {
    let tape = tape?;
    if !tape.has_room(bytes_weight(bytes)) {
        return None;
    }
    Some((tape, to_json(args)))
}

/// Runs one host call through its tape: without one, `live` runs; recording, `live` runs and its
/// answer is recorded; replaying, `live` never runs (no socket, no store, no side effect) and the
/// recorded answer is returned, or a typed error once the run has left the recording.
pub(crate) async fn play<T>(
    taped: Option<(&Tape, Box<RawValue>)>,
    call: &'static str,
    live: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error>
where
    T: Serialize + DeserializeOwned,
{
    play_weighed(taped, call, live, |_| 0).await
}

/// [`play`] for a call whose answer may carry many bytes: `bytes` says how many, so that an
/// answer that would take the recording past its limit is never written out.
pub(crate) async fn play_weighed<T>(
    taped: Option<(&Tape, Box<RawValue>)>,
    call: &'static str,
    live: impl Future<Output = Result<T, Error>>,
    bytes: impl FnOnce(&T) -> usize,
) -> Result<T, Error>
where
    T: Serialize + DeserializeOwned,
{
    let Some((tape, args)) = taped else { return live.await };
    if let Some(answer) = tape.answer(call, args.get(), false) {
        return answer
            .and_then(|a| {
                serde_json::from_str(&a)
                    .map_err(|e| format!("replay: the recorded answer to `{call}` does not read: {e}"))
            })
            .unwrap_or_else(|message| Err(Error::Internal(message)));
    }
    let answer = live.await;
    let weight = answer.as_ref().map(bytes).unwrap_or(0);
    if tape.has_room(bytes_weight(weight)) {
        tape.push(call, args, to_json(&answer));
    }
    answer
}

/// `emit.publish` through `tape`. Publishing only adds to the invocation's own output, so it
/// runs in a replay too (the outcome needs the event); the recorded answer (the event id the
/// host assigned) replaces the new one so that a plugin that quotes it behaves as recorded.
pub(crate) fn play_publish(
    tape: &Tape,
    event: &NewEvent,
    live: impl FnOnce() -> Result<String, Error>,
) -> Result<String, Error> {
    let Some((tape, args)) = on_tape(Some(tape), event, event.payload.len()) else { return live() };
    let replayed = tape.answer("emit.publish", args.get(), true);
    let answer = live();
    if answer.is_ok() {
        tape.emitted(event);
    }
    match replayed {
        None => {
            tape.push("emit.publish", args, to_json(&answer));
            answer
        }
        Some(Ok(recorded)) => match (answer, serde_json::from_str::<Result<String, Error>>(&recorded)) {
            (Ok(_), Ok(Ok(id))) => Ok(id),
            (answer, _) => answer,
        },
        Some(Err(message)) => answer.and(Err(Error::Internal(message))),
    }
}

/// `wasi:clocks/wall-clock` through a tape.
pub(crate) struct TapedWallClock(pub(crate) Tape);

impl wasmtime_wasi::HostWallClock for TapedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.reading("clock.wall", || {
            let since =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        }))
    }
}

/// `wasi:clocks/monotonic-clock` through a tape: nanoseconds since the tape's clock started.
/// Never backwards, also when a replay runs past the recorded readings into live ones.
pub(crate) struct TapedMonotonicClock {
    tape: Tape,
    started: std::time::Instant,
    last: std::sync::atomic::AtomicU64,
}

impl TapedMonotonicClock {
    pub(crate) fn new(tape: Tape) -> Self {
        TapedMonotonicClock { tape, started: std::time::Instant::now(), last: Default::default() }
    }
}

impl wasmtime_wasi::HostMonotonicClock for TapedMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        let started = self.started;
        let reading = self
            .tape
            .reading("clock.monotonic", || u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let last = self.last.fetch_max(reading, std::sync::atomic::Ordering::Relaxed);
        last.max(reading)
    }
}

/// `wasi:random` (secure or insecure) for a recorded or replayed invocation: SHA-256 of the
/// tape's seed, the stream's label and a counter, block after block. A recording keeps the seed,
/// not the numbers, and its replay draws the same numbers in the same order, whichever build
/// asks for them (and for how many). The seed comes from the operating system's generator, so
/// the numbers are as unpredictable as the host's own until the recording is read: a recording
/// holds every secret a plugin made from them, and is kept like one.
pub(crate) struct SeededRandom {
    seed: [u8; 32],
    label: &'static str,
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededRandom {
    pub(crate) fn new(seed: [u8; 32], label: &'static str) -> Self {
        SeededRandom { seed, label, counter: 0, block: [0; 32], used: 32 }
    }
}

impl TryRng for SeededRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, buf: &mut [u8]) -> Result<(), Infallible> {
        for out in buf.iter_mut() {
            if self.used == self.block.len() {
                let mut hash = Sha256::new();
                hash.update(self.label.as_bytes());
                hash.update(self.seed);
                hash.update(self.counter.to_le_bytes());
                self.block = hash.finalize().into();
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *out = self.block[self.used];
            self.used += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_numbers_whatever_the_sizes_asked_and_another_seed_others() {
        let mut whole = [0u8; 100];
        SeededRandom::new([7; 32], "random.secure").try_fill_bytes(&mut whole).unwrap();
        let mut pieces = SeededRandom::new([7; 32], "random.secure");
        let mut again = Vec::new();
        for n in [1, 3, 32, 64] {
            let mut b = vec![0; n];
            pieces.try_fill_bytes(&mut b).unwrap();
            again.extend(b);
        }
        assert_eq!(&whole[..], &again[..100]);
        let mut other = [0u8; 100];
        SeededRandom::new([8; 32], "random.secure").try_fill_bytes(&mut other).unwrap();
        assert_ne!(whole, other);
        SeededRandom::new([7; 32], "random.insecure").try_fill_bytes(&mut other).unwrap();
        assert_ne!(whole, other, "the two streams differ");
    }

    #[test]
    fn a_tape_over_its_limit_gives_the_recording_up_and_takes_nothing_more() {
        let tape = Tape::recording(1_000);
        assert!(on_tape(Some(&tape), &"small", 10).is_some());
        assert!(on_tape(Some(&tape), &"a big body", 10_000).is_none(), "never written out");
        assert!(on_tape(Some(&tape), &"small", 0).is_none(), "nothing after");
        assert!(tape.finish().overflowed);

        // The plugin's answer and what it published count too, and are dropped past the limit.
        let tape = Tape::recording(1_000);
        tape.answered(Answer::Output("x".repeat(2_000)));
        let played = tape.finish();
        assert!(played.overflowed && played.answer.is_none());
        let tape = Tape::recording(1_000);
        let big = NewEvent {
            kind: "k".into(),
            occurred_at_ms: None,
            content_type: "application/octet-stream".into(),
            payload: vec![0; 1_000],
            attributes: vec![],
        };
        assert!(play_publish(&tape, &big, || Ok("id".into())).is_ok(), "the event is still published");
        let played = tape.finish();
        assert!(played.overflowed && played.emitted.is_empty() && played.entries.is_empty());
    }
}
