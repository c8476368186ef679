//! What the tests that run `plugboard up` processes share: waiting for a server, and signing a
//! webhook as Shopify does.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};

/// Waits until the server at `base` answers `/healthz` (a minute at most).
pub async fn wait_healthy(client: &reqwest::Client, base: &str) {
    for _ in 0..1_200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not become healthy");
}

/// The `X-Shopify-Hmac-SHA256` header of `body` under `secret`.
pub fn shopify_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}
