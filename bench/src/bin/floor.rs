//! The floor: the least any function can cost per request when the watchdog
//! starts a fresh process for each one. It reads the request on stdin, loads
//! the configuration and connects to PostgreSQL exactly as the functions do
//! (name resolution, TLS, the one query that checks the schema and that the
//! server accepts writes), and prints a JSON object. Nothing else.
//!
//! Bench-only: `make bench` measures every function against it.

use common::config::Config;
use common::db::Database;
use common::protocol::{self, Fields};
use common::Error;
use serde_json::json;
use std::process::ExitCode;

fn main() -> ExitCode {
    let answer = floor().unwrap_or_else(|error| error.to_json());
    let _ = protocol::write_response(std::io::stdout().lock(), &answer);
    ExitCode::SUCCESS
}

fn floor() -> Result<serde_json::Value, Error> {
    let body = protocol::read_body(std::io::stdin().lock())?;
    let username = Fields::parse(&body, &["username"])?.take_string("username")?;
    let config = Config::from_env()?;
    let deadline =
        common::deadline::Deadline::new(std::time::Instant::now(), config.request_deadline);
    Database::connect(&config.database, "floor", &deadline)?.check()?;
    Ok(json!({ "username": username, "connected": true }))
}
