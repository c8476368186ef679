//! Property tests of the server's boundaries: what arrives from a webhook sender or a config
//! file is arbitrary, and each boundary must answer it with a value or a clear error, never
//! a panic, and keep its promise. They run in `cargo test` with a fixed number of cases (so CI
//! spends a bounded time on them); failures proptest finds are kept in
//! `host/proptest-regressions/` and replayed first on every later run.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use crate::ingress::verify::{Scheme, Verifier};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 512, ..ProptestConfig::default() }
}

fn schemes() -> Vec<Scheme> {
    vec![
        Scheme::Shopify,
        Scheme::Slack,
        Scheme::Stripe,
        Scheme::Github,
        Scheme::StandardWebhooks,
        Scheme::Hmac(crate::ingress::verify::HmacScheme {
            header: "X-Signature".into(),
            encoding: crate::ingress::verify::Encoding::Hex,
            prefix: "sha256=".into(),
            timestamp_header: Some("X-Timestamp".into()),
            signed_content: "{timestamp}.{body}".into(),
        }),
    ]
}

/// Header values as a sender may write them: printable ASCII with the characters signature
/// formats split on, and sometimes a real-looking prefix.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,200}", "(v0=|v1,|sha256=|t=[0-9]{1,12},v1=)[0-9a-fA-F=+/,]{0,100}", "[0-9]{0,25}",]
}

proptest! {
    #![proptest_config(config())]

    /// Forged deliveries: any header values and body are refused with an error, never a panic.
    #[test]
    fn verifiers_refuse_forgeries_without_panicking(
        values in proptest::collection::vec(proptest::option::of(header_value()), crate::ingress::verify::SCHEME_HEADERS.len()),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        now_secs in 0u64..=u64::from(u32::MAX) * 4,
    ) {
        let mut headers = http::HeaderMap::new();
        for (name, value) in crate::ingress::verify::SCHEME_HEADERS.iter().zip(values) {
            if let Some(value) = value.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
                headers.insert(*name, value);
            }
        }
        let now = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(now_secs)).unwrap_or(SystemTime::UNIX_EPOCH);
        for scheme in schemes() {
            let secret = b"whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0".to_vec();
            let verifier = Verifier::new(scheme.clone(), vec![secret]).unwrap();
            prop_assert!(verifier.verify(&headers, &body, now).is_err(), "{scheme:?} accepted a forgery");
        }
    }

    /// A genuine GitHub signature verifies; any change to the body breaks it.
    #[test]
    fn a_signature_covers_every_byte_of_the_body(
        secret in proptest::collection::vec(any::<u8>(), 1..64),
        body in proptest::collection::vec(any::<u8>(), 1..512),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
        mac.update(&body);
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let mut headers = http::HeaderMap::new();
        headers.insert("x-hub-signature-256", http::HeaderValue::from_str(&signature).unwrap());
        let verifier = Verifier::new(Scheme::Github, vec![secret]).unwrap();
        prop_assert!(verifier.verify(&headers, &body, SystemTime::now()).is_ok());
        let mut tampered = body.clone();
        let i = flip.index(tampered.len());
        tampered[i] ^= 1 << bit;
        prop_assert!(verifier.verify(&headers, &tampered, SystemTime::now()).is_err());
    }

    /// Arbitrary configuration text is parsed or refused with an error, never a panic.
    #[test]
    fn arbitrary_configuration_text_never_panics(text in "(\\[[a-z.\\[\\]]{0,12}\\]\\n|[a-z_]{1,12} = (\"[ -~]{0,12}\"|[0-9]{1,6}|\\[\\]|\\{ \\})\\n){0,12}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugboard.toml");
        std::fs::write(&path, &text).unwrap();
        let _ = crate::config::Resolved::load(&path);
    }
}
