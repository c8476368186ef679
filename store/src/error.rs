//! The storage ports' one error type, whatever the backend.

/// Why the store failed: the storage port's own error, whatever the backend (each backend maps
/// its errors into it), so that callers can tell a moment's unavailability from a conflict or a
/// broken store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take this work now (busy, locked, out of space, unreachable): the same
    /// request may succeed later.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// The write conflicts with what is stored.
    #[error("event store conflict: {0}")]
    Conflict(String),
    /// The store failed in a way that retrying does not mend (a damaged file, data this build
    /// cannot read).
    #[error("event store failed: {0}")]
    Failed(String),
    /// The writer is gone (the store is shutting down).
    #[error("event store is closed")]
    Closed,
    /// The claim journal (next to the store file) could not be written.
    #[error("claim journal: {0}")]
    Journal(#[from] std::io::Error),
    /// Another process runs this store's deliveries (it holds the claim journal), or this
    /// store was opened without them.
    #[error(
        "another process runs this store's deliveries (it holds the claim journal next to the store file)"
    )]
    JournalHeld,
    /// A read-only opener found a file of an older schema version, which it does not upgrade.
    #[error(
        "the store file is at schema version {found}, older than this plugboard's {known}: \
         start `plugboard up` once to upgrade it"
    )]
    OlderSchema {
        /// The file's version.
        found: u32,
        /// This build's version.
        known: u32,
    },
    /// The file was written by a newer plugboard, whose schema this build does not know.
    #[error(
        "the store file is at schema version {found}; this plugboard knows up to {known}: upgrade plugboard"
    )]
    NewerSchema {
        /// The file's version.
        found: u32,
        /// This build's version.
        known: u32,
    },
}
