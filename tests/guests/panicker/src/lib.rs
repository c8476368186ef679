//! Panics in `handle`: the host must report a trap with the panic message and keep serving.

use plugboard_sdk::{Connector, Error, Event, Metadata, NewEvent};

struct Panicker;

impl Connector for Panicker {
    fn metadata() -> Metadata {
        Metadata::new("panicker", "0.1.0", "Panics on every event")
    }

    fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
        panic!("boom while handling {}", event.kind);
    }
}

plugboard_sdk::export_connector!(Panicker);
