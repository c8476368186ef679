//! The `config` capability: the values the operator set for this instance.

use crate::InstanceState;
use crate::bindings::config::Host;
use crate::bindings::types::Error;
use crate::capabilities::Capability;

impl Host for InstanceState {
    async fn get(&mut self, key: String) -> Result<Option<String>, Error> {
        self.require(Capability::Config)?;
        Ok(self.plugin.config.get(&key).cloned())
    }

    async fn get_all(&mut self) -> Result<Vec<(String, String)>, Error> {
        self.require(Capability::Config)?;
        Ok(self.plugin.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}
