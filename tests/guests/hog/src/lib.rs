//! Allocates without end in `invoke("eat")`: the memory limit must stop it.

use plugboard_sdk::{Connector, Error, Metadata};
use serde_json::{Value, json};

struct Hog;

impl Connector for Hog {
    fn metadata() -> Metadata {
        Metadata::new("hog", "0.1.0", "Eats memory").action("eat", "Allocates until stopped", json!({}))
    }

    fn invoke(_action: &str, _input: Value) -> Result<Value, Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touch every page so nothing is optimised away.
            hoard.push(vec![0xAB; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

plugboard_sdk::export_connector!(Hog);
