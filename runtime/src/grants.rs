//! What an operator grants one plugin instance ([`Grants`], from the manifest), and the
//! conversion from the capabilities a component's metadata names. The checks that apply a grant
//! live with each capability and in [`crate::egress::policy`].

pub use plugboard_manifest::grants::{Capability, DestinationLimit, Grants, HttpGrant, LimitScope};

use crate::bindings::types::Capability as WitCapability;

impl From<WitCapability> for Capability {
    fn from(c: WitCapability) -> Self {
        match c {
            WitCapability::Http => Capability::Http,
            WitCapability::Kv => Capability::Kv,
            WitCapability::Log => Capability::Log,
            WitCapability::Emit => Capability::Emit,
            WitCapability::Ai => Capability::Ai,
            WitCapability::Config => Capability::Config,
        }
    }
}
