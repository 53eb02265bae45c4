//! Sessions: what a successful sign-in opens, so that COFRAP's applications
//! can trust who signed in without asking COFRAP on every request.
//!
//! ```text
//!   authenticate ──► session (family) ──► access token (JWT, 10 min) + refresh token
//!                        │  refresh: the refresh token is exchanged once for a new
//!                        │  pair (rotation); presenting a rotated one again ends
//!                        │  the whole family (reuse detection)
//!                        └─ ends: sign-out, reuse, SESSION_SECONDS after sign-in,
//!                           or a renewal, an expiry or a lock of the account
//! ```
//!
//! - The **access token** is a JWT signed by [`crate::jwt`]; applications
//!   verify it offline against the `jwks` function's keys. It is not stored
//!   and cannot be recalled: it stays valid until its own short expiry.
//! - The **refresh token** is 256 random bits, handed over once and stored
//!   only as its SHA-256 (a hash of a random 256-bit value needs no salt or
//!   slow hash; a lookup by hash compares nothing in application code). A
//!   session row is the *family*: every refresh token rotated from one
//!   sign-in points to it, and ending it ends all of them.
//! - Nothing is deleted (the functions' database role may not): ended
//!   sessions keep their row with `ended_at` and `end_reason`.
//!
//! "A renewal, an expiry or a lock ends every session of the account" holds
//! whatever changed the account, this version or the Python one: a trigger on
//! `users` (migration 0004) ends the account's sessions in the very statement
//! that renews (`created_at` changes), expires (`expired` set) or locks it
//! (`locked_until` set in the future). [`refresh`] checks the same from the
//! `users` row again (credentials issued at another time, expired by flag or
//! by age, locked now), which also catches credentials that simply grew older
//! than six months while nobody touched the row.
//!
//! Every refusal of a refresh token — unknown, malformed, rotated, expired,
//! ended — is the same [`Error::InvalidRefreshToken`], byte for byte.

use crate::config::Config;
use crate::db::{Database, Transaction};
use crate::error::Error;
use crate::events::{kind, Event};
use crate::jwt::SigningKeys;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use postgres::types::Type;
use serde_json::{json, Map, Value};

/// The code of the answer every refused refresh token gets.
const REFUSED: &str = "invalid_refresh_token";
use sha2::{Digest, Sha256};

/// What a sign-in or a refresh hands over.
pub struct Tokens {
    pub username: String,
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub refresh_token: String,
    /// Seconds until the session ends, whatever the refreshes.
    pub refresh_expires_in: i64,
}

impl Tokens {
    /// The token fields of a response, OAuth 2.0 style (RFC 6749 §5.1).
    pub fn fields(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("access_token".into(), self.access_token.clone().into());
        fields.insert("token_type".into(), "Bearer".into());
        fields.insert("expires_in".into(), self.expires_in.into());
        fields.insert("refresh_token".into(), self.refresh_token.clone().into());
        fields.insert("refresh_expires_in".into(), self.refresh_expires_in.into());
        fields
    }
}

/// Opens a session for the account that just signed in, inside the sign-in
/// transaction `tx`.
pub fn open(
    tx: &mut Transaction,
    config: &Config,
    keys: &SigningKeys,
    account_id: i64,
    username: &str,
) -> Result<Tokens, Error> {
    let lifetime = f64::from(config.sessions.session_seconds);
    let refresh_token = random_token(32)?;
    let row = tx
        .query_typed_opt(
            OPEN_SESSION,
            &[
                (&account_id, Type::INT8),
                (&lifetime, Type::FLOAT8),
                (&token_hash(&refresh_token), Type::BYTEA),
            ],
        )?
        .ok_or_else(|| Error::Internal("the signed-in account has no row".to_owned()))?;
    let session = Session {
        id: row.get(0),
        started_unix: row.get(1),
        ends_unix: row.get(2),
        seconds_left: row.get(3),
    };
    tx.record(Event::ok(account_id, kind::SESSION_OPENED).with(json!({"session": session.id})));
    issue(config, keys, &session, account_id, username, refresh_token)
}

/// refresh: exchanges a refresh token for a new access token and a new
/// refresh token; the one presented stops working.
pub fn refresh(
    db: &mut Database,
    config: &Config,
    keys: &SigningKeys,
    refresh_token: &str,
) -> Result<Tokens, Error> {
    let hash = token_hash(refresh_token);
    db.transaction(|tx| {
        let Some(row) = tx.query_typed_opt(LOCK_REFRESH_TOKEN, &[(&hash, Type::BYTEA)])? else {
            return Err(Error::InvalidRefreshToken);
        };
        // The log line and the events name the account (never the token):
        // a stolen token replayed against one account shows as such.
        let account_id: i64 = row.get("user_id");
        crate::log::note_account_id(account_id);
        let session = Session {
            id: row.get("session_id"),
            started_unix: row.get("started_unix"),
            ends_unix: row.get("ends_unix"),
            seconds_left: row.get("seconds_left"),
        };
        let ended: bool = row.get("ended");
        let timed_out: bool = row.get("timed_out");
        // Why the family must end now, if it must.
        let end_reason = if row.get::<_, bool>("rotated") {
            Some("reused")
        } else if row.get::<_, bool>("renewed") {
            Some("renewed")
        } else if row.get::<_, bool>("credentials_expired") {
            Some("expired")
        } else if row.get::<_, bool>("locked") {
            Some("locked")
        } else if row.get::<_, bool>("disabled") {
            Some("disabled")
        } else {
            None
        };
        let about_session = json!({"session": session.id});
        if ended || timed_out {
            let reason = if ended {
                "session_ended"
            } else {
                "session_timed_out"
            };
            tx.record(Event::refused(account_id, REFUSED, reason).with(about_session));
            return Err(Error::InvalidRefreshToken);
        }
        if let Some(reason) = end_reason {
            tx.execute_typed(
                END_SESSION,
                &[(&session.id, Type::INT8), (&reason, Type::TEXT)],
            )?;
            let ended = if reason == "reused" {
                kind::REUSE_DETECTED
            } else {
                kind::SESSION_ENDED
            };
            tx.record(
                Event::ok(account_id, ended)
                    .answered(REFUSED)
                    .with(json!({"session": session.id, "because": reason})),
            );
            return Err(Error::InvalidRefreshToken);
        }
        let refresh_token = random_token(32)?;
        tx.execute_typed(
            ROTATE,
            &[
                (&hash, Type::BYTEA),
                (&session.id, Type::INT8),
                (&token_hash(&refresh_token), Type::BYTEA),
            ],
        )?;
        tx.record(Event::ok(account_id, kind::REFRESHED).with(about_session));
        let username: String = row.get("username");
        issue(config, keys, &session, account_id, &username, refresh_token)
    })
}

/// sign-out: ends the session (the family) of the refresh token, whichever
/// of its tokens it is. Like RFC 7009's revocation, an unknown or already
/// ended token is no error: the answer never tells whether it was valid.
pub fn sign_out(db: &mut Database, refresh_token: &str) -> Result<(), Error> {
    let hash = token_hash(refresh_token);
    db.transaction(|tx| {
        if let Some(row) = tx.query_typed_opt(SIGN_OUT, &[(&hash, Type::BYTEA)])? {
            let (account_id, session): (i64, i64) = (row.get(0), row.get(1));
            crate::log::note_account_id(account_id);
            tx.record(Event::ok(account_id, kind::SIGNED_OUT).with(json!({"session": session})));
        }
        Ok(())
    })
}

/// A session as the token issuer needs it.
struct Session {
    id: i64,
    started_unix: i64,
    ends_unix: i64,
    seconds_left: i64,
}

/// Signs an access token for `session`, whose new refresh token (stored
/// by the statement that opened or rotated it) is `refresh_token`.
fn issue(
    config: &Config,
    keys: &SigningKeys,
    session: &Session,
    account_id: i64,
    username: &str,
    refresh_token: String,
) -> Result<Tokens, Error> {
    let issued_at = i64::try_from(crate::totp::unix_now())
        .map_err(|_| Error::Internal("the clock is beyond 2262".to_owned()))?;
    // An access token never outlives its session.
    let expires_at =
        (issued_at + i64::from(config.sessions.access_token_seconds)).min(session.ends_unix);
    let mut claims = Map::new();
    claims.insert("iss".into(), config.sessions.issuer.clone().into());
    claims.insert("aud".into(), config.sessions.audience.clone().into());
    claims.insert("sub".into(), account_id.to_string().into());
    claims.insert("preferred_username".into(), username.into());
    claims.insert("iat".into(), issued_at.into());
    claims.insert("exp".into(), expires_at.into());
    claims.insert("auth_time".into(), session.started_unix.into());
    claims.insert("jti".into(), random_token(16)?.into());
    claims.insert("amr".into(), json!(["pwd", "otp"]));
    Ok(Tokens {
        username: username.to_owned(),
        access_token: keys.sign(&claims),
        expires_in: (expires_at - issued_at).max(0),
        refresh_token,
        refresh_expires_in: session.seconds_left.max(0),
    })
}

/// `bytes` random bytes from the operating system, base64url.
fn random_token(bytes: usize) -> Result<String, Error> {
    let mut random = vec![0u8; bytes];
    crate::random::fill(&mut random)?;
    Ok(URL_SAFE_NO_PAD.encode(random))
}

/// What is stored of a refresh token: its SHA-256.
fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A new family, bound to the credentials it was opened under (their
/// `created_at`, which renewal changes), with its first refresh token ($3,
/// the hash), in one statement. Returns its id, start and end (Unix
/// seconds), and the seconds left.
const OPEN_SESSION: &str = "
    WITH opened AS (
        INSERT INTO sessions (user_id, credentials_issued_at, expires_at)
        SELECT id, created_at, now() + make_interval(secs => $2)
          FROM users WHERE id = $1
        RETURNING id, started_at, expires_at),
    stored AS (
        INSERT INTO refresh_tokens (token_hash, session_id) SELECT $3, id FROM opened)
    SELECT id,
           floor(extract(epoch FROM started_at))::bigint,
           floor(extract(epoch FROM expires_at))::bigint,
           floor(extract(epoch FROM expires_at - now()))::bigint
      FROM opened";

/// The token, its family and its account, with every reason to refuse it.
/// The token and the family are locked (two refreshes with one token: the
/// second waits, then finds it rotated); the account row is only read, so
/// that this never waits on a sign-in holding it (see the module's doc for
/// why that is enough).
const LOCK_REFRESH_TOKEN: &str = "
    SELECT s.id AS session_id, s.user_id, u.username,
           rt.rotated_at IS NOT NULL AS rotated,
           s.ended_at IS NOT NULL AS ended,
           s.expires_at <= now() AS timed_out,
           u.created_at <> s.credentials_issued_at AS renewed,
           u.expired OR u.created_at < now() - interval '6 months' AS credentials_expired,
           coalesce(u.locked_until > now(), false) AS locked,
           u.disabled_at IS NOT NULL AS disabled,
           floor(extract(epoch FROM s.started_at))::bigint AS started_unix,
           floor(extract(epoch FROM s.expires_at))::bigint AS ends_unix,
           floor(extract(epoch FROM s.expires_at - now()))::bigint AS seconds_left
      FROM refresh_tokens rt
      JOIN sessions s ON s.id = rt.session_id
      JOIN users u ON u.id = s.user_id
     WHERE rt.token_hash = $1
       FOR UPDATE OF rt, s";

const END_SESSION: &str = "
    UPDATE sessions SET ended_at = now(), end_reason = $2
     WHERE id = $1 AND ended_at IS NULL";

/// The presented token is used up, the family was used now, and its new
/// refresh token ($3, the hash) is stored, in one statement.
const ROTATE: &str = "
    WITH used AS (UPDATE refresh_tokens SET rotated_at = now() WHERE token_hash = $1),
         touched AS (UPDATE sessions SET last_used_at = now() WHERE id = $2)
    INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($3, $2)";

const SIGN_OUT: &str = "
    UPDATE sessions SET ended_at = now(), end_reason = 'signed_out'
     WHERE id = (SELECT session_id FROM refresh_tokens WHERE token_hash = $1)
       AND ended_at IS NULL
    RETURNING user_id, id";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_256_random_bits_stored_as_their_sha256() {
        let one = random_token(32).unwrap();
        let two = random_token(32).unwrap();
        assert_eq!(one.len(), 43);
        assert_ne!(one, two);
        assert_eq!(token_hash(&one).len(), 32);
        assert_ne!(token_hash(&one), token_hash(&two));
        assert_eq!(token_hash(&one), token_hash(&one.clone()));
    }
}
