//! `updraft`: the command-line face of Updraft.
//!
//! Every failure prints one `error:` line naming the input and what is wrong, and exits with
//! status 2; nothing panics on bad input.

mod feed;
mod output;

use clap::{Parser, Subcommand};
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Feed(command) => feed::run(command),
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
