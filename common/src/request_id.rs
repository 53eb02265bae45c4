//! generate-password's optional `request_id`: how a client whose account
//! creation (or renewal) was committed but whose reply was lost gets a
//! password at once by retrying, while nobody else can.
//!
//! The client sends a random value of its own (at least 128 bits) with the
//! request, and the same value with its retries. The database records its
//! SHA-256 with the password it set (migration 0003's trigger, from the
//! session setting [`remember`] makes). When the retry meets the account
//! taken, [`reissue`] gives it a new password only if the account is still
//! pending and unenrolled and its current password was set with that same
//! request id: the one client that could have lost the reply. Everyone else
//! still gets `account_exists`.

use crate::account::{select_named, Username};
use crate::db::Database;
use crate::error::Error;
use crate::events::{kind, Event};
use postgres::types::Type;
use sha2::{Digest, Sha256};

/// A client's request id, kept only as its SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId {
    fingerprint: String,
}

impl RequestId {
    pub const MIN_CHARS: usize = 22;
    pub const MAX_CHARS: usize = 128;

    /// 22 to 128 characters from `A-Z a-z 0-9 - _` (22 base64url characters
    /// carry 132 bits).
    pub fn parse(raw: &str) -> Result<RequestId, Error> {
        let valid = (Self::MIN_CHARS..=Self::MAX_CHARS).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(Error::InvalidField {
                field: "request_id",
                reason: "must be 22 to 128 characters from A-Z, a-z, 0-9, '-' and '_' \
                         (a random value of at least 128 bits)",
            });
        }
        let digest = Sha256::digest(raw.as_bytes());
        let fingerprint = digest.iter().map(|b| format!("{b:02x}")).collect();
        Ok(RequestId { fingerprint })
    }
}

/// Tells the database that the passwords this request sets are its own
/// (in each of its transactions: see [`crate::db`]).
pub fn remember(db: &mut Database, id: &RequestId) {
    db.set_creation_request(&id.fingerprint);
}

/// Stores `password_hash` as the new password of `username` if its current
/// one was set by request `id` and the account is still pending and
/// unenrolled; returns the username as stored, or `None`.
pub fn reissue(
    db: &mut Database,
    username: &Username,
    id: &RequestId,
    password_hash: &str,
) -> Result<Option<String>, Error> {
    db.transaction(|tx| {
        // created_at is left alone: the enrollment window runs from the
        // first creation, or whoever holds a request id could keep an
        // unenrolled name for ever by retrying.
        // The account the name designates, found as every function finds it.
        let row = tx.query_typed_opt(
            &format!(
                "UPDATE users
                    SET password_hash = $4,
                        creation_request = nullif(current_setting('cofrap.creation_request', true), '')
                  WHERE id = ({})
                    AND creation_request = $3
                    AND activated_at IS NULL AND mfa_secret IS NULL AND NOT expired
                  RETURNING id::bigint, username",
                select_named("id")
            ),
            &[
                (&username.skeleton(), Type::TEXT),
                (&username.key(), Type::TEXT),
                (&id.fingerprint, Type::TEXT),
                (&password_hash, Type::TEXT),
            ],
        )?;
        Ok(row.map(|row| {
            let account_id: i64 = row.get(0);
            crate::log::note_account_id(account_id);
            tx.record(Event::ok(account_id, kind::PASSWORD_REISSUED));
            row.get(1)
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_long_and_plain() {
        assert!(RequestId::parse("Zm9vYmFyYmF6cXV4cXV1eA").is_ok());
        assert!(RequestId::parse(&"a".repeat(128)).is_ok());
        for bad in [
            "short",
            &"a".repeat(129),
            "Zm9vYmFyYmF6cXV4cXV1eA==",
            "Zm9vYmFy YmF6cXV4cXV1eA",
        ] {
            let error = RequestId::parse(bad).unwrap_err();
            assert_eq!(error.code(), "invalid_field", "{bad}");
            assert_eq!(error.field(), Some("request_id"));
        }
        // Only the fingerprint is kept.
        let id = RequestId::parse("Zm9vYmFyYmF6cXV4cXV1eA").unwrap();
        assert_eq!(id.fingerprint.len(), 64);
        assert!(!format!("{id:?}").contains("Zm9v"));
    }
}
