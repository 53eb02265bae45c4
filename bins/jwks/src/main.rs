//! jwks: the public keys that verify COFRAP's access tokens, as a JSON Web
//! Key Set (RFC 7517), for applications and API gateways to fetch (and
//! cache) with `GET /function/jwks`.
//!
//! It reads the `jwt-signing-keys` secret and nothing else: no database, no
//! other secret, no setting but `SECRETS_DIR`. The private halves never leave
//! the process. The contract is in docs/API.md.

use common::config;
use common::function::{self, Body};
use std::process::ExitCode;

fn main() -> ExitCode {
    // The secret's path, if that is what fails, goes to the log only.
    function::main_without_database("jwks", || {
        Ok(Body::Json(config::signing_keys_from_env()?.jwks()))
    })
}
