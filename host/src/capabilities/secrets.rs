//! Secrets that never enter a plugin: a plugin writes `{{secret:NAME}}` in a header value, and
//! the host fills it in on the way out, only when NAME is granted to the instance and the request
//! goes to one of the destinations the secret is bound to. Neither the value nor a hint of it
//! appears in errors or in `Debug` output.

use std::collections::BTreeSet;
use std::fmt;

use crate::capabilities::http::HttpGrant;

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
        let hosts = HttpGrant { allow: hosts.iter().map(|h| (*h).to_owned()).collect(), methods: Vec::new() };
        hosts.validate()?;
        Ok(Secret { value: value.into(), hosts })
    }
}

const OPEN: &str = "{{secret:";

/// Replaces every `{{secret:NAME}}` in `header` for a request to `url`, or says why not.
pub(crate) fn fill(
    header: &str,
    url: &url::Url,
    granted: &BTreeSet<String>,
    lookup: impl Fn(&str) -> Option<Secret>,
) -> Result<String, String> {
    let mut out = String::with_capacity(header.len());
    let mut rest = header;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let end = after.find("}}").ok_or("an unclosed {{secret:...}} placeholder")?;
        let name = &after[..end];
        if !granted.contains(name) {
            return Err(format!("secret `{name}` is not granted to this instance"));
        }
        let secret = lookup(name).ok_or_else(|| format!("secret `{name}` is not configured"))?;
        if secret.hosts.check("GET", url).is_err() {
            return Err(format!(
                "secret `{name}` may not be sent to {}://{}",
                url.scheme(),
                url.host_str().unwrap_or("")
            ));
        }
        out.push_str(&secret.value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<Secret> {
        (name == "openai").then(|| Secret::new("sk-live-123", &["https://api.openai.com"]).unwrap())
    }

    #[test]
    fn fills_only_granted_secrets_bound_to_the_destination() {
        let granted: BTreeSet<String> = ["openai".to_string()].into();
        let openai = url::Url::parse("https://api.openai.com/v1/chat/completions").unwrap();
        let evil = url::Url::parse("https://evil.example/collect").unwrap();
        assert_eq!(
            fill("Bearer {{secret:openai}}", &openai, &granted, lookup).unwrap(),
            "Bearer sk-live-123"
        );
        let errors = [
            fill("Bearer {{secret:openai}}", &evil, &granted, lookup).unwrap_err(),
            fill("{{secret:openai}}", &openai, &BTreeSet::new(), lookup).unwrap_err(),
            fill("{{secret:other}}", &openai, &["other".to_string()].into(), lookup).unwrap_err(),
            fill("{{secret:openai", &openai, &granted, lookup).unwrap_err(),
        ];
        for e in errors {
            assert!(!e.contains("sk-live"), "{e}");
        }
        assert_eq!(fill("no placeholder", &evil, &granted, lookup).unwrap(), "no placeholder");
        assert!(!format!("{:?}", lookup("openai").unwrap()).contains("sk-live"));
    }
}
