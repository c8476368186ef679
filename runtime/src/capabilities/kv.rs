//! The `kv` capability: each instance's own key-value namespace.
//!
//! Storage sits behind the key-value port, [`KvStore`] (in [`crate::keyvalue`]), so that an
//! embedder (or the durable store) can supply its own. The namespace is the instance id, chosen
//! by the host, so a plugin can never name another instance's keys.

use std::time::Duration;

use wasmtime::component::{HasData, Linker};

use crate::bindings::kv::{self as wit, Host};
use crate::bindings::types::Error;
use crate::capabilities::{Capability, Scope};
pub use crate::keyvalue::{KvError, KvQuota, KvStore, MAX_KEY_BYTES, MAX_VALUE_BYTES, MemoryKv};
use crate::tape::{on_tape, play, play_weighed};

/// What a `kv` call sees: the caller and the store its namespace lives in.
pub struct KvView<'a> {
    pub(crate) scope: Scope<'a>,
    pub(crate) store: &'a dyn KvStore,
}

impl<'a> KvView<'a> {
    /// The view of `store` for the caller `scope`; the namespace is the instance id.
    pub fn new(scope: Scope<'a>, store: &'a dyn KvStore) -> Self {
        KvView { scope, store }
    }

    fn quota(&self) -> KvQuota {
        KvQuota { max_keys: self.scope.limits.kv_max_keys, max_bytes: self.scope.limits.kv_max_bytes }
    }
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Adds the `kv` interface to `linker`; `get` borrows the view from the store's state.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasKv>(linker, get)
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(Error::InvalidInput(format!("a key must be 1 to {MAX_KEY_BYTES} bytes")));
    }
    Ok(())
}

impl From<KvError> for Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::NotACounter(_) | KvError::Overflow(_) => Error::InvalidInput(e.to_string()),
            KvError::QuotaExceeded(_) => Error::QuotaExceeded(e.to_string()),
            KvError::Backend(_) => Error::Internal(e.to_string()),
        }
    }
}

impl Host for KvView<'_> {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        let taped = on_tape(self.scope.tape, &(&key,), 0);
        let live = async {
            self.scope.require(Capability::Kv)?;
            check_key(&key)?;
            Ok(self.store.get(self.scope.instance, &key).await?)
        };
        play_weighed(taped, "kv.get", live, |value: &Option<Vec<u8>>| value.as_ref().map_or(0, Vec::len))
            .await
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), Error> {
        let taped = on_tape(self.scope.tape, &(&key, &value, ttl_ms), value.len());
        play(taped, "kv.set", async {
            self.scope.require(Capability::Kv)?;
            check_key(&key)?;
            if value.len() > MAX_VALUE_BYTES {
                return Err(Error::InvalidInput(format!("a value may be at most {MAX_VALUE_BYTES} bytes")));
            }
            Ok(self
                .store
                .set(self.scope.instance, &key, value, ttl_ms.map(Duration::from_millis), self.quota())
                .await?)
        })
        .await
    }

    async fn delete(&mut self, key: String) -> Result<bool, Error> {
        let taped = on_tape(self.scope.tape, &(&key,), 0);
        play(taped, "kv.delete", async {
            self.scope.require(Capability::Kv)?;
            check_key(&key)?;
            Ok(self.store.delete(self.scope.instance, &key).await?)
        })
        .await
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, Error> {
        let taped = on_tape(self.scope.tape, &(&key, delta), 0);
        play(taped, "kv.increment", async {
            self.scope.require(Capability::Kv)?;
            check_key(&key)?;
            Ok(self.store.increment(self.scope.instance, &key, delta, self.quota()).await?)
        })
        .await
    }
}
