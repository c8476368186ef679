//! The shape of the workspace, as the README promises it: what an embedder compiles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The packages `package` depends on to build and run (not its tests), by name.
fn dependencies(package: &str) -> Vec<String> {
    dependencies_with(package, &[])
}

/// [`dependencies`], with more arguments to `cargo tree` (features).
fn dependencies_with(package: &str, more: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(repo())
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "-p",
        ])
        .arg(package)
        .args(more)
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// An embedder who only runs plugins compiles no HTTP server, no database, no command-line
/// parser, no cron, no log subscriber, and not the server crate.
#[test]
fn the_runtime_crate_depends_on_no_server_database_or_cli() {
    let names = dependencies("plugboard-runtime");
    assert!(names.iter().any(|n| n == "wasmtime"), "cargo tree listed no wasmtime: {names:?}");
    for forbidden in ["axum", "rusqlite", "libsqlite3-sys", "clap", "cron", "tracing-subscriber", "plugboard"]
    {
        assert!(!names.iter().any(|n| n == forbidden), "plugboard-runtime depends on {forbidden}: {names:?}");
    }
}

/// The configuration file's types and checks need nothing at run time: no wasm engine, no async
/// runtime, no HTTP, no database, no CLI, no cron, and none of plugboard's other crates. The
/// runtime, the store and the server all read the same types from it.
#[test]
fn the_manifest_crate_is_data_and_checks_only() {
    let names = dependencies("plugboard-manifest");
    assert!(names.iter().any(|n| n == "serde"), "cargo tree listed no serde: {names:?}");
    for forbidden in [
        "wasmtime",
        "tokio",
        "reqwest",
        "axum",
        "rusqlite",
        "clap",
        "cron",
        "plugboard",
        "plugboard-runtime",
        "plugboard-store",
    ] {
        assert!(
            !names.iter().any(|n| n == forbidden),
            "plugboard-manifest depends on {forbidden}: {names:?}"
        );
    }
    let runtime = dependencies("plugboard-runtime");
    assert!(runtime.iter().any(|n| n == "plugboard-manifest"), "{runtime:?}");
}

/// The storage ports and the in-memory backend compile without SQLite (a backend of the ports
/// is an addition, not a rewrite), and no store depends on the server, its HTTP stack or the
/// CLI.
#[test]
fn the_store_crate_needs_sqlite_only_for_its_sqlite_backend() {
    let ports = dependencies_with("plugboard-store", &["--no-default-features"]);
    assert!(ports.iter().any(|n| n == "plugboard-runtime"), "{ports:?}");
    for forbidden in ["rusqlite", "libsqlite3-sys", "axum", "clap", "cron", "plugboard"] {
        assert!(!ports.iter().any(|n| n == forbidden), "the storage ports depend on {forbidden}: {ports:?}");
    }
    let with_sqlite = dependencies("plugboard-store");
    assert!(with_sqlite.iter().any(|n| n == "rusqlite"), "{with_sqlite:?}");
    for forbidden in ["axum", "clap", "cron", "plugboard"] {
        assert!(!with_sqlite.iter().any(|n| n == forbidden), "the store depends on {forbidden}");
    }
}

/// The server crate is a library an embedder can run inside their own program: the command
/// line (clap, the log subscriber) is the `plugboard-cli` crate's, which builds the binary.
#[test]
fn the_server_crate_has_no_command_line() {
    let names = dependencies("plugboard");
    assert!(names.iter().any(|n| n == "axum"), "cargo tree listed no axum: {names:?}");
    for forbidden in ["clap", "tracing-subscriber", "plugboard-cli"] {
        assert!(!names.iter().any(|n| n == forbidden), "the server crate depends on {forbidden}: {names:?}");
    }
    let cli = dependencies("plugboard-cli");
    assert!(cli.iter().any(|n| n == "plugboard") && cli.iter().any(|n| n == "clap"), "{cli:?}");
}

/// The embedding example builds against the runtime crate alone.
#[test]
fn the_embedding_example_depends_on_the_runtime_not_the_server() {
    let names = dependencies("plugboard-embedding");
    assert!(names.iter().any(|n| n == "plugboard-runtime"), "{names:?}");
    for forbidden in ["plugboard", "axum", "rusqlite"] {
        assert!(!names.iter().any(|n| n == forbidden), "the embedding example depends on {forbidden}");
    }
}

/// A module path inside one crate: `["egress", "policy"]`.
type ModulePath = Vec<String>;

/// `code` with its comments, string and character literals blanked out (line breaks kept), so
/// that only code is left to read paths and braces from.
fn strip(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !out.ends_with(is_ident) {
            // A raw string: r"..." or r#"..."#, ended by a quote and as many hashes.
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            i += 2 + hashes;
            while i < chars.len()
                && !(chars[i] == '"' && chars[i + 1..].iter().take(hashes).all(|c| *c == '#'))
            {
                blank(&mut out, chars[i]);
                i += 1;
            }
            i += 1 + hashes;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                blank(&mut out, chars[i.min(chars.len() - 1)]);
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A character literal ('x', '\n', '\''), not a lifetime.
            i += if next == Some('\\') { 2 } else { 1 };
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `code` without its `#[cfg(test)] mod ... { ... }` blocks: tests do not make a dependency.
fn without_tests(code: &str) -> String {
    let mut code = code.to_owned();
    while let Some(at) = code.find("#[cfg(test)]") {
        let rest = code[at + "#[cfg(test)]".len()..].trim_start();
        let end = if rest.starts_with("mod ")
            && rest.find('{').is_some_and(|b| rest.find(';').is_none_or(|s| b < s))
        {
            let open = code.len() - rest.len() + rest.find('{').unwrap_or(0);
            let mut depth = 0;
            let mut end = code.len();
            for (offset, c) in code[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + offset + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            end
        } else {
            // An attribute on one item (`#[cfg(test)] mod proptests;`, a function): only it.
            at + "#[cfg(test)]".len()
        };
        code.replace_range(at..end, "");
    }
    code
}

/// The modules of the crate whose root file is `root` (`lib.rs` or `main.rs`), found by
/// following its `mod` declarations, each with its code (comments, literals and test modules
/// left out).
fn modules(root: &Path) -> BTreeMap<ModulePath, String> {
    let mut found = BTreeMap::new();
    // (module path, its file, the folder its child modules live in)
    let dir = root.parent().unwrap().to_path_buf();
    let mut pending = vec![(Vec::new(), root.to_path_buf(), dir)];
    while let Some((module, file, dir)) = pending.pop() {
        let code = without_tests(&strip(&std::fs::read_to_string(&file).unwrap()));
        for line in code.lines() {
            let line = line.trim();
            let declared = ["mod ", "pub mod ", "pub(crate) mod ", "pub(super) mod "]
                .iter()
                .find_map(|p| line.strip_prefix(p))
                .and_then(|rest| rest.strip_suffix(';'));
            let Some(name) = declared.filter(|n| n.chars().all(is_ident)) else { continue };
            let child: ModulePath = module.iter().cloned().chain([name.to_owned()]).collect();
            let (flat, nested) = (dir.join(format!("{name}.rs")), dir.join(name).join("mod.rs"));
            let child_file = if flat.exists() { flat } else { nested };
            assert!(child_file.exists(), "{}: mod {name}; has no file", file.display());
            pending.push((child, child_file, dir.join(name)));
        }
        found.insert(module, code);
    }
    found
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths named after each `prefix` (`crate::`, `super::`) in `code`, groups expanded:
/// `crate::{a::B, c}` names `a::B` and `c`.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    fn path(rest: &str) -> (Vec<Vec<String>>, usize) {
        let mut segments = Vec::new();
        let mut at = 0;
        loop {
            let ident: String = rest[at..].chars().take_while(|c| is_ident(*c)).collect();
            if ident.is_empty() {
                if rest[at..].starts_with('{') {
                    // A group: each item is a path of its own, after the segments so far.
                    let mut found = Vec::new();
                    at += 1;
                    loop {
                        let trimmed = rest[at..].trim_start();
                        at = rest.len() - trimmed.len();
                        if trimmed.starts_with('}') || trimmed.is_empty() {
                            return (found, at + 1);
                        }
                        let (items, used) = path(&rest[at..]);
                        for item in items {
                            found.push(segments.iter().cloned().chain(item).collect());
                        }
                        at += used.max(1);
                        let trimmed = rest[at..].trim_start();
                        at = rest.len() - trimmed.len();
                        if trimmed.starts_with(',') {
                            at += 1;
                        }
                    }
                }
                return (vec![segments], at);
            }
            at += ident.len();
            segments.push(ident);
            if rest[at..].starts_with("::") {
                at += 2;
            } else {
                // `as` renames and the rest of an item are not part of the path.
                let tail = rest[at..].trim_start();
                if let Some(after) = tail.strip_prefix("as ") {
                    let name: String = after.trim_start().chars().take_while(|c| is_ident(*c)).collect();
                    at = rest.len() - after.trim_start().len() + name.len();
                }
                return (vec![segments], at);
            }
        }
    }
    let mut all = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        if at > 0 && code[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        all.extend(path(&code[at + prefix.len()..]).0.into_iter().filter(|p| !p.is_empty()));
    }
    all
}

/// What the crate root re-exports, by name: `pub use host::{Host, HostBuilder}` maps `Host`
/// to module `host`, so that `crate::Host` counts as a use of `host`.
fn root_exports(root: &str) -> BTreeMap<String, ModulePath> {
    let mut exports = BTreeMap::new();
    for statement in root.split(';') {
        let statement = statement.trim();
        let Some(rest) =
            statement.strip_prefix("pub use ").or_else(|| statement.strip_prefix("pub(crate) use "))
        else {
            continue;
        };
        for path in paths_after(&format!(" {rest}"), " ") {
            if let (Some(name), true) = (path.last(), path.len() > 1) {
                exports.insert(name.clone(), path[..path.len() - 1].to_vec());
            }
        }
    }
    exports
}

/// The dependencies between sibling modules of the crate in `src`: module `a::b` using
/// `a::c::D` makes `a::b -> a::c`; a module using its own parent or children does not count.
fn sibling_edges(root: &Path) -> BTreeMap<ModulePath, BTreeSet<ModulePath>> {
    let modules = modules(root);
    let exports = root_exports(modules.get(&Vec::new()).map(String::as_str).unwrap_or_default());
    let mut edges: BTreeMap<ModulePath, BTreeSet<ModulePath>> = BTreeMap::new();
    for (module, code) in &modules {
        let mut used: Vec<ModulePath> = paths_after(code, "crate::");
        let parent = &module[..module.len().saturating_sub(1)];
        for mut path in paths_after(code, "super::") {
            // `super::super::x`: one level up per `super`.
            let mut base = parent.to_vec();
            while path.first().is_some_and(|s| s == "super") {
                path.remove(0);
                base.pop();
            }
            used.push(base.into_iter().chain(path).collect());
        }
        for path in used {
            let path = match exports.get(&path[0]) {
                Some(home) if !modules.contains_key(&path[..1]) => home.clone(),
                _ => path,
            };
            let Some(target) =
                (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains_key(p))
            else {
                continue;
            };
            let common = module.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common == module.len() || common == target.len() {
                continue;
            }
            edges.entry(module[..=common].to_vec()).or_default().insert(target[..=common].to_vec());
        }
    }
    edges
}

/// A cycle among `edges`, if there is one, as the modules on it.
fn find_cycle(edges: &BTreeMap<ModulePath, BTreeSet<ModulePath>>) -> Option<Vec<ModulePath>> {
    fn visit(
        node: &ModulePath,
        edges: &BTreeMap<ModulePath, BTreeSet<ModulePath>>,
        done: &mut BTreeSet<ModulePath>,
        stack: &mut Vec<ModulePath>,
    ) -> Option<Vec<ModulePath>> {
        if let Some(start) = stack.iter().position(|n| n == node) {
            return Some(stack[start..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|node| visit(node, edges, &mut done, &mut Vec::new()))
}

/// No two modules of one crate use each other, directly or around a loop, at any level: each
/// module can be read, tested and moved with only what is below it. (Crates cannot form cycles:
/// cargo refuses them.)
#[test]
fn no_module_uses_another_that_uses_it_back() {
    let roots = [
        "manifest/src/lib.rs",
        "runtime/src/lib.rs",
        "store/src/lib.rs",
        "host/src/lib.rs",
        "cli/src/main.rs",
        "demo/src/lib.rs",
        "demo/src/main.rs",
        "sdk/src/lib.rs",
        "sdk/macros/src/lib.rs",
        "tests/src/lib.rs",
        "examples/embedding/src/main.rs",
    ];
    for root in roots {
        let edges = sibling_edges(&repo().join(root));
        if let Some(cycle) = find_cycle(&edges) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            panic!("modules of {root} use each other in a loop: {} -> {}", names.join(" -> "), names[0]);
        }
    }
}

/// The cycle check sees a cycle when there is one (through a group import, a root re-export,
/// `super::` and `super::super::`), and none that comments, strings or tests make up.
#[test]
fn the_cycle_check_finds_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\npub use b::Thing;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "mod x;\nmod y;\n").unwrap();
    std::fs::write(src.join("a/x.rs"), "use super::y::Y;\n").unwrap();
    std::fs::write(src.join("a/y.rs"), "use crate::{b::B, a::x::X};\n").unwrap();
    std::fs::write(
        src.join("b.rs"),
        "// crate::a is only named in a comment\npub struct Thing;\nconst T: &str = \"crate::a::x\";\n\
         const R: &str = r#\"crate::a\"#;\n#[cfg(test)]\nmod tests {\n    use crate::a::x;\n}\n",
    )
    .unwrap();
    let edges = sibling_edges(&src.join("lib.rs"));
    let cycle = find_cycle(&edges).expect("a::x <-> a::y is a cycle");
    assert_eq!(cycle.len(), 2, "{cycle:?}");
    assert!(edges[&vec!["a".to_owned()]].contains(&vec!["b".to_owned()]));
    assert!(!edges.contains_key(&vec!["b".to_owned()]), "a comment, string or test made an edge: {edges:?}");
    std::fs::write(src.join("b.rs"), "pub struct Thing(crate::a::A);\n").unwrap();
    std::fs::write(src.join("a/y.rs"), "pub struct Y;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "mod x;\nmod y;\nfn f(_: crate::Thing) {}\n").unwrap();
    assert!(
        find_cycle(&sibling_edges(&src.join("lib.rs"))).is_some(),
        "a -> b through the root re-export, b -> a"
    );

    let nested = tempfile::tempdir().unwrap();
    let src = nested.path();
    std::fs::create_dir_all(src.join("c/d")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod c;\n").unwrap();
    std::fs::write(src.join("c/mod.rs"), "mod d;\nmod f;\n").unwrap();
    std::fs::write(src.join("c/d/mod.rs"), "mod e;\n").unwrap();
    std::fs::write(src.join("c/d/e.rs"), "use super::super::f::F;\n").unwrap();
    std::fs::write(src.join("c/f.rs"), "use crate::c::d::e::E;\n").unwrap();
    let cycle = find_cycle(&sibling_edges(&src.join("lib.rs"))).expect("c::d <-> c::f through super::super");
    assert_eq!(cycle.len(), 2, "{cycle:?}");
}
