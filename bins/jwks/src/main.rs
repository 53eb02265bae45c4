//! jwks: the public keys that verify COFRAP's access tokens, as a JSON Web
//! Key Set (RFC 7517), for applications and API gateways to fetch (and
//! cache) with `GET /function/jwks`.
//!
//! It reads the `jwt-signing-keys` secret and nothing else: no database, no
//! other secret, no setting but `SECRETS_DIR`. The private halves never leave
//! the process. The contract is in the README.

use common::{config, protocol};
use std::io::Read;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let started = Instant::now();
    // The watchdog writes the request body (empty for a GET) to stdin;
    // reading it lets the watchdog finish writing. Its content is ignored.
    let _ = std::io::stdin()
        .take(protocol::MAX_REQUEST_BYTES as u64)
        .read_to_end(&mut Vec::new());
    let keys = config::signing_keys_from_env();
    let (body, status, detail) = match &keys {
        Ok(keys) => (keys.jwks(), 0, None),
        // The secret's path, if that is what failed, goes to the log only.
        Err(error) => (error.to_json(), error.exit_status(), error.log_detail()),
    };
    let outcome = body["code"].as_str().unwrap_or("ok").to_owned();
    let written = protocol::write_response(std::io::stdout().lock(), &body);
    common::log::write("jwks", &outcome, started, detail);
    ExitCode::from(if written.is_ok() { status } else { 1 })
}
