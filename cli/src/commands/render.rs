//! How the CLI shows what a plugin is and what it produced: its metadata for the operator's
//! decision, its events and its log lines. (`demo` and `plugin` both show them.)

use plugboard::{Event, PluginInfo, PluginKind, printable};

/// Prints what a plugin produced; its payloads and attribute values are the plugin's text, so
/// control characters are written out, not sent to the terminal.
pub fn print_events(label: &str, events: &[Event]) -> anyhow::Result<()> {
    for e in events {
        let payload = printable(&String::from_utf8_lossy(&e.payload));
        say!("  {label:<9} {} {} from {} {payload}", e.kind, e.id, e.source);
        for (k, v) in &e.attributes {
            say!("              {k} = {}", printable(v));
        }
    }
    Ok(())
}

/// Prints what a plugin logged.
pub fn print_logs(logs: &[plugboard::capabilities::log::LogRecord]) -> anyhow::Result<()> {
    for l in logs {
        let fields: Vec<String> = l.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        say!("  log       [{}] {} {}", l.level, l.message, fields.join(" "));
    }
    Ok(())
}

/// Renders what a plugin is and what it asks for, for an operator deciding whether to install it.
pub fn permission_prompt(info: &PluginInfo) -> String {
    let mut out = String::new();
    let kind = info.kind.name();
    out += &format!("{} {} ({kind})\n  {}\n", info.name, info.version, info.description);
    out += &format!("  component: {} bytes, sha256 {}\n", info.size_bytes, info.sha256);
    if info.kind == PluginKind::Connector {
        if let Some(scheme) = &info.webhook_verification {
            out += &format!("  receives webhooks, verified with: {scheme}\n");
        }
        if !info.produces.is_empty() {
            out += &format!("  produces events: {}\n", info.produces.join(", "));
        }
        for a in &info.actions {
            // What an AI client is told about it, and what `allow_destructive` decides.
            let behaviour = match &a.hints {
                None => "no hints: counts as destructive",
                Some(h) if h.read_only => "reads only",
                Some(h) if h.destructive => "may delete or overwrite",
                Some(h) if h.idempotent => "adds, idempotent",
                Some(_) => "adds",
            };
            out += &format!("  action {} ({behaviour}): {}\n", a.name, a.description);
        }
    }
    if let Some(model) = &info.default_model {
        out += &format!("  default model: {model}\n");
    }
    if info.requested.is_empty() {
        out += "  requests no capabilities\n";
    } else {
        out += "  requests permission to:\n";
        for c in &info.requested {
            out += &format!("    - {:<6} {}\n", c.name(), c.describe());
        }
    }
    out
}
