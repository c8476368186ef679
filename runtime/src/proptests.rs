//! Property tests of the runtime's boundaries: what a plugin hands the host (webhook replies,
//! events, text) and what an upstream answers is arbitrary, and each boundary must answer it
//! with a value or a clear error, never a panic, and keep its promise. They run in `cargo test`
//! with a fixed number of cases (so CI spends a bounded time on them); failures proptest finds
//! are kept in `runtime/proptest-regressions/` and replayed first on every later run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use crate::egress::policy::address_allowed;
use crate::types::NewEvent;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 512, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    /// Every spelling of an internal IPv4 address that reaches it is refused: the address,
    /// IPv4-mapped, -compatible and -translated, NAT64 and 6to4, and the URL spellings
    /// (decimal, hex, octal, short forms) a URL parser turns into it.
    #[test]
    fn internal_ipv4_addresses_are_refused_in_every_spelling(
        block in prop::sample::select(vec![
            (Ipv4Addr::new(127, 0, 0, 0), 8u8),
            (Ipv4Addr::new(10, 0, 0, 0), 8),
            (Ipv4Addr::new(169, 254, 0, 0), 16),
            (Ipv4Addr::new(172, 16, 0, 0), 12),
            (Ipv4Addr::new(192, 168, 0, 0), 16),
            (Ipv4Addr::new(100, 64, 0, 0), 10),
            (Ipv4Addr::new(0, 0, 0, 0), 8),
        ]),
        host_bits in any::<u32>(),
    ) {
        let (net, prefix) = block;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let v4 = Ipv4Addr::from((u32::from(net) & mask) | (host_bits & !mask));
        let n = u32::from(v4);
        let spellings = [
            IpAddr::V4(v4),
            IpAddr::V6(v4.to_ipv6_mapped()),
            IpAddr::V6(Ipv6Addr::from(u128::from(n))),
            IpAddr::V6(Ipv6Addr::from((0xffffu128 << 48) | u128::from(n))),
            IpAddr::V6(Ipv6Addr::from((0x0064_ff9bu128 << 96) | u128::from(n))),
            IpAddr::V6(Ipv6Addr::from((0x2002u128 << 112) | (u128::from(n) << 80))),
        ];
        for ip in spellings {
            prop_assert!(!address_allowed(ip, &[]), "{ip} (for {v4}) was allowed");
        }
        let [a, b, c, d] = v4.octets();
        for text in [
            format!("http://{n}/"),
            format!("http://0x{n:x}/"),
            format!("http://0{n:o}/"),
            format!("http://{a}.{}/", (u32::from(b) << 16) | (u32::from(c) << 8) | u32::from(d)),
            format!("http://0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}/"),
            format!("http://[::ffff:{v4}]/"),
        ] {
            let url = url::Url::parse(&text).unwrap();
            let ip = match url.host() {
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
                other => return Err(TestCaseError::fail(format!("{text} parsed as {other:?}"))),
            };
            prop_assert!(!address_allowed(ip, &[]), "{text} reached {ip}");
        }
    }

    /// Whatever a plugin puts in a webhook reply, the check answers without panicking, and what
    /// it accepts is a valid, bounded response that the host frames.
    #[test]
    fn webhook_replies_that_pass_are_valid_responses(
        status in any::<u16>(),
        headers in proptest::collection::vec(("[ -~]{0,24}", "[\\x00-\\x7f]{0,40}"), 0..80),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        if let Ok(reply) = crate::reply::check(status, headers, body) {
            prop_assert!((200..=599).contains(&reply.status));
            prop_assert!(reply.headers.len() <= crate::MAX_REPLY_HEADERS);
            for (name, value) in &reply.headers {
                let parsed = http::HeaderName::from_bytes(name.as_bytes());
                prop_assert!(parsed.is_ok(), "{name:?}");
                prop_assert!(http::HeaderValue::from_str(value).is_ok(), "{value:?}");
                prop_assert!(!crate::HOST_OWNED_HEADERS.contains(&name.as_str()), "{name}");
            }
        }
    }

    /// Whatever a plugin emits, `accept` answers without panicking, and what it accepts is
    /// within the event limits.
    #[test]
    fn events_that_pass_are_within_their_limits(
        kind in "[ -~\\t\\x1b]{0,140}",
        content_type in "[ -~]{0,10}",
        payload_len in 0usize..2048,
        attributes in proptest::collection::vec(("[ -~]{0,20}", "[ -~]{0,200}"), 0..70),
    ) {
        let max = 1024;
        let event = NewEvent {
            kind,
            occurred_at_ms: None,
            content_type,
            payload: vec![0; payload_len],
            attributes,
        };
        if let Ok(e) = crate::capabilities::emit::accept("p", max, event) {
            let size = crate::capabilities::emit::size_of(&e.kind, &e.content_type, &e.payload, &e.attributes);
            prop_assert!(size <= max as usize);
            prop_assert!(e.attributes.len() <= 64);
            prop_assert!(e.kind.bytes().all(|b| b.is_ascii_graphic()));
            prop_assert!(e.attributes.iter().all(|(k, _)| k != "caused_by" && !k.starts_with("plugboard.")));
        }
    }

    /// Plugin text made printable has no character that a terminal obeys or that reorders text.
    #[test]
    fn printable_text_has_no_control_or_bidi_characters(text in any::<String>()) {
        let shown = crate::printable(&text);
        let obeyed = |c: char| {
            c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c)
        };
        prop_assert!(!shown.chars().any(obeyed), "{:?}", shown);
    }

    /// A secret an upstream echoes back, as it is, inside JSON or URL-encoded, never reaches
    /// the plugin, whatever characters it has.
    #[test]
    fn echoed_secrets_are_redacted_in_every_common_spelling(
        secret in "[ -~]{4,24}|\\PC{4,12}",
        before in "[a-z {}\":,]{0,16}",
    ) {
        use crate::egress::secrets::{REDACTED, redact_echoes};
        prop_assume!(!REDACTED.contains(secret.as_str()));
        let json = serde_json::to_string(&secret).unwrap();
        let json = &json[1..json.len() - 1];
        let ascii_json: String = secret
            .chars()
            .map(|c| match c {
                '"' | '\\' => format!("\\{c}"),
                c if c.is_ascii() && !c.is_control() => c.to_string(),
                c => c.encode_utf16(&mut [0; 2]).iter().map(|u| format!("\\u{u:04x}")).collect(),
            })
            .collect();
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let body = format!("{before}{secret}|{json}|{ascii_json}|{form}|{}", form.replace('+', "%20"));
        let response = crate::types::HttpResponse {
            status: 200,
            headers: vec![("x-echo".into(), body.clone())],
            body: body.into_bytes(),
        };
        let clean = redact_echoes(response, std::slice::from_ref(&secret));
        let text = String::from_utf8_lossy(&clean.body).into_owned();
        for spelling in [secret.as_str(), json, ascii_json.as_str(), form.as_str()] {
            prop_assert!(!text.contains(spelling), "{:?} still in {:?}", spelling, text);
            prop_assert!(!clean.headers[0].1.contains(spelling), "{:?} still in the header", spelling);
        }
    }
}
