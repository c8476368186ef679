//! AI routing, host side: a response cache in front of the provider instances, and token
//! accounting with optional daily budgets per plugin.
//!
//! The cache key is a SHA-256 over the provider instance and the normalised request (model,
//! messages, temperature, token limit, response format, stop sequences). By default only
//! requests with temperature 0 are cached: those are the ones that ask for the same answer to
//! the same question. An answer enters the cache only once the plugin that asked for it finished
//! without an error: an answer the plugin could not use is asked for afresh on its retry, not
//! served again until the TTL runs out. The cache is bounded by entries and by bytes.
//! Usage is counted per plugin and provider, and a plugin's daily budget kept,
//! in the host's key-value store, so it survives restarts when the store is durable.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::bindings::types::{ChatRequest, ChatResponse, Error, ResponseFormat, Role};
use crate::keyvalue::KvStore;
use crate::metrics::Metrics;

/// The key-value namespace of the host's own counters (instance ids cannot contain `:`).
const USAGE_NAMESPACE: &str = "plugboard:ai-usage";

pub use plugboard_manifest::ai::{AiSettings, CacheMode};

/// Tokens one plugin used through one provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenUsage {
    /// Completions sent to the provider (cache hits excluded).
    pub calls: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Completions answered from the cache.
    pub cache_hits: u64,
}

pub(crate) struct AiRouter {
    settings: Mutex<AiSettings>,
    cache: Mutex<AnswerCache>,
    metrics: Arc<Metrics>,
}

/// The cache key of a request (see [`key`]).
pub(crate) type CacheKey = [u8; 32];

/// Cached answers by key, with the bytes they hold.
#[derive(Default)]
struct AnswerCache {
    answers: HashMap<CacheKey, (Instant, ChatResponse)>,
    /// Keys oldest first, with when each was stored: evicting the oldest is a pop, not a scan
    /// (an entry replaced since leaves a stale key here, skipped when it comes up).
    order: std::collections::VecDeque<(Instant, CacheKey)>,
    bytes: usize,
}

/// What a cached answer counts against `cache_max_bytes`.
pub(crate) fn answer_bytes(answer: &ChatResponse) -> usize {
    answer.content.len() + answer.model.len() + answer.request_id.as_ref().map_or(0, String::len)
}

impl AnswerCache {
    fn remove(&mut self, key: &CacheKey) {
        if let Some((_, old)) = self.answers.remove(key) {
            self.bytes -= answer_bytes(&old);
        }
    }

    /// Evicts the oldest answer; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((at, key)) = self.order.pop_front() {
            if self.answers.get(&key).is_some_and(|(stored, _)| *stored == at) {
                self.remove(&key);
                return true;
            }
        }
        false
    }

    fn insert(&mut self, key: CacheKey, answer: ChatResponse) {
        let at = Instant::now();
        self.bytes += answer_bytes(&answer);
        self.answers.insert(key, (at, answer));
        self.order.push_back((at, key));
        // Stale keys (replaced entries) never outnumber the live ones by much.
        if self.order.len() > 2 * self.answers.len() + 16 {
            let answers = &self.answers;
            self.order.retain(|(at, k)| answers.get(k).is_some_and(|(stored, _)| stored == at));
        }
    }

    fn clear(&mut self) {
        self.answers.clear();
        self.order.clear();
        self.bytes = 0;
    }
}

fn day(now_ms: u64) -> u64 {
    now_ms / 86_400_000
}

impl AiRouter {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        AiRouter {
            settings: Mutex::new(AiSettings::default()),
            cache: Mutex::new(AnswerCache::default()),
            metrics,
        }
    }

    pub(crate) fn configure(&self, settings: AiSettings) {
        if let Ok(mut s) = self.settings.lock() {
            *s = settings;
        }
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }

    fn settings(&self) -> AiSettings {
        self.settings.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The cache key of `request` for `provider`, when the request may be cached.
    pub(crate) fn cache_key(&self, provider: &str, request: &ChatRequest) -> Option<CacheKey> {
        let cacheable = match self.settings().cache {
            CacheMode::Off => false,
            CacheMode::Always => true,
            CacheMode::TemperatureZero => request.temperature == Some(0.0),
        };
        cacheable.then(|| key(provider, request))
    }

    /// A cached answer, counted as a hit for `plugin`; a miss is counted otherwise.
    pub(crate) async fn cached(
        &self,
        kv: &dyn KvStore,
        plugin: &str,
        provider: &str,
        key: &CacheKey,
    ) -> Option<ChatResponse> {
        let ttl = Duration::from_secs(self.settings().cache_ttl_secs);
        let hit = self.cache.lock().ok().and_then(|c| {
            c.answers.get(key).filter(|(at, _)| at.elapsed() < ttl).map(|(_, answer)| answer.clone())
        });
        let labels = [("plugin", plugin), ("provider", provider)];
        match hit {
            Some(_) => {
                self.metrics.add("plugboard_ai_cache_hits_total", &labels, 1);
                account(kv, plugin, provider, &[("cache_hits", 1)]).await;
            }
            None => self.metrics.add("plugboard_ai_cache_misses_total", &labels, 1),
        }
        hit
    }

    /// Keeps `answer` for `key`. Called once the plugin that asked for it finished without an
    /// error (see the module's comment).
    pub(crate) fn store(&self, key: CacheKey, answer: ChatResponse) {
        let AiSettings { cache_max_entries: max, cache_max_bytes: max_bytes, .. } = self.settings();
        let size = answer_bytes(&answer);
        if max == 0 || size > max_bytes {
            return;
        }
        if let Ok(mut c) = self.cache.lock() {
            c.remove(&key);
            while c.answers.len() >= max || c.bytes + size > max_bytes {
                if !c.evict_oldest() {
                    break;
                }
            }
            c.insert(key, answer);
        }
    }

    /// Refuses the call when `plugin` already spent its daily budget.
    pub(crate) async fn check_budget(
        &self,
        kv: &dyn KvStore,
        plugin: &str,
        budget: Option<u64>,
        now_ms: u64,
    ) -> Result<(), Error> {
        let Some(budget) = budget else { return Ok(()) };
        let spent = kv
            .get(USAGE_NAMESPACE, &format!("{}/{plugin}", day(now_ms)))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .and_then(|v| counter(&v))
            .unwrap_or(0);
        if spent >= budget {
            return Err(Error::QuotaExceeded(format!(
                "`{plugin}` spent its daily AI budget of {budget} tokens ({spent} used today, UTC)"
            )));
        }
        Ok(())
    }

    /// Counts the tokens of one answer from `provider` for `plugin` (a chat answer's, or a
    /// tool-calling turn's).
    pub(crate) async fn charge(
        &self,
        kv: &dyn KvStore,
        plugin: &str,
        provider: &str,
        usage: &crate::bindings::types::Usage,
        now_ms: u64,
    ) {
        let (prompt, completion) = (u64::from(usage.prompt_tokens), u64::from(usage.completion_tokens));
        account(
            kv,
            plugin,
            provider,
            &[("calls", 1), ("prompt_tokens", prompt), ("completion_tokens", completion)],
        )
        .await;
        for (kind, n) in [("prompt", prompt), ("completion", completion)] {
            self.metrics.add(
                "plugboard_ai_tokens_total",
                &[("plugin", plugin), ("provider", provider), ("kind", kind)],
                n,
            );
        }
        let total = i64::try_from(prompt + completion).unwrap_or(i64::MAX);
        // Best effort: a failing counter must not fail a completion that was already paid for.
        let today = day(now_ms);
        let key = format!("{today}/{plugin}");
        let spent = kv.increment(USAGE_NAMESPACE, &key, total, crate::keyvalue::KvQuota::UNLIMITED).await;
        if spent.is_ok_and(|n| n == total) {
            // The day's first charge: earlier days' budget counters are no longer read.
            forget_earlier_days(kv, today).await;
        }
    }

    /// Usage so far (kept in the store, so it survives restarts), by plugin and provider.
    pub(crate) async fn usage(&self, kv: &dyn KvStore) -> Vec<(String, String, TokenUsage)> {
        let mut all: BTreeMap<(String, String), TokenUsage> = BTreeMap::new();
        for (key, value) in kv.entries(USAGE_NAMESPACE, TOTALS).await.unwrap_or_default() {
            let Some(rest) = key.strip_prefix(TOTALS) else { continue };
            let mut parts = rest.splitn(3, '/');
            let (Some(plugin), Some(provider), Some(field)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let n = counter(&value).unwrap_or(0);
            let usage = all.entry((plugin.to_owned(), provider.to_owned())).or_default();
            match field {
                "calls" => usage.calls = n,
                "prompt_tokens" => usage.prompt_tokens = n,
                "completion_tokens" => usage.completion_tokens = n,
                "cache_hits" => usage.cache_hits = n,
                _ => {}
            }
        }
        all.into_iter().map(|((plugin, provider), usage)| (plugin, provider, usage)).collect()
    }
}

/// Where running totals are kept in [`USAGE_NAMESPACE`]: `total/{plugin}/{provider}/{field}`
/// (instance ids have no `/`), beside the daily budgets' `{day}/{plugin}`.
const TOTALS: &str = "total/";

/// Deletes the daily budget counters of days before `today` (best effort), so they do not pile
/// up over a long uptime; running totals stay.
async fn forget_earlier_days(kv: &dyn KvStore, today: u64) {
    for (key, _) in kv.entries(USAGE_NAMESPACE, "").await.unwrap_or_default() {
        let earlier = key.split_once('/').and_then(|(d, _)| d.parse::<u64>().ok()).is_some_and(|d| d < today);
        if earlier {
            let _ = kv.delete(USAGE_NAMESPACE, &key).await;
        }
    }
}

/// The value of a counter kept by `KvStore::increment`, where only counts (never negative) are.
fn counter(bytes: &[u8]) -> Option<u64> {
    crate::keyvalue::counter_value(bytes).and_then(|n| u64::try_from(n).ok())
}

/// Adds to `plugin`'s running totals with `provider`. Best effort: a failing counter must not
/// fail a completion that was already paid for.
async fn account(kv: &dyn KvStore, plugin: &str, provider: &str, counts: &[(&str, u64)]) {
    for (field, n) in counts {
        let key = format!("{TOTALS}{plugin}/{provider}/{field}");
        let delta = i64::try_from(*n).unwrap_or(i64::MAX);
        let _ = kv.increment(USAGE_NAMESPACE, &key, delta, crate::keyvalue::KvQuota::UNLIMITED).await;
    }
}

/// SHA-256 over the provider and every field of the request, each length-prefixed so that no
/// two different requests share an encoding.
fn key(provider: &str, request: &ChatRequest) -> CacheKey {
    let mut h = Sha256::new();
    let mut put = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    put(provider.as_bytes());
    put(request.model.as_deref().unwrap_or("\0default").as_bytes());
    for m in &request.messages {
        let role: &[u8] = match m.role {
            Role::System => b"system",
            Role::User => b"user",
            Role::Assistant => b"assistant",
        };
        put(role);
        put(m.content.as_bytes());
    }
    put(b"\0end-of-messages");
    put(&request.temperature.map(f32::to_bits).map(u32::to_le_bytes).unwrap_or_default());
    put(&request.max_tokens.map(u32::to_le_bytes).unwrap_or_default());
    match &request.response_format {
        ResponseFormat::Text => put(b"text"),
        ResponseFormat::JsonObject => put(b"json-object"),
        ResponseFormat::JsonSchema(schema) => {
            put(b"json-schema");
            // Normalised, so that key order and whitespace do not split the cache.
            let normal = serde_json::from_str::<serde_json::Value>(schema).map(|v| v.to_string());
            put(normal.as_deref().unwrap_or(schema).as_bytes());
        }
    }
    for s in &request.stop {
        put(s.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::Message;

    fn request(temperature: Option<f32>, text: &str) -> ChatRequest {
        ChatRequest {
            model: None,
            messages: vec![Message { role: Role::User, content: text.into() }],
            temperature,
            max_tokens: None,
            response_format: ResponseFormat::JsonSchema(r#"{"type": "object"}"#.into()),
            stop: vec![],
        }
    }

    #[test]
    fn only_temperature_zero_is_cached_by_default_and_keys_differ() {
        let router = AiRouter::new(Arc::new(Metrics::default()));
        assert!(router.cache_key("p", &request(None, "hi")).is_none());
        assert!(router.cache_key("p", &request(Some(0.7), "hi")).is_none());
        let a = router.cache_key("p", &request(Some(0.0), "hi")).unwrap();
        assert_ne!(Some(a), router.cache_key("q", &request(Some(0.0), "hi")));
        assert_ne!(Some(a), router.cache_key("p", &request(Some(0.0), "hi!")));
        let mut reordered = request(Some(0.0), "hi");
        reordered.response_format = ResponseFormat::JsonSchema(r#"{ "type":"object" }"#.into());
        assert_eq!(Some(a), router.cache_key("p", &reordered));
    }

    fn answer(content: &str) -> ChatResponse {
        use crate::bindings::types::{FinishReason, Usage};
        ChatResponse {
            content: content.into(),
            model: "m".into(),
            finish_reason: FinishReason::Stop,
            usage: Usage { prompt_tokens: 3, completion_tokens: 4 },
            request_id: None,
        }
    }

    #[tokio::test]
    async fn the_cache_holds_at_most_its_bytes_oldest_going_first() {
        let router = AiRouter::new(Arc::new(Metrics::default()));
        let kv = crate::keyvalue::MemoryKv::default();
        router.configure(AiSettings { cache_max_bytes: 2_500, ..AiSettings::default() });
        let keys: Vec<CacheKey> =
            (0..4).map(|i| router.cache_key("p", &request(Some(0.0), &i.to_string())).unwrap()).collect();
        for k in &keys {
            router.store(*k, answer(&"x".repeat(999)));
        }
        let mut kept = Vec::new();
        for k in &keys {
            kept.push(router.cached(&kv, "a", "p", k).await.is_some());
        }
        assert_eq!(kept, [false, false, true, true], "two answers of 1000 bytes fit in 2500");
        assert!(router.cache.lock().unwrap().bytes <= 2_500);
        // An answer bigger than the whole cache is not kept, and evicts nothing.
        router.store(keys[0], answer(&"x".repeat(3_000)));
        assert!(router.cached(&kv, "a", "p", &keys[0]).await.is_none());
        assert!(router.cached(&kv, "a", "p", &keys[3]).await.is_some());
        // Storing the same key again replaces its bytes, not adds to them.
        router.store(keys[3], answer("short"));
        assert_eq!(router.cache.lock().unwrap().bytes, 1_000 + "short".len() + 1);
    }

    #[tokio::test]
    async fn daily_budget_counters_of_earlier_days_are_forgotten() {
        use crate::bindings::types::{ChatResponse, FinishReason, Usage};
        let router = AiRouter::new(Arc::new(Metrics::default()));
        let kv = crate::keyvalue::MemoryKv::default();
        let answer = ChatResponse {
            content: "ok".into(),
            model: "m".into(),
            finish_reason: FinishReason::Stop,
            usage: Usage { prompt_tokens: 3, completion_tokens: 4 },
            request_id: None,
        };
        let day_ms = 86_400_000;
        for day in 0..5 {
            router.charge(&kv, "p", "openai", &answer.usage, day * day_ms + 1_000).await;
        }
        let keys: Vec<String> =
            kv.entries(USAGE_NAMESPACE, "").await.unwrap().into_iter().map(|(k, _)| k).collect();
        let daily: Vec<&String> = keys.iter().filter(|k| !k.starts_with(TOTALS)).collect();
        assert_eq!(daily, [&format!("{}/p", day(4 * day_ms + 1_000))], "{keys:?}");
        assert_eq!(router.usage(&kv).await[0].2.calls, 5, "running totals stay");
        assert!(router.check_budget(&kv, "p", Some(7), 4 * day_ms + 2_000).await.is_err());
        assert!(router.check_budget(&kv, "p", Some(8), 4 * day_ms + 2_000).await.is_ok());
    }
}
