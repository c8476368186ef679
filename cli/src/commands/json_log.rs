//! `--log-format json`: one JSON object per line, the event's fields at the top level, and a
//! plugin line's own fields kept as a JSON object under `fields` (the `log` capability hands
//! them to `tracing` as one JSON text, since `tracing` field names are fixed at compile time).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The target of plugin log lines (see `capabilities::log`).
const PLUGIN_TARGET: &str = "plugin";

/// Formats each event as one line of JSON.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        event.record(&mut Fields { line: &mut line, plugin: meta.target() == PLUGIN_TARGET });
        // After the event's fields, so that none of them can stand in for these.
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        line.insert("timestamp".into(), now.into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        writeln!(writer, "{}", Value::Object(line))
    }
}

struct Fields<'a> {
    line: &'a mut Map<String, Value>,
    plugin: bool,
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.line.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.line.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.line.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.line.insert(field.name().into(), value.into());
    }
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, text: String) {
        let object = (self.plugin && field.name() == "fields")
            .then(|| serde_json::from_str::<Value>(&text).ok().filter(Value::is_object))
            .flatten();
        self.line.insert(field.name().into(), object.unwrap_or(Value::String(text)));
    }
}
