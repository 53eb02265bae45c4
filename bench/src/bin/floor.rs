//! The floor: the least any function can cost per request when the watchdog
//! starts a fresh process for each one. It reads the request on stdin, loads
//! the configuration and connects to PostgreSQL exactly as the functions do,
//! runs one indexed query and prints a JSON object. Nothing else.
//!
//! Bench-only: `make bench` measures every function against it.

use common::config::Config;
use common::protocol::{self, Fields};
use common::{db, Error};
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
    let mut client = db::connect(&config.database, "floor", &deadline)?;
    // Typed, as the functions send theirs: one round trip.
    let row = client.query_typed_opt(
        "SELECT 1 FROM users WHERE lower(username) = lower($1)",
        &[(&username, postgres::types::Type::TEXT)],
    )?;
    Ok(json!({ "username": username, "exists": row.is_some() }))
}
