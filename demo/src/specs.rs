//! The providers' official API descriptions (`demo/specs/`, see its README; MIT-licensed, their
//! licence files beside them), compiled into this crate so that a clone of the repository alone
//! runs the demo and the tests, loaded once and used to check what connectors send and what the
//! stand-ins answer:
//!
//! - OpenAI: JSON Schema (Draft 2020-12) validation of the request body against
//!   `CreateChatCompletionRequest` and of our answers against `CreateChatCompletionResponse`,
//!   references resolved inside the OpenAPI document; plus a strict check that the body has no
//!   top-level property the schema does not declare.
//! - Slack Web API (Swagger 2.0, form parameters): every JSON body key must be a declared
//!   parameter of the method with the declared type (`blocks` and `attachments` are declared as
//!   JSON-encoded strings; JSON bodies carry them as arrays, which Slack accepts), and every
//!   required parameter must be there (`token` travels as `Authorization: Bearer`).
//! - Slack Events API: the outer envelope against `slack-events-wrapper.schema.json`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use serde_json::Value;

/// The descriptions as this crate was built with them.
const OPENAI: &str = include_str!("../specs/openai-openapi.yaml");
const SLACK_WEB: &str = include_str!("../specs/slack-web-openapi-v2.json");
const SLACK_EVENTS: &str = include_str!("../specs/slack-events-wrapper.schema.json");

/// One Slack Web API form parameter.
#[derive(Debug, Clone)]
struct Param {
    kind: String,
    required: bool,
    location: String,
}

/// The loaded descriptions.
pub struct Specs {
    openai_request: jsonschema::Validator,
    openai_response: jsonschema::Validator,
    openai_request_properties: BTreeSet<String>,
    slack_methods: BTreeMap<String, BTreeMap<String, Param>>,
    slack_envelope: jsonschema::Validator,
}

/// A validator for `#/components/schemas/{name}` inside `document`.
fn component(document: &Value, name: &str) -> anyhow::Result<jsonschema::Validator> {
    let mut root = document.clone();
    root["$ref"] = Value::String(format!("#/components/schemas/{name}"));
    jsonschema::draft202012::new(&root).map_err(|e| anyhow::anyhow!("schema {name}: {e}"))
}

/// The properties a schema declares at its top level, through `allOf`.
fn declared_properties(document: &Value, schema: &Value, into: &mut BTreeSet<String>) {
    if let Some(reference) = schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/")) {
        let target = reference.split('/').fold(document, |node, key| &node[key]);
        declared_properties(document, target, into);
    }
    if let Some(props) = schema["properties"].as_object() {
        into.extend(props.keys().cloned());
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        declared_properties(document, part, into);
    }
}

/// The OpenAI spec bounds `seed` with integers beyond 64 bits, which the YAML reader refuses;
/// written as floats they keep their meaning for validation.
fn floats_for_huge_integers(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        out.push_str(line);
        let value = line.rsplit_once(": ").map(|(_, v)| v.trim()).unwrap_or("");
        let digits = value.trim_start_matches('-');
        if digits.len() >= 19 && digits.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(".0");
        }
        out.push('\n');
    }
    out
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator.iter_errors(instance).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

static SHARED: std::sync::OnceLock<std::sync::Arc<Specs>> = std::sync::OnceLock::new();

impl Specs {
    /// The compiled-in descriptions, parsed once per process (the OpenAI one is 3 MB).
    pub fn shared() -> anyhow::Result<std::sync::Arc<Specs>> {
        if let Some(specs) = SHARED.get() {
            return Ok(specs.clone());
        }
        let specs = std::sync::Arc::new(Specs::parse(OPENAI, SLACK_WEB, SLACK_EVENTS)?);
        Ok(SHARED.get_or_init(|| specs).clone())
    }

    /// Parses the OpenAI OpenAPI (YAML), Slack Web API (Swagger JSON) and Slack Events envelope
    /// (JSON Schema) descriptions.
    pub fn parse(openai: &str, slack_web: &str, slack_events: &str) -> anyhow::Result<Specs> {
        let openai: Value =
            serde_yaml::from_str(&floats_for_huge_integers(openai)).context("parsing the OpenAI spec")?;
        let mut openai_request_properties = BTreeSet::new();
        declared_properties(
            &openai,
            &openai["components"]["schemas"]["CreateChatCompletionRequest"],
            &mut openai_request_properties,
        );
        let slack: Value = serde_json::from_str(slack_web).context("parsing the Slack spec")?;
        let mut slack_methods = BTreeMap::new();
        for (path, item) in slack["paths"].as_object().into_iter().flatten() {
            let Some(op) = item.get("post").or_else(|| item.get("get")) else { continue };
            let params = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some((
                        p["name"].as_str()?.to_owned(),
                        Param {
                            kind: p["type"].as_str().unwrap_or("string").to_owned(),
                            required: p["required"] == true,
                            location: p["in"].as_str().unwrap_or("").to_owned(),
                        },
                    ))
                })
                .collect();
            slack_methods.insert(path.trim_start_matches('/').to_owned(), params);
        }
        let envelope: Value =
            serde_json::from_str(slack_events).context("parsing the Slack events schema")?;
        Ok(Specs {
            openai_request: component(&openai, "CreateChatCompletionRequest")?,
            openai_response: component(&openai, "CreateChatCompletionResponse")?,
            openai_request_properties,
            slack_methods,
            slack_envelope: jsonschema::validator_for(&envelope)
                .map_err(|e| anyhow::anyhow!("Slack events schema: {e}"))?,
        })
    }

    /// What is wrong with a Chat Completions request body (empty: nothing).
    pub fn check_openai_request(&self, body: &Value) -> Vec<String> {
        let mut problems = errors(&self.openai_request, body);
        for key in body.as_object().into_iter().flat_map(|o| o.keys()) {
            if !self.openai_request_properties.contains(key) {
                problems.push(format!("/{key}: not a property of CreateChatCompletionRequest"));
            }
        }
        problems
    }

    /// What is wrong with a Chat Completions answer.
    pub fn check_openai_response(&self, body: &Value) -> Vec<String> {
        errors(&self.openai_response, body)
    }

    /// What is wrong with a JSON call of Slack Web API `method` (e.g. `chat.postMessage`).
    pub fn check_slack_call(&self, method: &str, body: &Value, bearer: bool) -> Vec<String> {
        let Some(params) = self.slack_methods.get(method) else {
            return vec![format!("{method}: not a Slack Web API method")];
        };
        let mut problems = Vec::new();
        let Some(object) = body.as_object() else { return vec!["the body is not a JSON object".into()] };
        for (key, value) in object {
            let Some(param) = params.get(key).filter(|p| p.location == "formData" || p.location == "query")
            else {
                problems.push(format!("{method}: `{key}` is not a parameter"));
                continue;
            };
            let ok = match (param.kind.as_str(), value) {
                ("string", Value::String(_)) | ("boolean", Value::Bool(_)) => true,
                ("integer" | "number", Value::Number(_)) => true,
                ("string", Value::Array(_)) => key == "blocks" || key == "attachments",
                _ => false,
            };
            if !ok {
                problems.push(format!("{method}: `{key}` must be a {}, got {value}", param.kind));
            }
        }
        for (name, param) in params.iter().filter(|(_, p)| p.required) {
            let present = if param.location == "header" { bearer } else { object.contains_key(name) };
            if !present {
                problems.push(format!("{method}: required `{name}` is missing"));
            }
        }
        problems
    }

    /// What is wrong with an Events API envelope.
    pub fn check_slack_envelope(&self, body: &Value) -> Vec<String> {
        errors(&self.slack_envelope, body)
    }
}
