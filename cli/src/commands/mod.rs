//! Command-line parsing and the subcommands.

/// `println!` for command output that fails with an error, rather than panicking, when stdout
/// is closed early (`plugboard events list | head`); `main` exits quietly on that error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `print!` counterpart of [`say!`].
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod demo;
mod events;
pub(crate) mod json_log;
mod new;
mod plugin;
mod render;
mod replay;
mod server;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// plugboard: a host for integration plugins written as WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "plugboard", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Cache compiled plugins here, so that the next start skips compilation.
    #[arg(long, global = true, env = "PLUGBOARD_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// How log lines are written to stderr: human or json (one object per line).
    #[arg(long, global = true, env = "PLUGBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

impl Cli {
    /// Whether this runs the server (which logs a line per webhook).
    pub fn is_server(&self) -> bool {
        matches!(self.command, Command::Up(_))
    }

    /// What is logged without `RUST_LOG`: the server says what it does; tools only warn.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Up(_) => "info,wasmtime=warn,cranelift_codegen=warn",
            _ => "warn",
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect or call plugin components.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Load a connector with every capability, send it a sample event, and show what happened.
    Demo(demo::DemoArgs),
    /// Start the server with a configuration file.
    Up(server::ConfigArgs),
    /// Serve one `[mcp]` client over stdin and stdout, for AI clients that launch a command.
    Mcp(server::McpArgs),
    /// Validate a configuration file and load its plugins, without starting.
    Check(server::ConfigArgs),
    /// Dead letters: list, show and replay.
    #[command(subcommand)]
    Dlq(server::DlqCommand),
    /// The outbound call log: what plugins called, and how it went.
    Calls(server::CallsArgs),
    /// Run a recorded invocation again, every host call answered from its recording (no
    /// network, no side effects), on the recorded build or `--with` another; exits 1 when the
    /// outcome differs.
    Replay(replay::ReplayArgs),
    /// Recorded invocations, newest first (instances record with `record = ...`).
    Recordings(replay::RecordingsArgs),
    /// Stored events and each one's path through the pipeline.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Async jobs.
    #[command(subcommand)]
    Jobs(events::JobsCommand),
    /// Scaffolding: `plugboard new plugin <name>`.
    #[command(subcommand)]
    New(new::NewCommand),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut builder = plugboard::Host::builder();
    if let Some(dir) = &cli.cache_dir {
        builder = builder.compile_cache_dir(dir);
    }
    match cli.command {
        Command::Plugin(cmd) => plugin::run(builder, cmd).await,
        Command::Demo(args) => demo::run(&builder.build()?, args).await,
        Command::Up(args) => server::up(builder, args).await,
        Command::Check(args) => server::check(builder, args).await,
        Command::Mcp(args) => server::mcp(builder, args).await,
        Command::Dlq(cmd) => server::dlq(cmd).await,
        Command::Calls(args) => server::calls(args).await,
        Command::Replay(args) => replay::replay(builder, args).await,
        Command::Recordings(args) => replay::list(args).await,
        Command::Events(cmd) => events::events(cmd).await,
        Command::Jobs(cmd) => events::jobs(cmd).await,
        Command::New(cmd) => new::run(cmd),
    }
}
