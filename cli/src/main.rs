//! The `plugboard` command.

mod commands;
mod log_output;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: under webhook load the server spent about a tenth of its
/// CPU in glibc's allocator, much of it on arena locks (a batch allocated on a runtime thread is
/// freed on the store's thread). Measured against glibc, builds alternated: about 9-16% less CPU
/// per webhook (README, Performance). Built with `no_thp`, so that mimalloc does not ask for
/// transparent huge pages: with them the idle server held 133 MB resident against glibc's 59 MB
/// (67 MB without). On a host whose THP setting is `always` the kernel uses them anyway;
/// `MIMALLOC_ALLOW_THP=0` in the environment turns them off for the process.
/// Embedders of the `plugboard` crate pick their own allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = commands::Cli::parse();
    // `RUST_LOG` picks what is logged; plugin lines carry `instance` and `event` fields.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(args.default_log_filter()));
    // The server's lines (one per webhook under load) are written out in batches; a tool's
    // few lines at once, in order with what it prints.
    let (writer, flush) = if args.is_server() {
        let (buffered, flush) = log_output::BufferedStderr::start();
        (tracing_subscriber::fmt::writer::BoxMakeWriter::new(buffered), Some(flush))
    } else {
        (tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr), None)
    };
    // Colours only for a person at a terminal: not in files, pipes or journald.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    match args.log_format {
        commands::LogFormat::Json => logs.event_format(commands::json_log::JsonLines).init(),
        commands::LogFormat::Human => logs.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::run(args));
    // The log's last lines go out before the error that ends it.
    drop(flush);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): nothing more to say.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Errors quote plugins and upstreams: their control characters are written out.
            // Line breaks stay (a TOML error points at its line with a few of them).
            let text = causes(&e);
            let lines: Vec<String> = text.lines().map(plugboard::printable).collect();
            eprintln!("error: {}", lines.join("\n"));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, each said once: most of our errors quote their
/// source in their own message already.
fn causes(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if text.ends_with(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}
