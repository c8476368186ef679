//! Loading a plugin: compile (or take from the cache), pre-link, read its metadata in a sandbox
//! with no grants, check it, and work out its effective capabilities.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::bindings::action_hints::Hints as RawHints;
use crate::bindings::types::{ConnectorMetadata, VerificationScheme};
use crate::bindings::{AiProviderPre, ConnectorPre};
use crate::capabilities::{Capability, Grants};
use crate::compile_cache::CacheOutcome;
use crate::egress::InstanceEgress;
use crate::error::LoadError;
use crate::host::Host;
use crate::instance::{Described, Plugin, PluginPre};
use crate::limits::Limits;
use crate::pool::IdlePool;
use crate::spec::{ActionInfo, PluginInfo, PluginKind, PluginSpec, Record};
use crate::text::printable;

fn scheme_name(s: VerificationScheme) -> &'static str {
    match s {
        VerificationScheme::None => "none",
        VerificationScheme::Shopify => "shopify",
        VerificationScheme::Slack => "slack",
        VerificationScheme::Stripe => "stripe",
        VerificationScheme::Github => "github",
        VerificationScheme::StandardWebhooks => "standard-webhooks",
        VerificationScheme::Hmac => "hmac",
    }
}

fn check_spec(host: &Host, spec: &PluginSpec) -> Result<(), String> {
    let id_ok = !spec.id.is_empty()
        && spec.id.len() <= 64
        && spec.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok {
        return Err(format!("instance id {:?} must be 1 to 64 of [A-Za-z0-9_-]", spec.id));
    }
    let max = host.inner.settings.max_memory_mib;
    if spec.limits.memory_mib == 0 || spec.limits.memory_mib > max {
        return Err(format!("limits.memory_mib must be between 1 and the host's maximum of {max}"));
    }
    if spec.limits.timeout_ms == 0 {
        return Err("limits.timeout_ms must be at least 1".into());
    }
    if spec.limits.max_concurrency == 0 {
        return Err("limits.max_concurrency must be at least 1".into());
    }
    if spec.limits.fuel.is_some() && !host.inner.settings.fuel_metering {
        return Err("limits.fuel is set but the host runs without fuel metering".into());
    }
    if spec.limits.http_max_attempts == 0 || spec.limits.max_http_concurrency == 0 {
        return Err("limits.http_max_attempts and limits.max_http_concurrency must be at least 1".into());
    }
    spec.grants.http.validate()
}

/// The most actions, and event kinds in `produces`, a plugin may declare.
pub const MAX_METADATA_ITEMS: usize = 256;
/// The longest description (the plugin's or an action's), in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1 << 10;
/// The largest action input schema, in bytes of JSON.
pub const MAX_SCHEMA_BYTES: usize = 64 << 10;
/// The most bytes a plugin's metadata may take in all.
pub const MAX_METADATA_BYTES: usize = 256 << 10;

fn check_name_and_version(name: &str, version: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Err(format!("metadata name {:?} must be 1 to 64 of [A-Za-z0-9_-]", printable(name)));
    }
    if version.is_empty() || version.len() > 64 || !version.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("metadata version must be 1 to 64 printable ASCII characters".into());
    }
    Ok(())
}

/// A description, bounded and made safe to show.
fn description(what: &str, text: &str) -> Result<String, String> {
    if text.len() > MAX_DESCRIPTION_BYTES {
        return Err(format!("{what} is {} bytes, over the limit of {MAX_DESCRIPTION_BYTES}", text.len()));
    }
    Ok(printable(text))
}

/// Every string of a JSON value made safe to show, keys included.
fn printable_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(printable(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(printable_json).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (printable(&k), printable_json(v))).collect())
        }
        other => other,
    }
}

/// Refuses metadata too large to show or store: the whole, and each list.
fn check_metadata_size(m: &ConnectorMetadata) -> Result<(), String> {
    if m.actions.len() > MAX_METADATA_ITEMS || m.produces.len() > MAX_METADATA_ITEMS {
        return Err(format!(
            "metadata declares {} actions and {} event kinds; at most {MAX_METADATA_ITEMS} of each",
            m.actions.len(),
            m.produces.len()
        ));
    }
    let actions = m.actions.iter().map(|a| a.name.len() + a.description.len() + a.input_schema.len());
    let produces = m.produces.iter().map(String::len);
    let total = m.name.len() + m.version.len() + m.description.len() + actions.chain(produces).sum::<usize>();
    if total > MAX_METADATA_BYTES {
        return Err(format!("metadata is {total} bytes, over the limit of {MAX_METADATA_BYTES}"));
    }
    for kind in &m.produces {
        if kind.is_empty() || kind.len() > 128 || !kind.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "produced event kind {:?} must be 1 to 128 printable ASCII characters",
                printable(kind)
            ));
        }
    }
    Ok(())
}

fn parse_actions(m: &ConnectorMetadata) -> Result<Vec<ActionInfo>, String> {
    m.actions
        .iter()
        .map(|a| {
            let name_ok = !a.name.is_empty()
                && a.name.len() <= 64
                && a.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !name_ok {
                return Err(format!(
                    "action name {:?} must be 1 to 64 of [A-Za-z0-9._-]",
                    printable(&a.name)
                ));
            }
            if a.input_schema.len() > MAX_SCHEMA_BYTES {
                return Err(format!(
                    "action `{}` input schema is {} bytes, over the limit of {MAX_SCHEMA_BYTES}",
                    a.name,
                    a.input_schema.len()
                ));
            }
            let schema: serde_json::Value = serde_json::from_str(&a.input_schema)
                .map_err(|e| format!("action `{}` input schema is not JSON: {e}", a.name))?;
            if !schema.is_object() && !schema.is_boolean() {
                return Err(format!("action `{}` input schema must be a JSON Schema object", a.name));
            }
            Ok(ActionInfo {
                name: a.name.clone(),
                description: description(&format!("action `{}` description", a.name), &a.description)?,
                input_schema: printable_json(schema),
                hints: None,
            })
        })
        .collect()
}

/// The longest action title, in bytes.
const MAX_TITLE_BYTES: usize = 128;

/// Attaches each action's hints, refusing hints for an action the metadata does not declare,
/// two for one action, and titles or output schemas too large or not what they claim to be.
fn attach_hints(actions: &mut [ActionInfo], hints: Vec<RawHints>) -> Result<(), String> {
    if hints.len() > MAX_METADATA_ITEMS {
        return Err(format!("{} action hints; at most {MAX_METADATA_ITEMS}", hints.len()));
    }
    let mut total = 0usize;
    for h in hints {
        let name = printable(&h.action);
        total += h.action.len() + h.title.as_ref().map_or(0, String::len);
        total += h.output_schema.as_ref().map_or(0, String::len);
        if total > MAX_METADATA_BYTES {
            return Err(format!("action hints are over {MAX_METADATA_BYTES} bytes in all"));
        }
        let Some(action) = actions.iter_mut().find(|a| a.name == h.action) else {
            return Err(format!("hints for action {name:?}, which the metadata does not declare"));
        };
        if action.hints.is_some() {
            return Err(format!("two sets of hints for action `{name}`"));
        }
        let title = match h.title {
            Some(t) if t.len() > MAX_TITLE_BYTES => {
                return Err(format!("action `{name}` title is over {MAX_TITLE_BYTES} bytes"));
            }
            t => t.map(|t| printable(&t)),
        };
        let output_schema = match h.output_schema {
            None => None,
            Some(text) => {
                if text.len() > MAX_SCHEMA_BYTES {
                    return Err(format!("action `{name}` output schema is over {MAX_SCHEMA_BYTES} bytes"));
                }
                let schema: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| format!("action `{name}` output schema is not JSON: {e}"))?;
                // MCP's `outputSchema` describes an object (a tool's structured content).
                if schema.get("type").and_then(|t| t.as_str()) != Some("object") {
                    return Err(format!(
                        "action `{name}` output schema must be a JSON Schema of \"type\": \"object\""
                    ));
                }
                Some(printable_json(schema))
            }
        };
        action.hints = Some(crate::spec::ActionHints {
            title,
            read_only: h.read_only,
            destructive: h.destructive,
            idempotent: h.idempotent,
            open_world: h.open_world,
            output_schema,
        });
    }
    Ok(())
}

pub(crate) async fn load(host: &Host, spec: PluginSpec, bytes: &[u8]) -> Result<Plugin, LoadError> {
    let id = spec.id.clone();
    let invalid = |reason: String| LoadError::Invalid { id: id.clone(), reason };
    check_spec(host, &spec).map_err(|reason| LoadError::Spec { id: id.clone(), reason })?;

    let started = std::time::Instant::now();
    let sha256 = hex::encode(Sha256::digest(bytes));
    let hashed = started.elapsed();
    // An instance with a pinned artifact always loads that artifact (so a bad one fails now, not
    // at the next restart), and its code is kept out of the table other instances share.
    let known = match spec.precompiled {
        Some(_) => None,
        None => host.inner.compiled.lock().ok().and_then(|c| c.get(&sha256).cloned()),
    };
    let (component, outcome) = match known {
        Some(component) => (component, CacheOutcome::Hit),
        None => {
            let engine = host.engine().clone();
            let inner = host.inner.clone();
            let digest = sha256.clone();
            let owned = bytes.to_vec();
            let precompiled = spec.precompiled.clone();
            let refused = |e: crate::precompiled::PrecompiledError| LoadError::Spec {
                id: id.clone(),
                reason: format!("precompiled: {e}"),
            };
            // Compiling is CPU-bound for seconds on large components: keep it off the async workers.
            let compiled =
                tokio::task::spawn_blocking(move || match (&precompiled, &inner.cache) {
                    (Some(pin), _) => Ok(crate::precompiled::load(&engine, pin, &digest)
                        .map(|c| (c, CacheOutcome::Precompiled))),
                    (None, Some(cache)) => cache.load_or_compile(&engine, &digest, &owned).map(Ok),
                    (None, None) => wasmtime::component::Component::new(&engine, &owned)
                        .map(|c| Ok((c, CacheOutcome::Miss))),
                })
                .await
                .map_err(|e| invalid(format!("compiler task failed: {e}")))?
                .map_err(|e| invalid(format!("{e:#}")))?
                .map_err(refused)?;
            if compiled.1 != CacheOutcome::Precompiled
                && let Ok(mut cache) = host.inner.compiled.lock()
            {
                cache.insert(sha256.clone(), compiled.0.clone());
            }
            compiled
        }
    };

    let compiled_at = started.elapsed();
    let instance_pre =
        host.inner.linker.instantiate_pre(&component).map_err(|e| invalid(format!("{e:#}")))?;
    let pre = if let Ok(pre) = ConnectorPre::new(instance_pre.clone()) {
        PluginPre::Connector(pre)
    } else if let Ok(pre) = AiProviderPre::new(instance_pre) {
        PluginPre::AiProvider(pre)
    } else {
        return Err(invalid(
            "it exports neither plugboard:connector/plugin@0.1.0 (a connector) nor \
             plugboard:connector/provider@0.1.0 (an AI provider)"
                .into(),
        ));
    };
    let kind = match pre {
        PluginPre::Connector(_) => PluginKind::Connector,
        PluginPre::AiProvider(_) => PluginKind::AiProvider,
    };
    if let Some(problem) = spec.reuse.as_ref().and_then(crate::spec::Reuse::problem) {
        return Err(LoadError::Spec { id, reason: format!("reuse: {problem}") });
    }
    if kind == PluginKind::AiProvider && spec.reuse.is_some() {
        return Err(LoadError::Spec {
            id,
            reason: "`reuse` is for connectors: an AI provider runs in a fresh instance per call".into(),
        });
    }
    if spec.prepare_ahead && spec.reuse.is_some() {
        let reason = format!("prepare_ahead {}", crate::spec::PREPARE_AHEAD_WITH_REUSE);
        return Err(LoadError::Spec { id, reason });
    }
    if kind == PluginKind::AiProvider && spec.prepare_ahead {
        return Err(LoadError::Spec {
            id,
            reason: "`prepare_ahead` is for connectors: an AI provider's instance is made for each call"
                .into(),
        });
    }
    if kind == PluginKind::AiProvider && spec.record.is_some() {
        return Err(LoadError::Spec {
            id,
            reason: "`record` is for connectors: an AI provider's answers are recorded with the \
                     connector that asks it (its `ai.complete`)"
                .into(),
        });
    }

    // Read the metadata in a sandbox with no grants: describing itself needs no capability.
    let probe = Arc::new(Plugin {
        id: id.clone(),
        kind,
        pre,
        grants: Grants::none(),
        limits: spec.limits.clone(),
        config: BTreeMap::new(),
        effective: BTreeSet::new(),
        slots: Arc::new(Semaphore::new(1)),
        egress: Arc::new(InstanceEgress::new(&id, &Grants::none(), &spec.limits)),
        info: placeholder_info(&id, kind),
        loading: true,
        record: None,
        reuse: None,
        idle: None,
        prepared: None,
        preparing: Default::default(),
    });
    let described = crate::invoke::describe(host, probe.clone())
        .await
        .map_err(|source| LoadError::Metadata { id: id.clone(), source })?;
    tracing::debug!(
        instance = %id,
        hashed_us = hashed.as_micros() as u64,
        compiled_us = (compiled_at - hashed).as_micros() as u64,
        described_us = (started.elapsed() - compiled_at).as_micros() as u64,
        from_cache = outcome == CacheOutcome::Hit,
        precompiled = outcome == CacheOutcome::Precompiled,
        "loaded plugin"
    );
    let Ok(probe) = Arc::try_unwrap(probe) else {
        return Err(invalid("the metadata sandbox outlived its call".into()));
    };

    let mut info = placeholder_info(&id, kind);
    match described.output {
        Described::Connector(m, hints) => {
            check_name_and_version(&m.name, &m.version).map_err(invalid)?;
            check_metadata_size(&m).map_err(invalid)?;
            info.actions = parse_actions(&m).map_err(invalid)?;
            attach_hints(&mut info.actions, hints).map_err(invalid)?;
            info.description = description("the description", &m.description).map_err(invalid)?;
            info.name = m.name;
            info.version = m.version;
            info.produces = m.produces;
            info.webhook_verification = m.webhook_verification.map(|s| scheme_name(s).to_owned());
            info.requested = m.capabilities.into_iter().map(Capability::from).collect();
        }
        Described::AiProvider(m) => {
            check_name_and_version(&m.name, &m.version).map_err(invalid)?;
            info.description = description("the description", &m.description).map_err(invalid)?;
            if m.default_model.len() > 256 {
                return Err(invalid("the default model name is over 256 bytes".into()));
            }
            info.name = m.name;
            info.version = m.version;
            info.default_model = Some(printable(&m.default_model));
            info.requested = m.capabilities.into_iter().map(Capability::from).collect();
        }
    }
    info.requested.sort();
    info.requested.dedup();
    let effective: BTreeSet<Capability> =
        info.requested.iter().copied().filter(|c| spec.grants.capabilities.contains(c)).collect();
    info.effective = effective.iter().copied().collect();
    info.sha256 = sha256;
    info.source = spec.wasm.display().to_string();
    info.build = info.handler();
    info.size_bytes = bytes.len();
    info.compiled_from_cache = outcome != CacheOutcome::Miss;
    info.limits = spec.limits.clone();
    info.reuse = spec.reuse;
    info.prepare_ahead = spec.prepare_ahead;

    let weight = crate::engine::instance_weight(&spec.limits);
    let idle = spec.reuse.map(|reuse| {
        IdlePool::start(reuse, spec.limits.max_concurrency as usize, host.inner.kept.clone(), weight)
    });
    // Every invocation recorded: each one instantiates its own, so nothing is kept or prepared.
    let records_every_invocation = matches!(spec.record, Some(Record::All | Record::Failures));
    for (chosen, key, instead) in [
        (spec.reuse.is_some(), "reuse", "runs in a fresh instance"),
        (spec.prepare_ahead, "prepare_ahead", "instantiates its own"),
    ] {
        if chosen && records_every_invocation {
            tracing::warn!(
                instance = %id,
                "`{key}` has no effect with `record = \"all\"` or `\"failures\"`: a recorded invocation {instead}"
            );
        }
    }
    // One instance prepared ahead, counted against the same budget as kept ones: an instance
    // that served no invocation yet, dropped after serving one.
    let prepared = (spec.prepare_ahead && !records_every_invocation).then(|| {
        let policy = crate::spec::Reuse { calls: 1, idle_secs: crate::spec::PREPARED_IDLE_SECS };
        IdlePool::start(policy, 1, host.inner.kept.clone(), weight)
    });
    Ok(Plugin {
        id,
        kind,
        pre: probe.pre,
        slots: Arc::new(Semaphore::new(spec.limits.max_concurrency as usize)),
        egress: Arc::new(InstanceEgress::new(&spec.id, &spec.grants, &spec.limits)),
        grants: spec.grants,
        limits: spec.limits,
        config: spec.config,
        effective,
        info,
        loading: false,
        record: spec.record,
        reuse: spec.reuse,
        idle,
        prepared,
        preparing: Default::default(),
    })
}

fn placeholder_info(id: &str, kind: PluginKind) -> PluginInfo {
    PluginInfo {
        id: id.to_owned(),
        kind,
        name: String::new(),
        version: String::new(),
        description: String::new(),
        produces: Vec::new(),
        actions: Vec::new(),
        webhook_verification: None,
        default_model: None,
        requested: Vec::new(),
        effective: Vec::new(),
        sha256: String::new(),
        size_bytes: 0,
        source: String::new(),
        build: String::new(),
        compiled_from_cache: false,
        limits: Limits::default(),
        reuse: None,
        prepare_ahead: false,
    }
}

/// A component file's bytes, or the error naming the file.
async fn read_component(path: &Path) -> Result<Vec<u8>, LoadError> {
    tokio::fs::read(path).await.map_err(|source| LoadError::Read { path: path.display().to_string(), source })
}

/// Loading, replacing and inspecting plugins.
impl Host {
    /// Compiles `component` into a precompiled artifact for this host's engine: what
    /// `plugboard plugin compile` writes, and an instance's `precompiled` loads (see
    /// [`crate::precompiled`]).
    pub fn precompile(&self, component: &[u8]) -> wasmtime::Result<Vec<u8>> {
        crate::precompiled::compile(self.engine(), component)
    }

    /// Loads the plugin file named by `spec`, replacing any instance with the same id.
    pub async fn load(&self, spec: PluginSpec) -> Result<PluginInfo, LoadError> {
        let bytes = read_component(&spec.wasm).await?;
        self.load_bytes(spec, &bytes).await
    }

    /// Loads a plugin from its component bytes, replacing any instance with the same id.
    pub async fn load_bytes(&self, spec: PluginSpec, bytes: &[u8]) -> Result<PluginInfo, LoadError> {
        self.install(Arc::new(load(self, spec, bytes).await?))
    }

    fn install(&self, plugin: Arc<Plugin>) -> Result<PluginInfo, LoadError> {
        let info = plugin.info();
        let mut plugins = self.inner.plugins.write().map_err(|_| LoadError::Spec {
            id: info.id.clone(),
            reason: "plugin table lock poisoned".into(),
        })?;
        let replaced = plugins.insert(info.id.clone(), plugin.clone());
        drop(plugins);
        // Ready for its first invocation too.
        crate::invoke::prepare_next(self, &plugin);
        if let Some(old) = replaced {
            old.retire();
        }
        Ok(info)
    }

    /// Replaces instance `id`'s component with `bytes`, keeping its grants, limits and config.
    /// The swap is atomic: invocations already running finish on the old build, every later
    /// one runs the new build (see [`Invocation::handler`](crate::Invocation::handler)). A component that does not load
    /// leaves the old one in place.
    pub async fn reload_bytes(&self, id: &str, bytes: &[u8]) -> Result<PluginInfo, LoadError> {
        let current =
            self.get(id).map_err(|e| LoadError::Spec { id: id.to_owned(), reason: e.to_string() })?;
        self.replace(&current, current.uploaded_spec(), bytes).await
    }

    /// Reloads instance `spec.id` from its file, which changed on disk; as [`Host::reload_bytes`],
    /// with the grants, limits and config of `spec`.
    pub async fn reload_file(&self, spec: PluginSpec) -> Result<PluginInfo, LoadError> {
        let Ok(current) = self.get(&spec.id) else { return self.load(spec).await };
        let bytes = read_component(&spec.wasm).await?;
        let unchanged = hex::encode(sha2::Sha256::digest(&bytes)) == current.info().sha256;
        if unchanged
            && spec.grants == current.grants
            && spec.limits == current.limits
            && spec.record == current.record
            && spec.reuse == current.reuse
            && spec.prepare_ahead == current.info.prepare_ahead
        {
            return Ok(current.info());
        }
        self.replace(&current, spec, &bytes).await
    }

    async fn replace(
        &self,
        current: &Plugin,
        spec: PluginSpec,
        bytes: &[u8],
    ) -> Result<PluginInfo, LoadError> {
        let mut plugin = load(self, spec, bytes).await?;
        if plugin.kind != current.kind {
            // Every route and webhook of the instance expects the kind it has: a component of
            // another kind would load, then fail every call.
            return Err(LoadError::Invalid {
                id: current.id.clone(),
                reason: format!(
                    "it is {}, but instance `{}` is {}; a reload keeps the kind",
                    plugin.kind.article_name(),
                    current.id,
                    current.kind.article_name()
                ),
            });
        }
        if plugin.limits == current.limits && plugin.grants == current.grants {
            // Still one instance: invocations finishing on the old build and those starting on
            // the new one share its concurrency slots, outbound request slots and buckets.
            plugin.slots = current.slots.clone();
            plugin.egress = current.egress.clone();
        }
        self.install(Arc::new(plugin))
    }

    /// Compiles a component and reads its metadata without installing it and without granting
    /// it anything: what `plugboard plugin inspect` shows before an operator installs a plugin.
    pub async fn inspect(&self, path: &Path) -> Result<PluginInfo, LoadError> {
        let id =
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin".into());
        let spec = PluginSpec::new(&id, path);
        let bytes = read_component(path).await?;
        Ok(load(self, spec, &bytes).await?.info())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::spec::ActionHints;

    fn action(name: &str) -> ActionInfo {
        ActionInfo {
            name: name.into(),
            description: String::new(),
            input_schema: serde_json::json!({"type": "object"}),
            hints: None,
        }
    }

    fn hints(action: &str) -> RawHints {
        RawHints {
            action: action.into(),
            title: Some("Tag\u{1b}[31m".into()),
            read_only: false,
            destructive: false,
            idempotent: true,
            open_world: true,
            output_schema: Some(r#"{"type": "object"}"#.into()),
        }
    }

    #[test]
    fn hints_attach_to_declared_actions_made_safe_to_show() {
        let mut actions = vec![action("tag"), action("read")];
        attach_hints(&mut actions, vec![hints("tag")]).unwrap();
        let h = actions[0].hints.as_ref().unwrap();
        assert_eq!(h.title.as_deref(), Some("Tag\\u{1b}[31m"));
        assert!(h.idempotent && !h.destructive);
        assert!(!ActionHints::is_destructive(Some(h)));
        // An action without hints is taken to be destructive.
        assert!(actions[1].hints.is_none());
        assert!(ActionHints::is_destructive(actions[1].hints.as_ref()));
    }

    /// A plugin's hints cannot name an action it does not declare, come twice, or carry a
    /// title or output schema too large or not an object schema.
    #[test]
    fn hints_a_plugin_gets_wrong_refuse_the_load_with_a_reason() {
        let refused = |h: Vec<RawHints>| attach_hints(&mut [action("tag")], h).unwrap_err();
        assert!(refused(vec![hints("delete")]).contains("does not declare"));
        assert!(refused(vec![hints("tag"), hints("tag")]).contains("two sets of hints"));
        let long_title = RawHints { title: Some("x".repeat(129)), ..hints("tag") };
        assert!(refused(vec![long_title]).contains("title is over"));
        let not_json = RawHints { output_schema: Some("{".into()), ..hints("tag") };
        assert!(refused(vec![not_json]).contains("not JSON"));
        let array = RawHints { output_schema: Some(r#"{"type": "array"}"#.into()), ..hints("tag") };
        assert!(refused(vec![array]).contains("\"type\": \"object\""));
        let huge = RawHints { output_schema: Some(" ".repeat(MAX_SCHEMA_BYTES + 1)), ..hints("tag") };
        assert!(refused(vec![huge]).contains("over"));
        let many = (0..=MAX_METADATA_ITEMS).map(|_| hints("tag")).collect();
        assert!(refused(many).contains("at most"));
    }
}
