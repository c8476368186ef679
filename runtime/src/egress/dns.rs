//! Name resolution with the address policy applied to every answer, inside the connector: the
//! address that is checked is the address that is dialled, so a name that re-resolves to an
//! internal address between a check and the connection (DNS rebinding) gains nothing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::egress::policy::address_allowed;

/// Names answered without asking DNS (for tests and for operators who pin addresses). The
/// address policy still applies to them.
pub(crate) type Overrides = Arc<RwLock<HashMap<String, Vec<IpAddr>>>>;

/// A name resolved only to addresses the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {addr}, an internal address this instance may not reach")]
pub(crate) struct BlockedAddress {
    pub(crate) host: String,
    pub(crate) addr: IpAddr,
}

/// The resolver of one client: the system resolver, refusing internal addresses except for
/// the names its grant lists.
pub struct GuardedResolver {
    pub(crate) internal_names: Vec<String>,
    pub(crate) overrides: Overrides,
}

impl GuardedResolver {
    /// A resolver that refuses internal addresses except for `internal_names` (lower case):
    /// the `allow_internal` names of a grant, see [`HttpGrant::internal_names`](crate::HttpGrant::internal_names).
    pub fn new(internal_names: Vec<String>) -> GuardedResolver {
        GuardedResolver { internal_names, overrides: Overrides::default() }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let pinned = self.overrides.read().ok().and_then(|o| o.get(&host).cloned());
        let trusted = self.internal_names.contains(&host);
        Box::pin(async move {
            let addrs: Vec<IpAddr> = match pinned {
                Some(addrs) => addrs,
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect(),
            };
            let (usable, blocked): (Vec<IpAddr>, Vec<IpAddr>) =
                addrs.into_iter().partition(|ip| trusted || address_allowed(*ip, &[]));
            if usable.is_empty() {
                return match blocked.first() {
                    Some(addr) => Err(Box::new(BlockedAddress { host, addr: *addr }) as _),
                    None => Err(format!("{host} has no addresses").into()),
                };
            }
            let addrs: Addrs = Box::new(usable.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The policy refusal somewhere in `error`'s chain of causes, if that is why it failed.
pub fn blocked_cause(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(blocked) = e.downcast_ref::<BlockedAddress>() {
            return Some(blocked.to_string());
        }
        cause = e.source();
    }
    None
}
