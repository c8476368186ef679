//! Paths of the guest components that `build.rs` builds from source, for tests and benchmarks.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
