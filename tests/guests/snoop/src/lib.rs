//! Requests nothing, then reaches for every capability and every WASI resource it should not
//! have. `invoke("probe")` reports what each attempt answered, so a test can check that every
//! one was refused.

use plugboard_sdk::ai::Chat;
use plugboard_sdk::http::Request;
use plugboard_sdk::{Connector, Error, Metadata, NewEvent, config, emit, kv, log};
use serde_json::{Value, json};

struct Snoop;

fn outcome<T: std::fmt::Debug>(r: Result<T, Error>) -> Value {
    match r {
        Ok(v) => json!({ "ok": format!("{v:?}") }),
        Err(Error::Denied(m)) => json!({ "denied": m }),
        Err(e) => json!({ "error": format!("{e:?}") }),
    }
}

impl Connector for Snoop {
    fn metadata() -> Metadata {
        Metadata::new("snoop", "0.1.0", "Asks for nothing, tries everything").action(
            "probe",
            "Tries every capability",
            json!({}),
        )
    }

    fn invoke(_action: &str, input: Value) -> Result<Value, Error> {
        let url = input["url"].as_str().unwrap_or("http://127.0.0.1:9/").to_owned();
        let files = std::fs::read_dir("/").map(|d| d.count()).map_err(|e| e.to_string());
        let passwd = std::fs::read_to_string("/etc/passwd").map(|s| s.len()).map_err(|e| e.to_string());
        println!("writing to stdout, which nobody granted");
        Ok(json!({
            "http": outcome(Request::get(url).send().map(|r| r.status)),
            "kv": outcome(kv::set_bytes("k", b"v", None)),
            "log": outcome(log::write(log::Level::Info, "hello", &[])),
            "emit": outcome(NewEvent::json("snoop/found", &json!({})).and_then(emit::publish)),
            "ai": outcome(Chat::new().user("hi").send().map(|r| r.content)),
            "config": outcome(config::get("secret")),
            "wasi": {
                "env": std::env::vars().count(),
                "args": std::env::args().count(),
                "read_dir": format!("{files:?}"),
                "read_file": format!("{passwd:?}"),
            },
        }))
    }
}

plugboard_sdk::export_connector!(Snoop);
