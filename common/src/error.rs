//! The one error type of every function, and its mapping — in this file only —
//! to the JSON error a client reads, the stable code it matches on, and the
//! exit status the watchdog turns into an HTTP status.
//!
//! Three families, in the order of the enum:
//! - the request is malformed: the client must fix it (exit 0);
//! - the request is well formed but refused: wrong credentials, existing
//!   account... (exit 0);
//! - the server is at fault: configuration, database, schema (exit 1, which
//!   the classic watchdog answers with HTTP 500).
//!
//! Messages are written for a person and never carry a password, hash, TOTP
//! secret, code or token. Details meant for operators (a driver error, an
//! SQLSTATE) go to [`Error::log_detail`], which only reaches stderr.

use serde_json::{json, Value};
use std::fmt;

/// Everything that can stop a function from giving its normal answer.
#[derive(Debug)]
pub enum Error {
    // --- The request is malformed ---
    /// The body is larger than `limit` bytes
    /// ([`crate::protocol::MAX_REQUEST_BYTES`]).
    RequestTooLarge { limit: usize },
    /// The body is empty or only white space.
    EmptyRequest,
    /// The body is not valid UTF-8.
    InvalidUtf8,
    /// The body is not JSON; carries serde_json's position ("at line 1 column 9").
    InvalidJson(String),
    /// The body is JSON, but not an object.
    NotAnObject,
    /// A key appears twice in the object.
    DuplicateField(String),
    /// A key the function does not know.
    UnknownField(String),
    /// A required key is absent.
    MissingField(&'static str),
    /// A key holds a value of the wrong JSON type.
    InvalidFieldType {
        field: &'static str,
        expected: &'static str,
    },
    /// The username breaks the rules in [`crate::account::Username`].
    InvalidUsername(&'static str),
    /// Another field has the right type but an unusable value.
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },

    // --- The request is refused ---
    /// generate-password: the username is taken.
    AccountExists,
    /// Unknown user, wrong password, wrong or replayed code, locked account,
    /// and whatever generate-2fa cannot do for the account: one answer for
    /// all, so that nobody learns which (nor whether a password is right).
    InvalidCredentials,
    /// authenticate: the password is right but no 2FA was generated yet.
    TwoFactorNotEnrolled,
    /// generate-password: the renewal token is missing its mark (forged,
    /// expired, used, or for another account).
    InvalidRenewalToken,
    /// A browser marked the request as sent from another web site
    /// (see [`crate::cross_site`]).
    CrossSiteRequest,
    /// refresh: the refresh token is unknown, expired, already used, or its
    /// session has ended — one answer for all.
    InvalidRefreshToken,

    // --- The server is at fault ---
    /// A setting or secret is missing or malformed; the message names it.
    Config(String),
    /// A secret file cannot be used; the message names the secret, the log
    /// detail carries the path (clients never see file paths).
    SecretFile { message: String, path: String },
    /// The database cannot be reached, refused the login, lost the
    /// connection, is shutting down or out of connection slots, or gave up a
    /// transaction for a conflict: whatever was under way was rolled back
    /// (see docs/API.md for a commit whose reply is lost). Retryable.
    DatabaseUnavailable(String),
    /// The request's deadline passed (a lock held too long, a frozen or slow
    /// server); carries the phase and cause for the log. Retryable.
    DatabaseTimeout(String),
    /// The schema was never applied (`make db-migrate`).
    SchemaMissing,
    /// The schema is older than this build expects.
    SchemaOutdated { found: i32, expected: i32 },
    /// A query failed; carries a detail for the log (never row contents).
    Database(String),
    /// A bug or an impossible state; carries a detail for the log.
    Internal(String),
}

impl Error {
    /// The stable, snake_case identifier clients match on. The table of docs/API.md
    /// of codes lists exactly these.
    pub fn code(&self) -> &'static str {
        match self {
            Error::RequestTooLarge { .. } => "request_too_large",
            Error::EmptyRequest => "empty_request",
            Error::InvalidUtf8 => "invalid_utf8",
            Error::InvalidJson(_) => "invalid_json",
            Error::NotAnObject => "not_an_object",
            Error::DuplicateField(_) => "duplicate_field",
            Error::UnknownField(_) => "unknown_field",
            Error::MissingField(_) => "missing_field",
            Error::InvalidFieldType { .. } => "invalid_field_type",
            Error::InvalidUsername(_) => "invalid_username",
            Error::InvalidField { .. } => "invalid_field",
            Error::AccountExists => "account_exists",
            Error::InvalidCredentials => "invalid_credentials",
            Error::TwoFactorNotEnrolled => "two_factor_not_enrolled",
            Error::InvalidRenewalToken => "invalid_renewal_token",
            Error::CrossSiteRequest => "cross_site_request",
            Error::InvalidRefreshToken => "invalid_refresh_token",
            Error::Config(_) | Error::SecretFile { .. } => "configuration_error",
            Error::DatabaseUnavailable(_) => "database_unavailable",
            Error::DatabaseTimeout(_) => "database_timeout",
            Error::SchemaMissing => "schema_missing",
            Error::SchemaOutdated { .. } => "schema_outdated",
            Error::Database(_) => "database_error",
            Error::Internal(_) => "internal_error",
        }
    }

    /// True when the server, not the client, is at fault: the function then
    /// exits non-zero so that the watchdog answers 500.
    pub fn is_server_fault(&self) -> bool {
        matches!(
            self,
            Error::Config(_)
                | Error::SecretFile { .. }
                | Error::DatabaseUnavailable(_)
                | Error::DatabaseTimeout(_)
                | Error::SchemaMissing
                | Error::SchemaOutdated { .. }
                | Error::Database(_)
                | Error::Internal(_)
        )
    }

    /// The process exit status for this error.
    pub fn exit_status(&self) -> u8 {
        u8::from(self.is_server_fault())
    }

    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::DuplicateField(name) | Error::UnknownField(name) => Some(name),
            Error::MissingField(name) => Some(name),
            Error::InvalidFieldType { field, .. } | Error::InvalidField { field, .. } => {
                Some(field)
            }
            Error::InvalidUsername(_) => Some("username"),
            Error::InvalidRenewalToken => Some("renewal_token"),
            Error::InvalidRefreshToken => Some("refresh_token"),
            _ => None,
        }
    }

    /// What operators need to see in the log and clients must not: the
    /// driver's words for a database failure, the cause of an internal error.
    pub fn log_detail(&self) -> Option<&str> {
        match self {
            Error::DatabaseUnavailable(detail) | Error::Database(detail) => Some(detail),
            Error::DatabaseTimeout(detail) => Some(detail),
            Error::Internal(detail) => Some(detail),
            Error::SecretFile { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The JSON object printed on stdout: `error`, `code`, and `field` when
    /// the error is about one.
    pub fn to_json(&self) -> Value {
        let mut body = json!({ "error": self.to_string(), "code": self.code() });
        if let Some(field) = self.field() {
            body["field"] = Value::from(field);
        }
        body
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::RequestTooLarge { limit } => {
                write!(f, "The request body is larger than {limit} bytes.")
            }
            Error::EmptyRequest => f.write_str("The request body is empty; send a JSON object."),
            Error::InvalidUtf8 => f.write_str("The request body is not valid UTF-8."),
            Error::InvalidJson(position) => {
                write!(f, "The request body is not valid JSON: {position}.")
            }
            Error::NotAnObject => f.write_str("The request body must be a JSON object."),
            Error::DuplicateField(name) => {
                write!(f, "The field \"{name}\" appears more than once.")
            }
            Error::UnknownField(name) => write!(f, "The field \"{name}\" is not expected here."),
            Error::MissingField(name) => write!(f, "The field \"{name}\" is required."),
            Error::InvalidFieldType { field, expected } => {
                write!(f, "The field \"{field}\" must be {expected}.")
            }
            Error::InvalidUsername(reason) => write!(f, "The username {reason}."),
            Error::InvalidField { field, reason } => write!(f, "The field \"{field}\" {reason}."),
            Error::AccountExists => f.write_str("This username is already taken."),
            Error::InvalidCredentials => {
                f.write_str("The username, password or code is not valid.")
            }
            Error::TwoFactorNotEnrolled => f.write_str(
                "Two-factor authentication has not been set up yet; call generate-2fa first.",
            ),
            Error::InvalidRenewalToken => f.write_str(
                "The renewal token is not valid: it may have expired or been used already. \
                 Sign in again to get a new one.",
            ),
            Error::CrossSiteRequest => f.write_str(
                "This request was sent by another web site and was refused; \
                 use the COFRAP page itself.",
            ),
            Error::InvalidRefreshToken => f.write_str(
                "The session has ended or the refresh token is not valid. Sign in again.",
            ),
            Error::Config(what) | Error::SecretFile { message: what, .. } => {
                write!(f, "The function is misconfigured: {what}.")
            }
            Error::DatabaseUnavailable(_) => f.write_str("The database is unavailable."),
            Error::DatabaseTimeout(_) => {
                f.write_str("The database did not complete the request in time.")
            }
            Error::SchemaMissing => f.write_str(
                "The database schema is missing; an operator must run `make db-migrate`.",
            ),
            Error::SchemaOutdated { found, expected } => write!(
                f,
                "The database schema is at version {found} but this function needs version \
                 {expected}; an operator must run `make db-migrate`."
            ),
            Error::Database(_) => f.write_str("A database operation failed."),
            Error::Internal(_) => f.write_str("An internal error occurred."),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// Whether a client may send the same request again: true for the codes
    /// that say the server could not complete it right now.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::DatabaseUnavailable(_) | Error::DatabaseTimeout(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_faults_exit_non_zero_and_client_errors_exit_zero() {
        assert_eq!(Error::SchemaMissing.exit_status(), 1);
        assert_eq!(Error::Config("x".into()).exit_status(), 1);
        assert_eq!(Error::InvalidCredentials.exit_status(), 0);
        assert_eq!(Error::EmptyRequest.exit_status(), 0);
    }

    #[test]
    fn json_has_error_code_and_field() {
        let body = Error::MissingField("username").to_json();
        assert_eq!(body["code"], "missing_field");
        assert_eq!(body["field"], "username");
        assert!(body["error"].as_str().unwrap().contains("username"));
        assert!(Error::InvalidCredentials.to_json().get("field").is_none());
    }

    #[test]
    fn every_code_is_in_the_api_docs_table() {
        let api = include_str!("../../docs/API.md");
        let start = api.find("\n## Error codes\n").expect("no error table");
        let table = &api[start..start + 1 + api[start + 1..].find("\n## ").unwrap()];
        let every_error = [
            Error::RequestTooLarge { limit: 1 },
            Error::EmptyRequest,
            Error::InvalidUtf8,
            Error::InvalidJson(String::new()),
            Error::NotAnObject,
            Error::DuplicateField(String::new()),
            Error::UnknownField(String::new()),
            Error::MissingField("x"),
            Error::InvalidFieldType {
                field: "x",
                expected: "x",
            },
            Error::InvalidUsername("x"),
            Error::InvalidField {
                field: "x",
                reason: "x",
            },
            Error::AccountExists,
            Error::InvalidCredentials,
            Error::TwoFactorNotEnrolled,
            Error::InvalidRenewalToken,
            Error::CrossSiteRequest,
            Error::InvalidRefreshToken,
            Error::Config(String::new()),
            Error::SecretFile {
                message: String::new(),
                path: String::new(),
            },
            Error::DatabaseUnavailable(String::new()),
            Error::DatabaseTimeout(String::new()),
            Error::SchemaMissing,
            Error::SchemaOutdated {
                found: 0,
                expected: 1,
            },
            Error::Database(String::new()),
            Error::Internal(String::new()),
        ];
        for error in every_error {
            let row = format!("| `{}` | {} |", error.code(), error.exit_status());
            assert!(table.contains(&row), "docs/API.md lacks the row {row}");
            // The note under the table lists exactly the retryable codes.
            let note = &table[table.find("Retryable codes:").expect("no retry note")..];
            let note = &note[..note.find("\n\n").unwrap_or(note.len())];
            assert_eq!(
                note.contains(&format!("`{}`", error.code())),
                error.is_retryable(),
                "docs/API.md's retry note and is_retryable disagree on {}",
                error.code()
            );
        }
    }

    #[test]
    fn operator_details_stay_out_of_the_client_message() {
        let error = Error::DatabaseUnavailable("connection refused to 10.0.0.1".into());
        assert!(!error.to_json().to_string().contains("10.0.0.1"));
        assert_eq!(error.log_detail(), Some("connection refused to 10.0.0.1"));
    }
}
