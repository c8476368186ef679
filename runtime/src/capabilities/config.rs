//! The `config` capability: the values the operator set for this instance.

use std::collections::BTreeMap;

use wasmtime::component::{HasData, Linker};

use crate::bindings::config::{self as wit, Host};
use crate::bindings::types::Error;
use crate::capabilities::{Capability, Scope};
use crate::tape::{on_tape, play};

/// What a `config` call sees: the caller and its instance's values.
pub struct ConfigView<'a> {
    pub(crate) scope: Scope<'a>,
    pub(crate) values: &'a BTreeMap<String, String>,
}

impl<'a> ConfigView<'a> {
    /// The view of `values` for the caller `scope`.
    pub fn new(scope: Scope<'a>, values: &'a BTreeMap<String, String>) -> Self {
        ConfigView { scope, values }
    }
}

struct HasConfig;

impl HasData for HasConfig {
    type Data<'a> = ConfigView<'a>;
}

/// Adds the `config` interface to `linker`; `get` borrows the view from the store's state.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> ConfigView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasConfig>(linker, get)
}

impl Host for ConfigView<'_> {
    async fn get(&mut self, key: String) -> Result<Option<String>, Error> {
        let taped = on_tape(self.scope.tape, &(&key,), 0);
        play(taped, "config.get", async {
            self.scope.require(Capability::Config)?;
            Ok(self.values.get(&key).cloned())
        })
        .await
    }

    async fn get_all(&mut self) -> Result<Vec<(String, String)>, Error> {
        let taped = on_tape(self.scope.tape, &(), 0);
        play(taped, "config.get-all", async {
            self.scope.require(Capability::Config)?;
            Ok(self.values.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        })
        .await
    }
}
