//! The embedder's hook on outbound HTTP, as Spin's outbound-http factor offers one: it sees each
//! request a plugin sends once the grant and the allow-list admitted it, and before the host
//! fills in any secret, and it may answer the request itself (a test double, a cache, a gateway
//! of the embedder's own) or let it go out. What it answers reaches the plugin within the same
//! limits as a real answer, and is recorded in the call log as `intercepted`.

use std::future::Future;
use std::pin::Pin;

use crate::bindings::types::{HttpRequest, HttpResponse};

/// A request on its way out, as the interceptor sees it.
#[derive(Debug)]
pub struct Outbound<'a> {
    /// The instance sending it.
    pub instance: &'a str,
    /// The event being handled, if any.
    pub event_id: Option<&'a str>,
    /// The request as the plugin wrote it: `{{secret:NAME}}` placeholders not yet filled in.
    pub request: &'a HttpRequest,
}

/// What the interceptor decided.
#[derive(Debug)]
pub enum Interception {
    /// Send the request as usual.
    Continue,
    /// Answer the plugin with this response; nothing goes out.
    Respond(HttpResponse),
}

/// The interceptor's answer, on its way.
pub type Deciding<'a> = Pin<Box<dyn Future<Output = Interception> + Send + 'a>>;

/// Sees every admitted outbound request before it goes out; see the module documentation.
/// Set with [`HostBuilder::outbound_interceptor`](crate::HostBuilder::outbound_interceptor).
pub trait OutboundInterceptor: Send + Sync + 'static {
    /// Decides what happens to `outbound`.
    fn intercept<'a>(&'a self, outbound: Outbound<'a>) -> Deciding<'a>;
}
