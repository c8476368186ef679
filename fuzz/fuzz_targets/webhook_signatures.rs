//! A hostile sender: arbitrary headers and body against every verification scheme. The sender
//! does not know the instance's secrets, so any request that verifies is a forgery; a panic is a
//! crash of the webhook handler.

#![no_main]

use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use plugboard::ingress::verify::{Encoding, HmacScheme, SCHEME_HEADERS, Scheme, Verifier};

#[derive(Arbitrary, Debug)]
struct Forgery<'a> {
    scheme: u8,
    hmac_base64: bool,
    hmac_prefix: &'a str,
    hmac_timestamped: bool,
    hmac_signed_content: &'a str,
    headers: Vec<(u8, &'a [u8])>,
    body: &'a [u8],
    /// Seconds after a fixed instant, so timestamps can land inside the window.
    now: u32,
}

fn scheme(f: &Forgery) -> Scheme {
    match f.scheme % 6 {
        0 => Scheme::Shopify,
        1 => Scheme::Slack,
        2 => Scheme::Stripe,
        3 => Scheme::Github,
        4 => Scheme::StandardWebhooks,
        _ => Scheme::Hmac(HmacScheme {
            header: "X-Signature".into(),
            encoding: if f.hmac_base64 { Encoding::Base64 } else { Encoding::Hex },
            prefix: f.hmac_prefix.into(),
            timestamp_header: f.hmac_timestamped.then(|| "X-Timestamp".into()),
            signed_content: f.hmac_signed_content.into(),
        }),
    }
}

fuzz_target!(|f: Forgery| {
    let secrets = match f.scheme % 6 {
        4 => vec![b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_vec()],
        _ => vec![b"fuzz-secret-one".to_vec(), b"fuzz-secret-two".to_vec()],
    };
    let Ok(verifier) = Verifier::new(scheme(&f), secrets) else { return };
    let mut headers = http::HeaderMap::new();
    for (name, value) in &f.headers {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            headers.append(SCHEME_HEADERS[usize::from(*name) % SCHEME_HEADERS.len()], value);
        }
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + u64::from(f.now));
    if let Ok(verified) = verifier.verify(&headers, f.body, now) {
        panic!("a forgery verified under {:?}: {verified:?}", verifier.scheme());
    }
});
