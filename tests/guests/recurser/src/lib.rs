//! Recurses without end in `invoke("dive")`: the stack limit must stop it with a clear error.

// Unbounded recursion is the point of this guest.
#![allow(unconditional_recursion)]

use plugboard_sdk::{Connector, Error, Metadata};
use serde_json::{Value, json};

struct Recurser;

/// Recursion whose frames live on wasm's own stack: ends in wasmtime's stack-overflow trap.
#[inline(never)]
fn dive(depth: u64) -> u64 {
    std::hint::black_box(dive(std::hint::black_box(depth + 1))) + 1
}

/// Recursion whose frames need Rust's shadow stack in linear memory (a local array): overflows
/// that 1 MiB region first, which the guest sees as an out-of-bounds memory access.
#[inline(never)]
fn dive_with_frames(depth: u64, pad: [u64; 8]) -> u64 {
    let pad = std::hint::black_box(pad);
    dive_with_frames(depth + 1, pad) + pad[(depth % 8) as usize]
}

impl Connector for Recurser {
    fn metadata() -> Metadata {
        Metadata::new("recurser", "0.1.0", "Recurses forever")
            .action("dive", "Never returns", json!({}))
            .action("dive-with-frames", "Never returns either", json!({}))
    }

    fn invoke(action: &str, _input: Value) -> Result<Value, Error> {
        Ok(match action {
            "dive" => json!(dive(0)),
            _ => json!(dive_with_frames(0, [1; 8])),
        })
    }
}

plugboard_sdk::export_connector!(Recurser);
