//! cofrap-admin: the operators' tool. Each command is one transaction
//! against the database, as its administrator (see [`connection`]); its
//! output is for a person (or, with `--json`, for a script), its exit status
//! 0 when it did what was asked, 1 when it could not, 2 for a usage error.

mod connection;
mod rekey;

use clap::{Parser, Subcommand};
use common::deadline::Deadline;
use common::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Administer COFRAP accounts.
#[derive(Parser)]
#[command(name = "cofrap-admin", version, about, long_about = None)]
struct Cli {
    /// Give up (exit 1) when the database has not answered within this many seconds.
    #[arg(long, global = true, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute the look-alike keys of accounts that lack them (run by `make db-migrate`)
    Rekey,
}

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let deadline = Deadline::new(started, Duration::from_secs(cli.timeout));
    deadline.start_guard(move || {
        eprintln!(
            "cofrap-admin: the database did not answer within {} s (while {})",
            deadline.budget().as_secs(),
            common::deadline::current().name()
        );
    });
    match run(cli.command, &deadline) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            match error.log_detail() {
                Some(detail) => eprintln!("cofrap-admin: {error} ({detail})"),
                None => eprintln!("cofrap-admin: {error}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, deadline: &Deadline) -> Result<String, Error> {
    let settings = connection::settings()?;
    let mut db = connection::connect(&settings, deadline)?;
    match command {
        Command::Rekey => rekey::run(&mut db),
    }
}
