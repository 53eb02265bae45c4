//! The life of one invocation, the same for every function: read the body,
//! check its shape, load the configuration, start the deadline's guard,
//! connect, check the schema, do the work, print one JSON object, log one
//! line, close the connection, exit.
//!
//! A function binary implements [`Function`] and calls [`main`]; everything
//! the watchdog contract promises (one object on stdout, exit status, the log
//! line, no panic text, an answer before the deadline) is kept here, once.
//! So is what every function must refuse whatever it does: requests a
//! browser marks as coming from another web site ([`crate::cross_site`]).
//! The log line itself is [`crate::log`]'s.

use crate::config::Config;
use crate::db::Database;
use crate::deadline::{self, Deadline, Phase};
use crate::error::Error;
use crate::events::Source;
use crate::log;
use crate::protocol::{self, Fields};
use serde_json::Value;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Instant;

/// One function of the system that reads the database.
pub trait Function {
    /// The function's name, as in stack.yaml and the logs.
    const NAME: &'static str;
    /// The request keys it accepts; any other key is refused.
    const FIELDS: &'static [&'static str];
    /// The validated request.
    type Request;

    /// Validates the request. Runs before any configuration or database
    /// access, so that malformed requests are answered even when those fail.
    fn parse(fields: Fields) -> Result<Self::Request, Error>;

    /// Does the work and returns the response object.
    fn execute(request: Self::Request, config: &Config, db: &mut Database) -> Result<Value, Error>;

    /// Shapes every error answer of this function, whatever the error, from
    /// malformed input to server faults (authenticate adds
    /// `"authenticated": false`, which its clients test). Unchanged by default.
    fn shape_error(body: Value) -> Value {
        body
    }
}

/// What a function prints on stdout.
pub enum Body {
    /// One JSON object and a newline: every function's answer, errors
    /// included.
    Json(Value),
    /// A page (the frontend's HTML), as it is.
    Page(String),
}

/// Runs one invocation of `F` on stdin and stdout; the binary's `main`.
pub fn main<F: Function>() -> ExitCode {
    let started = Instant::now();
    log::profile::start("read_request", started);
    install_panic_hook(F::NAME, started);
    // Kept until the answer is written: closing a connection waits for the
    // server, which must never delay the answer.
    let mut connection = None;
    let outcome = serve::<F>(started, &mut connection);
    finish(
        F::NAME,
        started,
        outcome.map(Body::Json),
        F::shape_error,
        connection,
    )
}

/// Runs one invocation of a function that reads no database, no request and
/// no setting but its own (jwks, frontend): `answer` makes the whole body.
/// Requests from other web sites are not refused: these two answer
/// anyone, by design (see the contract in docs/API.md).
pub fn main_without_database(
    name: &'static str,
    answer: impl FnOnce() -> Result<Body, Error>,
) -> ExitCode {
    let started = Instant::now();
    log::profile::start("read_request", started);
    install_panic_hook(name, started);
    // The watchdog writes the request body (empty for a GET) to stdin;
    // reading it lets the watchdog finish writing. Its content is ignored.
    let _ = std::io::stdin()
        .take(protocol::MAX_REQUEST_BYTES as u64)
        .read_to_end(&mut Vec::new());
    log::profile::mark("work");
    finish(name, started, answer(), |body| body, None)
}

/// Writes the answer (or the error, shaped), logs the line, closes the
/// connection and gives the exit status, unless the deadline's guard is
/// answering already.
fn finish(
    name: &'static str,
    started: Instant,
    outcome: Result<Body, Error>,
    shape_error: fn(Value) -> Value,
    connection: Option<Database>,
) -> ExitCode {
    let (body, status, detail) = match outcome {
        Ok(body) => (body, 0, None),
        Err(error) => (
            Body::Json(shape_error(error.to_json())),
            error.exit_status(),
            error.log_detail().map(str::to_owned),
        ),
    };
    // A success can still carry a code (authenticate's credentials_expired).
    let code = match &body {
        Body::Json(value) => value["code"].as_str().unwrap_or("ok").to_owned(),
        Body::Page(_) => "ok".to_owned(),
    };
    let Some(answer) = deadline::claim_answer(status) else {
        // The deadline's guard is answering and will exit the process.
        loop {
            std::thread::park();
        }
    };
    log::profile::mark("write_answer");
    let written = match &body {
        Body::Json(value) => protocol::write_response(std::io::stdout().lock(), value),
        Body::Page(text) => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
        }
    };
    let detail = match (&written, detail) {
        (Err(e), _) => Some(format!("writing stdout: {e}")),
        (Ok(()), detail) => detail,
    };
    log::profile::mark("close");
    log::write(name, &code, started, detail.as_deref());
    drop(answer);
    // Closing: a server frozen now delays only the exit, which the guard
    // still bounds (it exits with this status at the deadline).
    drop(connection);
    ExitCode::from(if written.is_ok() { status } else { 1 })
}

fn serve<F: Function>(started: Instant, connection: &mut Option<Database>) -> Result<Value, Error> {
    // Before anything else, the body included: a cross-site request is
    // refused whatever it carries.
    crate::cross_site::check(|name| std::env::var(name).ok())?;
    let body = protocol::read_body(std::io::stdin().lock())?;
    let request = F::parse(Fields::parse(&body, F::FIELDS)?)?;
    deadline::enter(Phase::Configuration);
    let config = Config::from_env()?;
    let deadline = Deadline::new(started, config.request_deadline);
    deadline.start_guard(move || {
        let error = deadline::timeout(format!(
            "the deadline of {} ms passed",
            deadline.budget().as_millis()
        ));
        let _ =
            protocol::write_response(std::io::stdout().lock(), &F::shape_error(error.to_json()));
        log::write(F::NAME, error.code(), started, error.log_detail());
    });
    let db = connection.insert(Database::connect(&config.database, F::NAME, &deadline)?);
    db.set_event_source(Source::request(
        F::NAME,
        |name| std::env::var(name).ok(),
        config.forwarded_for_hops,
    ));
    deadline::enter(Phase::Work);
    F::execute(request, &config, db)
}

/// Replaces Rust's panic message (which would go to stderr with a location
/// and maybe values) by the contract's answer: `internal_error` on stdout,
/// one log line, exit status 1. Release builds abort on panic; the hook runs
/// before that, and exits first.
fn install_panic_hook(function: &'static str, started: Instant) {
    std::panic::set_hook(Box::new(move |info| {
        let error = Error::Internal(String::new());
        let Some(_answer) = deadline::claim_answer(error.exit_status()) else {
            return; // the guard answers
        };
        let _ = protocol::write_response(std::io::stdout().lock(), &error.to_json());
        let location = info
            .location()
            .map(|l| format!("panic at {}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "panic".to_owned());
        log::write(function, error.code(), started, Some(&location));
        std::process::exit(1);
    }));
}
