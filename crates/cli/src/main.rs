//! `updraft`: the command-line face of Updraft.
//!
//! Every failure prints one `error:` line naming the input and what is wrong, and exits with
//! status 2; nothing panics on bad input.

mod console;
mod feed;
mod fleet;
mod lab;
mod output;
mod serve;

use clap::{Parser, Subcommand};

// glibc's allocator spent a fifth of the status-ingest CPU consolidating free chunks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "updraft",
    version,
    about = "Enforce Apple OS updates through Declarative Device Management"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The Apple Software Lookup Service: fetch it, show a saved copy, compute a device's targets.
    #[command(subcommand)]
    Feed(feed::FeedCommand),
    /// The lab: a DDM server, a simulated fleet and the console in one process, run to the end.
    Lab(lab::LabArgs),
    /// Run the DDM server: device check-in and DDM endpoints, and the KMFDDM-compatible admin API.
    Serve(Box<serve::ServeArgs>),
    /// A simulated fleet on a fast clock, enrolled into a DDM server started elsewhere.
    Fleet(fleet::FleetArgs),
    /// The console without its window: follows a server, prints events as JSON lines.
    Console(console::ConsoleArgs),
}

/// Logs to stderr, at `warn` and above unless `RUST_LOG` says otherwise (`RUST_LOG=info`,
/// `RUST_LOG=updraft_server=debug`): without it every `tracing` event would be lost.
fn install_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_logging();
    let result = match cli.command {
        Command::Feed(command) => feed::run(command),
        Command::Lab(args) => lab::lab(args),
        Command::Serve(args) => serve::serve(*args),
        Command::Fleet(args) => fleet::fleet(args),
        Command::Console(args) => console::console(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if output::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
