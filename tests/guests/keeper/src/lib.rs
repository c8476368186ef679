//! Keeps what each invocation tells it in a global, as a careless plugin would (a cache, a
//! buffer, a customer's data): `invoke("remember", {"value": ...})` answers everything its
//! instance was told so far. In a fresh instance per invocation that is only the value just
//! given; in a reused one it is also what earlier invocations, for any caller, left behind.
//! `invoke("crash")` panics after remembering, `invoke("grow", {"mib": n})` keeps n MiB more,
//! `invoke("stderr", {"bytes": n})` writes n bytes to stderr, `invoke("spin")` never answers,
//! `invoke("handles", {"count": n})` opens n WASI handles (stdout streams) and never closes them.

use std::sync::Mutex;

use plugboard_sdk::{Capability, Connector, Error, Metadata, log};
use serde_json::{Value, json};

static REMEMBERED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static HOARD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

struct Keeper;

impl Connector for Keeper {
    fn metadata() -> Metadata {
        Metadata::new("keeper", "0.1.0", "Remembers what it is told, in memory")
            .action("remember", "Remembers a value; answers all it remembers", json!({}))
            .action("crash", "Remembers a value, then panics", json!({}))
            .action("grow", "Keeps more memory", json!({}))
            .action("stderr", "Writes to stderr", json!({}))
            .action("spin", "Remembers a value, then never answers", json!({}))
            .action("handles", "Opens WASI handles and never closes them", json!({}))
            .requests(Capability::Log)
    }

    fn invoke(action: &str, input: Value) -> Result<Value, Error> {
        let mut remembered = REMEMBERED.lock().map_err(|_| Error::Internal("poisoned".into()))?;
        if let Some(value) = input["value"].as_str() {
            remembered.push(value.to_owned());
            // One line per invocation: a reused instance's lines must not pile up.
            let _ = log::write(log::Level::Info, "remembered", &[("value", value)]);
        }
        match action {
            "crash" => panic!("keeper crashed after remembering {}", remembered.len()),
            "spin" => loop {
                std::hint::black_box(&remembered);
            },
            "stderr" => {
                let bytes = input["bytes"].as_u64().unwrap_or(0) as usize;
                eprint!("{}", "e".repeat(bytes));
                Ok(json!({ "remembered": *remembered }))
            }
            "handles" => {
                for _ in 0..input["count"].as_u64().unwrap_or(0) {
                    // Each is an entry in the host's table until closed; forgetting never closes it.
                    std::mem::forget(wasip2::cli::stdout::get_stdout());
                }
                Ok(json!({ "remembered": *remembered }))
            }
            "grow" => {
                let mib = input["mib"].as_u64().unwrap_or(1) as usize;
                let mut hoard = HOARD.lock().map_err(|_| Error::Internal("poisoned".into()))?;
                hoard.push(vec![0x5A; mib << 20]);
                Ok(json!({ "held_mib": hoard.iter().map(Vec::len).sum::<usize>() >> 20 }))
            }
            _ => Ok(json!({ "remembered": *remembered })),
        }
    }
}

plugboard_sdk::export_connector!(Keeper);
