//! Allow-list patterns (`https://*.myshopify.com`, `http://127.0.0.1:9000`), as grants, rate
//! limits, secrets and OAuth clients name destinations.

/// One parsed allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    scheme: String,
    host: String,
    wildcard: bool,
    port: u16,
}

impl Pattern {
    /// Parses `scheme://host[:port]` (`*.` may start the host); the error names the pattern.
    pub fn parse(pattern: &str) -> Result<Pattern, String> {
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

    /// Whether a destination matches.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let host_ok = if self.wildcard {
            host.strip_suffix(&self.host).is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
        } else {
            host == self.host
        };
        scheme == self.scheme && port == self.port && host_ok
    }

    /// Whether some destination matches both patterns.
    pub fn overlaps(&self, other: &Pattern) -> bool {
        if self.scheme != other.scheme || self.port != other.port {
            return false;
        }
        let under = |host: &str, domain: &str| host.strip_suffix(domain).is_some_and(|p| p.ends_with('.'));
        match (self.wildcard, other.wildcard) {
            (false, false) => self.host == other.host,
            (true, false) => self.matches(&other.scheme, &other.host, other.port),
            (false, true) => other.matches(&self.scheme, &self.host, self.port),
            (true, true) => {
                self.host == other.host || under(&self.host, &other.host) || under(&other.host, &self.host)
            }
        }
    }
}

/// Whether `s` is a DNS host name (letters, digits and `-` in dot-separated labels).
pub fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
