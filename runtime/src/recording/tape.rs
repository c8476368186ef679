//! The tape of one invocation: every answer the host gave the plugin, in order (host calls, WASI
//! clock readings, random bytes). While recording, each answer is appended as it is given; while
//! replaying, each call is answered from the tape instead of being run, and the first call that
//! is not the recorded one (another call, other arguments, or one past the end) is kept as the
//! divergence and answered with a typed error.
//!
//! The tape is shared between the store's state (host calls) and the WASI context (clocks,
//! random), which owns its clock and generator objects: hence one mutex, taken once per call.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::{Rng, SeedableRng, TryRng};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::{Answer, Divergence, TapeEntry};
use crate::bindings::types::{Error, NewEvent};

/// The longest rendering of a call's arguments kept in a [`Divergence`].
const SHOWN_ARGS_BYTES: usize = 1 << 10;

/// One invocation's tape; cheap to clone (the clones share it).
#[derive(Clone)]
pub struct Tape {
    state: Arc<Mutex<State>>,
    /// What `wasi:random/insecure-seed` answers: a constant of the context, kept with the tape.
    pub(crate) insecure_seed: u128,
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
        /// Per ambient call (a clock, a generator): where its next recorded value is looked for.
        ambient: Vec<(&'static str, usize)>,
        /// Ambient readings the recording had no value for, answered live.
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
    /// Replaying: clock and random readings past what the recording holds, and config values
    /// it does not hold, answered live.
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
        }
    }

    /// A tape that answers from `entries`.
    pub(crate) fn replaying(entries: Vec<TapeEntry>, insecure_seed: u128) -> Tape {
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

    /// Keeps what the plugin answered (for the outcome).
    pub(crate) fn answered(&self, answer: Answer) {
        self.lock().answer = Some(answer);
    }

    fn push(&self, call: &str, args: Box<RawValue>, answer: Box<RawValue>) {
        if let Mode::Recording { entries, bytes, limit, overflowed } = &mut self.lock().mode {
            if *overflowed {
                return;
            }
            *bytes += call.len() + args.get().len() + answer.get().len();
            if *bytes > *limit {
                *overflowed = true;
                entries.clear();
                return;
            }
            entries.push(TapeEntry { call: call.to_owned(), args, answer });
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

    /// Records an event the plugin published (for the outcome).
    fn emitted(&self, event: &NewEvent) {
        self.lock().emitted.push(event.clone());
    }

    /// While replaying: the next recorded value of ambient call `call` whose arguments are
    /// `args`, in the order recorded (`Some(None)` when the recording has no more: the caller
    /// answers live). `None` while recording.
    ///
    /// Clocks and generators are read by language runtimes as much as by the plugin's own code,
    /// so another build (another language, another runtime version) reads them at other points:
    /// they are answered in their own order, apart from the host calls, and never make a replay
    /// leave the recording. The same build reads them exactly as recorded.
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

    /// Random bytes: the recorded ones while replaying, else `live` fills them (recorded).
    fn random(&self, call: &'static str, buf: &mut [u8], live: impl FnOnce(&mut [u8])) {
        let args = to_json(&buf.len());
        if let Some(answer) = self.ambient(call, args.get()) {
            let recorded = answer
                .and_then(|a| serde_json::from_str::<String>(&a).ok())
                .and_then(|h| hex::decode(h).ok());
            match recorded {
                Some(bytes) if bytes.len() == buf.len() => buf.copy_from_slice(&bytes),
                _ => live(buf),
            }
            return;
        }
        live(buf);
        self.push(call, args, to_json(&hex::encode(&*buf)));
    }
}

/// Calls answered apart from the sequence of host calls, so that reading them at other points
/// does not make a replay leave the recording: clock and random readings, in their own order
/// ([`Tape::ambient`]), and the operator's config values, by key.
pub fn off_sequence(call: &str) -> bool {
    call.starts_with("clock.") || call.starts_with("random.") || is_lookup(call)
}

fn is_lookup(call: &str) -> bool {
    call.starts_with("config.")
}

/// The tape, if any, with the call's arguments as JSON: taken before the call runs, since the
/// call may consume them.
pub(crate) fn on_tape<'t, A: Serialize + ?Sized>(
    tape: Option<&'t Tape>,
    args: &A,
) -> Option<(&'t Tape, Box<RawValue>)> {
    tape.map(|t| (t, to_json(args)))
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
    tape.push(call, args, to_json(&answer));
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
    let args = to_json(event);
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
pub(crate) struct TapedMonotonicClock(pub(crate) Tape, pub(crate) std::time::Instant);

impl wasmtime_wasi::HostMonotonicClock for TapedMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        let started = self.1;
        self.0.reading("clock.monotonic", || u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

/// `wasi:random` (secure or insecure) through a tape, drawing live bytes from a fresh generator.
pub(crate) struct TapedRandom {
    tape: Tape,
    call: &'static str,
    live: rand::rngs::StdRng,
}

impl TapedRandom {
    pub(crate) fn new(tape: Tape, call: &'static str) -> Self {
        TapedRandom { tape, call, live: rand::rngs::StdRng::from_rng(&mut rand::rng()) }
    }
}

impl TryRng for TapedRandom {
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
        let live = &mut self.live;
        self.tape.random(self.call, buf, |b| live.fill_bytes(b));
        Ok(())
    }
}
