//! A connector's webhook reply, checked before it becomes an HTTP response.
//!
//! The host owns the status line and the message's framing: a plugin picks a final status
//! (200-599), a bounded set of ordinary headers and a body, and the HTTP server computes
//! `content-length` itself. A reply that breaks these rules is the plugin's error (invalid
//! output), never a response the server would have to frame around, split, or panic on.

/// The most headers a reply may carry.
pub const MAX_REPLY_HEADERS: usize = 64;
/// The most bytes all reply header names and values may take together.
pub const MAX_REPLY_HEADER_BYTES: usize = 16 << 10;

/// Headers that frame the message or manage the connection: the HTTP server writes these, a
/// plugin may not. A plugin's `content-length` or `transfer-encoding` that does not match the
/// body would split the response on a keep-alive connection.
pub const HOST_OWNED_HEADERS: [&str; 9] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Headers a plugin may not set because they act on the whole origin the host serves (its
/// dashboard and admin API live there too): a reply could otherwise install a service worker
/// over the dashboard, plant cookies, open CORS, or replace the security headers the host adds
/// to every webhook reply (`content-security-policy: sandbox`, `x-content-type-options`).
pub const ORIGIN_WIDE_HEADERS: [&str; 12] = [
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-allow-origin",
    "alt-svc",
    "clear-site-data",
    "content-security-policy",
    "refresh",
    "service-worker-allowed",
    "set-cookie",
    "strict-transport-security",
    "x-content-type-options",
];

/// A reply that passed [`check`].
#[derive(Debug)]
pub struct CheckedReply {
    /// A final status, 200 to 599.
    pub status: u16,
    /// Names lowercased, values valid header values.
    pub headers: Vec<(String, String)>,
    /// No body where the status forbids one.
    pub body: Vec<u8>,
}

impl CheckedReply {
    /// Bytes the reply makes the host hold.
    pub(crate) fn size(&self) -> usize {
        self.headers.iter().fold(self.body.len(), |n, (k, v)| n + k.len() + v.len())
    }
}

/// Checks a plugin's reply: a final status, at most [`MAX_REPLY_HEADERS`] well-formed headers of
/// at most [`MAX_REPLY_HEADER_BYTES`] in all, none of them [`HOST_OWNED_HEADERS`], and no body
/// where the status forbids one.
pub fn check(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Result<CheckedReply, String> {
    if !(200..=599).contains(&status) {
        return Err(format!("status {status} is not a final HTTP status (200 to 599)"));
    }
    if matches!(status, 204 | 304) && !body.is_empty() {
        return Err(format!("a {status} reply has no body, but the plugin gave {} bytes", body.len()));
    }
    if headers.len() > MAX_REPLY_HEADERS {
        return Err(format!("{} headers, over the limit of {MAX_REPLY_HEADERS}", headers.len()));
    }
    let bytes = headers.iter().fold(0usize, |n, (k, v)| n + k.len() + v.len());
    if bytes > MAX_REPLY_HEADER_BYTES {
        return Err(format!("headers of {bytes} bytes, over the limit of {MAX_REPLY_HEADER_BYTES}"));
    }
    let headers = headers
        .into_iter()
        .map(|(name, value)| {
            let parsed = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name {name:?} is not a valid HTTP header name"))?;
            if HOST_OWNED_HEADERS.contains(&parsed.as_str()) {
                return Err(format!("header `{parsed}` frames the response: the host sets it"));
            }
            if ORIGIN_WIDE_HEADERS.contains(&parsed.as_str()) || parsed.as_str() == "link" {
                return Err(format!(
                    "header `{parsed}` acts on the host's whole origin: a plugin may not set it"
                ));
            }
            http::HeaderValue::from_str(&value)
                .map_err(|_| format!("header `{parsed}` has a value with control characters"))?;
            Ok((parsed.as_str().to_owned(), value))
        })
        .collect::<Result<_, String>>()?;
    Ok(CheckedReply { status, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn only_final_statuses_and_ordinary_headers_pass() {
        let ok = check(202, headers(&[("X-Reply", "yes"), ("x-tag", "a")]), b"ok".to_vec()).unwrap();
        assert_eq!(ok.headers, headers(&[("x-reply", "yes"), ("x-tag", "a")]));
        for name in ["Service-Worker-Allowed", "set-cookie", "Access-Control-Allow-Origin", "link", "refresh"]
        {
            let err = check(200, headers(&[(name, "/")]), vec![]).unwrap_err();
            assert!(err.contains("whole origin"), "{name}: {err}");
        }
        for status in [0, 100, 101, 199, 600, 1000] {
            assert!(check(status, vec![], vec![]).unwrap_err().contains("final"), "{status}");
        }
        assert!(check(204, vec![], b"x".to_vec()).is_err());
        assert!(check(204, vec![], vec![]).is_ok());
        for name in ["Content-Length", "transfer-encoding", "Connection", "upgrade", "TE", "Trailer"] {
            let err = check(200, headers(&[(name, "0")]), vec![]).unwrap_err();
            assert!(err.contains("the host sets it"), "{name}: {err}");
        }
        let split = check(200, headers(&[("x-a", "1\r\nx-injected: 2")]), vec![]).unwrap_err();
        assert!(split.contains("control characters"), "{split}");
        assert!(check(200, headers(&[("bad name", "1")]), vec![]).is_err());
        let many: Vec<_> = (0..65).map(|i| (format!("x-{i}"), "v".to_string())).collect();
        assert!(check(200, many, vec![]).unwrap_err().contains("over the limit"));
        let long = headers(&[("x-long", &"v".repeat(MAX_REPLY_HEADER_BYTES))]);
        assert!(check(200, long, vec![]).unwrap_err().contains("over the limit"));
    }
}
