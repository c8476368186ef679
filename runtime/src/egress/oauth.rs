//! OAuth2 run by the host: the operator configures a client (client credentials, optionally a
//! refresh token), a plugin writes `{{oauth:NAME}}` where the access token goes, and the host
//! fetches the token, caches it until shortly before it expires, and fetches a new one when it
//! expires or when the API answers 401 to it. Neither the client secret, the refresh token nor
//! the access token ever enters the plugin.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::bindings::types::{Error, UpstreamFailure};
use crate::egress::policy::HttpGrant;
use crate::egress::secrets::bound_to;

/// Tokens are renewed this long before the provider says they expire, at most.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// How long before its expiry a token of `lifetime` is renewed: 30 s, or a tenth of the
/// lifetime for tokens that live less than 5 minutes, so a short-lived token is still reused
/// for most of its life instead of being fetched again for every call.
fn renewal_margin(lifetime: Duration) -> Duration {
    EXPIRY_MARGIN.min(lifetime / 10)
}

pub use plugboard_manifest::ClientAuth;

/// An OAuth2 client the host runs on plugins' behalf.
#[derive(Clone)]
pub struct OAuthClient {
    token_url: url::Url,
    client_id: String,
    client_secret: String,
    refresh_token: Option<String>,
    scopes: Vec<String>,
    auth: ClientAuth,
    hosts: HttpGrant,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "<redacted>"))
            .field("hosts", &self.hosts.allow)
            .finish()
    }
}

impl OAuthClient {
    /// A client-credentials client whose tokens may only be sent to `hosts`.
    pub fn new(
        token_url: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        hosts: &[&str],
    ) -> Result<Self, String> {
        let token_url = url::Url::parse(token_url).map_err(|e| format!("token_url `{token_url}`: {e}"))?;
        Ok(OAuthClient {
            token_url,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh_token: None,
            scopes: Vec::new(),
            auth: ClientAuth::Basic,
            hosts: bound_to(hosts)?,
        })
    }

    /// Uses the refresh-token grant with `token` instead of client credentials.
    pub fn with_refresh_token(mut self, token: impl Into<String>) -> Self {
        self.refresh_token = Some(token.into());
        self
    }

    /// Asks for these scopes.
    pub fn with_scopes(mut self, scopes: Vec<String>) -> Self {
        self.scopes = scopes;
        self
    }

    /// Authenticates to the token endpoint this way.
    pub fn with_client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    pub(crate) fn may_go_to(&self, url: &url::Url) -> bool {
        crate::egress::policy::check(&self.hosts, "GET", url).is_ok()
    }
}

struct Token {
    access: String,
    renew_at: Instant,
}

struct ClientState {
    client: OAuthClient,
    /// The current token; the lock also makes concurrent callers share one token request.
    token: tokio::sync::Mutex<Option<Token>>,
    /// A refresh token the server rotated in, replacing the configured one.
    refresh: std::sync::Mutex<Option<String>>,
}

/// The OAuth2 clients and their cached tokens.
#[derive(Default)]
pub(crate) struct Tokens {
    clients: RwLock<HashMap<String, Arc<ClientState>>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
}

impl Tokens {
    pub(crate) fn insert(&self, name: &str, client: OAuthClient) {
        let state = ClientState {
            refresh: std::sync::Mutex::new(client.refresh_token.clone()),
            client,
            token: tokio::sync::Mutex::new(None),
        };
        if let Ok(mut clients) = self.clients.write() {
            clients.insert(name.to_owned(), Arc::new(state));
        }
    }

    pub(crate) fn client(&self, name: &str) -> Option<OAuthClient> {
        self.clients.read().ok()?.get(name).map(|s| s.client.clone())
    }

    fn state(&self, name: &str) -> Result<Arc<ClientState>, Error> {
        self.clients
            .read()
            .ok()
            .and_then(|c| c.get(name).cloned())
            .ok_or_else(|| Error::Denied(format!("OAuth2 client `{name}` is not configured")))
    }

    /// A current access token for client `name`, fetched when there is none or it expired.
    pub(crate) async fn token(&self, http: &reqwest::Client, name: &str) -> Result<String, Error> {
        let state = self.state(name)?;
        let mut slot = state.token.lock().await;
        if let Some(token) = slot.as_ref().filter(|t| t.renew_at > Instant::now()) {
            return Ok(token.access.clone());
        }
        let token = fetch(http, name, &state).await?;
        let access = token.access.clone();
        *slot = Some(token);
        Ok(access)
    }

    /// Forgets `stale` (an API refused it) so that the next call fetches a new one; a token
    /// another caller already replaced is kept.
    pub(crate) async fn invalidate(&self, name: &str, stale: &str) {
        if let Ok(state) = self.state(name) {
            let mut slot = state.token.lock().await;
            if slot.as_ref().is_some_and(|t| t.access == stale) {
                *slot = None;
            }
        }
    }
}

async fn fetch(http: &reqwest::Client, name: &str, state: &ClientState) -> Result<Token, Error> {
    let client = &state.client;
    let refresh = state.refresh.lock().ok().and_then(|r| r.clone());
    let mut form: Vec<(&str, String)> = match &refresh {
        Some(token) => vec![("grant_type", "refresh_token".into()), ("refresh_token", token.clone())],
        None => vec![("grant_type", "client_credentials".into())],
    };
    if !client.scopes.is_empty() {
        form.push(("scope", client.scopes.join(" ")));
    }
    let mut request = http.post(client.token_url.clone()).header("accept", "application/json");
    match client.auth {
        ClientAuth::Basic => request = request.basic_auth(&client.client_id, Some(&client.client_secret)),
        ClientAuth::Post => {
            form.push(("client_id", client.client_id.clone()));
            form.push(("client_secret", client.client_secret.clone()));
        }
    }
    let body = form
        .iter()
        .map(|(k, v)| {
            format!("{k}={}", url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>())
        })
        .collect::<Vec<_>>()
        .join("&");
    let failed = |status: u16, why: String| {
        Error::Upstream(UpstreamFailure { status, message: format!("OAuth2 client `{name}`: {why}") })
    };
    let response = request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| failed(0, format!("token endpoint unreachable: {}", e.without_url())))?;
    let status = response.status();
    let bytes =
        response.bytes().await.map_err(|e| failed(status.as_u16(), format!("reading the token: {e}")))?;
    if status.as_u16() == 400 || status.as_u16() == 401 {
        // RFC 6749 5.2: `error` says why (invalid_client, invalid_grant, ...); nothing secret.
        let reason = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| status.to_string());
        return Err(Error::Unauthorized(format!(
            "OAuth2 client `{name}`: the token endpoint refused: {reason}"
        )));
    }
    if !status.is_success() {
        return Err(failed(status.as_u16(), format!("the token endpoint answered {status}")));
    }
    let token: TokenResponse = serde_json::from_slice(&bytes)
        .map_err(|e| failed(status.as_u16(), format!("the token endpoint's answer is not a token: {e}")))?;
    if let Some(rotated) = token.refresh_token
        && let Ok(mut refresh) = state.refresh.lock()
        && refresh.is_some()
    {
        *refresh = Some(rotated);
    }
    let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600));
    Ok(Token {
        access: token.access_token,
        // `expires_in` comes from the token endpoint: an absurd one means "a long time".
        renew_at: Instant::now()
            .checked_add(lifetime.saturating_sub(renewal_margin(lifetime)))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400)),
    })
}

#[cfg(test)]
mod margin_tests {
    use super::*;

    #[test]
    fn short_lived_tokens_are_reused_for_most_of_their_life() {
        assert_eq!(renewal_margin(Duration::from_secs(3600)), Duration::from_secs(30));
        assert_eq!(renewal_margin(Duration::from_secs(30)), Duration::from_secs(3));
        assert_eq!(renewal_margin(Duration::from_secs(5)), Duration::from_millis(500));
        for secs in [1, 10, 29, 30, 31, 299, 300, 301, 86_400] {
            let lifetime = Duration::from_secs(secs);
            assert!(lifetime - renewal_margin(lifetime) >= lifetime * 9 / 10, "{secs}");
        }
    }
}
