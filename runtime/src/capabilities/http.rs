//! The `http` capability: outbound requests sent by the host on a plugin's behalf. This module
//! checks the grant and the per-invocation count; everything else (allow-list, address policy,
//! secrets, rate limits, retries, the call log) is [`crate::egress`].

use wasmtime::component::{HasData, Linker};

use crate::bindings::http::{self as wit, Host};
use crate::bindings::types::{Error, HttpRequest, HttpResponse};
use crate::capabilities::{Capability, Scope};
use crate::egress::{Caller, Egress, InstanceEgress};
use crate::tape::{on_tape, play_weighed};

/// What an `http` call sees: the caller, the host's egress and the instance's share of it (its
/// concurrency slots and rate-limit buckets), and the requests the invocation sent so far.
pub struct HttpView<'a> {
    pub(crate) scope: Scope<'a>,
    pub(crate) egress: &'a Egress,
    pub(crate) instance: &'a InstanceEgress,
    pub(crate) sent: &'a mut u32,
}

struct HasHttp;

impl HasData for HasHttp {
    type Data<'a> = HttpView<'a>;
}

/// Adds the `http` interface to `linker`; `get` borrows the view from the store's state.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> HttpView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasHttp>(linker, get)
}

impl Host for HttpView<'_> {
    async fn send(&mut self, request: HttpRequest) -> Result<HttpResponse, Error> {
        let taped = on_tape(self.scope.tape, &(&request,), request.body.len());
        play_weighed(
            taped,
            "http.send",
            async {
                self.scope.require(Capability::Http)?;
                let limits = self.scope.limits;
                if *self.sent >= limits.max_http_requests {
                    return Err(Error::Denied(format!(
                        "an invocation may send at most {} HTTP requests",
                        limits.max_http_requests
                    )));
                }
                *self.sent += 1;
                let caller = Caller {
                    instance: self.scope.instance,
                    event_id: self.scope.event_id,
                    grants: self.scope.grants,
                    limits,
                    state: self.instance,
                    deadline: self.scope.deadline,
                };
                self.egress.send(&caller, request).await
            },
            |response| response.body.len(),
        )
        .await
    }
}
