//! Where the server's log lines go: stderr, through a buffer that a thread of its own writes out
//! a few milliseconds after the first line of a batch. A busy server logs a line per webhook, and
//! a write system call per line cost it about 5% of its CPU. Lines are never dropped and never
//! reordered: past [`MAX_BUFFERED`] the logging thread writes the buffer out itself. Warnings
//! and errors go out at once (with what is held before them): a crash right after one cannot
//! lose it, while info lines of the last few milliseconds can be lost to a `kill -9`.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread lets lines gather after the first one.
const GATHER: Duration = Duration::from_millis(5);

/// The most bytes held before a logging thread writes them out itself (and so waits for stderr).
const MAX_BUFFERED: usize = 1 << 20;

/// Where written lines go.
type Sink = Box<dyn Fn(&[u8]) + Send + Sync>;

struct Shared {
    /// Lines not written yet, and whether the writer should stop.
    pending: Mutex<(Vec<u8>, bool)>,
    /// Signalled when the buffer gets its first line, and when stopping.
    wake: Condvar,
    /// Held while writing to stderr, taken before `pending`: whoever takes the buffer writes it
    /// before anyone takes the next one, so lines keep their order.
    output: Mutex<()>,
    /// Where lines go: stderr (a test's buffer in tests).
    sink: Sink,
}

impl Shared {
    /// Writes out what is buffered.
    fn flush(&self) {
        let _writing = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        let lines = std::mem::take(&mut self.pending.lock().unwrap_or_else(PoisonError::into_inner).0);
        if !lines.is_empty() {
            (self.sink)(&lines);
        }
    }
}

fn to_stderr(lines: &[u8]) {
    // Nowhere to report a failure to write the log.
    let _ = std::io::stderr().lock().write_all(lines);
}

/// Buffered stderr for `tracing_subscriber::fmt().with_writer(...)`.
#[derive(Clone)]
pub struct BufferedStderr(Arc<Shared>);

/// Writes out what is left and stops the writer thread when dropped (at the end of `main`).
pub struct Flush {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BufferedStderr {
    /// The writer, and the guard that flushes it at exit. Without a thread (none could be
    /// started) every line is written at once.
    pub fn start() -> (Self, Flush) {
        Self::start_to(Box::new(to_stderr))
    }

    fn start_to(sink: Sink) -> (Self, Flush) {
        let shared = Arc::new(Shared {
            pending: Mutex::new((Vec::new(), false)),
            wake: Condvar::new(),
            output: Mutex::new(()),
            sink,
        });
        let worker = shared.clone();
        let thread =
            std::thread::Builder::new().name("plugboard-log".into()).spawn(move || write_loop(&worker));
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(_) => {
                shared.pending.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
                None
            }
        };
        (BufferedStderr(shared.clone()), Flush { shared, thread })
    }
}

fn write_loop(shared: &Shared) {
    loop {
        {
            let pending = shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let pending = shared
                .wake
                .wait_while(pending, |(lines, stop)| lines.is_empty() && !*stop)
                .unwrap_or_else(PoisonError::into_inner);
            if pending.1 {
                break;
            }
        }
        std::thread::sleep(GATHER);
        shared.flush();
    }
    shared.flush();
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.shared.flush();
    }
}

/// One log line's writer.
pub struct LineWriter<'a> {
    shared: &'a Shared,
    /// A warning or an error: written at once, so that a crash (`kill -9`) right after it
    /// cannot lose it. Info lines of the last few milliseconds can be lost so.
    urgent: bool,
}

impl Shared {
    /// Writes what is held, then `line`, at once.
    fn write_now(&self, line: &[u8]) {
        let _writing = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        let held = std::mem::take(&mut self.pending.lock().unwrap_or_else(PoisonError::into_inner).0);
        if !held.is_empty() {
            (self.sink)(&held);
        }
        (self.sink)(line);
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let shared = self.shared;
        let mut pending = shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let (lines, stopped) = &mut *pending;
        if *stopped || self.urgent {
            // Urgent, past the end of `main`, or no writer thread: at once, after what is held.
            drop(pending);
            shared.write_now(line);
            return Ok(line.len());
        }
        let first = lines.is_empty();
        lines.extend_from_slice(line);
        let full = lines.len() > MAX_BUFFERED;
        drop(pending);
        if full {
            shared.flush();
        } else if first {
            shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { shared: &self.0, urgent: false }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter { shared: &self.0, urgent: *meta.level() <= tracing::Level::WARN }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Callsite;
    static CALLSITE: Callsite = Callsite;
    impl tracing::callsite::Callsite for Callsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            unreachable!("not registered")
        }
    }

    #[test]
    fn lines_are_written_in_order_none_lost_and_the_buffer_stays_bounded() {
        let written = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = written.clone();
        let (writer, flush) =
            BufferedStderr::start_to(Box::new(move |b| sink.lock().unwrap().extend_from_slice(b)));
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        writer
                            .make_writer()
                            .write_all(format!("{t} {i} {}\n", "x".repeat(40)).as_bytes())
                            .unwrap();
                        assert!(writer.0.pending.lock().unwrap().0.len() <= MAX_BUFFERED + 64);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        writer.make_writer().write_all(b"last\n").unwrap();
        // A warning goes out at once, after what was held.
        let warning = tracing::Metadata::new(
            "warning",
            "test",
            tracing::Level::WARN,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&CALLSITE)),
            tracing::metadata::Kind::EVENT,
        );
        writer.make_writer_for(&warning).write_all(b"warning\n").unwrap();
        assert!(written.lock().unwrap().ends_with(b"last\nwarning\n"));
        drop(flush);
        writer.make_writer().write_all(b"after the end\n").unwrap();
        let written = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        for t in 0..2 {
            let mine: Vec<usize> = written
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{t} ")))
                .map(|l| l.split(' ').next().unwrap().parse().unwrap())
                .collect();
            assert_eq!(mine, (0..20_000).collect::<Vec<_>>(), "each thread's lines, all, in order");
        }
        assert_eq!(written.lines().rev().take(3).collect::<Vec<_>>(), ["after the end", "warning", "last"]);
    }
}
