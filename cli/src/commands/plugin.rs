//! `plugboard plugin ...`: look at a component before installing it, and call it by hand.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use plugboard::egress::secrets::Secret;
use plugboard::{Capability, Grants, Host, Limits, PluginSpec};
use sha2::Digest;

use crate::commands::render::{permission_prompt, print_events, print_logs};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show what a component is and what it asks for, like a permission prompt.
    Inspect {
        /// The component file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Load a component with the given grants and limits and call one of its exports.
    Call(Box<CallArgs>),
    /// Compile a component ahead of time for this plugboard's engine, so that its first load
    /// does not compile it; an instance loads the artifact with `precompiled = { path, sha256 }`.
    Compile(CompileArgs),
    /// Replay an instance's newest recordings on a candidate build, before it serves: identical,
    /// different or failed, with examples; exits 1 unless every replay is identical.
    Shadow(super::replay::ShadowArgs),
    /// The instances a configuration declares, loaded as `plugboard up` would load them.
    List {
        #[command(flatten)]
        config: super::server::ConfigArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The component file.
    file: PathBuf,
    /// Where to write the artifact (default: the component's path with `.cwasm`).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// The configuration that will load it: its engine settings (fuel metering) are used, as
    /// `plugboard up` would use them.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// `plugboard plugin compile`: the artifact, checked by loading it as an instance would.
pub async fn compile(mut builder: plugboard::HostBuilder, args: CompileArgs) -> anyhow::Result<()> {
    if let Some(config) = &args.config {
        let resolved = plugboard::config::Resolved::load(config)?;
        builder = builder.fuel_metering(resolved.uses_fuel());
    }
    let host = builder.build()?;
    let component =
        std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let started = std::time::Instant::now();
    let artifact = host
        .precompile(&component)
        .map_err(|e| anyhow::anyhow!("cannot compile {}: {e:#}", args.file.display()))?;
    let compiled_in = started.elapsed();
    let out = args.out.unwrap_or_else(|| args.file.with_extension("cwasm"));
    std::fs::write(&out, &artifact).with_context(|| format!("writing {}", out.display()))?;
    let sha256 = hex::encode(sha2::Sha256::digest(&artifact));
    // Load it as an instance pinning it would: a component that is not a plugin fails here.
    let pin = plugboard::manifest::Precompiled { path: out.clone(), sha256: sha256.clone() };
    let spec = PluginSpec::new("compiled", &args.file).with_precompiled(pin);
    let started = std::time::Instant::now();
    let info = host.load_bytes(spec, &component).await?;
    say!(
        "wrote {} ({} bytes): {} {} compiled in {:.1} s; loading it takes {:.0} ms",
        out.display(),
        artifact.len(),
        info.name,
        info.version,
        compiled_in.as_secs_f64(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    say!("load it from plugboard.toml (this plugboard release and engine settings only; the path as seen");
    say!("from the configuration file's folder):");
    say!("  precompiled = {{ path = {}, sha256 = \"{sha256}\" }}", toml_string(&out.display().to_string()));
    say!("The artifact is native code: pin only artifacts your own build compiled.");
    Ok(())
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out + "\""
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The component file.
    file: PathBuf,
    /// Print one JSON object (output, events, logs, error) instead of text: what the SDKs' test
    /// harnesses read when they run a test against the built component.
    #[arg(long)]
    json: bool,
    /// Instance id (default: the file name).
    #[arg(long)]
    id: Option<String>,
    /// Grant a capability (repeatable): http, kv, log, emit, ai, config.
    #[arg(long = "grant", value_name = "CAPABILITY")]
    grants: Vec<Capability>,
    /// Allow outbound HTTP to scheme://host[:port] (repeatable; grants http).
    #[arg(long = "allow-http", value_name = "PATTERN")]
    allow_http: Vec<String>,
    /// A config value KEY=VALUE (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Let internal addresses through for --allow-http (an address, CIDR block or host name;
    /// repeatable), e.g. 127.0.0.1 for a local stand-in.
    #[arg(long = "allow-internal", value_name = "ADDRESS")]
    allow_internal: Vec<String>,
    /// A secret NAME=env:VAR or NAME=file:PATH the host fills into the plugin's requests to its
    /// --allow-http destinations (repeatable).
    #[arg(long = "secret", value_name = "NAME=REFERENCE")]
    secrets: Vec<String>,
    /// An AI provider component to serve the `ai` capability (grants `ai` to the plugin).
    #[arg(long)]
    ai_provider: Option<PathBuf>,
    /// Allow the AI provider outbound HTTP to scheme://host[:port] (repeatable).
    #[arg(long = "provider-allow-http", value_name = "PATTERN", requires = "ai_provider")]
    provider_allow_http: Vec<String>,
    /// --allow-internal, for the AI provider.
    #[arg(long = "provider-allow-internal", value_name = "ADDRESS", requires = "ai_provider")]
    provider_allow_internal: Vec<String>,
    /// --secret, for the AI provider (bound to its --provider-allow-http destinations).
    #[arg(long = "provider-secret", value_name = "NAME=REFERENCE", requires = "ai_provider")]
    provider_secrets: Vec<String>,
    /// A config value KEY=VALUE for the AI provider (repeatable).
    #[arg(long = "provider-config", value_name = "KEY=VALUE", requires = "ai_provider")]
    provider_config: Vec<String>,
    /// Memory limit in MiB.
    #[arg(long, default_value_t = Limits::default().memory_mib)]
    memory_mib: u32,
    /// Deadline in milliseconds.
    #[arg(long, default_value_t = Limits::default().timeout_ms)]
    timeout_ms: u64,
    #[command(subcommand)]
    call: Call,
}

#[derive(Debug, Subcommand)]
enum Call {
    /// Deliver an event to `handle`.
    Handle {
        /// The event kind.
        #[arg(long)]
        kind: String,
        /// The JSON payload.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// The payload as base64 bytes instead (any content, with --content-type).
        #[arg(long, conflicts_with = "payload")]
        payload_base64: Option<String>,
        /// The payload's content type.
        #[arg(long, default_value = "application/json")]
        content_type: String,
        /// The event id (default: a fresh one).
        #[arg(long)]
        id: Option<String>,
        /// The instance the event comes from.
        #[arg(long, default_value = "cli")]
        source: String,
        /// An attribute NAME=VALUE (repeatable).
        #[arg(long = "attribute", value_name = "NAME=VALUE")]
        attributes: Vec<String>,
    },
    /// Hand a webhook request to `on-webhook`, as if verified.
    Webhook {
        /// The body as text.
        #[arg(long, default_value = "")]
        body: String,
        /// The body as base64 bytes instead.
        #[arg(long, conflicts_with = "body")]
        body_base64: Option<String>,
        /// A header NAME=VALUE (repeatable; names are made lower case, as the host does).
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
        /// The method.
        #[arg(long, default_value = "POST")]
        method: String,
        /// The path below `/hooks/<instance>`.
        #[arg(long, default_value = "/")]
        path: String,
        /// The query string, without `?`.
        #[arg(long, default_value = "")]
        query: String,
    },
    /// Run an action through `invoke`.
    Invoke {
        /// The action.
        action: String,
        /// The JSON input.
        #[arg(long, default_value = "{}")]
        input: String,
    },
}

/// Runs a `plugboard plugin` command. It takes the host's builder: `compile` and `list` build
/// the engine as `plugboard up` would for their configuration (fuel metering is one of its
/// settings, and compiled code is only loaded by the engine it was compiled for).
pub async fn run(builder: plugboard::HostBuilder, cmd: PluginCommand) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::Compile(args) => compile(builder, args).await,
        PluginCommand::List { config, json } => {
            let resolved = plugboard::config::Resolved::load(config.path())?;
            let host = builder.fuel_metering(resolved.uses_fuel()).build()?;
            list(&host, resolved, json).await
        }
        PluginCommand::Inspect { file, json } => {
            let host = builder.build()?;
            let info = host.inspect(&file).await?;
            if json {
                say!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                say_raw!("{}", permission_prompt(&info));
            }
            Ok(())
        }
        PluginCommand::Call(args) => call(&builder.build()?, *args).await,
        PluginCommand::Shadow(args) => super::replay::shadow(builder, args).await,
    }
}

/// `plugboard plugin list`: the configuration's instances, loaded as `plugboard up` loads them.
async fn list(host: &Host, resolved: plugboard::config::Resolved, json: bool) -> anyhow::Result<()> {
    plugboard::run::configure(host, &resolved);
    let mut infos = Vec::new();
    for spec in resolved.specs {
        let started = std::time::Instant::now();
        if !json {
            eprint!("loading {} ... ", spec.id);
        }
        let info = host.load(spec).await?;
        if !json {
            let how = if info.compiled_from_cache {
                "from compiled code (the compile cache or its precompiled artifact)"
            } else {
                "compiled"
            };
            eprintln!("{how} in {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);
        }
        infos.push(info);
    }
    if json {
        say!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(());
    }
    for i in infos {
        let caps: Vec<&str> = i.effective.iter().map(|c| c.name()).collect();
        say!(
            "{:<16} {} ({}), may use: {}; {} MiB, {} ms; from {}",
            i.id,
            i.build,
            i.kind.name(),
            if caps.is_empty() { "nothing".into() } else { caps.join(", ") },
            i.limits.memory_mib,
            i.limits.timeout_ms,
            plugboard::printable(&i.source)
        );
    }
    Ok(())
}

fn parse_config(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("config `{p}` is not KEY=VALUE"))
        })
        .collect()
}

/// What one instance of `plugin call` is granted on the command line.
struct CliGrants<'a> {
    capabilities: &'a [Capability],
    allow_http: &'a [String],
    allow_internal: &'a [String],
    secrets: &'a [String],
    config: &'a [String],
}

impl CliGrants<'_> {
    /// The grants, with each secret put into `host`, bound to the instance's HTTP destinations.
    fn apply(
        &self,
        host: &Host,
        flag: &str,
        taken: &mut std::collections::BTreeSet<String>,
    ) -> anyhow::Result<Grants> {
        let mut grants = Grants::none();
        for c in self.capabilities {
            grants = grants.with(*c);
        }
        for p in self.allow_http {
            grants = grants.allow_http(p);
        }
        for a in self.allow_internal {
            grants = grants.allow_internal(a);
        }
        if !self.config.is_empty() {
            grants = grants.with(Capability::Config);
        }
        let hosts: Vec<&str> = self.allow_http.iter().map(String::as_str).collect();
        for (name, reference) in parse_config(self.secrets)? {
            // The host's secrets are one namespace: the same name twice would hand one
            // instance's secret to the other.
            anyhow::ensure!(taken.insert(name.clone()), "--{flag} {name}: the secret name is given twice");
            let value = plugboard::config::read_secret(&format!("--{flag} {name}"), &reference)?;
            let secret = Secret::new(value, &hosts).map_err(|e| {
                anyhow::anyhow!("--{flag} {name}: {e} (give its destinations with --allow-http)")
            })?;
            host.set_secret(&name, secret);
            grants = grants.with_secret(&name);
        }
        grants.http.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(grants)
    }
}

async fn load_provider(
    host: &Host,
    file: &Path,
    grants: Grants,
    config: &[String],
) -> anyhow::Result<String> {
    let mut spec = PluginSpec::new("ai", file).with_grants(grants.with(Capability::Log));
    for (k, v) in parse_config(config)? {
        spec = spec.with_config(&k, &v);
    }
    let info = host.load(spec).await?;
    host.set_default_ai_provider(Some(&info.id));
    Ok(info.id)
}

/// The event `plugin call handle` delivers.
fn cli_event(call: &Call) -> anyhow::Result<plugboard::Event> {
    use base64::Engine as _;
    let Call::Handle { kind, payload, payload_base64, content_type, id, source, attributes } = call else {
        anyhow::bail!("not a handle call");
    };
    let mut event = plugboard::Event::json(kind, source, &serde_json::Value::Null)?;
    event.payload = match payload_base64 {
        Some(b64) => {
            base64::engine::general_purpose::STANDARD.decode(b64).context("--payload-base64 is not base64")?
        }
        None => {
            let value: serde_json::Value = serde_json::from_str(payload).context("--payload is not JSON")?;
            serde_json::to_vec(&value)?
        }
    };
    event.content_type = content_type.clone();
    if let Some(id) = id {
        event.id = id.clone();
    }
    event.attributes = parse_config(attributes)?.into_iter().collect();
    Ok(event)
}

/// The request `plugin call webhook` hands over.
fn cli_webhook(call: &Call) -> anyhow::Result<plugboard::types::WebhookRequest> {
    use base64::Engine as _;
    let Call::Webhook { body, body_base64, headers, method, path, query } = call else {
        anyhow::bail!("not a webhook call");
    };
    let body = match body_base64 {
        Some(b64) => {
            base64::engine::general_purpose::STANDARD.decode(b64).context("--body-base64 is not base64")?
        }
        None => body.clone().into_bytes(),
    };
    let headers = parse_config(headers)?.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    Ok(plugboard::types::WebhookRequest {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        headers,
        body,
    })
}

/// `plugin call --json`: one object with the output, the events, the logs and the error (its
/// contract case, or `trap`, `out-of-memory`, ... for a failure outside the contract). Exits with
/// 1 when the call failed, after printing it.
async fn call_json(host: &Host, id: &str, call: Call) -> anyhow::Result<()> {
    use base64::Engine as _;
    use plugboard::InvokeError;
    let event_json = |e: &plugboard::Event| {
        serde_json::json!({
            "id": e.id, "source": e.source, "kind": e.kind, "occurred_at_ms": e.occurred_at_ms,
            "content_type": e.content_type,
            "payload_base64": base64::engine::general_purpose::STANDARD.encode(&e.payload),
            "attributes": e.attributes,
        })
    };
    let result = match call {
        Call::Handle { .. } => host.handle(id, cli_event(&call)?).await.map(|done| {
            serde_json::json!({
                "output": null,
                "returned": done.output.iter().map(event_json).collect::<Vec<_>>(),
                "emitted": done.emitted.iter().map(event_json).collect::<Vec<_>>(),
                "logs": done.logs,
            })
        }),
        Call::Webhook { .. } => host.on_webhook(id, cli_webhook(&call)?).await.map(|done| {
            let reply = &done.output;
            serde_json::json!({
                "output": {
                    "status": reply.status,
                    "headers": reply.headers,
                    "body_base64": base64::engine::general_purpose::STANDARD.encode(&reply.body),
                },
                "returned": reply.events.iter().map(event_json).collect::<Vec<_>>(),
                "emitted": done.emitted.iter().map(event_json).collect::<Vec<_>>(),
                "logs": done.logs,
            })
        }),
        Call::Invoke { action, input } => {
            let input: serde_json::Value = serde_json::from_str(&input).context("--input is not JSON")?;
            host.invoke(id, &action, &input).await.map(|done| {
                serde_json::json!({
                    "output": done.output,
                    "returned": [],
                    "emitted": done.emitted.iter().map(event_json).collect::<Vec<_>>(),
                    "logs": done.logs,
                })
            })
        }
    };
    let answer = match result {
        Ok(mut answer) => {
            answer["error"] = serde_json::Value::Null;
            answer
        }
        Err(e) => {
            let error = match &e {
                InvokeError::Plugin(wit) => contract_error(wit),
                InvokeError::Timeout(_) => serde_json::json!({ "case": "timeout", "message": e.to_string() }),
                other => serde_json::json!({ "case": failure_case(other), "message": other.to_string() }),
            };
            serde_json::json!({ "output": null, "returned": [], "emitted": [], "logs": [], "error": error })
        }
    };
    say!("{}", serde_json::to_string(&answer)?);
    if !answer["error"].is_null() {
        std::process::exit(1);
    }
    Ok(())
}

/// The contract error as the SDKs' harnesses read it.
fn contract_error(e: &plugboard::types::Error) -> serde_json::Value {
    use plugboard::types::Error as E;
    let (case, message) = match e {
        E::InvalidInput(m) => ("invalid-input", m.clone()),
        E::Unauthorized(m) => ("unauthorized", m.clone()),
        E::NotFound(m) => ("not-found", m.clone()),
        E::Denied(m) => ("denied", m.clone()),
        E::Timeout(m) => ("timeout", m.clone()),
        E::Internal(m) => ("internal", m.clone()),
        E::QuotaExceeded(m) => ("quota-exceeded", m.clone()),
        E::RateLimited(ms) => return serde_json::json!({ "case": "rate-limited", "retry_after_ms": ms }),
        E::Upstream(u) => {
            return serde_json::json!({ "case": "upstream", "status": u.status, "message": u.message });
        }
    };
    serde_json::json!({ "case": case, "message": message })
}

/// A name for a failure outside the contract.
fn failure_case(e: &plugboard::InvokeError) -> &'static str {
    use plugboard::InvokeError as E;
    match e {
        E::OutOfMemory { .. } => "out-of-memory",
        E::OutOfFuel(_) => "out-of-fuel",
        E::StackOverflow { .. } => "stack-overflow",
        E::Trap { .. } => "trap",
        _ => "host",
    }
}

async fn call(host: &Host, args: CallArgs) -> anyhow::Result<()> {
    let id = args
        .id
        .clone()
        .or_else(|| args.file.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "plugin".into());
    let mut taken = std::collections::BTreeSet::new();
    let mut grants = CliGrants {
        capabilities: &args.grants,
        allow_http: &args.allow_http,
        allow_internal: &args.allow_internal,
        secrets: &args.secrets,
        config: &[],
    }
    .apply(host, "secret", &mut taken)?;
    if let Some(provider) = &args.ai_provider {
        let provider_grants = CliGrants {
            capabilities: &[],
            allow_http: &args.provider_allow_http,
            allow_internal: &args.provider_allow_internal,
            secrets: &args.provider_secrets,
            config: &args.provider_config,
        }
        .apply(host, "provider-secret", &mut taken)?;
        let id = load_provider(host, provider, provider_grants, &args.provider_config).await?;
        grants = grants.with_ai_provider(&id);
    }
    let mut spec = PluginSpec::new(&id, &args.file).with_grants(grants).with_limits(Limits {
        memory_mib: args.memory_mib,
        timeout_ms: args.timeout_ms,
        ..Limits::default()
    });
    for (k, v) in parse_config(&args.config)? {
        spec = spec.with_config(&k, &v);
    }
    let info = host.load(spec).await?;
    if args.json {
        return call_json(host, &info.id, args.call).await;
    }
    match args.call {
        Call::Handle { .. } => {
            let done = host.handle(&info.id, cli_event(&args.call)?).await?;
            print_events("returned", &done.output)?;
            print_events("emitted", &done.emitted)?;
            print_logs(&done.logs)?;
        }
        Call::Webhook { .. } => {
            let done = host.on_webhook(&info.id, cli_webhook(&args.call)?).await?;
            let reply = &done.output;
            say!("  status    {}", reply.status);
            for (k, v) in &reply.headers {
                say!("  header    {k}: {}", plugboard::printable(v));
            }
            say!("  body      {}", plugboard::printable(&String::from_utf8_lossy(&reply.body)));
            print_events("returned", &reply.events)?;
            print_events("emitted", &done.emitted)?;
            print_logs(&done.logs)?;
        }
        Call::Invoke { action, input } => {
            let input: serde_json::Value = serde_json::from_str(&input).context("--input is not JSON")?;
            let done = host.invoke(&info.id, &action, &input).await?;
            say!("{}", serde_json::to_string_pretty(&done.output)?);
            print_logs(&done.logs)?;
        }
    }
    Ok(())
}
