//! cofrap-admin: the operators' tool. Each command is one transaction
//! against the database, as its administrator (see [`connection`]); its
//! output is for a person (or, with `--json`, for a script), its exit status
//! 0 when it did what was asked (or found it already done), 1 when it could
//! not (an unknown account, a refusal, the database), 2 for a usage error.
//!
//! Every action on an account is written as an account event, in the
//! transaction that makes the change, with the operator's name (`--operator`
//! or `COFRAP_OPERATOR`): an action without one is refused, so that no
//! anonymous event is ever written. Reading (`show`, `events`, `report`)
//! writes nothing.
//!
//! The commands, by module: [`accounts`] finds an account and says its
//! state (`show`); [`actions`] changes one (`unlock`, `disable`, `enable`,
//! `expire`, `sign-out`, `reset-2fa`, `delete`); [`history`] reads and prunes
//! the events (`events`, `report`, `prune`); [`rekey`] computes look-alike
//! keys (`make db-migrate`). [`output`] prints tables.

mod accounts;
mod actions;
mod connection;
mod history;
mod output;
mod rekey;

use accounts::Designation;
use clap::{ArgGroup, Parser, Subcommand};
use common::db::Database;
use common::deadline::{Deadline, Phase};
use common::events::Source;
use common::Error;
use serde_json::Value;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Administer COFRAP accounts: their state, their history, and what an
/// operator may do to them. Each command is one transaction.
///
/// USER is a username, found exactly as the functions find it (case, width
/// and look-alike letters compared as they compare them), or `id:N` for the
/// account whose id is N: the way to reach a row whose name the rules
/// refuse, one of two look-alikes kept from before the rules, or the events
/// of an erased account.
///
/// The database connection comes from DATABASE_URL; else POSTGRES_HOST with
/// the administrator's secret files (db-admin-username, db-admin-password)
/// in SECRETS_DIR; else the PG* variables, as psql reads them.
///
/// Exit status: 0 done (or found already done), 1 not possible (an unknown
/// account, a refusal, the database), 2 a usage error.
#[derive(Parser)]
#[command(
    name = "cofrap-admin",
    version,
    about,
    long_about,
    verbatim_doc_comment
)]
struct Cli {
    /// Give up (exit 1) when the database has not answered within this many seconds
    #[arg(long, global = true, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,

    /// Print JSON for scripts instead of text for people
    #[arg(long, global = true)]
    json: bool,

    /// Who is acting, written with every action's event (required by actions)
    #[arg(long, global = true, env = "COFRAP_OPERATOR", value_name = "NAME")]
    operator: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The account's state in words, its dates, failure count and open sessions (never a secret)
    Show {
        /// A username, or id:N
        user: String,
    },
    /// The account events, newest first: of one account, or from one client address
    #[command(group(ArgGroup::new("whose").required(true).args(["user", "source"])))]
    Events {
        /// A username, or id:N (an erased account's events keep its id)
        user: Option<String>,
        /// Events from this client address, or network (198.51.100.7, 2001:db8::/32)
        #[arg(long, value_name = "ADDRESS")]
        source: Option<String>,
        /// Only events since then: a duration back from now (90m, 24h, 7d) or a date (2026-03-01, UTC)
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// At most this many events
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
    },
    /// Lift a lock and clear the failure count; after a hard lock the next sign-in renews
    Unlock {
        /// A username, or id:N
        user: String,
    },
    /// Refuse every sign-in (exactly like a wrong password) and end the account's sessions
    Disable {
        /// A username, or id:N
        user: String,
    },
    /// Undo `disable`
    Enable {
        /// A username, or id:N
        user: String,
    },
    /// Mark the credentials expired: the next sign-in renews them; sessions end
    Expire {
        /// A username, or id:N
        user: String,
    },
    /// End every open session of the account
    SignOut {
        /// A username, or id:N
        user: String,
    },
    /// A lost phone: forget the 2FA; the owner enrolls a new one with the password within the enrollment window
    #[command(name = "reset-2fa")]
    Reset2fa {
        /// A username, or id:N
        user: String,
    },
    /// Erase the account and its sessions; its events keep its id and hold no name
    Delete {
        /// A username, or id:N
        user: String,
        /// Confirm the erasure, which cannot be undone
        #[arg(long)]
        yes: bool,
    },
    /// After an incident: the addresses and accounts with the most refusals, locks and reuse detections
    Report {
        /// The period: a duration back from now (90m, 24h, 7d) or a date (2026-03-01, UTC)
        #[arg(long, value_name = "WHEN", default_value = "24h")]
        since: String,
    },
    /// Delete the events older than the retention period (EVENT_RETENTION_DAYS)
    Prune {
        /// The retention period in days
        #[arg(long, value_name = "DAYS", env = "EVENT_RETENTION_DAYS",
              value_parser = clap::value_parser!(u32).range(1..=36_500))]
        older_than: u32,
    },
    /// Compute the look-alike keys of accounts that lack them (run by `make db-migrate`)
    Rekey,
}

/// What a command gives back: text for people, JSON for scripts.
pub struct Answer {
    pub text: String,
    pub json: Value,
}

/// Why a command did not do what was asked.
pub enum Failure {
    /// The request itself is wrong (exit 2, as clap's own usage errors).
    Usage(String),
    /// Not possible for this account, or no such account (exit 1).
    Refused(String),
    /// The database or the configuration (exit 1).
    Fault(Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Fault(error)
    }
}

/// A command's outcome. Inside a transaction, a [`Failure`] is returned as
/// `Ok(Err(..))`: it is decided before anything is written, so the
/// transaction has nothing to commit but nothing to roll back either.
pub type Outcome = Result<Answer, Failure>;

/// The operator's name, as written in events: refused when absent, blank,
/// too long or holding control characters.
fn operator_name(operator: Option<String>) -> Result<String, Failure> {
    let Some(name) = operator.map(|name| name.trim().to_owned()) else {
        return Err(Failure::Usage(
            "say who is acting: --operator NAME, or COFRAP_OPERATOR (every action is written \
             with its operator's name)"
                .to_owned(),
        ));
    };
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(Failure::Usage(
            "the operator's name must be 1 to 64 characters, without control characters".to_owned(),
        ));
    }
    Ok(name)
}

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let deadline = Deadline::new(started, Duration::from_secs(cli.timeout));
    deadline.start_guard(move || {
        let phase = common::deadline::current();
        // A commit may have been applied even though its reply never came.
        let consequence = if phase == Phase::Commit {
            "whether the change was applied is unknown: look with `show` or `events`"
        } else {
            "nothing was changed"
        };
        eprintln!(
            "cofrap-admin: the database did not answer within {} s (while {}); {consequence}",
            deadline.budget().as_secs(),
            phase.name()
        );
    });
    let json = cli.json;
    let outcome = run(cli, &deadline);
    // The deadline's guard may be writing its own message: only one of them
    // speaks, and the process ends with that one's status.
    let status = match &outcome {
        Ok(_) => 0,
        Err(Failure::Usage(_)) => 2,
        Err(_) => 1,
    };
    let Some(_answering) = common::deadline::claim_answer(status) else {
        std::thread::sleep(Duration::from_secs(5));
        return ExitCode::FAILURE;
    };
    match outcome {
        Ok(answer) => {
            if json {
                println!("{}", answer.json);
            } else {
                print!("{}", answer.text);
            }
        }
        Err(Failure::Usage(message)) | Err(Failure::Refused(message)) => {
            eprintln!("cofrap-admin: {message}");
        }
        Err(Failure::Fault(error)) => eprintln!("cofrap-admin: {}", describe(&error)),
    }
    ExitCode::from(status)
}

/// A server-side error in the operator's words (the functions' messages
/// speak of "the function"), with the detail that only reaches stderr.
fn describe(error: &Error) -> String {
    let message = match error {
        Error::Config(what) | Error::SecretFile { message: what, .. } => {
            format!("configuration: {what}")
        }
        other => other.to_string(),
    };
    match error.log_detail() {
        Some(detail) => format!("{message} ({detail})"),
        None => message,
    }
}

fn run(cli: Cli, deadline: &Deadline) -> Outcome {
    let Cli {
        command, operator, ..
    } = cli;
    // Everything the command line says is checked before connecting.
    let acting = match &command {
        Command::Show { .. } | Command::Events { .. } | Command::Report { .. } | Command::Rekey => {
            None
        }
        _ => Some(operator_name(operator)?),
    };
    let work = prepare(command)?;
    let settings = connection::settings()?;
    let mut db = connection::connect(&settings, deadline)?;
    if let Some(operator) = acting {
        db.set_event_source(Source {
            name: "cofrap-admin".to_owned(),
            operator: Some(operator),
            ..Source::default()
        });
    }
    work(&mut db)
}

/// A command, its arguments checked, ready to run on the database.
type Work = Box<dyn FnOnce(&mut Database) -> Outcome>;

fn prepare(command: Command) -> Result<Work, Failure> {
    let designate = |user: &str| Designation::parse(user).map_err(Failure::Usage);
    let since = |text: &str| history::Since::parse(text).map_err(Failure::Usage);
    Ok(match command {
        Command::Show { user } => {
            let designation = designate(&user)?;
            Box::new(move |db| accounts::show(db, &designation))
        }
        Command::Events {
            user,
            source,
            since: period,
            limit,
        } => {
            let whose = match (user, source) {
                (Some(user), _) => history::Whose::Account(designate(&user)?),
                (None, Some(source)) => history::Whose::Address(
                    history::Network::parse(&source).map_err(Failure::Usage)?,
                ),
                (None, None) => {
                    return Err(Failure::Usage(
                        "events of whom: a USER, or --source ADDRESS".to_owned(),
                    ))
                }
            };
            let period = period.as_deref().map(since).transpose()?;
            Box::new(move |db| history::events(db, &whose, period.as_ref(), limit))
        }
        Command::Unlock { user } => {
            let designation = designate(&user)?;
            Box::new(move |db| actions::unlock(db, &designation))
        }
        Command::Disable { user } => {
            let designation = designate(&user)?;
            Box::new(move |db| actions::disable(db, &designation))
        }
        Command::Enable { user } => {
            let designation = designate(&user)?;
            Box::new(move |db| actions::enable(db, &designation))
        }
        Command::Expire { user } => {
            let designation = designate(&user)?;
            Box::new(move |db| actions::expire(db, &designation))
        }
        Command::SignOut { user } => {
            let designation = designate(&user)?;
            Box::new(move |db| actions::sign_out(db, &designation))
        }
        Command::Reset2fa { user } => {
            let designation = designate(&user)?;
            Box::new(move |db| actions::reset_two_factor(db, &designation))
        }
        Command::Delete { user, yes } => {
            let designation = designate(&user)?;
            if !yes {
                return Err(Failure::Usage(format!(
                    "erasing {designation} cannot be undone: add --yes to confirm"
                )));
            }
            Box::new(move |db| actions::delete(db, &designation))
        }
        Command::Report { since: period } => {
            let period = since(&period)?;
            Box::new(move |db| history::report(db, &period))
        }
        Command::Prune { older_than } => Box::new(move |db| history::prune(db, older_than)),
        Command::Rekey => Box::new(|db| {
            let text = rekey::run(db)?;
            Ok(Answer {
                json: Value::String(text.clone()),
                text,
            })
        }),
    })
}
