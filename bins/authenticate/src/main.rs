//! authenticate: checks a password and a TOTP code. The first success
//! activates the account; valid but expired credentials start the renewal.
//! A success opens a session: an access token and a refresh token.
//!
//! Request `{"username": "...", "password": "...", "totp_code": "123456"}`.
//! The contract is in docs/API.md.

use common::account::{self, SignIn, Username};
use common::config::Config;
use common::db::Database;
use common::function::{self, Function};
use common::protocol::Fields;
use common::{password, renewal, session, totp, Error};
use serde_json::{json, Map, Value};
use std::process::ExitCode;

struct Authenticate;

struct Request {
    username: Username,
    password: String,
    totp_code: String,
}

impl Function for Authenticate {
    const NAME: &'static str = "authenticate";
    const FIELDS: &'static [&'static str] = &["username", "password", "totp_code"];
    type Request = Request;

    fn parse(mut fields: Fields) -> Result<Request, Error> {
        Ok(Request {
            username: Username::parse(&fields.take_string("username")?)?,
            password: password::parse_input(fields.take_string("password")?)?,
            totp_code: totp::parse_code(&fields.take_string("totp_code")?)?,
        })
    }

    fn execute(request: Request, config: &Config, db: &mut Database) -> Result<Value, Error> {
        // Both key secrets up front: a misconfigured function says so on
        // every request, not only on those that get as far as using them.
        config.keyring()?;
        let keys = config.signing_keys()?;
        let outcome = account::authenticate(
            db,
            config,
            &request.username,
            &request.password,
            &request.totp_code,
            totp::unix_now(),
            // The session is opened inside the sign-in transaction.
            |tx, signed_in| session::open(tx, config, &keys, signed_in.id, &signed_in.username),
        )?;
        Ok(match outcome {
            SignIn::Authenticated {
                username,
                on_success: tokens,
                ..
            } => {
                let mut body = Map::new();
                body.insert("authenticated".into(), true.into());
                body.insert("username".into(), username.into());
                body.extend(tokens.fields());
                Value::Object(body)
            }
            SignIn::Expired {
                username,
                renewal_token,
                ..
            } => json!({
                "authenticated": false,
                "expired": true,
                "username": username,
                "error": format!(
                    "The credentials are more than six months old and have expired. Renew \
                     them within {} minutes: call generate-password with this renewal_token.",
                    renewal::TTL_SECONDS / 60
                ),
                "code": "credentials_expired",
                "renewal_token": renewal_token,
                "next": "generate-password",
            }),
        })
    }

    /// Every answer that is not a success says so in `authenticated`, the
    /// one key clients (the Python version's too) need to test.
    fn shape_error(body: Value) -> Value {
        let mut shaped = json!({"authenticated": false});
        if let (Some(shaped), Value::Object(fields)) = (shaped.as_object_mut(), body) {
            shaped.extend(fields);
        }
        shaped
    }
}

fn main() -> ExitCode {
    function::main::<Authenticate>()
}
