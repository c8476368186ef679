//! Flow 3. Receives review webhooks (verified by the host: `X-Signature: sha256=<hex>`, a plain
//! HMAC of the body) as `reviews/received` events; handling one asks the AI provider for its
//! category, sentiment and a one-line summary, keeps it in the day's digest (kv), and returns
//! `reviews/categorized`. The `summarize` action, fired by a nightly schedule, publishes the
//! digest as `digest/slack` (routed to the Slack connector's `post-message`) and starts a new one.
//!
//! The digest is one kv value that both calls read, change and write back, and kv has no
//! transactions: the instance that keeps it must run one invocation at a time
//! (`limits = { max_concurrency = 1 }`, as the example's plugboard.toml says), or two reviews
//! handled at once, or a review handled while the digest is posted, could lose one.
//!
//! Config: `digest_channel` (the Slack channel of the digest).

use plugboard_sdk::ai::Chat;
use plugboard_sdk::{
    Capability, Connector, Error, Event, Metadata, NewEvent, VerificationScheme, WebhookReply,
    WebhookRequest, config, emit, kv,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

struct ReviewDigest;

const DIGEST: &str = "digest/pending";

#[derive(Debug, Deserialize, Serialize, Clone)]
struct Categorized {
    id: String,
    rating: u8,
    category: String,
    sentiment: String,
    summary: String,
}

#[derive(Debug, Deserialize)]
struct Review {
    id: String,
    product: String,
    rating: u8,
    text: String,
}

fn schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["category", "sentiment", "summary"],
        "properties": {
            "category": { "type": "string", "enum": ["billing", "shipping", "bug", "general"] },
            "sentiment": { "type": "string", "enum": ["positive", "neutral", "negative"] },
            "summary": { "type": "string" }
        }
    })
}

impl Connector for ReviewDigest {
    fn metadata() -> Metadata {
        Metadata::new(
            "review-digest",
            env!("CARGO_PKG_VERSION"),
            "Categorises reviews with AI and posts a digest",
        )
        .produces("reviews/received")
        .produces("reviews/categorized")
        .produces("digest/slack")
        .action("summarize", "Publishes the pending digest to Slack", json!({"type": "object"}))
        .requests(Capability::Ai)
        .requests(Capability::Kv)
        .requests(Capability::Emit)
        .requests(Capability::Config)
        .verifies_with(VerificationScheme::Hmac)
    }

    fn on_webhook(request: WebhookRequest) -> Result<WebhookReply, Error> {
        let review: Review = request.json()?;
        if !(1..=5).contains(&review.rating) || review.id.is_empty() {
            return Err(Error::InvalidInput("a review needs an id and a rating from 1 to 5".into()));
        }
        let event = NewEvent::json(
            "reviews/received",
            &serde_json::from_slice::<Value>(&request.body).unwrap_or_default(),
        )?
        .with_attribute("review_id", &review.id)
        .with_attribute("product", &review.product);
        Ok(WebhookReply::ok(vec![event]))
    }

    fn handle(event: Event) -> Result<Vec<NewEvent>, Error> {
        if event.kind != "reviews/received" {
            return Ok(Vec::new());
        }
        let review: Review = event.json()?;
        let mut digest: Vec<Categorized> = kv::get(DIGEST)?.unwrap_or_default();
        // At-least-once delivery: a review already in the digest is not added twice.
        if let Some(done) = digest.iter().find(|c| c.id == review.id) {
            return Ok(vec![NewEvent::json("reviews/categorized", done)?]);
        }
        let answer: Value = Chat::new()
            .system("You categorise product reviews for a weekly report. Summaries are one short sentence.")
            .user(&format!("{} stars for {}: {}", review.rating, review.product, review.text))
            .temperature(0.0)
            .json_schema(&schema())
            .send()?
            .json()?;
        let categorized = Categorized {
            id: review.id,
            rating: review.rating,
            category: answer["category"].as_str().unwrap_or("general").to_owned(),
            sentiment: answer["sentiment"].as_str().unwrap_or("neutral").to_owned(),
            summary: answer["summary"].as_str().unwrap_or_default().to_owned(),
        };
        digest.push(categorized.clone());
        kv::set(DIGEST, &digest, None)?;
        Ok(vec![NewEvent::json("reviews/categorized", &categorized)?])
    }

    fn invoke(action: &str, _input: Value) -> Result<Value, Error> {
        if action != "summarize" {
            return Err(Error::NotFound(format!("unknown action `{action}`")));
        }
        let digest: Vec<Categorized> = kv::get(DIGEST)?.unwrap_or_default();
        if digest.is_empty() {
            return Ok(json!({ "posted": false, "reviews": 0 }));
        }
        let count = |f: &dyn Fn(&Categorized) -> bool| digest.iter().filter(|c| f(c)).count();
        let average = digest.iter().map(|c| f64::from(c.rating)).sum::<f64>() / digest.len() as f64;
        let mut text = format!(
            "Review digest: {} new reviews, average {average:.1} stars; {} positive, {} neutral, {} negative.",
            digest.len(),
            count(&|c| c.sentiment == "positive"),
            count(&|c| c.sentiment == "neutral"),
            count(&|c| c.sentiment == "negative"),
        );
        for category in ["billing", "shipping", "bug", "general"] {
            let n = count(&|c| c.category == category);
            if n > 0 {
                text.push_str(&format!("\n• {category}: {n}"));
            }
        }
        emit::publish(NewEvent::json(
            "digest/slack",
            &json!({ "channel": config::require("digest_channel")?, "text": text }),
        )?)?;
        kv::delete(DIGEST)?;
        Ok(json!({ "posted": true, "reviews": digest.len() }))
    }
}

plugboard_sdk::export_connector!(ReviewDigest);
