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

/// Senders posting numbered webhooks at once, each until told to stop or a send fails (its
/// server gone): what they had acknowledged is kept.
pub struct Senders {
    acked: std::sync::Arc<tokio::sync::Mutex<Vec<u32>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Senders {
    /// `count` senders; sender `s` sends numbers `s * 100_000 + i` in turn with `send`, which
    /// answers whether the webhook was acknowledged.
    pub fn start<F, Fut>(count: u32, send: F) -> Senders
    where
        F: Fn(u32) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let acked = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..count)
            .map(|s| {
                let (send, acked, stop) = (send.clone(), acked.clone(), stop.clone());
                tokio::spawn(async move {
                    for i in 0..100_000u32 {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let n = s * 100_000 + i;
                        if !send(n).await {
                            break;
                        }
                        acked.lock().await.push(n);
                    }
                })
            })
            .collect();
        Senders { acked, stop, tasks }
    }

    /// Waits until `count` webhooks were acknowledged (two minutes at most).
    pub async fn reach(&self, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while self.acked.lock().await.len() < count {
            let acked = self.acked.lock().await.len();
            assert!(std::time::Instant::now() < deadline, "only {acked} of {count} webhooks acknowledged");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops them; answers what was acknowledged.
    pub async fn stop(self) -> Vec<u32> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        self.acked.lock().await.clone()
    }
}
