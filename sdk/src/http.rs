//! Outbound HTTP through the host.
//!
//! The host checks every request against the instance's grant and fills `{{secret:NAME}}`,
//! `{{basic:NAME}}` and `{{oauth:NAME}}` placeholders in header values on the way out, so a
//! secret never enters the plugin.
//!
//! ```no_run
//! use plugboard_sdk::http::Request;
//!
//! # fn run() -> Result<(), plugboard_sdk::Error> {
//! let reply = Request::post("https://api.example.com/v1/things")
//!     .bearer("{{secret:example_token}}")
//!     .json(&serde_json::json!({ "name": "widget" }))?
//!     .send()?;
//! let created: serde_json::Value = reply.json()?;
//! # let _ = created; Ok(()) }
//! ```

use serde::{Serialize, de::DeserializeOwned};

use crate::Error;
use crate::wit::plugboard::connector::{http as raw, types};

/// An outbound request under construction.
#[derive(Debug, Clone)]
pub struct Request {
    inner: types::HttpRequest,
}

/// The answer to a [`Request`]. Any HTTP status is an answer; check [`Response::status`].
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Response headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A request with any method.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Request {
            inner: types::HttpRequest {
                method: method.into(),
                url: url.into(),
                headers: Vec::new(),
                body: Vec::new(),
                retry: false,
            },
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `Authorization: Bearer <token>`; `token` is usually a `{{secret:NAME}}` placeholder.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// Adds `Authorization: Bearer <token>` with an OAuth2 access token that the host obtains,
    /// caches and refreshes for the client the operator configured as `name`.
    pub fn oauth(self, name: &str) -> Self {
        self.header("authorization", format!("Bearer {{{{oauth:{name}}}}}"))
    }

    /// Adds `Authorization: Basic ...` from the secret `name`, which holds `user:password`.
    pub fn basic_auth(self, secret: &str) -> Self {
        self.header("authorization", format!("{{{{basic:{secret}}}}}"))
    }

    /// Lets the host retry this request on `429` and `5xx` answers, honouring `Retry-After`, and
    /// on connection failures. Only for requests that are safe to repeat (an idempotency key, a
    /// read). When the retries cannot fit, a `429` comes back as [`Error::RateLimited`] so the
    /// pipeline reschedules the event.
    pub fn retry(mut self) -> Self {
        self.inner.retry = true;
        self
    }

    /// Sets a raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.inner.body = body.into();
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Result<Self, Error> {
        self.inner.body = serde_json::to_vec(body).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(self.header("content-type", "application/json"))
    }

    /// Sends the request through the host and waits for the answer.
    pub fn send(self) -> Result<Response, Error> {
        let r = raw::send(&self.inner)?;
        Ok(Response { status: r.status, headers: r.headers, body: r.body })
    }
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Returns the first header named `name`, compared without case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// How long the server asked to wait, in ms: `retry-after-ms`, or `Retry-After` in seconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        if let Some(ms) = self.header("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
            return Some(ms.max(0.0) as u64);
        }
        self.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(|s| s.saturating_mul(1000))
    }

    /// The contract error for a failed answer, by status: 400/404/409/422 -> `invalid-input` or
    /// `not-found`, 401/403 -> `unauthorized`, 429 -> `rate-limited` (with the server's wait),
    /// anything else -> `upstream` (retryable). `message` is what the provider said.
    pub fn error(&self, message: &str) -> Error {
        let message = format!("HTTP {}: {message}", self.status);
        match self.status {
            400 | 409 | 413 | 422 => Error::InvalidInput(message),
            404 => Error::NotFound(message),
            401 | 403 => Error::Unauthorized(message),
            429 => Error::RateLimited(self.retry_after_ms()),
            status => Error::Upstream(types::UpstreamFailure { status, message }),
        }
    }

    /// Parses the body as JSON; [`Error::Upstream`] when it is not JSON of that shape.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::Upstream(types::UpstreamFailure {
                status: self.status,
                message: format!("response body is not the expected JSON: {e}"),
            })
        })
    }
}
