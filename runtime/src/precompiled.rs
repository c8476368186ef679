//! Precompiled components: what `plugboard plugin compile` writes, so that the first load of a
//! large component (18 MB for a Python one) does not spend seconds compiling it.
//!
//! Compiled code is native code, which wasmtime maps and runs without validating it again: loading
//! a file from someone else would let them run anything outside the sandbox. So the host loads an
//! artifact only (1) where the operator pinned the file's SHA-256 in the instance's
//! `precompiled` (their statement that they trust that exact file: their build compiled it),
//! (2) when its header names the instance's component by digest, and (3) when it was compiled for
//! this engine's settings (wasmtime version, target, tunables); wasmtime checks its own header
//! after ours. Each refusal says which, and how to make a good artifact. The header is written by
//! whoever made the file, so (2) and (3) catch mistakes, not forgeries: the pin is the only trust,
//! and an artifact someone else compiled is as trustworthy as a native program from them.
//!
//! A pinned artifact's code serves its own instance only: it is not shared with other instances
//! of the same component through the host's table of compiled components.
//!
//! The format: the line `plugboard-precompiled/1`, one line of JSON ([`Header`]), then the bytes
//! wasmtime's `Engine::precompile_component` wrote.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::compile_cache::engine_key;
use crate::spec::Precompiled;

const MAGIC: &[u8] = b"plugboard-precompiled/1\n";
/// A header longer than this is not one of ours.
const MAX_HEADER: usize = 4096;
/// The largest artifact read: well above the compiled code of an 18 MB component (35 MB), and
/// a bound on what a file swapped in place of the pinned one can make the host hold before its
/// digest is refused.
const MAX_ARTIFACT: u64 = 1 << 30;

/// What an artifact says about itself.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Header {
    /// The SHA-256 of the component it was compiled from.
    component_sha256: String,
    /// The engine settings it was compiled for ([`engine_key`]).
    engine: String,
    /// The plugboard release that compiled it, for the error message.
    plugboard: String,
}

impl Header {
    /// Whether its fields are what [`compile`] writes: lower-case hex digests and a short
    /// version. Anything else is not one of ours, and its text never reaches a message or a log.
    fn is_well_formed(&self) -> bool {
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        hex(&self.component_sha256, 64)
            && hex(&self.engine, 16)
            && !self.plugboard.is_empty()
            && self.plugboard.len() <= 32
            && self.plugboard.bytes().all(|b| b.is_ascii_alphanumeric() || b".-+".contains(&b))
    }
}

/// Why an artifact was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum PrecompiledError {
    /// The file is not the one the operator pinned.
    #[error(
        "{path} has SHA-256 {actual}, not the pinned {pinned}: plugboard runs only the compiled code the operator pinned"
    )]
    NotPinned {
        /// The artifact.
        path: String,
        /// The digest in the configuration.
        pinned: String,
        /// The file's digest.
        actual: String,
    },
    /// The file is not an artifact.
    #[error("{path} is not a precompiled plugboard component (`plugboard plugin compile` writes them)")]
    NotAnArtifact {
        /// The artifact.
        path: String,
    },
    /// It was compiled from another component.
    #[error(
        "{path} was compiled from component {compiled_from}, not from this instance's ({component}): compile the instance's component"
    )]
    OtherComponent {
        /// The artifact.
        path: String,
        /// The digest its header names.
        compiled_from: String,
        /// The instance's component's digest.
        component: String,
    },
    /// It was compiled for another engine: another wasmtime, target or settings.
    #[error(
        "{path} was compiled by plugboard {plugboard} for another engine configuration ({theirs}; this host's is {ours}): \
         compile it again with this plugboard, and with `--config` naming the configuration that loads it \
         (fuel metering is part of the engine's settings)"
    )]
    OtherEngine {
        /// The artifact.
        path: String,
        /// The release that compiled it.
        plugboard: String,
        /// Its engine key.
        theirs: String,
        /// This host's engine key.
        ours: String,
    },
    /// wasmtime refused the compiled code.
    #[error("{path}: {reason}")]
    Refused {
        /// The artifact.
        path: String,
        /// wasmtime's reason.
        reason: String,
    },
}

/// Compiles `component` for `engine` into an artifact.
pub(crate) fn compile(engine: &Engine, component: &[u8]) -> wasmtime::Result<Vec<u8>> {
    let compiled = engine.precompile_component(component)?;
    let header = Header {
        component_sha256: hex::encode(Sha256::digest(component)),
        engine: engine_key(engine),
        plugboard: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let mut out = MAGIC.to_vec();
    out.extend(serde_json::to_vec(&header)?);
    out.push(b'\n');
    out.extend(compiled);
    Ok(out)
}

/// Loads the artifact `pin` names for the component whose digest is `component_sha256`.
pub(crate) fn load(
    engine: &Engine,
    pin: &Precompiled,
    component_sha256: &str,
) -> Result<Component, PrecompiledError> {
    let path = pin.path.display().to_string();
    let bytes =
        read_bounded(&pin.path).map_err(|reason| PrecompiledError::Refused { path: path.clone(), reason })?;
    let code = check(engine, pin, component_sha256, &bytes)?;
    deserialize(engine, code).map_err(|e| PrecompiledError::Refused { path, reason: format!("{e:#}") })
}

/// The file at `path`: a regular file (not a pipe or a device, which could block or never end)
/// of at most [`MAX_ARTIFACT`] bytes, read through the handle that was checked.
fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    // Checked before opening too: opening a named pipe for reading waits for a writer.
    if !std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?.is_file() {
        return Err("it is not a regular file".into());
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.len() > MAX_ARTIFACT {
        return Err(format!("it is larger than {MAX_ARTIFACT} bytes"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_ARTIFACT + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_ARTIFACT {
        return Err(format!("it is larger than {MAX_ARTIFACT} bytes"));
    }
    Ok(bytes)
}

/// The compiled code in `bytes`, once the pin, the component and the engine match.
fn check<'a>(
    engine: &Engine,
    pin: &Precompiled,
    component_sha256: &str,
    bytes: &'a [u8],
) -> Result<&'a [u8], PrecompiledError> {
    let path = pin.path.display().to_string();
    let actual = hex::encode(Sha256::digest(bytes));
    if actual != pin.sha256 {
        return Err(PrecompiledError::NotPinned { path, pinned: pin.sha256.clone(), actual });
    }
    let not_ours = || PrecompiledError::NotAnArtifact { path: path.clone() };
    let rest = bytes.strip_prefix(MAGIC).ok_or_else(not_ours)?;
    let end = rest.iter().take(MAX_HEADER).position(|&b| b == b'\n').ok_or_else(not_ours)?;
    let header: Header = serde_json::from_slice(&rest[..end]).map_err(|_| not_ours())?;
    if !header.is_well_formed() {
        return Err(not_ours());
    }
    if header.component_sha256 != component_sha256 {
        return Err(PrecompiledError::OtherComponent {
            path,
            compiled_from: header.component_sha256,
            component: component_sha256.to_owned(),
        });
    }
    let ours = engine_key(engine);
    if header.engine != ours {
        return Err(PrecompiledError::OtherEngine {
            path,
            plugboard: header.plugboard,
            theirs: header.engine,
            ours,
        });
    }
    Ok(&rest[end + 1..])
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, code: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires bytes that wasmtime itself serialized, because the code in them
    // runs without re-validation. These are the bytes of the file the operator pinned by digest
    // (checked above), which names this instance's component and this engine's settings; wasmtime
    // checks its own header, version and settings next, and refuses a foreign or truncated
    // payload instead of running it. The bytes are copied into memory wasmtime owns, so the file
    // changing afterwards changes nothing.
    unsafe { Component::deserialize(engine, code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin_for(bytes: &[u8]) -> Precompiled {
        Precompiled { path: "x.cwasm".into(), sha256: hex::encode(Sha256::digest(bytes)) }
    }

    fn good_copy(h: &Header) -> Header {
        Header {
            component_sha256: h.component_sha256.clone(),
            engine: h.engine.clone(),
            plugboard: h.plugboard.clone(),
        }
    }

    fn artifact(header: &Header) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(serde_json::to_vec(header).unwrap());
        out.push(b'\n');
        out.extend(b"compiled code");
        out
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_bounded(dir.path()).unwrap_err(), "it is not a regular file");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        // Refused at once: no writer is waited for.
        assert_eq!(read_bounded(&fifo).unwrap_err(), "it is not a regular file");
        let file = dir.path().join("a.cwasm");
        std::fs::write(&file, b"bytes").unwrap();
        assert_eq!(read_bounded(&file).unwrap(), b"bytes");
        assert!(read_bounded(&dir.path().join("missing")).unwrap_err().starts_with("cannot read it"));
    }

    #[test]
    fn only_the_pinned_artifact_of_this_component_for_this_engine_passes() {
        let engine = Engine::default();
        let good = Header {
            component_sha256: "c".repeat(64),
            engine: engine_key(&engine),
            plugboard: "0.1.0".into(),
        };
        let bytes = artifact(&good);
        assert_eq!(check(&engine, &pin_for(&bytes), &"c".repeat(64), &bytes).unwrap(), b"compiled code");

        // A file other than the pinned one.
        let mut pin = pin_for(&bytes);
        pin.sha256 = "0".repeat(64);
        assert!(matches!(
            check(&engine, &pin, &"c".repeat(64), &bytes),
            Err(PrecompiledError::NotPinned { .. })
        ));
        // Compiled from another component.
        let e = check(&engine, &pin_for(&bytes), &"d".repeat(64), &bytes).unwrap_err();
        assert!(matches!(e, PrecompiledError::OtherComponent { .. }), "{e}");
        // For another engine: the message says what to do.
        let other = Header { engine: "0123456789abcdef".into(), ..good_copy(&good) };
        let bytes = artifact(&other);
        let e = check(&engine, &pin_for(&bytes), &"c".repeat(64), &bytes).unwrap_err();
        assert!(e.to_string().contains("compile it again with this plugboard"), "{e}");
        // A header whose fields are not what plugboard writes: they would end up in error messages
        // and logs (a terminal escape, a line break), so the file is not one of ours.
        let odd = [
            Header { plugboard: "0.1.0\u{1b}[2J".into(), ..good_copy(&good) },
            Header { component_sha256: "c\n".repeat(32), ..good_copy(&good) },
            Header { engine: "not hex".into(), ..good_copy(&good) },
        ];
        for header in odd {
            let bytes = artifact(&header);
            let e = check(&engine, &pin_for(&bytes), &"c".repeat(64), &bytes).unwrap_err();
            assert!(matches!(e, PrecompiledError::NotAnArtifact { .. }), "{e}");
        }
        // Not an artifact at all, even when pinned.
        for junk in [
            &b"\0asm\x0d\0\x01\0"[..],
            b"plugboard-precompiled/1\n{not json}\n",
            b"plugboard-precompiled/1\n",
        ] {
            let e = check(&engine, &pin_for(junk), &"c".repeat(64), junk).unwrap_err();
            assert!(matches!(e, PrecompiledError::NotAnArtifact { .. }), "{e}");
        }
    }
}
