//! Where webhooks enter: verification of each provider's signature scheme, on the raw body
//! bytes, before any plugin sees the request.

pub mod server;
pub mod stream;
pub mod verify;
