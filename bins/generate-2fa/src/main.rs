//! generate-2fa: gives a pending account its TOTP second factor, as a QR code
//! for authenticator apps and as a key to type by hand.
//!
//! Request `{"username": "...", "password": "..."}`. The contract is in docs/API.md.

use common::account::{self, Username};
use common::config::Config;
use common::db::Database;
use common::function::{self, Function};
use common::protocol::Fields;
use common::{password, qr, totp, Error};
use serde_json::{json, Value};
use std::process::ExitCode;

struct GenerateTwoFactor;

struct Request {
    username: Username,
    password: String,
}

impl Function for GenerateTwoFactor {
    const NAME: &'static str = "generate-2fa";
    const FIELDS: &'static [&'static str] = &["username", "password"];
    type Request = Request;

    fn parse(mut fields: Fields) -> Result<Request, Error> {
        Ok(Request {
            username: Username::parse(&fields.take_string("username")?)?,
            password: password::parse_input(fields.take_string("password")?)?,
        })
    }

    fn execute(request: Request, config: &Config, db: &mut Database) -> Result<Value, Error> {
        let enrollment =
            account::enroll_two_factor(db, config, &request.username, &request.password)?;
        let uri = totp::provisioning_uri(&enrollment.secret, &enrollment.username);
        Ok(json!({
            "username": enrollment.username,
            "qr_code_2fa_base64": qr::png_base64(&uri)?,
            "manual_entry_key": enrollment.secret.to_base32(),
            "message": "Two-factor authentication generated. Scan the QR code with your \
                        authenticator app (or type the key), then sign in with authenticate \
                        to activate the account.",
            "next": "authenticate",
        }))
    }
}

fn main() -> ExitCode {
    function::main::<GenerateTwoFactor>()
}
