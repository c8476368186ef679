//! What a hostile plugin puts in its webhook reply: the check answers an error or a reply the
//! HTTP server can send as it is (a final status, valid header names and values, none of the
//! framing headers the server sets nor any that acts on the host's whole origin, no body where
//! the status forbids one, within the count and size limits).

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use plugboard::runtime::reply::{
    self, HOST_OWNED_HEADERS, MAX_REPLY_HEADER_BYTES, MAX_REPLY_HEADERS, ORIGIN_WIDE_HEADERS,
};

#[derive(Arbitrary, Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fuzz_target!(|r: Reply| {
    let asked: Vec<String> = r.headers.iter().map(|(name, _)| name.to_ascii_lowercase()).collect();
    let Ok(checked) = reply::check(r.status, r.headers, r.body) else { return };
    for name in &asked {
        let name = name.as_str();
        assert!(!HOST_OWNED_HEADERS.contains(&name), "{name} frames the response");
        assert!(!ORIGIN_WIDE_HEADERS.contains(&name) && name != "link", "{name} acts on the whole origin");
    }
    assert!(
        !matches!(checked.status, 204 | 304) || checked.body.is_empty(),
        "a {} with a body",
        checked.status
    );
    let mut response = http::Response::builder().status(checked.status);
    let mut bytes = 0;
    for (name, value) in &checked.headers {
        assert!(!HOST_OWNED_HEADERS.contains(&name.as_str()), "{name} frames the response");
        bytes += name.len() + value.len();
        response = response.header(name, value);
    }
    assert!(checked.headers.len() <= MAX_REPLY_HEADERS && bytes <= MAX_REPLY_HEADER_BYTES);
    let response = response.body(checked.body).expect("a checked reply is a valid response");
    assert!(!response.status().is_informational(), "{}", response.status());
});
