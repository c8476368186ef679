//! Filling a request's `{{secret:NAME}}`, `{{basic:NAME}}` and `{{oauth:NAME}}` placeholders:
//! only secrets and OAuth2 clients granted to the instance and bound to the destination, never
//! across an origin change, and every value filled in remembered so that an echo of it is
//! redacted from the answer.

use std::collections::BTreeSet;

use super::secrets::{self, Kind, Secret};
use super::{Caller, Egress, origin};
use crate::bindings::types::Error;
use crate::grants::Grants;

/// Headers dropped when a redirect leaves the original origin, besides those that carried a
/// placeholder.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Request headers that would let an answer carry a filled-in secret in a shape redaction does
/// not see (compressed, or split across ranges); dropped from requests the host filled in.
const ECHO_SHAPING_HEADERS: [&str; 4] = ["accept-encoding", "range", "if-range", "te"];

/// A request's headers with their placeholders filled, the OAuth2 tokens used, and every value
/// the host substituted (to redact from the answer).
pub(super) struct Filled {
    pub(super) headers: Vec<(String, String)>,
    pub(super) tokens: Vec<(String, String)>,
    pub(super) substituted: Vec<String>,
}

impl Egress {
    /// Refuses a request whose placeholders name a secret or OAuth2 client the instance may not
    /// send there, as filling them in would, without filling anything in.
    pub(super) fn check_placeholders(
        &self,
        caller: &Caller<'_>,
        method: &reqwest::Method,
        url: &url::Url,
        headers: &[(String, String)],
    ) -> Result<(), Error> {
        for (_, template) in headers {
            let found = secrets::placeholders(template).map_err(Error::InvalidInput)?;
            for (kind, name) in found {
                let allowed = match kind {
                    Kind::Secret | Kind::Basic => {
                        self.granted_secret(&caller.grants.secrets, name, url).map(|_| ())
                    }
                    Kind::OAuth => self.oauth_client_for(caller.grants, name, url),
                };
                if let Err(why) = allowed {
                    return Err(self.refuse(caller, method, url, why));
                }
            }
        }
        Ok(())
    }

    /// Fills the placeholders of every header for a request to `url`. Headers that carried a
    /// placeholder, and credentials, are dropped when `url` left the first request's origin.
    pub(super) async fn headers(
        &self,
        caller: &Caller<'_>,
        templates: &[(String, String)],
        url: &url::Url,
        same_origin: bool,
    ) -> Result<Filled, Error> {
        let mut tokens: Vec<(String, String)> = Vec::new();
        let mut substituted: Vec<String> = Vec::new();
        let mut headers = Vec::with_capacity(templates.len());
        for (name, template) in templates {
            let found = secrets::placeholders(template).map_err(Error::InvalidInput)?;
            if !same_origin
                && (!found.is_empty() || CREDENTIAL_HEADERS.iter().any(|c| name.eq_ignore_ascii_case(c)))
            {
                continue;
            }
            for (kind, client) in &found {
                if *kind == Kind::OAuth && !tokens.iter().any(|(n, _)| n == client) {
                    let token = self.oauth_token(caller.grants, client, url).await?;
                    tokens.push(((*client).to_owned(), token));
                }
            }
            let value = secrets::fill(template, |kind, secret| {
                let filled = match kind {
                    Kind::OAuth => {
                        tokens.iter().find(|(n, _)| n == secret).map(|(_, t)| t.clone()).unwrap_or_default()
                    }
                    Kind::Secret | Kind::Basic => {
                        let s = self.granted_secret(&caller.grants.secrets, secret, url)?;
                        if kind == Kind::Basic {
                            // The `user:password` itself and its bare base64 too: an echo may
                            // decode it, or quote only the credentials.
                            let basic = s.basic();
                            substituted.push(s.value().to_owned());
                            substituted.push(basic.trim_start_matches("Basic ").to_owned());
                            basic
                        } else {
                            s.value().to_owned()
                        }
                    }
                };
                substituted.push(filled.clone());
                Ok(filled)
            })
            .map_err(Error::Denied)?;
            headers.push((name.clone(), value));
        }
        if !substituted.is_empty() {
            // An answer that quotes the request must come back whole and readable, or redaction
            // could not find what the host filled in: no compression, no byte ranges.
            headers.retain(|(n, _)| !ECHO_SHAPING_HEADERS.iter().any(|h| n.eq_ignore_ascii_case(h)));
            headers.push(("accept-encoding".into(), "identity".into()));
        }
        Ok(Filled { headers, tokens, substituted })
    }

    pub(super) fn granted_secret(
        &self,
        granted: &BTreeSet<String>,
        name: &str,
        url: &url::Url,
    ) -> Result<Secret, String> {
        if !granted.contains(name) {
            return Err(format!("secret `{name}` is not granted to this instance"));
        }
        let secret = self.secret(name).ok_or_else(|| format!("secret `{name}` is not configured"))?;
        if !secret.may_go_to(url) {
            return Err(format!("secret `{name}` may not be sent to {}", origin(url)));
        }
        Ok(secret)
    }

    /// Whether OAuth2 client `name` is granted, configured, and may send its tokens to `url`.
    pub(super) fn oauth_client_for(&self, grants: &Grants, name: &str, url: &url::Url) -> Result<(), String> {
        if !grants.oauth.contains(name) {
            return Err(format!("OAuth2 client `{name}` is not granted to this instance"));
        }
        let client =
            self.tokens.client(name).ok_or_else(|| format!("OAuth2 client `{name}` is not configured"))?;
        if !client.may_go_to(url) {
            return Err(format!("tokens of OAuth2 client `{name}` may not be sent to {}", origin(url)));
        }
        Ok(())
    }

    pub(super) async fn oauth_token(
        &self,
        grants: &Grants,
        name: &str,
        url: &url::Url,
    ) -> Result<String, Error> {
        self.oauth_client_for(grants, name, url).map_err(Error::Denied)?;
        self.tokens.token(&self.operator_http, name).await
    }
}
