//! What an instance's outbound requests may reach: the operator's allow-list of destinations and
//! methods, checked on every request and every redirect hop, and the address policy checked after
//! DNS resolution, which refuses loopback, private, link-local and cloud-metadata addresses
//! unless the operator lets the instance reach them.

use std::net::IpAddr;
use std::sync::LazyLock;

use plugboard_manifest::address::Cidr;
use plugboard_manifest::pattern::Pattern;

pub use crate::grants::{DestinationLimit, HttpGrant, LimitScope};

/// Whether a request with `method` to `url` is allowed by `grant`; the reason when not.
pub fn check(grant: &HttpGrant, method: &str, url: &url::Url) -> Result<(), String> {
    if !grant.methods.is_empty() && !grant.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
        return Err(format!("method {method} is not allowed"));
    }
    let (scheme, host, port) = destination(url)?;
    if grant.allow.iter().filter_map(|p| Pattern::parse(p).ok()).any(|p| p.matches(scheme, host, port)) {
        Ok(())
    } else {
        Err(format!("{scheme}://{host}:{port} is not in the allow-list"))
    }
}

/// [`check`], then, for an address written in the URL, the address policy: an internal
/// address only when `allow_internal` lists it. (Names are checked when they resolve, by the
/// egress resolver.)
pub fn admit(grant: &HttpGrant, method: &str, url: &url::Url) -> Result<(), String> {
    check(grant, method, url)?;
    admit_address(grant, url)
}

/// The address policy alone (see [`admit`]), for callers that checked the allow-list
/// themselves.
pub fn admit_address(grant: &HttpGrant, url: &url::Url) -> Result<(), String> {
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    if address_allowed(literal, &internal_addresses(grant)) {
        Ok(())
    } else {
        Err(format!("{literal} is an internal address outside allow_internal"))
    }
}

/// The `allow_internal` address blocks (invalid entries were refused at load).
fn internal_addresses(grant: &HttpGrant) -> Vec<Cidr> {
    grant.allow_internal.iter().filter_map(|c| c.parse().ok()).collect()
}

/// The `allow_internal` host names, lower case.
pub fn internal_names(grant: &HttpGrant) -> Vec<String> {
    grant
        .allow_internal
        .iter()
        .filter(|e| e.parse::<Cidr>().is_err())
        .map(|e| e.to_ascii_lowercase())
        .collect()
}

/// A URL's scheme, host and port, or why it has none.
pub(crate) fn destination(url: &url::Url) -> Result<(&str, &str, u16), String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    Ok((url.scheme(), host, port))
}

/// Whether `url`'s destination matches `pattern`.
pub(crate) fn matches_url(pattern: &Pattern, url: &url::Url) -> bool {
    destination(url).is_ok_and(|(s, h, p)| pattern.matches(s, h, p))
}

/// Address blocks no plugin reaches unless its operator says so, one row per entry of IANA's
/// IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and its updates), plus the
/// multicast blocks and deprecated spellings that still reach an IPv4 address. Rows are
/// refused whether or not the registry calls them globally reachable: none is a place a
/// connector's API lives, and several (NAT64, 6to4, Teredo, IPv4-compatible and -translated
/// spellings) embed an IPv4 address that a resolver would otherwise smuggle past the IPv4 rows.
/// IPv4-mapped addresses (`::ffff:a.b.c.d`) are also checked as the IPv4 address they carry.
pub(crate) const SPECIAL_PURPOSE: [(&str, &str); 46] = [
    // IANA IPv4 Special-Purpose Address Registry.
    ("0.0.0.0/8", "this network (RFC 791)"),
    ("10.0.0.0/8", "private use (RFC 1918)"),
    ("100.64.0.0/10", "shared address space, carrier-grade NAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link local, cloud metadata services (RFC 3927)"),
    ("172.16.0.0/12", "private use (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation, TEST-NET-1 (RFC 5737)"),
    ("192.31.196.0/24", "AS112-v4 (RFC 7535)"),
    ("192.52.193.0/24", "AMT (RFC 7450)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private use (RFC 1918)"),
    ("192.175.48.0/24", "direct delegation AS112 service (RFC 7534)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation, TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation, TEST-NET-3 (RFC 5737)"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
    ("255.255.255.255/32", "limited broadcast (RFC 919)"),
    // IANA IPv4 Multicast Address Space Registry.
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    // IANA IPv6 Special-Purpose Address Registry.
    ("::1/128", "loopback (RFC 4291)"),
    ("::/128", "unspecified (RFC 4291)"),
    ("::ffff:0:0/96", "IPv4-mapped (RFC 4291)"),
    ("64:ff9b::/96", "IPv4-IPv6 translation, NAT64 (RFC 6052)"),
    ("64:ff9b:1::/48", "local-use IPv4-IPv6 translation (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("100:0:0:1::/64", "dummy IPv6 prefix (RFC 9780)"),
    ("2001::/23", "IETF protocol assignments (RFC 2928)"),
    ("2001::/32", "Teredo, embeds an IPv4 address (RFC 4380)"),
    ("2001:1::1/128", "port control protocol anycast (RFC 7723)"),
    ("2001:1::2/128", "traversal using relays around NAT anycast (RFC 8155)"),
    ("2001:1::3/128", "DNS-SD service registration protocol anycast (RFC 9665)"),
    ("2001:2::/48", "benchmarking (RFC 5180)"),
    ("2001:3::/32", "AMT (RFC 7450)"),
    ("2001:4:112::/48", "AS112-v6 (RFC 7535)"),
    ("2001:10::/28", "deprecated ORCHID (RFC 4843)"),
    ("2001:20::/28", "ORCHIDv2 (RFC 7343)"),
    ("2001:30::/28", "drone remote ID protocol entity tags (RFC 9374)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("2002::/16", "6to4, embeds an IPv4 address (RFC 3056)"),
    ("2620:4f:8000::/48", "direct delegation AS112 service (RFC 7534)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "unique-local, AWS's IPv6 metadata address (RFC 4193)"),
    ("fe80::/10", "link-local unicast (RFC 4291)"),
    // Not in the registries today, but spellings that reach an IPv4 address or a local scope.
    ("::/96", "deprecated IPv4-compatible addresses (RFC 4291)"),
    ("::ffff:0:0:0/96", "IPv4-translated addresses (RFC 2765)"),
];

/// Multicast and deprecated site-local IPv6, refused like the registries' rows.
const OTHER_IPV6: [(&str, &str); 2] =
    [("ff00::/8", "multicast (RFC 4291)"), ("fec0::/10", "deprecated site-local (RFC 3879)")];

static INTERNAL: LazyLock<Vec<Cidr>> = LazyLock::new(|| {
    SPECIAL_PURPOSE
        .iter()
        .chain(OTHER_IPV6.iter())
        .map(|(block, _)| block.parse().unwrap_or_else(|e| panic!("special-purpose block {block}: {e}")))
        .collect()
});

/// Whether an instance whose exceptions are `allowed` may connect to `ip`.
pub(crate) fn address_allowed(ip: IpAddr, allowed: &[Cidr]) -> bool {
    !INTERNAL.iter().any(|net| net.contains(ip)) || allowed.iter().any(|net| net.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(allow: &[&str]) -> HttpGrant {
        HttpGrant { allow: allow.iter().map(|s| s.to_string()).collect(), ..HttpGrant::default() }
    }

    fn check(g: &HttpGrant, url: &str) -> bool {
        super::check(g, "GET", &url::Url::parse(url).unwrap()).is_ok()
    }

    #[test]
    fn a_grant_reaches_the_patterns_some_allowed_request_matches() {
        let g = grant(&["https://*.myshopify.com", "https://api.openai.com", "http://127.0.0.1:8788"]);
        for reached in [
            "https://shop.myshopify.com",
            "https://*.myshopify.com",
            "https://*.b.myshopify.com",
            "https://*.com",
            "https://api.openai.com:443",
            "http://127.0.0.1:8788",
        ] {
            assert!(g.reaches(reached), "{reached}");
        }
        for missed in [
            "https://myshopify.com",
            "http://shop.myshopify.com",
            "https://*.shopify.com",
            "https://api.openai.com:8443",
            "http://127.0.0.1:8789",
            "https://api.anthropic.com",
            "not a pattern",
        ] {
            assert!(!g.reaches(missed), "{missed}");
        }
        assert!(grant(&["https://shop.myshopify.com"]).reaches("https://*.myshopify.com"));
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
        let g = HttpGrant { methods: vec!["GET".into()], ..grant(&["https://a.io"]) };
        let url = url::Url::parse("https://a.io/").unwrap();
        assert!(super::check(&g, "get", &url).is_ok());
        assert!(super::check(&g, "POST", &url).is_err());
    }

    #[test]
    fn bad_patterns_are_named() {
        for p in ["a.io", "ftp://a.io", "https://a.io/path", "https://a.*.io", "https://a.io:x"] {
            let err = grant(&[p]).validate().unwrap_err();
            assert!(err.contains(p), "{err}");
        }
        let bad_block = HttpGrant { allow_internal: vec!["10.0.0.0/33".into()], ..HttpGrant::default() };
        assert!(bad_block.validate().unwrap_err().contains("10.0.0.0/33"));
        let good = HttpGrant {
            allow_internal: vec!["10.0.0.0/8".into(), "crm.corp.local".into()],
            ..HttpGrant::default()
        };
        assert!(good.validate().is_ok());
        assert_eq!(internal_names(&good), vec!["crm.corp.local".to_string()]);
    }

    #[test]
    fn internal_addresses_are_refused_unless_excepted() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            // IPv4-compatible and IPv4-translated spellings of 127.0.0.1 and 169.254.169.254.
            "::7f00:1",
            "::a9fe:a9fe",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            // NAT64, 6to4 and Teredo addresses that carry 127.0.0.1.
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "fec0::1",
            "255.255.255.255",
        ] {
            assert!(!address_allowed(ip(internal), &[]), "{internal} should be internal");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(address_allowed(ip(public), &[]), "{public} should be public");
        }
        // Every row of the table: its first and its last address are refused.
        for (block, name) in SPECIAL_PURPOSE.iter().chain(OTHER_IPV6.iter()) {
            let cidr: Cidr = block.parse().unwrap();
            let (first, last) = cidr.bounds();
            assert!(!address_allowed(first, &[]), "{first} ({name}) should be internal");
            assert!(!address_allowed(last, &[]), "{last} ({name}) should be internal");
        }
        let loopback: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap()];
        assert!(address_allowed(ip("127.0.0.1"), &loopback));
        assert!(!address_allowed(ip("127.0.0.2"), &loopback));
        assert!(!address_allowed(ip("169.254.169.254"), &loopback));
    }
}
