//! The claim journal: which attempt of which delivery is running, written before it runs, so
//! that a delivery whose run kills the process still has that attempt counted (and one that
//! kills it every time ends as a dead letter instead of looping across restarts).
//!
//! A claim only has to survive the process dying, not the machine losing power: a line
//! appended to a file (one `write`, no `fsync`) is enough, and costs a delivery microseconds,
//! where a database transaction behind the writer's `fsync`s cost it a quarter of its
//! throughput. Each line is `claim <delivery> <attempt>` or `done <delivery>`; at start the
//! store reads the claims without a `done` and counts those attempts in the database, then
//! empties the journal. While running, the journal is rewritten with only the running claims
//! whenever it grows past [`ROTATE_BYTES`]. The process that runs deliveries holds a lock on the
//! journal; another process opening the same store (a CLI command) leaves it alone.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Past this size the journal is rewritten with only the claims still running.
const ROTATE_BYTES: u64 = 1 << 20;

/// A delivery and the number of its attempt.
pub(crate) type Claim = (i64, u32);

pub(crate) struct ClaimJournal {
    path: PathBuf,
    file: File,
    /// Running claims: delivery -> attempt.
    running: HashMap<i64, u32>,
    written: u64,
    /// A write failed part-way: the next starts on a new line, so that its first line is not
    /// read as the end of the torn one.
    torn: bool,
}

/// The journal's file for the store file `db`.
fn journal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-claims");
    PathBuf::from(name)
}

/// The claims in `text` that no `done` line ended (a later claim of a delivery replaces its
/// earlier one). Unreadable lines (a torn last line) are skipped.
pub(crate) fn unfinished(text: &str) -> Vec<(i64, u32)> {
    let mut running: HashMap<i64, u32> = HashMap::new();
    let mut order = Vec::new();
    for line in text.lines() {
        let mut words = line.split(' ');
        match (words.next(), words.next().and_then(|d| d.parse::<i64>().ok()), words.next()) {
            (Some("claim"), Some(delivery), Some(attempt)) => {
                if let Ok(attempt) = attempt.parse() {
                    running.insert(delivery, attempt);
                    order.push(delivery);
                }
            }
            (Some("done"), Some(delivery), None) => {
                running.remove(&delivery);
            }
            _ => {}
        }
    }
    order.into_iter().filter_map(|d| running.remove(&d).map(|a| (d, a))).collect()
}

impl ClaimJournal {
    /// Takes the journal of the store file `db`, with the claims a previous run left that never
    /// finished (count them, then [`ClaimJournal::clear`] it). `None` when another process holds
    /// it: a running server, while a CLI command opens the same store; that process keeps it.
    pub(crate) fn open(db: &Path) -> io::Result<Option<(Self, Vec<Claim>)>> {
        let path = journal_path(db);
        let mut file = loop {
            let file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
            // The holder may have rotated between our open and our lock: then we locked the
            // file it just replaced, and the name is another (held) file. Open again.
            if same_file(&file.metadata()?, &std::fs::metadata(&path)?) {
                break file;
            }
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let leftovers = unfinished(&String::from_utf8_lossy(&bytes));
        let journal =
            ClaimJournal { path, file, running: HashMap::new(), written: bytes.len() as u64, torn: false };
        Ok(Some((journal, leftovers)))
    }

    /// Empties the journal, once its leftovers are counted.
    pub(crate) fn clear(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.written = 0;
        Ok(())
    }

    /// Records that `attempt` of each delivery is about to run.
    pub(crate) fn claim(&mut self, claims: &[(i64, u32)]) -> io::Result<()> {
        if self.written > ROTATE_BYTES
            && let Err(e) = self.rotate()
        {
            // The journal only grows until the next rotation works; claims go on meanwhile.
            tracing::warn!(path = %self.path.display(), "could not rewrite the claim journal: {e}");
        }
        let lines = claim_lines(claims.iter().copied());
        // One write: a process that dies mid-way leaves at most a torn last line.
        self.write(&lines)?;
        self.running.extend(claims.iter().copied());
        Ok(())
    }

    /// Appends `lines`, after a line break when the last write was torn.
    fn write(&mut self, lines: &str) -> io::Result<()> {
        if self.torn {
            self.file.write_all(b"\n")?;
            self.written += 1;
        }
        self.torn = true;
        self.file.write_all(lines.as_bytes())?;
        self.torn = false;
        self.written += lines.len() as u64;
        Ok(())
    }

    /// Records that `delivery`'s running attempt has its outcome stored.
    pub(crate) fn done(&mut self, delivery: i64) -> io::Result<()> {
        if self.running.remove(&delivery).is_some() {
            self.write(&format!("done {delivery}\n"))?;
        }
        Ok(())
    }

    /// Rewrites the journal with only the running claims (written aside, then renamed over
    /// it, so that a death mid-way leaves one whole journal or the other).
    fn rotate(&mut self) -> io::Result<()> {
        let mut aside = self.path.as_os_str().to_owned();
        aside.push(".new");
        let aside = PathBuf::from(aside);
        let lines = claim_lines(self.running.iter().map(|(d, a)| (*d, *a)));
        // A fresh file (a leftover of a rotation cut short goes first), locked before it takes
        // the journal's name, so the name always names a held journal.
        match std::fs::remove_file(&aside) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = OpenOptions::new().append(true).create_new(true).open(&aside)?;
        file.try_lock()
            .map_err(|_| io::Error::other("the new claim journal is locked by another process"))?;
        file.write_all(lines.as_bytes())?;
        std::fs::rename(&aside, &self.path)?;
        self.file = file;
        self.written = lines.len() as u64;
        self.torn = false;
        Ok(())
    }
}

/// Whether two metadata describe the same file.
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

/// `claim <delivery> <attempt>` lines, one per claim.
fn claim_lines(claims: impl ExactSizeIterator<Item = (i64, u32)>) -> String {
    use std::fmt::Write as _;
    let mut lines = String::with_capacity(claims.len() * 24);
    for (delivery, attempt) in claims {
        // Writing to a String cannot fail.
        let _ = writeln!(lines, "claim {delivery} {attempt}");
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_claims_without_done_are_left_over() {
        let text = "claim 1 1\nclaim 2 1\ndone 1\nclaim 3 2\nclaim 1 2\ndone 3\nclaim 4 1\ngarb";
        let mut left = unfinished(text);
        left.sort();
        assert_eq!(left, [(1, 2), (2, 1), (4, 1)]);
        assert_eq!(unfinished("claim 9 3\nclaim 9 4\n"), [(9, 4)]);
        assert_eq!(unfinished("claim 5 1\ndone 5\nclaim 6"), []);
    }

    #[test]
    fn the_journal_keeps_running_claims_across_rotations_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("events.db");
        let (mut journal, left) = ClaimJournal::open(&db).unwrap().unwrap();
        assert!(left.is_empty());
        journal.claim(&[(7, 1)]).unwrap();
        // Enough claims and dones to rotate several times.
        for id in 100..60_000 {
            journal.claim(&[(id, 1)]).unwrap();
            journal.done(id).unwrap();
        }
        journal.claim(&[(8, 3)]).unwrap();
        let size = std::fs::metadata(journal_path(&db)).unwrap().len();
        assert!(size < 2 * ROTATE_BYTES, "{size} bytes");
        // Held (also after rotating): a second opener, like a CLI command, leaves it alone.
        assert!(ClaimJournal::open(&db).unwrap().is_none());
        drop(journal);
        let (mut journal, mut left) = ClaimJournal::open(&db).unwrap().unwrap();
        left.sort();
        assert_eq!(left, [(7, 1), (8, 3)]);
        journal.clear().unwrap();
        drop(journal);
        assert_eq!(ClaimJournal::open(&db).unwrap().unwrap().1, []);
    }
}

/// The journal's reader against arbitrary histories. Failures proptest finds are kept in
/// `store/proptest-regressions/` and replayed first on every later run.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::unfinished;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The claim journal read back after any sequence of claims and dones (and a torn last
    /// line) holds exactly the claims that were not done, each at its last attempt.
    #[test]
    fn the_claim_journal_reads_back_what_is_still_running(
        ops in proptest::collection::vec((any::<bool>(), 0i64..16, 1u32..6), 0..64),
        torn_at in 0usize..=9,
    ) {
        // The process died while writing `claim 7 3`: any prefix of it ends the file.
        let torn = &"claim 7 3"[..torn_at];
        let mut running = std::collections::BTreeMap::new();
        let mut text = String::new();
        for (claim, id, attempt) in ops {
            if claim {
                text.push_str(&format!("claim {id} {attempt}\n"));
                running.insert(id, attempt);
            } else if running.remove(&id).is_some() {
                text.push_str(&format!("done {id}\n"));
            }
        }
        text.push_str(torn);
        let mut read = unfinished(&text);
        read.sort();
        let torn_claim = unfinished(torn);
        // A torn last line that happens to be a whole claim line is read as one.
        let mut expected: Vec<(i64, u32)> = running.into_iter().collect();
        for (id, attempt) in torn_claim {
            expected.retain(|(d, _)| *d != id);
            expected.push((id, attempt));
        }
        expected.sort();
        prop_assert_eq!(read, expected);
    }
    }
}
