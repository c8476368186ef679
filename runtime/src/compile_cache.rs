//! Compiled plugin code cached on disk, so that a restart does not recompile.
//!
//! An entry is keyed by the component's SHA-256 and by a hash of the engine's settings (wasmtime
//! version, target, tunables), so a changed plugin or a changed host never loads stale code.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether a component came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded compiled code from disk.
    Hit,
    /// Loaded from the precompiled artifact the operator pinned.
    Precompiled,
    /// Compiled now (and stored, if a cache directory is set).
    Miss,
}

pub(crate) struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    pub(crate) fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(CompileCache { dir: dir.to_owned(), engine_key: engine_key(engine) })
    }

    fn entry(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// Loads the compiled form of the component with digest `sha256`, or compiles `bytes` and
    /// stores the result. A damaged entry is replaced, never trusted.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.entry(sha256);
        if path.exists() {
            match deserialize(engine, &path) {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable compile cache entry: {e}")
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), "could not write the compile cache: {e}");
        }
        Ok((component, CacheOutcome::Miss))
    }

    fn store(&self, path: &Path, component: &Component) -> wasmtime::Result<()> {
        let compiled = component.serialize()?;
        // Write then rename, so a crash never leaves a half-written entry under the real name.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, compiled)?;
        // Read-only: nobody should rewrite an entry in place (see `deserialize`).
        let mut permissions = std::fs::metadata(&tmp)?.permissions();
        permissions.set_readonly(true);
        std::fs::set_permissions(&tmp, permissions)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// A short name for the engine's settings that compiled code depends on (wasmtime version,
/// target, tunables): code compiled under another key must not be loaded.
pub(crate) fn engine_key(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires a file that wasmtime itself serialized, because the code in it
    // is mapped and runs without re-validation. Entries are written only by `store` above into
    // the operator's cache directory, read-only, under a name that binds the component's digest
    // and this engine's settings; wasmtime checks its own header and version before use, and a
    // truncated or foreign file fails that check instead of running. The file is mapped, not
    // copied (a large component loads in a few milliseconds instead of tens): entries are
    // replaced by rename, never rewritten in place, since a mapped file truncated under a
    // running host would crash it.
    unsafe { Component::deserialize_file(engine, path) }
}
