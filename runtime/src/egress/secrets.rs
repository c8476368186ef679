//! Secrets that never enter a plugin: a plugin writes a placeholder in a header value and the
//! host fills it in on the way out, only when the secret is granted to the instance and the
//! request goes to one of the destinations the secret is bound to.
//!
//! - `{{secret:NAME}}`: the secret's value (`Authorization: Bearer {{secret:openai}}`).
//! - `{{basic:NAME}}`: `Basic ` and the base64 of the secret, which holds `user:password`.
//! - `{{oauth:NAME}}`: a current access token of the OAuth2 client `NAME` (see [`super::oauth`]).
//!
//! Neither a value nor a hint of it appears in errors or in `Debug` output.

use std::fmt;

use base64::Engine as _;

use crate::bindings::types::HttpResponse;
use crate::egress::policy::HttpGrant;

/// A secret's value and the destinations it may be sent to.
#[derive(Clone)]
pub struct Secret {
    value: String,
    hosts: HttpGrant,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret").field("value", &"<redacted>").field("hosts", &self.hosts.allow).finish()
    }
}

impl Secret {
    /// A secret that may only be sent to `hosts` (`scheme://host[:port]` patterns, as in grants).
    pub fn new(value: impl Into<String>, hosts: &[&str]) -> Result<Self, String> {
        Ok(Secret { value: value.into(), hosts: bound_to(hosts)? })
    }

    /// Whether the secret may travel to `url`.
    pub(crate) fn may_go_to(&self, url: &url::Url) -> bool {
        crate::egress::policy::check(&self.hosts, "GET", url).is_ok()
    }

    pub(crate) fn value(&self) -> &str {
        &self.value
    }

    /// The value in `Authorization: Basic` form.
    pub(crate) fn basic(&self) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(&self.value))
    }
}

/// The destinations a secret (or an OAuth2 client's tokens) may be sent to.
pub(crate) fn bound_to(hosts: &[&str]) -> Result<HttpGrant, String> {
    let hosts = HttpGrant { allow: hosts.iter().map(|h| (*h).to_owned()).collect(), ..HttpGrant::default() };
    hosts.validate()?;
    Ok(hosts)
}

/// Which kind of placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// `{{secret:NAME}}`
    Secret,
    /// `{{basic:NAME}}`
    Basic,
    /// `{{oauth:NAME}}`
    OAuth,
}

const KINDS: [(&str, Kind); 3] =
    [("{{secret:", Kind::Secret), ("{{basic:", Kind::Basic), ("{{oauth:", Kind::OAuth)];

/// One placeholder found in a header value.
struct Hit<'a> {
    start: usize,
    kind: Kind,
    name: &'a str,
    end: usize,
}

/// The next placeholder in `s`.
fn next(s: &str) -> Option<Result<Hit<'_>, String>> {
    let (start, open, kind) =
        KINDS.iter().filter_map(|(open, kind)| Some((s.find(open)?, *open, *kind))).min()?;
    let after = start + open.len();
    Some(match s[after..].find("}}") {
        Some(len) => Ok(Hit { start, kind, name: &s[after..after + len], end: after + len + 2 }),
        None => Err(format!("an unclosed {open}...}} placeholder")),
    })
}

/// The placeholders in `value`, in order.
pub(crate) fn placeholders(value: &str) -> Result<Vec<(Kind, &str)>, String> {
    let mut found = Vec::new();
    let mut rest = value;
    while let Some(hit) = next(rest) {
        let hit = hit?;
        found.push((hit.kind, hit.name));
        rest = &rest[hit.end..];
    }
    Ok(found)
}

/// Replaces every placeholder in `value` with what `lookup` answers for it, or says why not.
pub(crate) fn fill(
    value: &str,
    mut lookup: impl FnMut(Kind, &str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(hit) = next(rest) {
        let hit = hit?;
        out.push_str(&rest[..hit.start]);
        out.push_str(&lookup(hit.kind, hit.name)?);
        rest = &rest[hit.end..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What an answer says in place of a value the host filled in.
pub const REDACTED: &str = "[REDACTED]";

/// `response` with every value in `substituted` (secrets, Basic credentials, OAuth2 tokens the
/// host filled into the request) replaced by [`REDACTED`] in its header values and body. Values
/// shorter than 4 bytes are left alone: they would match by chance, and they are not secrets.
pub(crate) fn redact_echoes(mut response: HttpResponse, substituted: &[String]) -> HttpResponse {
    let mut spelled: Vec<String> =
        substituted.iter().filter(|v| v.len() >= 4).flat_map(|v| spellings(v)).collect();
    // Longest first, so that a spelling that contains another is replaced whole.
    spelled.sort_by_key(|v| std::cmp::Reverse(v.len()));
    spelled.dedup();
    for value in &spelled {
        for (_, header) in &mut response.headers {
            if header.contains(value.as_str()) {
                *header = header.replace(value.as_str(), REDACTED);
            }
        }
        if memchr::memmem::find(&response.body, value.as_bytes()).is_some() {
            response.body = replace_bytes(&response.body, value.as_bytes(), REDACTED.as_bytes());
        }
    }
    response
}

/// The ways an upstream may write `value` back: as it is, inside a JSON string (as serde,
/// Python's `ensure_ascii`, Go's HTML-safe escapes and PHP's `\/` write it), and percent-encoded
/// (form and path style, RFC 3986, encodeURIComponent, Python's quote), hex digits in either
/// case. Best effort: an upstream that echoes the value transformed otherwise (base64, mixed
/// case) is not caught, which is why secrets are bound to the hosts trusted with them.
fn spellings(value: &str) -> Vec<String> {
    // `html_safe`: Go's encoding/json also writes <, >, & and U+2028/9 as \u escapes.
    let json = |ascii_only: bool, upper: bool, html_safe: bool| {
        let mut out = String::with_capacity(value.len());
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20
                    || (ascii_only && !c.is_ascii())
                    || (html_safe && matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}')) =>
                {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&if upper {
                            format!("\\u{unit:04X}")
                        } else {
                            format!("\\u{unit:04x}")
                        });
                    }
                }
                c => out.push(c),
            }
        }
        out
    };
    let form: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    let path = form.replace('+', "%20");
    // Encoders that leave more bytes as they are: RFC 3986's unreserved set, JavaScript's
    // encodeURIComponent (also !'()*), Python's quote (also /).
    let percent = |keep: &[u8]| -> String {
        value
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let lower_hex = |s: &str| {
        let mut out = String::with_capacity(s.len());
        let mut after_percent: u8 = 0;
        for c in s.chars() {
            out.push(if after_percent > 0 { c.to_ascii_lowercase() } else { c });
            after_percent = if c == '%' { 2 } else { after_percent.saturating_sub(1) };
        }
        out
    };
    let mut all = vec![value.to_owned(), lower_hex(&form), lower_hex(&path), form, path];
    for keep in [&b""[..], b"!'()*", b"/"] {
        let encoded = percent(keep);
        all.push(lower_hex(&encoded));
        all.push(encoded);
    }
    let styles = [(false, false, false), (true, false, false), (true, true, false), (false, false, true)];
    for (ascii_only, upper, html_safe) in styles {
        let escaped = json(ascii_only, upper, html_safe);
        all.push(escaped.replace('/', "\\/"));
        all.push(escaped);
    }
    all.sort();
    all.dedup();
    all
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = memchr::memmem::find(rest, needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_substitutions_are_redacted_in_headers_and_body() {
        let echoed = HttpResponse {
            status: 200,
            headers: vec![("x-echo".into(), "Bearer s3cr3t-value".into()), ("x-n".into(), "abc".into())],
            body: b"auth=Bearer s3cr3t-value; again s3cr3t-value; abc".to_vec(),
        };
        let clean = redact_echoes(echoed, &["s3cr3t-value".into(), "abc".into()]);
        assert_eq!(clean.headers[0].1, "Bearer [REDACTED]");
        assert_eq!(clean.headers[1].1, "abc", "too short to be a secret");
        assert_eq!(clean.body, b"auth=Bearer [REDACTED]; again [REDACTED]; abc");
    }

    #[test]
    fn echoes_in_json_and_url_encodings_are_redacted_too() {
        let secret = "p@ss/w\"rd+1 é";
        let echoes = [
            r#"{"token":"p@ss/w\"rd+1 é"}"#,
            r#"{"token":"p@ss\/w\"rd+1 \u00e9"}"#,
            r#"{"token":"p@ss/w\"rd+1 \u00E9"}"#,
            "token=p%40ss%2Fw%22rd%2B1+%C3%A9",
            "/echo/p%40ss%2Fw%22rd%2B1%20%C3%A9",
            "token=p%40ss%2fw%22rd%2b1+%c3%a9",
            "token=p%40ss%2Fw%22rd%2B1%20%C3%A9",
            "/echo/p%40ss/w%22rd%2B1%20%C3%A9",
        ];
        for echo in echoes {
            let response = HttpResponse {
                status: 200,
                headers: vec![("x-echo".into(), echo.into())],
                body: echo.as_bytes().to_vec(),
            };
            let clean = redact_echoes(response, &[secret.to_owned()]);
            assert!(clean.headers[0].1.contains(REDACTED), "{echo} -> {}", clean.headers[0].1);
            let body = String::from_utf8(clean.body).unwrap();
            assert!(body.contains(REDACTED) && !body.contains("ss"), "{echo} -> {body}");
        }
    }

    #[test]
    fn go_style_json_escapes_are_redacted_too() {
        let secret = "a<b>&c\u{8}d";
        let echo = r#"{"token":"a\u003cb\u003e\u0026c\bd"}"#;
        let response = HttpResponse { status: 200, headers: vec![], body: echo.as_bytes().to_vec() };
        let body = String::from_utf8(redact_echoes(response, &[secret.to_owned()]).body).unwrap();
        assert_eq!(body, format!(r#"{{"token":"{REDACTED}"}}"#));
    }

    #[test]
    fn placeholders_are_found_and_filled_in_order() {
        let header = "a {{secret:one}} b {{oauth:two}} c {{basic:three}}";
        assert_eq!(
            placeholders(header).unwrap(),
            vec![(Kind::Secret, "one"), (Kind::OAuth, "two"), (Kind::Basic, "three")]
        );
        let filled = fill(header, |kind, name| Ok(format!("<{kind:?}:{name}>"))).unwrap();
        assert_eq!(filled, "a <Secret:one> b <OAuth:two> c <Basic:three>");
        assert_eq!(fill("plain", |_, _| Err("unused".into())).unwrap(), "plain");
        assert!(fill("{{secret:open", |_, _| Ok(String::new())).unwrap_err().contains("unclosed"));
    }

    #[test]
    fn secrets_know_their_destinations_and_hide_their_value() {
        let s = Secret::new("user:pa55", &["https://api.example.com"]).unwrap();
        assert!(s.may_go_to(&url::Url::parse("https://api.example.com/x").unwrap()));
        assert!(!s.may_go_to(&url::Url::parse("https://evil.example/x").unwrap()));
        assert_eq!(s.basic(), "Basic dXNlcjpwYTU1");
        assert!(!format!("{s:?}").contains("pa55"));
    }
}
