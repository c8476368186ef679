//! What an idle store holds in memory: the outbound call log's queue takes room as records wait,
//! not its whole capacity (65,536 records) up front. Counted by this test binary's allocator, so
//! that nothing else running changes the figure.

#![allow(unsafe_code)] // a counting global allocator

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[cfg(feature = "sqlite")]
#[test]
fn an_idle_call_log_holds_no_queue() {
    let dir = tempfile::tempdir().unwrap();
    let before = ALLOCATED.load(Ordering::Relaxed);
    let log = plugboard_store::SqliteCallLog::open(&dir.path().join("calls.db"), 1_000).unwrap();
    // Only Rust's allocations are counted (the bundled SQLite allocates with libc's malloc):
    // the queue, the thread, the connections' handles.
    let held = ALLOCATED.load(Ordering::Relaxed).saturating_sub(before);
    assert!(held < 1 << 20, "an idle call log holds {held} bytes");
    drop(log);
}
