//! The configuration file as an operator writes it: every table refuses a key it does not know
//! (a typo is an error that names it, never a setting silently ignored), and `validate` names
//! the first wrong reference by its path in the file, with nothing but the file to go on.

use plugboard_manifest::{Config, ConfigError};

/// A file with every table and every nested table the manifest knows.
const FULL: &str = r#"
delivery_concurrency = 8

[server]
listen = "127.0.0.1:8080"

[store]
path = "plugboard.db"
backend = "nats"

[store.nats]
servers = ["nats://10.0.0.1:4222", "tls://10.0.0.2:4222"]
credentials = "file:/etc/plugboard/nats.creds"
replicas = 3

[ai]
cache = "always"

[calls]
retain = 10

[jobs]
token = "env:JOBS_TOKEN"
callback_allow = ["https://hooks.example.com"]

[admin]
token = "env:ADMIN_TOKEN"

[retry]
schedule_ms = [1000, 2000]

[secret.shop]
value = "env:SHOP_TOKEN"
hosts = ["https://*.myshopify.com"]

[oauth.crm]
token_url = "https://crm.example.com/token"
client_id = "plugboard"
client_secret = "env:CRM_SECRET"
hosts = ["https://crm.example.com"]

[[plugin]]
id = "shop"
wasm = "shopify.wasm"
config = { shop = "example" }

[plugin.grants]
capabilities = ["http", "log"]
secrets = ["shop"]
oauth = ["crm"]
ai_tools = ["slack.post-message"]

[plugin.grants.http]
allow = ["https://*.myshopify.com", "https://crm.example.com"]

[[plugin.grants.http.rate_limits]]
destination = "https://*.myshopify.com"
per_second = 2.0
burst = 40.0

[plugin.limits]
memory_mib = 32

[plugin.webhook]
verify = { scheme = "shopify" }
secrets = ["env:SHOPIFY_WEBHOOK_SECRET"]
rate_limit = { per_second = 10.0, burst = 20.0 }

[[plugin]]
id = "slack"
wasm = "slack.wasm"

[plugin.webhook]
secrets = ["env:SLACK_SIGNING_SECRET"]

[plugin.webhook.verify]
scheme = "hmac"
header = "X-Signature"
encoding = "hex"

[[route]]
name = "orders"
from = "shop"
kind = "orders/*"
to = "slack"
filter = { pointer = "/country", equals = "NL" }

[[schedule]]
name = "digest"
cron = "0 0 9 * * *"
to = "slack"
action = "digest"

[mcp]
allowed_origins = ["https://claude.example.com"]

[[mcp.client]]
name = "agent"
token = "env:MCP_AGENT_TOKEN"
tools = ["shop.get-order", "slack.*"]
rate_limit = { per_second = 1.0, burst = 5.0 }
"#;

/// Every table of [`FULL`], as the line its keys follow (the first occurrence in the file).
const TABLES: [&str; 20] = [
    "delivery_concurrency = 8",
    "[server]",
    "[store]",
    "[store.nats]",
    "[ai]",
    "[calls]",
    "[jobs]",
    "[admin]",
    "[retry]",
    "[secret.shop]",
    "[oauth.crm]",
    "[plugin.grants]",
    "[plugin.grants.http]",
    "[[plugin.grants.http.rate_limits]]",
    "[plugin.limits]",
    "[plugin.webhook]",
    "[plugin.webhook.verify]",
    "[[schedule]]",
    "[mcp]",
    "[[mcp.client]]",
];

#[test]
fn the_full_file_parses_and_is_valid() {
    let config = Config::from_toml(FULL, "full.toml").unwrap();
    config.validate().unwrap();
    assert_eq!(config.plugins.len(), 2);
    assert_eq!(config.plugins[0].limits.memory_mib, 32);
    assert_eq!(config.plugins[1].limits, plugboard_manifest::Limits::default());
    assert_eq!(config.routes[0].kind, "orders/*");
}

#[test]
fn every_table_refuses_a_key_it_does_not_know() {
    for table in TABLES {
        let text = FULL.replacen(table, &format!("{table}\nbogus_key = 1"), 1);
        assert_ne!(text, FULL, "{table} is not in the file");
        match Config::from_toml(&text, "typo.toml") {
            Err(ConfigError::Parse { path, message }) => {
                assert_eq!(path, "typo.toml");
                assert!(message.contains("bogus_key"), "{table}: the error does not name the key: {message}");
            }
            other => panic!("{table}: an unknown key was accepted: {other:?}"),
        }
    }
    // Inline tables and arrays of tables too.
    for (inline, with_typo) in [
        (
            r#"filter = { pointer = "/country", equals = "NL" }"#,
            r#"filter = { pointer = "/country", equls = "NL" }"#,
        ),
        (
            r#"rate_limit = { per_second = 10.0, burst = 20.0 }"#,
            r#"rate_limit = { per_secnd = 10.0, burst = 20.0 }"#,
        ),
        (r#"name = "orders""#, "name = \"orders\"\nordering = \"/customer\""),
        (r#"id = "slack""#, "id = \"slack\"\ngrant = {}"),
    ] {
        let text = FULL.replacen(inline, with_typo, 1);
        assert_ne!(text, FULL, "{inline} is not in the file");
        assert!(
            matches!(Config::from_toml(&text, "typo.toml"), Err(ConfigError::Parse { .. })),
            "{with_typo}"
        );
    }
}

#[test]
fn validate_names_the_first_wrong_reference_by_its_key() {
    let refused = |from: &str, to: &str| {
        let text = FULL.replacen(from, to, 1);
        assert_ne!(text, FULL, "{from} is not in the file");
        let config = Config::from_toml(&text, "wrong.toml").unwrap();
        match config.validate() {
            Err(ConfigError::Invalid { key, reason }) => format!("{key}: {reason}"),
            other => panic!("{to}: accepted: {other:?}"),
        }
    };
    assert_eq!(refused(r#"to = "slack""#, r#"to = "nobody""#), "route[0].to: no instance named `nobody`");
    assert_eq!(refused(r#"id = "slack""#, r#"id = "shop""#), "plugin[shop]: the id is used twice");
    assert!(refused(r#"id = "slack""#, r#"id = "schedule""#).starts_with("plugin[schedule].id:"));
    assert!(refused(r#"name = "orders""#, r#"name = "job""#).starts_with("route[0].name:"));
    assert!(refused(r#"name = "digest""#, r#"name = "a digest""#).starts_with("schedule[0].name:"));
    assert_eq!(
        refused(r#"secrets = ["shop"]"#, r#"secrets = ["shop", "stripe"]"#),
        "plugin[shop].grants.secrets: no [secret.stripe] is configured"
    );
    assert!(
        refused(r#"hosts = ["https://*.myshopify.com"]"#, r#"hosts = ["https://api.stripe.com"]"#)
            .starts_with(
                "plugin[shop].grants.secrets: [secret.shop] may only be sent to https://api.stripe.com"
            )
    );
    assert!(
        refused(r#"allow = ["https://*.myshopify.com","#, r#"allow = ["ftp://*.myshopify.com","#)
            .starts_with("plugin[shop].grants.http:")
    );
    assert!(
        refused(r#"destination = "https://*.myshopify.com""#, r#"destination = "https://api.example.com""#)
            .starts_with("plugin[shop].grants.http.rate_limits[0]: no http.allow entry reaches")
    );
    assert!(
        refused("rate_limit = { per_second = 10.0", "rate_limit = { per_second = 0.0")
            .starts_with("plugin[shop].webhook.rate_limit:")
    );
    // Rates TOML spells as infinite (or not a number) cannot be enforced: refused, not a panic
    // at the first request.
    assert!(
        refused("rate_limit = { per_second = 10.0", "rate_limit = { per_second = inf")
            .starts_with("plugin[shop].webhook.rate_limit:")
    );
    assert!(
        refused("per_second = 2.0\nburst = 40.0", "per_second = inf\nburst = inf")
            .contains("per_second must be > 0 and burst >= 1, both finite")
    );
    assert!(
        refused("per_second = 2.0\nburst = 40.0", "per_second = nan\nburst = 40.0").contains("both finite")
    );
    // A shared limit's scope is one of two words, or the file does not parse.
    let scoped = FULL.replacen("burst = 40.0", "burst = 40.0\nscope = \"global\"", 1);
    let err = Config::from_toml(&scoped, "wrong.toml").unwrap_err().to_string();
    assert!(err.contains("unknown variant `global`, expected `node` or `cluster`"), "{err}");
    let cluster = FULL.replacen("burst = 40.0", "burst = 40.0\nscope = \"cluster\"", 1);
    assert!(Config::from_toml(&cluster, "ok.toml").unwrap().validate().is_ok());
    assert_eq!(
        refused(r#"secrets = ["env:SHOPIFY_WEBHOOK_SECRET"]"#, "secrets = []"),
        "plugin[shop].webhook.secrets: at least one secret is needed to verify webhooks"
    );
    assert!(
        refused(r#"callback_allow = ["https://hooks.example.com"]"#, r#"callback_allow = ["hooks"]"#)
            .starts_with("jobs.callback_allow:")
    );
    // A NATS store the cluster would refuse is refused before connecting.
    assert_eq!(
        refused("replicas = 3", "replicas = 2"),
        "store.nats.replicas: 2: JetStream keeps 1, 3 or 5 replicas of a stream"
    );
    assert!(
        refused(r#""tls://10.0.0.2:4222""#, r#""http://10.0.0.2:4222""#).starts_with("store.nats.servers:")
    );
    assert!(refused("replicas = 3", "replicas = 3\nstream = \"A.B\"").starts_with("store.nats.stream:"));
    assert!(
        refused("replicas = 3", "replicas = 3\nsubject_prefix = \">\"")
            .starts_with("store.nats.subject_prefix:")
    );
    assert!(refused("replicas = 3", "replicas = 3\nlease_secs = 0").starts_with("store.nats.lease_secs:"));
    let forever = "replicas = 3\nlease_secs = 18446744073709551615";
    assert!(refused("replicas = 3", forever).starts_with("store.nats.lease_secs:"));
    let no_server = r#"servers = ["nats://10.0.0.1:4222", "tls://10.0.0.2:4222"]"#;
    assert!(refused(no_server, "servers = []").starts_with("store.nats.servers:"));
    // Another backend does not read the table.
    let sqlite = FULL.replacen(r#"backend = "nats""#, r#"backend = "sqlite""#, 1).replacen(
        "replicas = 3",
        "replicas = 2",
        1,
    );
    Config::from_toml(&sqlite, "sqlite.toml").unwrap().validate().unwrap();
    // AI clients' tools name configured instances; names, limits and origins are checked.
    assert_eq!(
        refused(r#"tools = ["shop.get-order", "slack.*"]"#, r#"tools = ["shopp.get-order"]"#),
        "mcp.client[0].tools[0]: no instance named `shopp`"
    );
    assert!(
        refused(r#"tools = ["shop.get-order", "slack.*"]"#, r#"tools = ["shop"]"#)
            .starts_with("mcp.client[0].tools[0]: `shop` is not `instance.action`")
    );
    assert!(refused(r#"name = "agent""#, r#"name = "an agent""#).starts_with("mcp.client[0].name:"));
    assert!(
        refused("rate_limit = { per_second = 1.0", "rate_limit = { per_second = inf")
            .starts_with("mcp.client[0].rate_limit:")
    );
    assert!(
        refused(r#"name = "agent""#, "name = \"agent\"\nmax_concurrency = 0")
            .starts_with("mcp.client[0].max_concurrency:")
    );
    assert!(
        refused(r#"["https://claude.example.com"]"#, r#"["claude.example.com"]"#)
            .starts_with("mcp.allowed_origins[0]:")
    );
    assert!(refused(r#"id = "slack""#, r#"id = "mcp""#).starts_with("plugin[mcp].id:"));
    // Tools name configured instances, and no instance's tools can run it again.
    assert_eq!(
        refused(r#"ai_tools = ["slack.post-message"]"#, r#"ai_tools = ["slak.post-message"]"#),
        "plugin[shop].grants.ai_tools[0]: no instance named `slak`"
    );
    assert!(
        refused(r#"ai_tools = ["slack.post-message"]"#, r#"ai_tools = ["shop.get-order"]"#)
            .starts_with("plugin[shop].grants.ai_tools: its tools can run it again")
    );
    let cycle = FULL.replacen("[plugin.webhook]\nsecrets = [\"env:SLACK_SIGNING_SECRET\"]", "[plugin.grants]\nai_tools = [\"shop.*\"]\n\n[plugin.webhook]\nsecrets = [\"env:SLACK_SIGNING_SECRET\"]", 1);
    assert_ne!(cycle, FULL);
    let err = Config::from_toml(&cycle, "cycle.toml").unwrap().validate().unwrap_err().to_string();
    assert!(err.contains("its tools can run it again"), "{err}");
    // No host names would switch the Host check off, not make it strict.
    assert!(
        refused(r#"allowed_origins = ["https://claude.example.com"]"#, "allowed_hosts = []")
            .starts_with("mcp.allowed_hosts:")
    );
    let unknown = FULL.replacen(r#"backend = "nats""#, r#"backend = "postgres""#, 1);
    assert!(matches!(Config::from_toml(&unknown, "pg.toml"), Err(ConfigError::Parse { .. })));
}
