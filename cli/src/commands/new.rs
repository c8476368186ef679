//! `plugboard new plugin <name> [--lang rust|python|typescript]`: a plugin that builds and passes its own
//! tests out of the box, for authors to grow from. The templates are in `cli/templates/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum NewCommand {
    /// A connector: metadata, a webhook handler, an event handler, an action, tests.
    Plugin {
        /// The plugin's name: lower case letters, digits and `-`.
        name: String,
        /// Where to create it (a directory named after the plugin is made inside).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The language: rust (a crate), python (componentize-py) or typescript (componentize-js).
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// The plugboard SDK folder to use (default: the `sdk` folder of the plugboard checkout
        /// above this folder or the plugboard binary).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

/// The language a new plugin is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A crate using the Rust SDK (`sdk/`), built with cargo.
    Rust,
    /// A module using the Python SDK (`sdk/python`), built with componentize-py.
    Python,
    /// A module using the TypeScript SDK (`sdk/typescript`), built with esbuild and
    /// componentize-js.
    Typescript,
}

/// A template's files: where each goes in the new plugin, and its text (`cli/templates/`).
type Files = &'static [(&'static str, &'static str)];

const RUST: Files = &[
    ("Cargo.toml", include_str!("../../templates/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("../../templates/rust/src/lib.rs")),
    ("README.md", include_str!("../../templates/rust/README.md")),
];

const PYTHON: Files = &[
    ("app.py", include_str!("../../templates/python/app.py")),
    ("test_app.py", include_str!("../../templates/python/test_app.py")),
    ("build.sh", include_str!("../../templates/python/build.sh")),
    ("pyproject.toml", include_str!("../../templates/python/pyproject.toml")),
    ("README.md", include_str!("../../templates/python/README.md")),
    (".gitignore", include_str!("../../templates/python/gitignore")),
];

const TYPESCRIPT: Files = &[
    ("app.ts", include_str!("../../templates/typescript/app.ts")),
    ("test/app.test.ts", include_str!("../../templates/typescript/test/app.test.ts")),
    ("package.json", include_str!("../../templates/typescript/package.json")),
    ("tsconfig.json", include_str!("../../templates/typescript/tsconfig.json")),
    ("README.md", include_str!("../../templates/typescript/README.md")),
    (".gitignore", include_str!("../../templates/typescript/gitignore")),
];

/// The componentize-py release the Python SDK is tested with (`./dev setup` installs it).
const COMPONENTIZE_PY: &str = "0.25.1";

/// The componentize-js release the TypeScript SDK is tested with (`sdk/typescript/package.json`).
const COMPONENTIZE_JS: &str = "0.23.0";

/// Names cargo refuses as a package's (Rust keywords, the standard crates).
const RESERVED: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc-macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

fn valid(name: &str) -> bool {
    !RESERVED.contains(&name)
        && !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-')
}

/// `order-notes` -> `OrderNotes`: the name of a Python connector class.
fn class_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

fn render(template: &str, name: &str, sdk: &Path) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{class}}", &class_name(name))
        .replace("{{componentize_py}}", COMPONENTIZE_PY)
        .replace("{{componentize_js}}", COMPONENTIZE_JS)
        .replace("{{crate}}", &name.replace('-', "_"))
        .replace("{{env}}", &name.replace('-', "_").to_uppercase())
        .replace("{{sdk}}", &sdk.display().to_string())
}

/// The `sdk` folder of the plugboard checkout that holds `dir` or this binary (a build in its
/// `target/`), found at run time: no path of the build machine is baked in.
fn find_sdk(dir: &Path) -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok();
    let starts = [dir.canonicalize().ok(), exe];
    starts.into_iter().flatten().find_map(|start| {
        start.ancestors().map(|a| a.join("sdk")).find(|sdk| {
            std::fs::read_to_string(sdk.join("Cargo.toml"))
                .is_ok_and(|m| m.contains("name = \"plugboard-sdk\""))
        })
    })
}

pub fn run(cmd: NewCommand) -> anyhow::Result<()> {
    let NewCommand::Plugin { name, dir, lang, sdk } = cmd;
    if !valid(&name) {
        bail!(
            "`{name}` is not a plugin name: use lower case letters, digits and `-`, starting with a letter \
             (and not a Rust keyword such as `type` or `test`)"
        );
    }
    let sdk = match sdk {
        Some(path) => path,
        None => find_sdk(&dir).context(
            "cannot find the plugboard SDK in a plugboard checkout above this folder or the \
             plugboard binary; pass --sdk PATH (the `sdk` folder of the plugboard repository)",
        )?,
    };
    let sdk =
        sdk.canonicalize().with_context(|| format!("the SDK is not at {} (use --sdk)", sdk.display()))?;
    // The path is written into TOML, JSON and a shell script as it is: refuse what any of them
    // would read as something else.
    let text = sdk.to_str().context("the SDK's path is not UTF-8")?;
    if let Some(c) = text.chars().find(|c| matches!(c, '"' | '\\' | '$' | '`') || c.is_control()) {
        bail!(
            "the SDK's path {text:?} contains {c:?}, which the generated files cannot quote: move the checkout"
        );
    }
    if lang == Lang::Python && !sdk.join("python/plugboard_sdk/__init__.py").is_file() {
        bail!("{} has no Python SDK (python/plugboard_sdk): pass --sdk PATH", sdk.display());
    }
    if lang == Lang::Typescript && !sdk.join("typescript/build.mjs").is_file() {
        bail!("{} has no TypeScript SDK (typescript/build.mjs): pass --sdk PATH", sdk.display());
    }
    let root = dir.join(&name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let files = match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Typescript => TYPESCRIPT,
    };
    for (file, template) in files {
        let path = root.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, render(template, &name, &sdk))
            .with_context(|| format!("writing {}", path.display()))?;
        if file.ends_with(".sh") {
            make_executable(&path)?;
        }
    }
    say!("created {} (a connector with its tests; see its README.md)", root.display());
    match lang {
        Lang::Rust => say!("next: cd {} && cargo test", root.display()),
        Lang::Python => say!("next: cd {} && python3 -m pytest && ./build.sh", root.display()),
        Lang::Typescript => say!("next: cd {} && npm install && npm test && npm run build", root.display()),
    }
    Ok(())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> anyhow::Result<()> {
    Ok(())
}
