//! Host capabilities: one module per interface a plugin may import, shaped like wasmtime's own
//! (`wasmtime-wasi-config`, `wasmtime-wasi-http`). Each module owns the state its interface
//! keeps for an invocation, offers a view of it (`KvView`, `LogView`, ...) and an
//! `add_to_linker(linker, get)`, and never names the store's state type: the runtime composes
//! them in its linker ([`crate::Host`]), and another program could compose them in its own.
//!
//! Every capability call starts with [`Scope::require`], so a plugin that reaches for a
//! capability its operator did not grant gets `error::denied`, a value it can handle, rather than
//! a trap that looks like a bug.

pub mod ai;
pub mod ai_tools;
pub mod config;
pub mod emit;
pub mod http;
pub mod kv;
pub mod log;

use std::collections::BTreeSet;

use wasmtime::component::{HasData, Linker};

use crate::bindings::types::Error as WitError;
use crate::bindings::{ai_types_host, types_host};
use crate::limits::Limits;

pub use crate::grants::{Capability, Grants, HttpGrant};

/// Who is calling a capability, and on what terms: the part every view shares, borrowed from
/// the store's state for one host call.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    /// The instance id.
    pub instance: &'a str,
    /// The capabilities both granted and requested: the only ones that answer.
    pub effective: &'a BTreeSet<Capability>,
    /// The operator's grants (destinations, secrets, AI provider and budget).
    pub grants: &'a Grants,
    /// The instance's limits.
    pub limits: &'a Limits,
    /// The event being handled, for log lines and the call log.
    pub event_id: Option<&'a str>,
    /// When the invocation must be over; host calls shorten their own timeouts to fit.
    pub deadline: tokio::time::Instant,
    /// The tape the invocation records to or replays from: every call goes through it.
    pub tape: Option<&'a crate::tape::Tape>,
}

impl Scope<'_> {
    /// Fails with `denied` unless `capability` is in the instance's effective set.
    pub fn require(&self, capability: Capability) -> Result<(), WitError> {
        if self.effective.contains(&capability) { Ok(()) } else { Err(denied(capability, self.instance)) }
    }
}

/// The error a capability call answers when its capability is not in the effective set.
pub(crate) fn denied(capability: Capability, instance: &str) -> WitError {
    WitError::Denied(format!("capability `{capability}` is not granted to instance `{instance}`"))
}

/// The contract's shared-type interfaces: they have no functions, but a component that imports
/// them needs them in the linker.
struct SharedTypes;

impl types_host::Host for SharedTypes {}
impl ai_types_host::Host for SharedTypes {}
impl crate::bindings::tool_types_host::Host for SharedTypes {}

impl HasData for SharedTypes {
    type Data<'a> = SharedTypes;
}

/// Adds the `types`, `ai-types` and `tool-types` interfaces to `linker`.
pub fn add_types_to_linker<T: Send + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    types_host::add_to_linker::<T, SharedTypes>(linker, |_| SharedTypes)?;
    ai_types_host::add_to_linker::<T, SharedTypes>(linker, |_| SharedTypes)?;
    crate::bindings::tool_types_host::add_to_linker::<T, SharedTypes>(linker, |_| SharedTypes)
}
