//! generate-password: creates an account, or renews expired credentials, and
//! hands the new password over once, as a QR code.
//!
//! Request `{"username": "..."}`, or `{"username": "...", "renewal_token": "..."}`
//! to renew; either may carry a `request_id` so that a retry after a lost
//! reply gets a password ([`common::request_id`]). The contract is in docs/API.md.

use common::account::{self, Issue, Username};
use common::config::Config;
use common::db::Database;
use common::function::{self, Function};
use common::protocol::Fields;
use common::request_id::{self, RequestId};
use common::{password, qr, Error};
use serde_json::{json, Value};
use std::process::ExitCode;

struct GeneratePassword;

struct Request {
    username: Username,
    renewal_token: Option<String>,
    request_id: Option<RequestId>,
}

impl Function for GeneratePassword {
    const NAME: &'static str = "generate-password";
    const FIELDS: &'static [&'static str] = &["username", "renewal_token", "request_id"];
    type Request = Request;

    fn parse(mut fields: Fields) -> Result<Request, Error> {
        Ok(Request {
            username: Username::parse(&fields.take_string("username")?)?,
            renewal_token: fields.take_optional_string("renewal_token")?,
            request_id: fields
                .take_optional_string("request_id")?
                .map(|id| RequestId::parse(&id))
                .transpose()?,
        })
    }

    fn execute(request: Request, config: &Config, db: &mut Database) -> Result<Value, Error> {
        // Everything that can fail is done before the transaction, so that a
        // stored password is always one that is handed over. That includes
        // the Fernet keys, which only a renewal uses: a function missing
        // them is misconfigured, and says so on every request.
        config.keyring()?;
        let password = password::generate()?;
        let qr_code = qr::png_base64(&password)?;
        let hash = password::hash(&password, config.policy.bcrypt_cost)?;

        if let Some(id) = &request.request_id {
            request_id::remember(db, id);
        }
        let issued = account::issue_password(
            db,
            config,
            &request.username,
            request.renewal_token.as_deref(),
            &hash,
        );
        let (username, issue) = match (issued, &request.request_id) {
            // Taken: by this very request, whose reply was lost? Then it gets
            // a new password; anyone else the same refusal. (Creations only:
            // a renewal whose reply was lost is restarted by its owner with
            // the old credentials, see docs/API.md.)
            (Err(Error::AccountExists), Some(id)) => {
                match request_id::reissue(db, &request.username, id, &hash)? {
                    Some(username) => (username, Issue::Created),
                    None => return Err(Error::AccountExists),
                }
            }
            (issued, _) => issued?,
        };
        let message = match issue {
            Issue::Created | Issue::Recreated => "Account created.",
            Issue::Renewed => "Credentials renewed.",
        };
        Ok(json!({
            "username": username,
            "qr_code_base64": qr_code,
            "message": format!(
                "{message} Scan the QR code now: it holds your password and will not be \
                 shown again. Then set up two-factor authentication with generate-2fa."
            ),
            "next": "generate-2fa",
        }))
    }
}

fn main() -> ExitCode {
    function::main::<GeneratePassword>()
}
