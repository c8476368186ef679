//! One attempt of a request: the exchange with the server through the pooled client, bounded
//! in time and size, and the redirects it is answered with, each hop checked against the
//! allow-list again and stripped of credentials when it leaves the origin.

use std::time::{Duration, Instant};

use super::fill::Filled;
use super::{Caller, Egress, Failure, Hop, Settled, dns, origin, secrets, upstream};
use crate::bindings::types::{Error, HttpRequest, HttpResponse};

impl Egress {
    /// One attempt: the request and any redirects it is answered with, each hop checked.
    pub(super) async fn follow(
        &self,
        caller: &Caller<'_>,
        client: &reqwest::Client,
        mut method: reqwest::Method,
        mut url: url::Url,
        request: &HttpRequest,
        attempt: u32,
    ) -> Result<(HttpResponse, reqwest::header::HeaderMap, Vec<(String, String)>), Failure> {
        let first = url.origin();
        let mut body = request.body.clone();
        let mut hops = 0;
        loop {
            let Filled { headers, tokens, substituted } = self
                .headers(caller, &request.headers, &url, url.origin() == first)
                .await
                .map_err(|error| {
                    let outcome = if matches!(error, Error::Denied(_)) {
                        self.metrics.add("plugboard_http_denied_total", &[("instance", caller.instance)], 1);
                        "denied"
                    } else {
                        "failed"
                    };
                    let why = crate::error::describe(&error);
                    let hop = Hop { method: &method, url: &url, attempt };
                    self.record(caller, &hop, Instant::now(), Settled::refused(outcome, why));
                    Failure { error, transport: false }
                })?;
            let (status, response_headers, response_body) = self
                .exchange(caller, client, &Hop { method: &method, url: &url, attempt }, headers, body.clone())
                .await?;
            let location = response_headers.get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok());
            let next = match (status, location) {
                (301 | 302 | 303 | 307 | 308, Some(location)) if hops < caller.limits.http_max_redirects => {
                    url.join(location).ok()
                }
                _ => None,
            };
            let Some(next) = next else {
                let headers = response_headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect();
                // An upstream that echoes the request (a debugging endpoint, an error page that
                // quotes headers) would hand the plugin what the host filled in: the plugin never
                // sees a value it was only allowed to have sent.
                let response = secrets::redact_echoes(
                    HttpResponse { status, headers, body: response_body },
                    &substituted,
                );
                return Ok((response, response_headers, tokens));
            };
            if status == 303 || (matches!(status, 301 | 302) && method == reqwest::Method::POST) {
                if method != reqwest::Method::HEAD {
                    method = reqwest::Method::GET;
                }
                body.clear();
            }
            if let Err(why) = crate::egress::policy::admit(&caller.grants.http, method.as_str(), &next) {
                let why = format!("redirect from {} to {}: {why}", origin(&url), origin(&next));
                return Err(Failure { error: self.refuse(caller, &method, &next, why), transport: false });
            }
            url = next;
            hops += 1;
        }
    }

    /// One HTTP exchange, recorded.
    pub(super) async fn exchange(
        &self,
        caller: &Caller<'_>,
        client: &reqwest::Client,
        hop: &Hop<'_>,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), Failure> {
        let Hop { method, url, .. } = *hop;
        let started = Instant::now();
        let sent = body.len() as u64;
        let remaining = caller.deadline.saturating_duration_since(tokio::time::Instant::now());
        let timeout =
            remaining.min(Duration::from_millis(caller.limits.http_timeout_ms)).max(Duration::from_millis(1));
        let mut builder = client.request(method.clone(), url.clone()).body(body).timeout(timeout);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let fail = |outcome: &str, error: Error, transport: bool| {
            let settled =
                Settled { bytes: (sent, 0), ..Settled::refused(outcome, crate::error::describe(&error)) };
            self.record(caller, hop, started, settled);
            Failure { error, transport }
        };
        let mut response = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                return Err(if let Some(why) = dns::blocked_cause(&e) {
                    self.metrics.add("plugboard_http_denied_total", &[("instance", caller.instance)], 1);
                    fail("denied", Error::Denied(why), false)
                } else if e.is_timeout() {
                    fail(
                        "timeout",
                        Error::Timeout(format!("no answer from {} within {timeout:?}", origin(url))),
                        false,
                    )
                } else if e.is_builder() {
                    fail("failed", Error::InvalidInput(format!("bad request: {}", e.without_url())), false)
                } else {
                    let transport = e.is_connect() || e.is_request();
                    let why = format!("request to {} failed: {}", origin(url), chain(&e));
                    fail("failed", upstream(0, why), transport)
                });
            }
        };
        let status = response.status().as_u16();
        let cap = caller.limits.max_http_response_bytes as usize;
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() > cap => {
                    let why = format!("response body larger than the limit of {cap} bytes");
                    return Err(fail("failed", upstream(status, why), false));
                }
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(fail(
                        "timeout",
                        Error::Timeout(format!("reading the answer of {}", origin(url))),
                        false,
                    ));
                }
                Err(e) => {
                    return Err(fail(
                        "failed",
                        upstream(status, format!("reading the body: {}", chain(&e))),
                        false,
                    ));
                }
            }
        }
        let headers = std::mem::take(response.headers_mut());
        // The exchange completed; what the upstream said still decides how it reads in the
        // call log, the metrics and the debug line.
        let outcome = match status {
            429 => "rate-limited",
            500..=599 => "upstream-error",
            _ => "ok",
        };
        let settled =
            Settled { status: Some(status), outcome, error: None, bytes: (sent, body.len() as u64) };
        self.record(caller, hop, started, settled);
        Ok((status, headers, body))
    }
}

/// An error and its causes on one line (reqwest's own message is terse), without the URL.
fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
