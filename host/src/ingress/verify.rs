//! Webhook signature verification, in the host, on the raw body bytes, with constant-time
//! comparison. The secrets never enter a plugin.
//!
//! Schemes: Shopify, Slack, Stripe, GitHub, Standard Webhooks, and a generic HMAC header for the
//! many providers that sign like `X-Signature: <hex>`. Every scheme accepts several secrets, so a
//! secret can be rotated without dropping deliveries; the schemes with a timestamp refuse requests
//! outside the tolerance window (300 s by default), so a captured request cannot be replayed later.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The headers the schemes read (signatures, timestamps, delivery ids), lower case, with
/// `x-signature` and `x-timestamp` for a typical generic HMAC: where tests and fuzzers aim
/// arbitrary values.
pub const SCHEME_HEADERS: [&str; 11] = [
    "x-shopify-hmac-sha256",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "stripe-signature",
    "x-hub-signature-256",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-signature",
    "x-timestamp",
    "x-github-delivery",
];

/// The default window for timestamped schemes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

pub use plugboard_manifest::webhook::{Encoding, HmacScheme, Scheme};

/// Why a request was refused. The message names what was wrong, never a secret or the expected
/// signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs is absent.
    #[error("missing header {0}")]
    MissingHeader(String),
    /// A header is present but not in the scheme's format.
    #[error("malformed header {header}: {reason}")]
    Malformed {
        /// The header.
        header: String,
        /// What is wrong.
        reason: String,
    },
    /// No signature matched any of the instance's secrets.
    #[error("signature does not match")]
    BadSignature,
    /// The signed timestamp is outside the tolerance window.
    #[error("timestamp is {age_secs} s away from now, outside the {tolerance_secs} s window")]
    Stale {
        /// How far the timestamp is from now, in seconds.
        age_secs: u64,
        /// The window.
        tolerance_secs: u64,
    },
    /// A configured secret is unusable (e.g. a `whsec_` secret that is not base64).
    #[error("secret #{index} is unusable for this scheme: {reason}")]
    BadSecret {
        /// Which secret, from 0.
        index: usize,
        /// Why.
        reason: String,
    },
}

/// What a successful verification found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The provider's delivery id, when the scheme carries one in a header, for deduplication.
    pub delivery_id: Option<String>,
}

/// Verifies requests for one instance: a scheme, its secrets (any may match), a window.
#[derive(Clone)]
pub struct Verifier {
    scheme: Scheme,
    secrets: Vec<Vec<u8>>,
    tolerance: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets.
        f.debug_struct("Verifier")
            .field("scheme", &self.scheme)
            .field("secrets", &self.secrets.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    let value = headers.get(name).ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))?;
    value.to_str().map_err(|_| malformed(name, "not visible ASCII"))
}

fn malformed(header: &str, reason: &str) -> VerifyError {
    VerifyError::Malformed { header: header.to_owned(), reason: reason.to_owned() }
}

fn mac(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s.trim()).ok()
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    BASE64.decode(s.trim()).ok()
}

impl Verifier {
    /// A verifier for `scheme` with the given secrets (raw bytes as the provider shows them;
    /// Standard Webhooks secrets keep their `whsec_` prefix).
    pub fn new(scheme: Scheme, secrets: Vec<Vec<u8>>) -> Result<Self, VerifyError> {
        let secrets = match scheme {
            Scheme::StandardWebhooks => secrets
                .into_iter()
                .enumerate()
                .map(|(index, s)| {
                    let text = String::from_utf8_lossy(&s);
                    let encoded = text.strip_prefix("whsec_").unwrap_or(&text);
                    BASE64
                        .decode(encoded.trim())
                        .map_err(|e| VerifyError::BadSecret { index, reason: e.to_string() })
                })
                .collect::<Result<_, _>>()?,
            _ => secrets,
        };
        Ok(Verifier { scheme, secrets, tolerance: DEFAULT_TOLERANCE })
    }

    /// The scheme this verifier checks.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Sets the window for timestamped schemes.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Whether any secret produces `signature` over `parts`, compared in constant time.
    fn any_secret_matches(&self, signature: &[u8], parts: &[&[u8]]) -> bool {
        self.secrets
            .iter()
            .fold(false, |found, secret| found | bool::from(mac(secret, parts).ct_eq(signature)))
    }

    fn check_timestamp(&self, name: &str, value: &str, now: SystemTime) -> Result<(), VerifyError> {
        let ts: u64 = value.trim().parse().map_err(|_| malformed(name, "not a Unix timestamp"))?;
        let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let age_secs = now.abs_diff(ts);
        if age_secs > self.tolerance.as_secs() {
            return Err(VerifyError::Stale { age_secs, tolerance_secs: self.tolerance.as_secs() });
        }
        Ok(())
    }

    /// Verifies one request. `now` is the host's clock (a parameter so tests can pin it).
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: SystemTime) -> Result<Verified, VerifyError> {
        let optional = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        match &self.scheme {
            Scheme::None => Ok(Verified { delivery_id: None }),
            Scheme::Shopify => {
                let name = "x-shopify-hmac-sha256";
                let sig =
                    decode_base64(header(headers, name)?).ok_or_else(|| malformed(name, "not base64"))?;
                self.any_secret_matches(&sig, &[body]).then_some(()).ok_or(VerifyError::BadSignature)?;
                Ok(Verified { delivery_id: optional("x-shopify-webhook-id") })
            }
            Scheme::Slack => {
                let ts = header(headers, "x-slack-request-timestamp")?;
                let name = "x-slack-signature";
                let sig = header(headers, name)?
                    .strip_prefix("v0=")
                    .and_then(decode_hex)
                    .ok_or_else(|| malformed(name, "expected v0=<hex>"))?;
                self.check_timestamp("x-slack-request-timestamp", ts, now)?;
                let parts: [&[u8]; 4] = [b"v0:", ts.as_bytes(), b":", body];
                self.any_secret_matches(&sig, &parts).then_some(()).ok_or(VerifyError::BadSignature)?;
                Ok(Verified { delivery_id: None })
            }
            Scheme::Stripe => {
                let name = "stripe-signature";
                let value = header(headers, name)?;
                let mut timestamp = None;
                let mut signatures = Vec::new();
                for item in value.split(',') {
                    match item.trim().split_once('=') {
                        Some(("t", t)) => timestamp = Some(t),
                        Some(("v1", s)) => {
                            signatures.push(decode_hex(s).ok_or_else(|| malformed(name, "v1 is not hex"))?)
                        }
                        Some(_) => {}
                        None => return Err(malformed(name, "expected t=...,v1=...")),
                    }
                }
                let t = timestamp.ok_or_else(|| malformed(name, "no t= timestamp"))?;
                if signatures.is_empty() {
                    return Err(malformed(name, "no v1= signature"));
                }
                self.check_timestamp(name, t, now)?;
                let parts: [&[u8]; 3] = [t.as_bytes(), b".", body];
                let ok = signatures.iter().fold(false, |found, s| found | self.any_secret_matches(s, &parts));
                ok.then_some(()).ok_or(VerifyError::BadSignature)?;
                Ok(Verified { delivery_id: None })
            }
            Scheme::Github => {
                let name = "x-hub-signature-256";
                let sig = header(headers, name)?
                    .strip_prefix("sha256=")
                    .and_then(decode_hex)
                    .ok_or_else(|| malformed(name, "expected sha256=<hex>"))?;
                self.any_secret_matches(&sig, &[body]).then_some(()).ok_or(VerifyError::BadSignature)?;
                Ok(Verified { delivery_id: optional("x-github-delivery") })
            }
            Scheme::StandardWebhooks => {
                let id = header(headers, "webhook-id")?;
                let ts = header(headers, "webhook-timestamp")?;
                let name = "webhook-signature";
                let value = header(headers, name)?;
                self.check_timestamp("webhook-timestamp", ts, now)?;
                let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
                let mut ok = false;
                for entry in value.split_whitespace() {
                    if let Some(sig) = entry.strip_prefix("v1,").and_then(decode_base64) {
                        ok |= self.any_secret_matches(&sig, &parts);
                    }
                }
                ok.then_some(()).ok_or(VerifyError::BadSignature)?;
                Ok(Verified { delivery_id: Some(id.to_owned()) })
            }
            Scheme::Hmac(h) => {
                let raw = header(headers, &h.header)?;
                let encoded = raw
                    .strip_prefix(h.prefix.as_str())
                    .ok_or_else(|| malformed(&h.header, "wrong prefix"))?;
                let sig = match h.encoding {
                    Encoding::Hex => decode_hex(encoded),
                    Encoding::Base64 => decode_base64(encoded),
                }
                .ok_or_else(|| malformed(&h.header, "cannot decode the signature"))?;
                let timestamp = match &h.timestamp_header {
                    Some(name) => {
                        let ts = header(headers, name)?;
                        self.check_timestamp(name, ts, now)?;
                        Some(ts)
                    }
                    None => None,
                };
                let content = render(&h.signed_content, headers, timestamp, body)?;
                self.any_secret_matches(&sig, &[&content]).then_some(()).ok_or(VerifyError::BadSignature)?;
                Ok(Verified { delivery_id: None })
            }
        }
    }
}

/// Fills a signed-content template: `{body}`, `{timestamp}`, `{header:Name}`.
fn render(
    template: &str,
    headers: &HeaderMap,
    timestamp: Option<&str>,
    body: &[u8],
) -> Result<Vec<u8>, VerifyError> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.extend_from_slice(&rest.as_bytes()[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .ok_or_else(|| malformed("signed_content", "unclosed {"))?;
        let key = &rest[start + 1..end];
        match key {
            "body" => out.extend_from_slice(body),
            "timestamp" => out.extend_from_slice(timestamp.unwrap_or("").as_bytes()),
            other => match other.strip_prefix("header:") {
                Some(name) => out.extend_from_slice(header(headers, name)?.as_bytes()),
                None => return Err(malformed("signed_content", "unknown placeholder")),
            },
        }
        rest = &rest[end + 1..];
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        map
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    // Slack's own example from "Verifying requests from Slack".
    const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

    #[test]
    fn slack_published_example() {
        let v = Verifier::new(Scheme::Slack, vec![b"8f742231b10e8888abcd99yyyzzz85a5".to_vec()]).unwrap();
        let h = headers(&[
            ("x-slack-request-timestamp", "1531420618"),
            ("x-slack-signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"),
        ]);
        assert!(v.verify(&h, SLACK_BODY.as_bytes(), at(1531420618 + 10)).is_ok());
        assert_eq!(v.verify(&h, b"token=forged", at(1531420618)), Err(VerifyError::BadSignature));
        assert!(matches!(
            v.verify(&h, SLACK_BODY.as_bytes(), at(1531420618 + 301)),
            Err(VerifyError::Stale { .. })
        ));
    }

    // The Standard Webhooks specification's example.
    #[test]
    fn standard_webhooks_published_example() {
        let v =
            Verifier::new(Scheme::StandardWebhooks, vec![b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_vec()])
                .unwrap();
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,bm9ldHUjKzFob2VudXRob2VodW9lYXV0aG91ZWFvdW9ldQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        let verified = v.verify(&h, br#"{"test": 2432232314}"#, at(1614265330)).unwrap();
        assert_eq!(verified.delivery_id.as_deref(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
        assert_eq!(v.verify(&h, br#"{"test": 2432232315}"#, at(1614265330)), Err(VerifyError::BadSignature));
    }

    // GitHub's example from "Validating webhook deliveries".
    #[test]
    fn github_published_example() {
        let v = Verifier::new(Scheme::Github, vec![b"It's a Secret to Everybody".to_vec()]).unwrap();
        let h = headers(&[(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert!(v.verify(&h, b"Hello, World!", at(0)).is_ok());
        assert_eq!(v.verify(&h, b"Hello, World?", at(0)), Err(VerifyError::BadSignature));
    }

    #[test]
    fn rotation_accepts_any_configured_secret() {
        let new = b"new-secret".to_vec();
        let body = b"{}";
        let sig = BASE64.encode(mac(&new, &[body]));
        let h = headers(&[("x-shopify-hmac-sha256", &sig)]);
        let rotated = Verifier::new(Scheme::Shopify, vec![b"old-secret".to_vec(), new]).unwrap();
        assert!(rotated.verify(&h, body, at(0)).is_ok());
        let old_only = Verifier::new(Scheme::Shopify, vec![b"old-secret".to_vec()]).unwrap();
        assert_eq!(old_only.verify(&h, body, at(0)), Err(VerifyError::BadSignature));
    }

    #[test]
    fn malformed_headers_are_named() {
        let v = Verifier::new(Scheme::Stripe, vec![b"s".to_vec()]).unwrap();
        for (value, reason) in
            [("v1=00", "no t="), ("t=1", "no v1="), ("t=1,v1=zz", "not hex"), ("garbage", "expected")]
        {
            let err = v.verify(&headers(&[("stripe-signature", value)]), b"", at(1)).unwrap_err();
            assert!(err.to_string().contains(reason), "{value}: {err}");
        }
        let err = v.verify(&HeaderMap::new(), b"", at(1)).unwrap_err();
        assert_eq!(err, VerifyError::MissingHeader("stripe-signature".into()));
    }

    #[test]
    fn generic_hmac_with_prefix_timestamp_and_template() {
        let scheme = Scheme::Hmac(HmacScheme {
            header: "x-signature".into(),
            encoding: Encoding::Hex,
            prefix: "sha256=".into(),
            timestamp_header: Some("x-timestamp".into()),
            signed_content: "{timestamp}.{header:x-request-id}.{body}".into(),
        });
        let v = Verifier::new(scheme, vec![b"k".to_vec()]).unwrap();
        let sig = hex::encode(mac(b"k", &[b"1700000000.req-1.hello"]));
        let h = headers(&[
            ("x-signature", &format!("sha256={sig}")),
            ("x-timestamp", "1700000000"),
            ("x-request-id", "req-1"),
        ]);
        assert!(v.verify(&h, b"hello", at(1700000000)).is_ok());
        assert_eq!(v.verify(&h, b"hellO", at(1700000000)), Err(VerifyError::BadSignature));
        let config: Scheme =
            serde_json::from_str(r#"{"scheme": "hmac", "header": "X-Sig", "encoding": "base64"}"#).unwrap();
        assert!(
            matches!(config, Scheme::Hmac(HmacScheme { ref signed_content, .. }) if signed_content == "{body}")
        );
        assert!(
            serde_json::from_str::<Scheme>(
                r#"{"scheme": "hmac", "header": "X", "encoding": "hex", "sekret": 1}"#
            )
            .is_err()
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let v = Verifier::new(Scheme::Github, vec![b"hunter2".to_vec()]).unwrap();
        assert!(!format!("{v:?}").contains("hunter2"));
    }
}
