//! Never returns from `invoke("spin")`: the host's deadline (or fuel budget) must stop it without
//! stalling other plugins.

use plugboard_sdk::{Connector, Error, Metadata};
use serde_json::{Value, json};

struct Looper;

impl Connector for Looper {
    fn metadata() -> Metadata {
        Metadata::new("looper", "0.1.0", "Spins forever").action("spin", "Never returns", json!({}))
    }

    fn invoke(action: &str, _input: Value) -> Result<Value, Error> {
        if action != "spin" {
            return Ok(json!({ "n": 0 }));
        }
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

plugboard_sdk::export_connector!(Looper);
