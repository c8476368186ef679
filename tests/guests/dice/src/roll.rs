// Shared by `dice` and `dice-next`: each sets `TAG` and `ASKS_FIRST` and includes this file.

use std::time::{SystemTime, UNIX_EPOCH};

use plugboard_sdk::{Capability, Connector, Error, Event, Metadata, NewEvent, emit, kv};
use serde_json::{Value, json};

struct Dice;

/// Reads the clock and 8 random bytes, counts the roll, and publishes it.
fn roll(reason: &str) -> Result<Value, Error> {
    let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(e.to_string()))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let count = kv::increment("rolls", 1)?;
    if ASKS_FIRST {
        let _: Option<Value> = kv::get("house-rules")?;
    }
    let rolled = json!({ "at_ms": at_ms, "id": id, "count": count, "tag": TAG, "reason": reason });
    emit::publish(NewEvent::json("dice/rolled", &rolled)?)?;
    Ok(rolled)
}

impl Connector for Dice {
    fn metadata() -> Metadata {
        Metadata::new("dice", "0.1.0", "Rolls: the time, a random id, a count")
            .action("roll", "Rolls once", json!({"type": "object"}))
            .action("fail", "Rolls, then fails", json!({"type": "object"}))
            .produces("dice/rolled")
            .requests(Capability::Kv)
            .requests(Capability::Emit)
    }

    fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
        let rolled = roll(&event.kind)?;
        Ok(vec![NewEvent::json("dice/answered", &rolled)?])
    }

    fn invoke(action: &str, _input: Value) -> Result<Value, Error> {
        match action {
            "roll" => roll("asked"),
            "fail" => {
                roll("asked to fail")?;
                Err(Error::Upstream(plugboard_sdk::UpstreamFailure { status: 503, message: "the table fell over".into() }))
            }
            other => Err(Error::NotFound(format!("unknown action `{other}`"))),
        }
    }
}

plugboard_sdk::export_connector!(Dice);
