//! The embedder's hook on outbound HTTP, as Spin's outbound-http factor offers one: it sees each
//! request a plugin sends once the request met every limit a real one meets (the grant, the
//! allow-list, the request slots, the rate-limit token, which secrets may go where) and before
//! the host fills in any secret, and it may answer the request itself (a test double, a cache,
//! a gateway of the embedder's own) or let it go out. It decides within the invocation's
//! deadline or the request fails with `timeout`. What it answers reaches the plugin within the
//! same limits as a real answer, and is recorded in the call log as `intercepted`.

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
    /// The method, as the host parsed it.
    pub method: &'a str,
    /// The URL as the host parsed it and the allow-list admitted it: match on this (its host is
    /// lower case, its default port implied), not on the plugin's spelling in `request.url`.
    pub url: &'a url::Url,
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
