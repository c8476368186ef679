//! The first-party connectors (`plugins/`) and the example flows' plugins, each through the
//! real host against the local stand-ins of `plugboard-demo`, which check every request against
//! the providers' official API descriptions and answer in the providers' real shapes, error and
//! throttling answers included.

use plugboard::egress::secrets::Secret;
use plugboard::types::{
    ChatRequest, Error as WitError, FinishReason, Message, ResponseFormat, Role, WebhookRequest,
};
use plugboard::{Capability, Grants, Host, InvokeError, Limits, PluginSpec};
use plugboard_demo::fakes::{self, Fakes, Script};
use plugboard_demo::specs::Specs;
use plugboard_tests::{ANTHROPIC, OPENAI, SHOPIFY, SLACK};
use serde_json::{Value, json};

async fn fakes() -> Fakes {
    Fakes::start("127.0.0.1:0".parse().unwrap(), Specs::shared().expect("the official API descriptions load"))
        .await
        .unwrap()
}

/// Loads `wasm` as `id` with `http` (to the stand-ins only), `config` and `secret`, its value
/// bound to the stand-ins' origin.
async fn connector(host: &Host, fakes: &Fakes, id: &str, wasm: &str, secret: (&str, &str), limits: Limits) {
    let origin = fakes.origin();
    host.set_secret(secret.0, Secret::new(secret.1, &[origin.as_str()]).unwrap());
    let grants = Grants::none()
        .with(Capability::Config)
        .allow_http(&origin)
        .allow_internal("127.0.0.1")
        .with_secret(secret.0);
    let spec =
        PluginSpec::new(id, wasm).with_grants(grants).with_limits(limits).with_config("base_url", &origin);
    host.load(spec).await.unwrap_or_else(|e| panic!("loading {id}: {e}"));
}

fn no_violations(fakes: &Fakes) {
    for r in fakes.state.received() {
        assert!(
            r.violations.is_empty(),
            "{} {} broke the official description: {:?}\n{}",
            r.provider,
            r.path,
            r.violations,
            r.body
        );
    }
}

fn plugin_error<T: std::fmt::Debug>(r: Result<T, InvokeError>) -> WitError {
    match r {
        Err(InvokeError::Plugin(e)) => e,
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

fn chat(model: Option<&str>, format: ResponseFormat, max_tokens: Option<u32>) -> ChatRequest {
    ChatRequest {
        model: model.map(str::to_owned),
        messages: vec![
            Message { role: Role::System, content: "You triage support messages.".into() },
            Message { role: Role::User, content: "My package is late and I want a refund".into() },
        ],
        temperature: Some(0.0),
        max_tokens,
        response_format: format,
        stop: vec![],
    }
}

fn triage_schema() -> String {
    json!({ "type": "object", "additionalProperties": false, "required": ["sentiment", "category"],
            "properties": { "sentiment": { "type": "string" }, "category": { "type": "string" } } })
    .to_string()
}

fn one_attempt() -> Limits {
    Limits { http_max_attempts: 1, ..Limits::default() }
}

#[tokio::test]
pub async fn openai() {
    let fakes = fakes().await;
    let host = Host::builder().build().unwrap();
    connector(&host, &fakes, "openai", OPENAI, ("openai_api_key", fakes::OPENAI_KEY), one_attempt()).await;

    // Structured output: the request is a valid CreateChatCompletionRequest, the answer parses.
    let answer = host
        .complete("openai", chat(None, ResponseFormat::JsonSchema(triage_schema()), Some(200)))
        .await
        .unwrap()
        .output;
    let parsed: Value = serde_json::from_str(&answer.content).unwrap();
    assert_eq!(parsed, json!({ "sentiment": "negative", "category": "billing" }));
    assert_eq!((answer.finish_reason, answer.model.as_str()), (FinishReason::Stop, "gpt-4o-mini"));
    assert!(answer.usage.prompt_tokens > 0 && answer.usage.completion_tokens > 0);
    assert!(answer.request_id.is_some_and(|id| id.starts_with("req_")));
    let sent = fakes.state.received().last().unwrap().body.clone();
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(sent["response_format"]["json_schema"]["strict"], true);
    assert_eq!(sent["max_tokens"], 200);
    assert_eq!(sent["messages"][0], json!({ "role": "system", "content": "You triage support messages." }));

    // Reasoning models take max_completion_tokens instead.
    host.complete("openai", chat(Some("o3-mini"), ResponseFormat::JsonObject, Some(50))).await.unwrap();
    let sent = fakes.state.received().last().unwrap().body.clone();
    assert_eq!((sent["max_completion_tokens"].clone(), sent.get("max_tokens")), (json!(50), None));
    assert_eq!(sent["response_format"], json!({ "type": "json_object" }));
    no_violations(&fakes);

    // `base_url` as the official SDKs write it, with `/v1`, reaches the same endpoint.
    let grants = Grants::none()
        .with(Capability::Config)
        .allow_http(&fakes.origin())
        .allow_internal("127.0.0.1")
        .with_secret("openai_api_key");
    let sdk_style = PluginSpec::new("openai-v1", OPENAI)
        .with_grants(grants)
        .with_limits(one_attempt())
        .with_config("base_url", &format!("{}/v1/", fakes.origin()));
    host.load(sdk_style).await.unwrap();
    host.complete("openai-v1", chat(None, ResponseFormat::JsonObject, Some(20))).await.unwrap();
    assert_eq!(fakes.state.received().last().unwrap().path, "/v1/chat/completions");

    // Azure OpenAI, a configuration of the same connector: the deployment's path, a required
    // api-version, the key in `api-key`; the same request body, checked against the description.
    let azure = |deployment: &str| {
        let grants = Grants::none()
            .with(Capability::Config)
            .allow_http(&fakes.origin())
            .allow_internal("127.0.0.1")
            .with_secret("openai_api_key");
        PluginSpec::new("azure", OPENAI)
            .with_grants(grants)
            .with_limits(one_attempt())
            .with_config("base_url", &fakes.origin())
            .with_config("azure_deployment", deployment)
    };
    host.load(azure(fakes::AZURE_DEPLOYMENT)).await.unwrap();
    let answer = host
        .complete("azure", chat(None, ResponseFormat::JsonSchema(triage_schema()), Some(200)))
        .await
        .unwrap()
        .output;
    let parsed: Value = serde_json::from_str(&answer.content).unwrap();
    assert_eq!(parsed, json!({ "sentiment": "negative", "category": "billing" }));
    assert!(answer.request_id.is_some_and(|id| id.starts_with("azreq-")));
    let sent = fakes.state.received().last().unwrap().clone();
    assert_eq!(
        (sent.provider, sent.path.as_str()),
        ("azure-openai", "/openai/deployments/triage-gpt-4o-mini/chat/completions")
    );
    no_violations(&fakes);
    host.load(azure("no-such-deployment")).await.unwrap();
    let missing = plugin_error(host.complete("azure", chat(None, ResponseFormat::Text, None)).await);
    assert!(matches!(&missing, WitError::NotFound(m) if m.contains("deployment")), "{missing:?}");

    // The stand-in answers in the documented CreateChatCompletionResponse shape.
    let raw = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", fakes.origin()))
        .bearer_auth(fakes::OPENAI_KEY)
        .json(&json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "hi" }] }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(Specs::shared().unwrap().check_openai_response(&raw), Vec::<String>::new());

    // Errors, as OpenAI sends them.
    let text = || chat(None, ResponseFormat::Text, None);
    fakes.state.script("openai", Script::Status(429, vec![("x-ratelimit-reset-requests", "6m0s".into())], json!({ "error": { "message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded" } })));
    assert!(matches!(
        plugin_error(host.complete("openai", text()).await),
        WitError::RateLimited(Some(360_000))
    ));
    fakes.state.script(
        "openai",
        Script::Status(
            429,
            vec![("retry-after", "2".into())],
            json!({ "error": { "message": "slow down", "type": "tokens", "param": null, "code": null } }),
        ),
    );
    assert!(matches!(plugin_error(host.complete("openai", text()).await), WitError::RateLimited(Some(2000))));
    fakes.state.script("openai", Script::Status(401, vec![], json!({ "error": { "message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key" } })));
    assert!(
        matches!(plugin_error(host.complete("openai", text()).await), WitError::Unauthorized(m) if m.contains("Incorrect API key"))
    );
    fakes.state.script("openai", Script::Status(503, vec![], json!({ "error": { "message": "overloaded", "type": "server_error", "param": null, "code": null } })));
    assert!(
        matches!(plugin_error(host.complete("openai", text()).await), WitError::Upstream(u) if u.status == 503)
    );

    // With retries allowed, the host retries a 5xx and the plugin only sees the success.
    let host = Host::builder().build().unwrap();
    connector(&host, &fakes, "openai", OPENAI, ("openai_api_key", fakes::OPENAI_KEY), Limits::default())
        .await;
    fakes.state.script(
        "openai",
        Script::Status(
            500,
            vec![("retry-after-ms", "10".into())],
            json!({ "error": { "message": "boom", "type": "server_error", "param": null, "code": null } }),
        ),
    );
    assert!(host.complete("openai", text()).await.is_ok());
}

#[tokio::test]
pub async fn anthropic() {
    let fakes = fakes().await;
    let host = Host::builder().build().unwrap();
    connector(
        &host,
        &fakes,
        "anthropic",
        ANTHROPIC,
        ("anthropic_api_key", fakes::ANTHROPIC_KEY),
        one_attempt(),
    )
    .await;
    let answer = host
        .complete("anthropic", chat(None, ResponseFormat::JsonSchema(triage_schema()), None))
        .await
        .unwrap()
        .output;
    assert_eq!(
        serde_json::from_str::<Value>(&answer.content).unwrap(),
        json!({ "sentiment": "negative", "category": "billing" })
    );
    assert_eq!((answer.finish_reason, answer.model.as_str()), (FinishReason::Stop, "claude-sonnet-4-5"));
    let sent = fakes.state.received().last().unwrap().body.clone();
    assert_eq!(sent["max_tokens"], 1024, "required by the API: the connector's default");
    assert!(sent["system"].as_str().unwrap().starts_with("You triage support messages."));
    assert!(sent["messages"].as_array().unwrap().iter().all(|m| m["role"] != "system"));
    no_violations(&fakes);

    let text = || chat(None, ResponseFormat::Text, None);
    fakes.state.script(
        "anthropic",
        Script::Status(
            529,
            vec![],
            json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } }),
        ),
    );
    assert!(matches!(plugin_error(host.complete("anthropic", text()).await), WitError::RateLimited(None)));
    fakes.state.script("anthropic", Script::Status(429, vec![("retry-after", "7".into())], json!({ "type": "error", "error": { "type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit" } })));
    assert!(matches!(
        plugin_error(host.complete("anthropic", text()).await),
        WitError::RateLimited(Some(7000))
    ));
    fakes.state.script("anthropic", Script::Status(401, vec![], json!({ "type": "error", "error": { "type": "authentication_error", "message": "invalid x-api-key" } })));
    assert!(
        matches!(plugin_error(host.complete("anthropic", text()).await), WitError::Unauthorized(m) if m.contains("authentication_error"))
    );
    fakes.state.script("anthropic", Script::Status(400, vec![], json!({ "type": "error", "error": { "type": "invalid_request_error", "message": "max_tokens: too large" } })));
    assert!(matches!(plugin_error(host.complete("anthropic", text()).await), WitError::InvalidInput(_)));
}

fn webhook(headers: Vec<(String, String)>, body: Vec<u8>) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        path: "/".into(),
        query: String::new(),
        headers: headers.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect(),
        body,
    }
}

#[tokio::test]
pub async fn shopify() {
    let fakes = fakes().await;
    let host = Host::builder().build().unwrap();
    connector(
        &host,
        &fakes,
        "shopify",
        SHOPIFY,
        ("shopify_access_token", fakes::SHOPIFY_TOKEN),
        Limits::default(),
    )
    .await;
    fakes.state.add_order(plugboard_demo::sample_order(1001, "first order", "99.00"));

    // A webhook becomes an event named by its topic, with Shopify's metadata as attributes.
    let body = serde_json::to_vec(&plugboard_demo::sample_order(1001, "", "99.00")).unwrap();
    let headers = plugboard_demo::shopify_headers("unused-here", "orders/paid", "wh-1", &body);
    let reply = host.on_webhook("shopify", webhook(headers, body.clone())).await.unwrap().output;
    assert_eq!(reply.status, 200);
    let event = &reply.events[0];
    assert_eq!(event.kind, "orders/paid");
    assert_eq!(event.payload, body);
    let attr = |k: &str| event.attributes.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(
        (attr("shop_domain"), attr("webhook_id"), attr("order_id")),
        (Some("plugboard-demo.myshopify.com"), Some("wh-1"), Some("1001"))
    );
    let missing = host.on_webhook("shopify", webhook(vec![], body)).await;
    assert!(matches!(plugin_error(missing), WitError::InvalidInput(m) if m.contains("X-Shopify-Topic")));

    // Actions through the Admin GraphQL API.
    let order = host.invoke("shopify", "get-order", &json!({ "id": 1001 })).await.unwrap().output;
    assert_eq!(
        (order["id"].as_str(), order["note"].as_str()),
        (Some("gid://shopify/Order/1001"), Some("first order"))
    );
    let tagged = host
        .invoke("shopify", "add-order-tags", &json!({ "id": 1001, "tags": ["vip", "fraud-risk-high"] }))
        .await
        .unwrap()
        .output;
    assert_eq!(tagged["tags_added"], json!(["vip", "fraud-risk-high"]));
    host.invoke(
        "shopify",
        "add-order-note",
        &json!({ "id": "gid://shopify/Order/1001", "note": "checked by AI" }),
    )
    .await
    .unwrap();
    let stored = fakes.state.orders.lock().unwrap()[&1001].clone();
    assert_eq!(
        (stored["tags"].as_str(), stored["note"].as_str()),
        (Some("vip, fraud-risk-high"), Some("checked by AI"))
    );
    let customer =
        host.invoke("shopify", "get-customer", &json!({ "id": 115310627314723954u64 })).await.unwrap().output;
    assert_eq!(customer["email"], "jon@example.com");
    let sent = fakes.state.received().last().unwrap().clone();
    assert_eq!(sent.path, "/admin/api/2025-07/graphql.json");
    no_violations(&fakes);

    // userErrors, throttling and bad credentials.
    let missing = host.invoke("shopify", "add-order-tags", &json!({ "id": 9, "tags": ["x"] })).await;
    assert!(matches!(plugin_error(missing), WitError::InvalidInput(m) if m.contains("does not exist")));
    fakes.state.script("shopify", Script::ShopifyThrottled { available: 1.0, restore_rate: 50.0 });
    let throttled = host.invoke("shopify", "get-order", &json!({ "id": 1001 })).await;
    assert!(matches!(plugin_error(throttled), WitError::RateLimited(Some(180))), "(10 - 1) points at 50/s");
    let bad = Host::builder().build().unwrap();
    connector(&bad, &fakes, "shopify", SHOPIFY, ("shopify_access_token", "shpat_wrong"), Limits::default())
        .await;
    assert!(matches!(
        plugin_error(bad.invoke("shopify", "get-order", &json!({ "id": 1001 })).await),
        WitError::Unauthorized(_)
    ));
    assert!(matches!(
        plugin_error(host.invoke("shopify", "add-order-tags", &json!({ "id": 1, "tags": [] })).await),
        WitError::InvalidInput(_)
    ));
}

#[tokio::test]
pub async fn slack() {
    let fakes = fakes().await;
    let specs = Specs::shared().unwrap();
    let host = Host::builder().build().unwrap();
    connector(&host, &fakes, "slack", SLACK, ("slack_bot_token", fakes::SLACK_TOKEN), Limits::default())
        .await;
    let json_hook = |v: &Value| {
        if v["type"] == "event_callback" {
            assert_eq!(specs.check_slack_envelope(v), Vec::<String>::new(), "a documented envelope: {v}");
        }
        let body = serde_json::to_vec(v).unwrap();
        webhook(vec![("content-type".into(), "application/json".into())], body)
    };

    // url_verification is answered with the challenge.
    let challenge = json!({ "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification" });
    let reply = host.on_webhook("slack", json_hook(&challenge)).await.unwrap().output;
    assert_eq!(
        (reply.status, reply.body.as_slice(), reply.events.len()),
        (200, b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".as_slice(), 0)
    );

    // A message event, and a retry of it (the host's dedup drops it by event_id).
    let message = plugboard_demo::slack_event(
        "Ev0MSG1",
        json!({ "type": "message", "channel": "C0SUPPORT", "user": "U123", "text": "The app crashes", "ts": "1700000000.000200", "channel_type": "channel", "event_ts": "1700000000.000200" }),
    );
    let mut request = json_hook(&message);
    request.headers.push(("x-slack-retry-num".into(), "1".into()));
    let reply = host.on_webhook("slack", request).await.unwrap().output;
    let event = &reply.events[0];
    assert_eq!(event.kind, "slack/message");
    let attr = |k: &str| event.attributes.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(
        (attr("event_id"), attr("channel"), attr("retry_num")),
        (Some("Ev0MSG1".into()), Some("C0SUPPORT".into()), Some("1".into()))
    );
    let bot = plugboard_demo::slack_event(
        "Ev0BOT",
        json!({ "type": "message", "subtype": "bot_message", "bot_id": "B1", "channel": "C0SUPPORT", "text": "ours", "ts": "1.2" }),
    );
    assert!(
        host.on_webhook("slack", json_hook(&bot)).await.unwrap().output.events.is_empty(),
        "no loops on our own messages"
    );
    let mention = plugboard_demo::slack_event(
        "Ev0MEN",
        json!({ "type": "app_mention", "channel": "C0SUPPORT", "user": "U1", "text": "<@U0BOT> help", "ts": "1.3" }),
    );
    assert_eq!(
        host.on_webhook("slack", json_hook(&mention)).await.unwrap().output.events[0].kind,
        "slack/app_mention"
    );

    // Slash commands and interactivity arrive form-encoded.
    let form = |body: &str| {
        webhook(
            vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
            body.as_bytes().to_vec(),
        )
    };
    let command = "token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T0001&channel_id=C0SUPPORT&user_id=U2147483697&command=%2Fticket&text=printer+on+fire&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1234%2F5678&trigger_id=13345224609.738474920.8088930838d88f008e0";
    let reply = host.on_webhook("slack", form(command)).await.unwrap().output;
    let payload: Value = serde_json::from_slice(&reply.events[0].payload).unwrap();
    assert_eq!(
        (reply.events[0].kind.as_str(), payload["command"].as_str(), payload["text"].as_str()),
        ("slack/command", Some("/ticket"), Some("printer on fire"))
    );
    let interaction = format!("payload={}", url_encode(&json!({ "type": "block_actions", "user": { "id": "U1" }, "actions": [{ "action_id": "approve", "value": "1001" }] }).to_string()));
    let reply = host.on_webhook("slack", form(&interaction)).await.unwrap().output;
    assert_eq!(reply.events[0].kind, "slack/interaction");

    // Web API actions, each request checked against the official description.
    let posted = host
        .invoke(
            "slack",
            "post-message",
            &json!({ "channel": "C0SUPPORT", "text": "On it", "thread_ts": "1700000000.000200",
        "blocks": [{ "type": "section", "text": { "type": "mrkdwn", "text": "*On it*" } }] }),
        )
        .await
        .unwrap()
        .output;
    let ts = posted["ts"].as_str().unwrap().to_owned();
    host.invoke("slack", "update-message", &json!({ "channel": "C0SUPPORT", "ts": ts, "text": "Done" }))
        .await
        .unwrap();
    host.invoke(
        "slack",
        "add-reaction",
        &json!({ "channel": "C0SUPPORT", "timestamp": ts, "name": ":white_check_mark:" }),
    )
    .await
    .unwrap();
    let messages = fakes.state.messages.lock().unwrap().clone();
    assert_eq!(
        (messages[0].text.as_str(), messages[0].thread_ts.as_deref()),
        ("Done", Some("1700000000.000200"))
    );
    assert_eq!(fakes.state.reactions.lock().unwrap()[0].2, "white_check_mark");
    no_violations(&fakes);

    // ok:false and HTTP 429, typed.
    let post = |channel: &str| json!({ "channel": channel, "text": "x" });
    assert!(
        matches!(plugin_error(host.invoke("slack", "post-message", &post("C0NOPE")).await), WitError::InvalidInput(m) if m.contains("channel_not_found"))
    );
    fakes.state.script(
        "slack",
        Script::Status(
            429,
            vec![("retry-after", "30".into())],
            json!({ "ok": false, "error": "ratelimited" }),
        ),
    );
    assert!(matches!(
        plugin_error(host.invoke("slack", "post-message", &post("C0SUPPORT")).await),
        WitError::RateLimited(Some(30_000))
    ));
    fakes.state.script("slack", Script::SlackError("invalid_auth"));
    assert!(matches!(
        plugin_error(host.invoke("slack", "post-message", &post("C0SUPPORT")).await),
        WitError::Unauthorized(_)
    ));
    fakes.state.script("slack", Script::SlackError("internal_error"));
    assert!(matches!(
        plugin_error(host.invoke("slack", "post-message", &post("C0SUPPORT")).await),
        WitError::Upstream(_)
    ));
    assert!(matches!(
        plugin_error(host.invoke("slack", "post-message", &json!({ "channel": "C0SUPPORT" })).await),
        WitError::InvalidInput(_)
    ));
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Flow 1, as `./dev demo` runs it: the example's own config, the real server, signed webhooks.
#[tokio::test]
pub async fn order_risk() {
    let flow = plugboard_demo::flow::Flow::start("order-risk").await.unwrap();
    flow.fakes.state.add_order(plugboard_demo::sample_order(1001, "", "1249.00"));
    flow.fakes.state.add_order(plugboard_demo::sample_order(1002, "", "35.00"));
    for (id, note) in
        [(1001u64, "ship to a different address, card mismatch"), (1002, "Thanks, love your shop!")]
    {
        assert_eq!(flow.send_order(id, note, "100.00", &format!("t-{id}")).await.unwrap(), 200);
    }
    // A forged webhook is refused and stores nothing.
    let body = serde_json::to_vec(&plugboard_demo::sample_order(1003, "", "1.00")).unwrap();
    let forged = plugboard_demo::shopify_headers("not-the-secret", "orders/create", "t-1003", &body);
    assert_eq!(flow.webhook("shopify", forged, body).await.unwrap().0, 401);

    let state = flow.fakes.state.clone();
    flow.wait_for("the risky order's tag", async || {
        state.orders.lock().unwrap()[&1001]["tags"] == "fraud-risk-high"
    })
    .await
    .unwrap();
    flow.wait_for("both assessments", async || {
        flow.admin("/v1/events?kind=orders/assessed")
            .await
            .is_ok_and(|e| e.as_array().is_some_and(|a| a.len() == 2))
    })
    .await
    .unwrap();
    let messages = state.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1, "only the risky order is announced: {messages:?}");
    assert_eq!(messages[0].channel, "C0FRAUD");
    assert!(
        messages[0].text.contains("#1001") && messages[0].text.contains("high risk"),
        "{}",
        messages[0].text
    );
    assert_eq!(state.orders.lock().unwrap()[&1002]["tags"], "");
    assert!(flow.find_event("orders/create", "order_id", "1003").await.unwrap().is_none());

    // The event's path: webhook -> order-risk -> (assessed, slack alert, shopify tag), each hop
    // delivered (once the queue has drained: Slack can have the message before the delivery is
    // recorded), with the AI call recorded against the webhook's event.
    flow.settled().await.unwrap();
    let created = flow.find_event("orders/create", "order_id", "1001").await.unwrap().unwrap();
    let id = created["id"].as_str().unwrap();
    let trace = flow.admin(&format!("/v1/events/{id}")).await.unwrap();
    let first = &trace["deliveries"][0];
    assert_eq!((first["target"].as_str(), first["status"].as_str()), (Some("order-risk"), Some("delivered")));
    let mut kinds: Vec<&str> =
        first["produced"].as_array().unwrap().iter().map(|p| p["event"]["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["alerts/shopify-tag", "alerts/slack", "orders/assessed"]);
    for p in first["produced"].as_array().unwrap() {
        for d in p["deliveries"].as_array().unwrap() {
            assert_eq!(d["status"], "delivered", "{d}");
        }
    }
    // The call log's writer commits in batches.
    let recorded = flow
        .wait_for("the AI call in the call log", async || {
            flow.admin("/v1/calls").await.is_ok_and(|calls| {
                calls.as_array().is_some_and(|calls| {
                    calls
                        .iter()
                        .any(|c| c["event_id"] == id && c["instance"] == "openai" && c["status"] == 200)
                })
            })
        })
        .await;
    assert!(recorded.is_ok(), "{}", flow.admin("/v1/calls").await.unwrap());
    assert_eq!(flow.violations(), Vec::<String>::new());
    let usage = flow.host.ai_usage().await;
    assert!(
        usage
            .iter()
            .any(|(plugin, provider, u)| plugin == "order-risk" && provider == "openai" && u.calls == 2)
    );
    // The webhook's customer object (API 2025-07) has no order count: order-risk read it from
    // the Admin GraphQL API (both orders are this customer's: one before this one), and the
    // model was told.
    let received = flow.fakes.state.received();
    let lookups =
        received.iter().filter(|r| r.body["query"].as_str().is_some_and(|q| q.contains("numberOfOrders")));
    assert_eq!(lookups.count(), 2);
    let prompts: Vec<String> =
        received.iter().filter(|r| r.provider == "openai").map(|r| r.body["messages"].to_string()).collect();
    assert!(prompts.iter().all(|p| p.contains("customer with 1 previous orders")), "{prompts:?}");
}

/// Flow 2 with the example's config: a support message in Slack -> Anthropic triage -> a
/// threaded reply and a ticket in kv for the team.
#[tokio::test]
pub async fn support_triage() {
    let flow = plugboard_demo::flow::Flow::start("support-triage").await.unwrap();
    let send = async |event_id: &str, event: Value| {
        let body = serde_json::to_vec(&plugboard_demo::slack_event(event_id, event)).unwrap();
        let headers =
            plugboard_demo::slack_headers(plugboard_demo::SLACK_SIGNING_SECRET, &body, "application/json");
        flow.webhook("slack", headers, body).await.unwrap()
    };
    let message = json!({ "type": "message", "channel": "C0SUPPORT", "user": "U42", "text": "My package is late, this is unacceptable", "ts": "1700000100.000100" });
    assert_eq!(send("Ev1", message.clone()).await.0, 200);
    // Slack retries the same event (same event_id): acknowledged, not triaged twice.
    assert_eq!(send("Ev1", message).await.0, 200);
    // Elsewhere, and the bot's own reply, are not triaged.
    assert_eq!(send("Ev2", json!({ "type": "message", "channel": "C0FRAUD", "user": "U42", "text": "hi", "ts": "1700000100.000200" })).await.0, 200);

    let state = flow.fakes.state.clone();
    flow.wait_for("the threaded reply", async || !state.messages.lock().unwrap().is_empty()).await.unwrap();
    let ticket = flow
        .host
        .invoke("support-triage", "ticket", &json!({ "channel": "C0SUPPORT", "ts": "1700000100.000100" }))
        .await
        .unwrap()
        .output;
    assert_eq!(
        (
            ticket["ticket"]["team"].as_str(),
            ticket["ticket"]["category"].as_str(),
            ticket["ticket"]["sentiment"].as_str()
        ),
        (Some("logistics"), Some("shipping"), Some("negative"))
    );
    assert_eq!(ticket["open_for_team"], 1);
    flow.settled().await.unwrap();
    let messages = state.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1, "one reply, in the thread: {messages:?}");
    assert_eq!(
        (messages[0].channel.as_str(), messages[0].thread_ts.as_deref()),
        ("C0SUPPORT", Some("1700000100.000100"))
    );
    assert!(messages[0].text.contains("logistics team"), "{}", messages[0].text);
    let asked: Vec<_> =
        flow.fakes.state.received().into_iter().filter(|r| r.provider == "anthropic").collect();
    assert_eq!(asked.len(), 1, "the provider is the config's (Anthropic), asked once");
    assert_eq!(flow.violations(), Vec::<String>::new());
    // A forged Slack signature is refused.
    let body = serde_json::to_vec(&plugboard_demo::slack_event(
        "Ev3",
        json!({ "type": "message", "channel": "C0SUPPORT", "text": "x", "ts": "1.1" }),
    ))
    .unwrap();
    let forged = plugboard_demo::slack_headers("wrong-secret", &body, "application/json");
    assert_eq!(flow.webhook("slack", forged, body).await.unwrap().0, 401);
}

/// Flow 3 with the example's config, its nightly schedule made to fire every second: HMAC-signed
/// reviews -> AI categorisation -> stored -> digests posted to Slack.
#[tokio::test]
pub async fn review_digest() {
    let flow = plugboard_demo::flow::Flow::start_with(
        "review-digest",
        &[("cron = \"0 0 2 * * *\"", "cron = \"* * * * * *\"")],
    )
    .await
    .unwrap();
    let reviews = [
        json!({ "id": "r1", "product": "Kettle", "rating": 5, "text": "Great kettle, love it" }),
        json!({ "id": "r2", "product": "Kettle", "rating": 1, "text": "Arrived broken and the delivery was late" }),
        json!({ "id": "r3", "product": "Toaster", "rating": 3, "text": "Does the job" }),
    ];
    for review in &reviews {
        let body = serde_json::to_vec(review).unwrap();
        let mut headers = plugboard_demo::hmac_headers(plugboard_demo::REVIEWS_HMAC_SECRET, &body);
        headers.push(("x-review-id".into(), review["id"].as_str().unwrap().into()));
        assert_eq!(flow.webhook("reviews", headers, body).await.unwrap().0, 200);
    }
    let body = serde_json::to_vec(&reviews[0]).unwrap();
    assert_eq!(
        flow.webhook("reviews", plugboard_demo::hmac_headers("wrong", &body), body).await.unwrap().0,
        401
    );

    let waited = flow
        .wait_for("three categorized reviews", async || {
            flow.admin("/v1/events?kind=reviews/categorized")
                .await
                .is_ok_and(|e| e.as_array().is_some_and(|a| a.len() == 3))
        })
        .await;
    if let Err(e) = waited {
        let received = flow.admin("/v1/events?kind=reviews/received").await.unwrap();
        let id = received[0]["id"].as_str().unwrap_or("").to_owned();
        panic!("{e}: {received}\n{}", flow.admin(&format!("/v1/events/{id}")).await.unwrap());
    }
    // Every review ends up in exactly one digest, however the schedule interleaved.
    let state = flow.fakes.state.clone();
    let counted = || -> usize {
        state
            .messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.channel == "C0REVIEWS")
            .filter_map(|m| m.text.strip_prefix("Review digest: ")?.split(' ').next()?.parse::<usize>().ok())
            .sum()
    };
    if let Err(e) = flow.wait_for("the digest", async || counted() == 3).await {
        panic!("{e}: {} reviews in digests: {:?}", counted(), state.messages.lock().unwrap());
    }
    let categorized = flow.admin("/v1/events?kind=reviews/categorized").await.unwrap();
    assert!(categorized.as_array().unwrap().iter().all(|e| e["source"] == "review-digest"));
    assert!(
        flow.admin("/v1/events?kind=schedule/nightly-digest&limit=1")
            .await
            .unwrap()
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    assert_eq!(flow.violations(), Vec::<String>::new());
}

/// Flow 4 with the example's config: a question about an order in Slack -> the model, through
/// the OpenAI connector, calls Shopify's `get-order` as a tool (the host runs it as the shopify
/// instance, with its token; the agent has neither HTTP nor the token) -> the answer in the
/// message's thread. The requests the stand-ins get match OpenAI's and Shopify's descriptions.
#[tokio::test]
pub async fn order_agent() {
    let flow = plugboard_demo::flow::Flow::start("order-agent").await.unwrap();
    flow.fakes.state.add_order(plugboard_demo::sample_order(1001, "", "42.00"));
    let send = async |event_id: &str, event: Value| {
        let body = serde_json::to_vec(&plugboard_demo::slack_event(event_id, event)).unwrap();
        let headers =
            plugboard_demo::slack_headers(plugboard_demo::SLACK_SIGNING_SECRET, &body, "application/json");
        flow.webhook("slack", headers, body).await.unwrap()
    };
    let question = json!({ "type": "message", "channel": "C0SUPPORT", "user": "U7", "text": "Hi! Where is my order 1001?", "ts": "1700000200.000100" });
    assert_eq!(send("EvA1", question).await.0, 200);
    let state = flow.fakes.state.clone();
    if flow
        .wait_for("the answer in the thread", async || !state.messages.lock().unwrap().is_empty())
        .await
        .is_err()
    {
        let received: Vec<_> =
            state.received().into_iter().map(|r| (r.provider, r.path, r.violations)).collect();
        panic!("no answer; dead letters: {}\nreceived: {received:?}", flow.admin("/v1/dlq").await.unwrap());
    }
    flow.settled().await.unwrap();
    let messages = state.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        (messages[0].channel.as_str(), messages[0].thread_ts.as_deref(), messages[0].text.as_str()),
        ("C0SUPPORT", Some("1700000200.000100"), "Order #1001 is paid.")
    );

    // Two model turns: the first offered the tool and got a call back, the second carried the
    // call and its result in OpenAI's format.
    let asked: Vec<Value> =
        state.received().into_iter().filter(|r| r.provider == "openai").map(|r| r.body).collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    let tool = &asked[0]["tools"][0];
    assert_eq!((&tool["type"], &tool["function"]["name"]), (&json!("function"), &json!("shopify_get-order")));
    assert_eq!(tool["function"]["parameters"]["required"], json!(["id"]));
    let turns = asked[1]["messages"].as_array().unwrap();
    let call = &turns[2]["tool_calls"][0];
    assert_eq!(
        (&turns[2]["role"], &call["function"]["name"]),
        (&json!("assistant"), &json!("shopify_get-order"))
    );
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"id": 1001})
    );
    assert_eq!((&turns[3]["role"], &turns[3]["tool_call_id"]), (&json!("tool"), &call["id"]));
    assert!(turns[3]["content"].as_str().unwrap().contains("gid://shopify/Order/1001"), "{}", turns[3]);
    assert_eq!(flow.violations(), Vec::<String>::new());

    // The tool call ran as the shopify instance, on behalf of the Slack message's event: its
    // GraphQL request is in the call log under that event, next to the two model calls.
    let event = flow.find_event("slack/message", "slack.event_id", "EvA1").await.unwrap();
    let event_id = match event {
        Some(e) => e["id"].as_str().unwrap().to_owned(),
        None => {
            flow.admin("/v1/events?kind=slack/message").await.unwrap()[0]["id"].as_str().unwrap().to_owned()
        }
    };
    let calls = flow.admin("/v1/calls?limit=100").await.unwrap();
    let mine: Vec<(&str, &str)> = calls
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["event_id"] == event_id.as_str())
        .map(|c| (c["instance"].as_str().unwrap(), c["path"].as_str().unwrap()))
        .collect();
    assert!(mine.iter().any(|(i, p)| *i == "shopify" && p.ends_with("/graphql.json")), "{mine:?}");
    assert_eq!(mine.iter().filter(|(i, _)| *i == "openai").count(), 2, "{mine:?}");
    assert!(mine.iter().all(|(i, _)| *i != "order-agent"), "the agent itself sends nothing: {mine:?}");

    // A model that keeps asking for tools is stopped after the agent's rounds (3): the
    // delivery fails with quota-exceeded instead of looping.
    for n in 0..4 {
        let turn = json!({ "id": format!("chatcmpl-loop{n}"), "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{ "index": 0, "finish_reason": "tool_calls", "logprobs": null, "message": { "role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{ "id": format!("call_loop{n}"), "type": "function", "function": { "name": "shopify_get-order", "arguments": "{\"id\": 1001}" } }] } }],
            "usage": { "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2 } });
        state.script("openai", plugboard_demo::fakes::Script::Status(200, vec![], turn));
    }
    let question = json!({ "type": "message", "channel": "C0SUPPORT", "user": "U7", "text": "And order 1001 again?", "ts": "1700000300.000100" });
    assert_eq!(send("EvA2", question).await.0, 200);
    flow.wait_for("the dead letter", async || {
        flow.admin("/v1/dlq").await.is_ok_and(|d| d.as_array().is_some_and(|d| !d.is_empty()))
    })
    .await
    .unwrap();
    let dead = flow.admin("/v1/dlq").await.unwrap();
    let error = dead[0]["last_error"].as_str().or(dead[0]["error"].as_str()).unwrap_or_default().to_owned();
    assert!(error.contains("still asked for tools after 3 rounds"), "{dead}");
    assert_eq!(state.messages.lock().unwrap().len(), 1, "no second answer");
}

/// Flow 4 with Anthropic as the provider (one line of its config changed): the tool and its
/// result travel as `tool_use` and `tool_result` blocks, checked against the Messages API
/// reference's rules by the stand-in.
#[tokio::test]
pub async fn order_agent_on_anthropic() {
    let anthropic = r#"[secret.anthropic_api_key]
value = "env:ANTHROPIC_API_KEY"
hosts = ["http://127.0.0.1:8788"]

[[plugin]]
id = "anthropic"
wasm = "../../target/wasm-guests/wasm32-wasip2/guest/anthropic.wasm"
grants = { capabilities = ["http", "config"], secrets = ["anthropic_api_key"], http = { allow = ["http://127.0.0.1:8788"], allow_internal = ["127.0.0.1"] } }
config = { base_url = "http://127.0.0.1:8788", max_tokens = "512" }

[[plugin]]
id = "openai""#;
    let flow = plugboard_demo::flow::Flow::start_with(
        "order-agent",
        &[
            ("ai_provider = \"openai\"", "ai_provider = \"anthropic\""),
            ("[[plugin]]\nid = \"openai\"", anthropic),
        ],
    )
    .await
    .unwrap();
    flow.fakes.state.add_order(plugboard_demo::sample_order(2002, "", "42.00"));
    let question = json!({ "type": "message", "channel": "C0SUPPORT", "user": "U7", "text": "Status of order 2002 please", "ts": "1700000400.000100" });
    let body = serde_json::to_vec(&plugboard_demo::slack_event("EvB1", question)).unwrap();
    let headers =
        plugboard_demo::slack_headers(plugboard_demo::SLACK_SIGNING_SECRET, &body, "application/json");
    assert_eq!(flow.webhook("slack", headers, body).await.unwrap().0, 200);
    let state = flow.fakes.state.clone();
    flow.wait_for("the answer in the thread", async || !state.messages.lock().unwrap().is_empty())
        .await
        .unwrap();
    assert_eq!(state.messages.lock().unwrap()[0].text, "Order #2002 is paid.");
    let asked: Vec<Value> =
        state.received().into_iter().filter(|r| r.provider == "anthropic").map(|r| r.body).collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0]["tools"][0]["name"], "shopify_get-order");
    assert_eq!(asked[0]["tools"][0]["input_schema"]["required"], json!(["id"]));
    let turns = asked[1]["messages"].as_array().unwrap();
    assert_eq!(
        (&turns[1]["role"], &turns[1]["content"][0]["type"]),
        (&json!("assistant"), &json!("tool_use"))
    );
    assert_eq!(turns[1]["content"][0]["input"], json!({"id": 2002}));
    let result = &turns[2]["content"][0];
    assert_eq!((&turns[2]["role"], &result["type"]), (&json!("user"), &json!("tool_result")));
    assert_eq!(result["tool_use_id"], turns[1]["content"][0]["id"]);
    assert_eq!(result["is_error"], false);
    assert_eq!(flow.violations(), Vec::<String>::new());
}
