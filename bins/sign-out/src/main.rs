//! sign-out: ends the session of a refresh token: that token and every other
//! of its family stop working. Access tokens already issued run out on their
//! own (minutes).
//!
//! Request `{"refresh_token": "..."}`. The contract is in docs/API.md.

use common::config::Config;
use common::db::Database;
use common::function::{self, Function};
use common::protocol::Fields;
use common::{session, Error};
use serde_json::{json, Value};
use std::process::ExitCode;

struct SignOut;

struct Request {
    refresh_token: String,
}

impl Function for SignOut {
    const NAME: &'static str = "sign-out";
    const FIELDS: &'static [&'static str] = &["refresh_token"];
    type Request = Request;

    fn parse(mut fields: Fields) -> Result<Request, Error> {
        Ok(Request {
            refresh_token: fields.take_string("refresh_token")?,
        })
    }

    fn execute(request: Request, _config: &Config, db: &mut Database) -> Result<Value, Error> {
        session::sign_out(db, &request.refresh_token)?;
        Ok(json!({ "signed_out": true }))
    }
}

fn main() -> ExitCode {
    function::main::<SignOut>()
}
