//! The catalog: which connector actions a client sees as tools, and what each looks like to
//! MCP. A tool is named `instance_action`; its description, input schema, output schema and
//! annotations are the plugin's metadata and action hints. Inputs are checked against the
//! action's schema before the plugin runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::{Tool, ToolAnnotations};

use super::clients::McpClient;
use crate::runtime::ActionHints;
use crate::runtime::text::clip;
use crate::{Host, PluginKind};

/// The longest tool name the MCP spec allows.
const MAX_TOOL_NAME: usize = 128;

/// The largest compiled `pattern` of an input schema: a plugin's patterns are the host's
/// memory (a 64 KiB schema holds thousands).
const MAX_PATTERN_BYTES: usize = 32 << 10;

/// The most bytes of one reason an input or schema was refused (a schema error may quote the
/// whole input).
const MAX_REASON_BYTES: usize = 300;

/// The most schema errors a refused input is told about.
const MAX_REPORTED_ERRORS: usize = 5;

/// One action offered to a client as a tool.
#[derive(Clone)]
pub struct Offered {
    /// The tool's name.
    pub name: String,
    /// The instance that runs it.
    pub instance: String,
    /// Its action.
    pub action: String,
    /// The plugin build that declared it (its schema is cached per build).
    sha256: String,
    /// The tool as `tools/list` shows it.
    pub tool: Tool,
    /// Whether the plugin says it may delete or overwrite (or says nothing).
    pub destructive: bool,
}

/// The tool name of `instance`'s `action`, if it fits the spec's rules (1 to 128 of
/// `[A-Za-z0-9_.-]`; instance ids and action names are already of those characters).
fn tool_name(instance: &str, action: &str) -> Option<String> {
    let name = format!("{instance}_{action}");
    let fits =
        name.len() <= MAX_TOOL_NAME && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    fits.then_some(name)
}

/// The MCP annotations of an action's hints; none when the plugin declared none (MCP's
/// defaults then say what a client must assume: it may change and delete things).
fn annotations(hints: Option<&ActionHints>) -> Option<ToolAnnotations> {
    let h = hints?;
    Some(ToolAnnotations::from_raw(
        h.title.clone(),
        Some(h.read_only),
        Some(!h.read_only && h.destructive),
        Some(h.idempotent),
        Some(h.open_world),
    ))
}

/// The tools `client` may see, in a stable order (what is left out is logged at debug level:
/// every listing would repeat it): every action of a loaded connector that a
/// pattern of the client's covers, less destructive ones unless it may call those, less any
/// whose name would not be unique or would break the spec's rules.
pub fn offered(host: &Host, client: &McpClient) -> Vec<Offered> {
    let mut offered: Vec<Offered> = Vec::new();
    let mut plugins = host.plugins();
    plugins.sort_by(|a, b| a.id.cmp(&b.id));
    for info in plugins.into_iter().filter(|p| p.kind == PluginKind::Connector) {
        for action in &info.actions {
            if !client.may_call(&info.id, &action.name) {
                continue;
            }
            let destructive = ActionHints::is_destructive(action.hints.as_ref());
            if destructive && !client.allow_destructive {
                continue;
            }
            let Some(name) = tool_name(&info.id, &action.name) else {
                tracing::debug!(instance = %info.id, action = %action.name, "action not offered to MCP clients: its tool name would be over 128 characters");
                continue;
            };
            // MCP wants an object schema for a tool's input.
            let Some(schema) =
                action.input_schema.as_object().filter(|s| s.get("type").is_some_and(|t| t == "object"))
            else {
                tracing::debug!(instance = %info.id, action = %action.name, "action not offered to MCP clients: its input schema is not of \"type\": \"object\"");
                continue;
            };
            let mut tool = Tool::new(name.clone(), action.description.clone(), Arc::new(schema.clone()));
            if let Some(hints) = &action.hints {
                tool.title = hints.title.clone();
                tool.output_schema =
                    hints.output_schema.as_ref().and_then(|s| s.as_object()).map(|s| Arc::new(s.clone()));
            }
            tool.annotations = annotations(action.hints.as_ref());
            offered.push(Offered {
                name,
                instance: info.id.clone(),
                action: action.name.clone(),
                sha256: info.sha256.clone(),
                tool,
                destructive,
            });
        }
    }
    // `a_b` + `c` and `a` + `b_c` are both `a_b_c`: such a name would be ambiguous, so
    // neither is offered.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for o in &offered {
        *counts.entry(o.name.clone()).or_default() += 1;
    }
    offered.retain(|o| {
        let unique = counts[&o.name] == 1;
        if !unique {
            tracing::debug!(tool = %o.name, "tool not offered to MCP clients: two actions would share its name");
        }
        unique
    });
    offered
}

/// An action's compiled input schema, and the plugin build (its SHA-256) it came from.
type Compiled = (String, Arc<jsonschema::Validator>);

/// Compiled input schemas, per instance and action: compiled once, when first needed, and
/// again after a reload changes the build.
#[derive(Default)]
pub struct Schemas {
    compiled: Mutex<HashMap<(String, String), Compiled>>,
}

/// Why an input was refused.
#[derive(Debug)]
pub enum InputError {
    /// The plugin's schema is not one the host can check against (so the tool cannot run).
    BadSchema(String),
    /// The input does not conform.
    Invalid(Vec<String>),
}

impl Schemas {
    /// Checks `input` against `tool`'s input schema.
    pub fn check(&self, tool: &Offered, input: &serde_json::Value) -> Result<(), InputError> {
        let validator = self.validator(tool)?;
        let errors: Vec<String> = validator
            .iter_errors(input)
            .take(MAX_REPORTED_ERRORS)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "(the input)".to_owned() } else { at };
                crate::printable(&clip(&format!("{at}: {e}"), MAX_REASON_BYTES))
            })
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(InputError::Invalid(errors)) }
    }

    fn validator(&self, tool: &Offered) -> Result<Arc<jsonschema::Validator>, InputError> {
        let key = (tool.instance.clone(), tool.action.clone());
        if let Ok(compiled) = self.compiled.lock()
            && let Some((sha256, validator)) = compiled.get(&key)
            && *sha256 == tool.sha256
        {
            return Ok(validator.clone());
        }
        let schema = serde_json::Value::Object((*tool.tool.input_schema).clone());
        // No `$ref` leaves the schema: the crate is built without its file and HTTP resolvers.
        // Patterns run on the linear-time `regex` engine, not a backtracking one: a plugin's
        // `pattern` must not make checking a client's input take exponential time (patterns
        // with lookaround do not compile, and their tool refuses calls).
        let patterns = jsonschema::PatternOptions::regex()
            .size_limit(MAX_PATTERN_BYTES)
            .dfa_size_limit(MAX_PATTERN_BYTES);
        let validator = jsonschema::options()
            .with_pattern_options(patterns)
            // Formats are annotations: `"format": "regex"` would compile the client's strings.
            .should_validate_formats(false)
            .build(&schema)
            .map(Arc::new)
            .map_err(|e| InputError::BadSchema(crate::printable(&clip(&e.to_string(), MAX_REASON_BYTES))))?;
        if let Ok(mut compiled) = self.compiled.lock() {
            compiled.insert(key, (tool.sha256.clone(), validator.clone()));
        }
        Ok(validator)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_join_instance_and_action_within_the_specs_rules() {
        assert_eq!(tool_name("shop", "add-order-tags").as_deref(), Some("shop_add-order-tags"));
        assert_eq!(tool_name("a", "v1.get").as_deref(), Some("a_v1.get"));
        assert_eq!(tool_name(&"x".repeat(64), &"y".repeat(64)), None);
    }

    #[test]
    fn actions_without_hints_are_shown_with_no_annotations() {
        assert!(annotations(None).is_none());
        let h = ActionHints {
            title: Some("Tag".into()),
            read_only: true,
            destructive: true,
            idempotent: true,
            open_world: false,
            output_schema: None,
        };
        let a = annotations(Some(&h)).unwrap();
        // Read-only wins: a read cannot destroy.
        assert_eq!(
            (a.read_only_hint, a.destructive_hint, a.open_world_hint),
            (Some(true), Some(false), Some(false))
        );
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;

    fn offered_with(schema: serde_json::Value) -> Offered {
        let schema = schema.as_object().unwrap().clone();
        Offered {
            name: "shop_tag".into(),
            instance: "shop".into(),
            action: "tag".into(),
            sha256: "abc".into(),
            tool: Tool::new("shop_tag", "", Arc::new(schema)),
            destructive: false,
        }
    }

    #[test]
    fn inputs_are_checked_against_the_actions_schema_with_bounded_reasons() {
        let schemas = Schemas::default();
        let tool = offered_with(serde_json::json!({
            "type": "object", "required": ["id", "tags"],
            "properties": {"id": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}
        }));
        schemas.check(&tool, &serde_json::json!({"id": 1, "tags": ["a"]})).unwrap();
        let Err(InputError::Invalid(reasons)) =
            schemas.check(&tool, &serde_json::json!({"id": "x\u{1b}[2J"}))
        else {
            panic!("accepted")
        };
        assert!(reasons.iter().any(|r| r.contains("\"tags\" is a required property")), "{reasons:?}");
        // The client's text comes back printable.
        assert!(reasons.iter().all(|r| !r.contains('\u{1b}')), "{reasons:?}");
        // Many errors: the first few, each cut short.
        let long = serde_json::json!({"id": "y".repeat(10_000), "tags": [1, 2, 3, 4, 5, 6, 7]});
        let Err(InputError::Invalid(reasons)) = schemas.check(&tool, &long) else { panic!("accepted") };
        assert_eq!(reasons.len(), MAX_REPORTED_ERRORS);
        assert!(reasons.iter().all(|r| r.len() < 400), "{reasons:?}");
    }

    /// `(a+)+$` against `aaa…!` backtracks exponentially; on the linear engine it is one pass
    /// (this test would run for hours on a backtracking one without a limit).
    #[test]
    fn a_pattern_is_matched_in_linear_time() {
        let schemas = Schemas::default();
        let tool = offered_with(
            serde_json::json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}}),
        );
        let input = serde_json::json!({"a": format!("{}!", "a".repeat(100_000))});
        assert!(matches!(schemas.check(&tool, &input), Err(InputError::Invalid(_))));
        schemas.check(&tool, &serde_json::json!({"a": "aaaa"})).unwrap();
    }

    /// A plugin's pattern compiles to at most 32 KiB (`\w` is every Unicode word character: a
    /// few hundred of them compile to megabytes); past that the tool cannot be checked. Formats
    /// are not checked: `"format": "regex"` would compile the client's strings.
    #[test]
    fn patterns_are_bounded_and_formats_are_not_checked() {
        let schemas = Schemas::default();
        let huge = offered_with(
            serde_json::json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "\\w{500}"}}}),
        );
        assert!(matches!(
            schemas.check(&huge, &serde_json::json!({"a": "x"})),
            Err(InputError::BadSchema(_))
        ));
        let formats = offered_with(
            serde_json::json!({"type": "object", "properties": {"a": {"type": "string", "format": "regex"}}}),
        );
        schemas.check(&formats, &serde_json::json!({"a": "(((("})).unwrap();
    }

    /// A hostile plugin's schema cannot make the host fetch a `$ref` or panic on a bad
    /// pattern: the tool cannot be checked, so it does not run.
    #[test]
    fn a_schema_the_host_cannot_check_refuses_the_call() {
        let schemas = Schemas::default();
        for schema in [
            serde_json::json!({"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:1/schema.json"}}}),
            serde_json::json!({"type": "object", "properties": {"a": {"$ref": "file:///etc/passwd"}}}),
            serde_json::json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "(unclosed"}}}),
            serde_json::json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "(?=a)a"}}}),
        ] {
            let outcome = schemas.check(&offered_with(schema.clone()), &serde_json::json!({"a": "x"}));
            assert!(matches!(outcome, Err(InputError::BadSchema(_))), "{schema}: {outcome:?}");
        }
    }
}
