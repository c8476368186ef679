//! The `http` capability: outbound requests sent by the host on a plugin's behalf. This module
//! checks the grant and the per-invocation count; everything else (allow-list, address policy,
//! secrets, rate limits, retries, the call log) is [`crate::egress`].

use crate::InstanceState;
use crate::bindings::http::Host;
use crate::bindings::types::{Error, HttpRequest, HttpResponse};
use crate::capabilities::Capability;
use crate::egress::Caller;

impl Host for InstanceState {
    async fn send(&mut self, request: HttpRequest) -> Result<HttpResponse, Error> {
        self.require(Capability::Http)?;
        let limits = &self.plugin.limits;
        if self.http_requests >= limits.max_http_requests {
            return Err(Error::Denied(format!(
                "an invocation may send at most {} HTTP requests",
                limits.max_http_requests
            )));
        }
        self.http_requests += 1;
        let caller = Caller {
            instance: &self.plugin.id,
            event_id: self.event_id.as_deref(),
            grants: &self.plugin.grants,
            limits,
            state: &self.plugin.egress,
            deadline: self.deadline,
        };
        self.host.egress.send(&caller, request).await
    }
}
