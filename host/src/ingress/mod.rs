//! Where a webhook enters: the `/hooks/{instance}` endpoint ([`webhook`]) and the providers'
//! signature schemes it verifies on the raw body bytes ([`verify`]), before any plugin sees the
//! request.

pub mod verify;
pub mod webhook;

pub use webhook::{BUILD, Endpoint, Webhooks, router};
