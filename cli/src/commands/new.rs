//! `plugboard new plugin <name>`: a plugin crate that builds and passes its own test out of the
//! box, for authors to grow from.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum NewCommand {
    /// A connector crate: metadata, a webhook handler, an event handler, an action, a test.
    Plugin {
        /// The plugin's name: lower case letters, digits and `-`.
        name: String,
        /// Where to create it (a directory named after the plugin is made inside).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The plugboard SDK to depend on (default: the one this plugboard was built with).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

const LIB: &str = r#"//! {{name}}: a plugboard connector.
//!
//! - Webhooks sent to `/hooks/<instance>` become `{{name}}/received` events.
//! - Each event delivered to it is summarised into a `{{name}}/summarized` event.
//! - Action `greet` answers `{"greeting": "hello, <name>"}`.
//!
//! Keep decisions in plain functions (like `summarize`): they are tested with `cargo test`
//! without a host; the capability calls around them run inside plugboard.

use plugboard_sdk::{
    Capability, Connector, Error, Event, Metadata, NewEvent, VerificationScheme, WebhookReply, WebhookRequest, info,
};
use serde_json::{Value, json};

struct Plugin;

/// What the plugin makes of an event's JSON payload.
pub fn summarize(payload: &Value) -> Value {
    let fields = payload.as_object().map(|o| o.len()).unwrap_or(0);
    json!({ "fields": fields, "has_id": payload.get("id").is_some() })
}

impl Connector for Plugin {
    fn metadata() -> Metadata {
        Metadata::new("{{name}}", env!("CARGO_PKG_VERSION"), "Describe what {{name}} does in one line")
            .produces("{{name}}/received")
            .produces("{{name}}/summarized")
            .action("greet", "Greets someone", json!({"type": "object", "properties": {"name": {"type": "string"}}}))
            .requests(Capability::Log)
            .verifies_with(VerificationScheme::Hmac)
    }

    fn on_webhook(request: WebhookRequest) -> Result<WebhookReply, Error> {
        let payload: Value = request.json()?;
        Ok(WebhookReply::ok(vec![NewEvent::json("{{name}}/received", &payload)?]))
    }

    fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
        let payload: Value = event.json()?;
        info!("summarizing {}", event.kind; "event" => event.id);
        Ok(vec![NewEvent::json("{{name}}/summarized", &summarize(&payload))?])
    }

    fn invoke(action: &str, input: Value) -> Result<Value, Error> {
        match action {
            "greet" => Ok(json!({ "greeting": format!("hello, {}", input["name"].as_str().unwrap_or("world")) })),
            other => Err(Error::NotFound(format!("unknown action `{other}`"))),
        }
    }
}

plugboard_sdk::export_connector!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarize_counts_fields() {
        assert_eq!(summarize(&json!({"id": 1, "total": "9.99"})), json!({"fields": 2, "has_id": true}));
        assert_eq!(summarize(&json!("not an object")), json!({"fields": 0, "has_id": false}));
    }
}
"#;

const MANIFEST: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2024"
publish = false

# Its own workspace, so that it builds wherever it is created.
[workspace]

[lib]
# Built for wasm32-wasip2, a cdylib is a component. `cargo test` links only its test harness
# for this machine, so the plain-function tests run natively.
crate-type = ["cdylib"]

[dependencies]
plugboard-sdk = { path = "{{sdk}}" }
serde_json = "1"

[profile.release]
opt-level = "s"
panic = "abort"
"#;

const README: &str = r#"# {{name}}

A plugboard connector.

    cargo test                                        # the plain-function tests, natively
    cargo build --release --target wasm32-wasip2      # the component: target/wasm32-wasip2/release/{{crate}}.wasm
    plugboard plugin inspect target/wasm32-wasip2/release/{{crate}}.wasm

Then add it to `plugboard.toml`:

    [[plugin]]
    id = "{{name}}"
    wasm = "path/to/{{crate}}.wasm"
    grants = { capabilities = ["log"] }
    [plugin.webhook]
    verify = { scheme = "hmac", header = "X-Signature", encoding = "hex", prefix = "sha256=" }
    secrets = ["env:{{env}}_WEBHOOK_SECRET"]
"#;

fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-')
}

fn render(template: &str, name: &str, sdk: &Path) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{crate}}", &name.replace('-', "_"))
        .replace("{{env}}", &name.replace('-', "_").to_uppercase())
        .replace("{{sdk}}", &sdk.display().to_string().replace('\\', "/"))
}

/// The `sdk` folder of the plugboard checkout that holds `dir` or this binary (a build in its
/// `target/`), found at run time: no path of the build machine is baked in.
fn find_sdk(dir: &Path) -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok();
    let starts = [dir.canonicalize().ok(), exe];
    starts.into_iter().flatten().find_map(|start| {
        start.ancestors().map(|a| a.join("sdk")).find(|sdk| {
            std::fs::read_to_string(sdk.join("Cargo.toml"))
                .is_ok_and(|m| m.contains("name = \"plugboard-sdk\""))
        })
    })
}

pub fn run(cmd: NewCommand) -> anyhow::Result<()> {
    let NewCommand::Plugin { name, dir, sdk } = cmd;
    if !valid(&name) {
        bail!(
            "`{name}` is not a plugin name: use lower case letters, digits and `-`, starting with a letter"
        );
    }
    let sdk = match sdk {
        Some(path) => path,
        None => find_sdk(&dir).context(
            "cannot find the plugboard SDK in a plugboard checkout above this folder or the \
             plugboard binary; pass --sdk PATH (the `sdk` folder of the plugboard repository)",
        )?,
    };
    let sdk =
        sdk.canonicalize().with_context(|| format!("the SDK is not at {} (use --sdk)", sdk.display()))?;
    let root = dir.join(&name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    std::fs::create_dir_all(root.join("src")).with_context(|| format!("creating {}", root.display()))?;
    for (file, template) in [("Cargo.toml", MANIFEST), ("src/lib.rs", LIB), ("README.md", README)] {
        std::fs::write(root.join(file), render(template, &name, &sdk))
            .with_context(|| format!("writing {}", root.join(file).display()))?;
    }
    say!("created {} (a connector with a test; see its README.md)", root.display());
    say!("next: cd {} && cargo test", root.display());
    Ok(())
}
