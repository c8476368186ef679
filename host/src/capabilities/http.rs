//! The `http` capability: outbound requests sent by the host on a plugin's behalf.
//!
//! Every request is checked against the instance's [`HttpGrant`] before anything leaves the
//! process: scheme, host and port against the allow-list, and the method. Redirects are not
//! followed (the plugin sees the 3xx and must ask again, through the same check).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bindings::http::Host;
use crate::bindings::types::{Error, HttpRequest, HttpResponse, UpstreamFailure};
use crate::capabilities::Capability;
use crate::runtime::InstanceState;

/// Where an instance's outbound HTTP may go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpGrant {
    /// Allowed destinations as `scheme://host[:port]`. `*.` at the start of the host matches any
    /// subdomain (not the bare domain); a missing port means the scheme's default port.
    pub allow: Vec<String>,
    /// Allowed methods, upper case; empty allows every method.
    pub methods: Vec<String>,
}

impl HttpGrant {
    /// Checks that every pattern is well formed, naming the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        self.allow.iter().try_for_each(|p| Pattern::parse(p).map(|_| ()))
    }

    /// Whether a request with `method` to `url` is allowed; the reason when not.
    pub fn check(&self, method: &str, url: &url::Url) -> Result<(), String> {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
            return Err(format!("method {method} is not allowed"));
        }
        let host = url.host_str().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let allowed = self
            .allow
            .iter()
            .filter_map(|p| Pattern::parse(p).ok())
            .any(|p| p.matches(url.scheme(), host, port));
        if allowed {
            Ok(())
        } else {
            Err(format!("{}://{host}:{port} is not in the allow-list", url.scheme()))
        }
    }
}

/// One parsed allow-list entry.
struct Pattern {
    scheme: String,
    host: String,
    wildcard: bool,
    port: u16,
}

impl Pattern {
    fn parse(pattern: &str) -> Result<Pattern, String> {
        let bad = |why: &str| format!("http allow pattern `{pattern}`: {why}");
        let (scheme, rest) = pattern.split_once("://").ok_or_else(|| bad("expected scheme://host[:port]"))?;
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad("the scheme must be http or https")),
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("only scheme, host and port are allowed"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
                (h, p.parse().map_err(|_| bad("the port is not a number"))?)
            }
            _ => (rest, default_port),
        };
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(h) => (true, h),
            None => (false, host),
        };
        if host.is_empty() || host.contains('*') {
            return Err(bad("`*` is only allowed as the first label, as in *.example.com"));
        }
        Ok(Pattern { scheme: scheme.into(), host: host.to_ascii_lowercase(), wildcard, port })
    }

    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let host_ok = if self.wildcard {
            host.strip_suffix(&self.host).is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
        } else {
            host == self.host
        };
        scheme == self.scheme && port == self.port && host_ok
    }
}

fn upstream(message: String) -> Error {
    Error::Upstream(UpstreamFailure { status: 0, message })
}

impl Host for InstanceState {
    async fn send(&mut self, request: HttpRequest) -> Result<HttpResponse, Error> {
        self.require(Capability::Http)?;
        let limits = &self.plugin.limits;
        if self.http_requests >= limits.max_http_requests {
            return Err(Error::Denied(format!(
                "an invocation may send at most {} HTTP requests",
                limits.max_http_requests
            )));
        }
        let url = url::Url::parse(&request.url)
            .map_err(|e| Error::InvalidInput(format!("bad URL {:?}: {e}", request.url)))?;
        self.plugin.grants.http.check(&request.method, &url).map_err(Error::Denied)?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| Error::InvalidInput(format!("bad method {:?}", request.method)))?;
        self.http_requests += 1;

        let mut headers = Vec::with_capacity(request.headers.len());
        for (name, value) in &request.headers {
            let value =
                super::secrets::fill(value, &url, &self.plugin.grants.secrets, |n| self.host.secret(n))
                    .map_err(Error::Denied)?;
            headers.push((name.as_str(), value));
        }
        let mut builder = self.host.http.request(method, url).body(request.body);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let remaining = self.deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut response =
            builder.timeout(remaining.max(Duration::from_millis(1))).send().await.map_err(|e| {
                if e.is_timeout() {
                    Error::Timeout(format!(
                        "no answer from {} in time",
                        e.url().map(|u| u.as_str()).unwrap_or("")
                    ))
                } else if e.is_builder() {
                    Error::InvalidInput(format!("bad request: {e}"))
                } else {
                    upstream(format!("request failed: {e}"))
                }
            })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let cap = limits.max_http_response_bytes as usize;
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|e| upstream(format!("reading the body: {e}")))?
        {
            if body.len() + chunk.len() > cap {
                return Err(upstream(format!("response body larger than the limit of {cap} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse { status, headers, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(allow: &[&str]) -> HttpGrant {
        HttpGrant { allow: allow.iter().map(|s| s.to_string()).collect(), methods: vec![] }
    }

    fn check(g: &HttpGrant, url: &str) -> bool {
        g.check("GET", &url::Url::parse(url).unwrap()).is_ok()
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let g = grant(&["https://*.myshopify.com"]);
        assert!(check(&g, "https://shop.myshopify.com/admin"));
        assert!(!check(&g, "https://myshopify.com/"));
        assert!(!check(&g, "https://evilmyshopify.com/"));
        assert!(!check(&g, "https://shop.myshopify.com.evil.io/"));
        assert!(!check(&g, "http://shop.myshopify.com/"));
        assert!(!check(&g, "https://shop.myshopify.com:8443/"));
    }

    #[test]
    fn ports_and_schemes_are_exact() {
        let g = grant(&["http://127.0.0.1:8080", "https://api.openai.com"]);
        assert!(check(&g, "http://127.0.0.1:8080/x"));
        assert!(!check(&g, "http://127.0.0.1:8081/x"));
        assert!(check(&g, "https://api.openai.com/v1/chat/completions"));
        assert!(check(&g, "https://API.openai.com:443/"));
        assert!(!check(&g, "https://user@evil.com/"));
    }

    #[test]
    fn methods_can_be_restricted() {
        let g = HttpGrant { allow: vec!["https://a.io".into()], methods: vec!["GET".into()] };
        let url = url::Url::parse("https://a.io/").unwrap();
        assert!(g.check("get", &url).is_ok());
        assert!(g.check("POST", &url).is_err());
    }

    #[test]
    fn bad_patterns_are_named() {
        for p in ["a.io", "ftp://a.io", "https://a.io/path", "https://a.*.io", "https://a.io:x"] {
            let err = grant(&[p]).validate().unwrap_err();
            assert!(err.contains(p), "{err}");
        }
    }
}
