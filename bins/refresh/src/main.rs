//! refresh: exchanges a refresh token for a new access token and a new
//! refresh token (rotation). The token presented stops working; presenting
//! it again ends its whole session (reuse detection).
//!
//! Request `{"refresh_token": "..."}`. The contract is in docs/API.md.

use common::config::Config;
use common::db::Database;
use common::function::{self, Function};
use common::protocol::Fields;
use common::{session, Error};
use serde_json::{Map, Value};
use std::process::ExitCode;

struct Refresh;

struct Request {
    refresh_token: String,
}

impl Function for Refresh {
    const NAME: &'static str = "refresh";
    const FIELDS: &'static [&'static str] = &["refresh_token"];
    type Request = Request;

    fn parse(mut fields: Fields) -> Result<Request, Error> {
        // Any string is looked up: a malformed token is refused exactly like
        // an unknown one.
        Ok(Request {
            refresh_token: fields.take_string("refresh_token")?,
        })
    }

    fn execute(request: Request, config: &Config, db: &mut Database) -> Result<Value, Error> {
        let keys = config.signing_keys()?;
        let tokens = session::refresh(db, config, &keys, &request.refresh_token)?;
        let mut body = Map::new();
        body.insert("username".into(), tokens.username.clone().into());
        body.extend(tokens.fields());
        Ok(Value::Object(body))
    }
}

fn main() -> ExitCode {
    function::main::<Refresh>()
}
