//! The account lifecycle: what each function does to an account, and when.
//!
//! ```text
//!   generate-password ──► PENDING ──(generate-2fa, then a first good code)──► ACTIVE
//!        ▲                   │ never activated within the enrollment window:          │
//!        │                   └─ generate-password may take the username afresh       │
//!        │                                                                            │
//!        └── with the renewal token ── EXPIRED ◄── good password and code, credentials
//!                                                   older than six months (authenticate)
//! ```
//!
//! Every operation runs in one transaction that starts by locking the
//! account's row (`SELECT ... FOR UPDATE`). Concurrent requests for one
//! account are thereby serialised: two logins with one code cannot both pass,
//! failures are counted exactly, and two creations of one username cannot both
//! succeed. Refusals commit too, since a refusal may have counted a failure;
//! server faults roll back.
//!
//! Time-dependent states (expired, locked, enrollment abandoned) are computed
//! by the database from its own clock, in the query that locks the row.
//!
//! Statements are sent with their parameter types (`query_typed`), which
//! saves the prepare round trip of each: every request is a fresh process
//! with a fresh connection, so nothing prepared would ever be reused.

use crate::config::{Config, Policy};
use crate::error::Error;
use crate::password;
use crate::renewal;
use crate::totp::TotpSecret;
use postgres::types::{ToSql, Type};
use postgres::{Client, Transaction};

/// A username, validated the same way by every function:
/// - surrounding white space is trimmed;
/// - 3 to 64 characters remain;
/// - no control characters, and no `:` (authenticator apps read
///   "issuer:account", so a colon would corrupt the 2FA label);
/// - case is kept as first written, but two usernames that differ only by
///   case are the same account (`Alice` signs in as `alice` too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub const MIN_CHARS: usize = 3;
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Username, Error> {
        let trimmed = raw.trim();
        let length = trimmed.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&length) {
            return Err(Error::InvalidUsername(
                "must be 3 to 64 characters long, not counting surrounding spaces",
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(Error::InvalidUsername(
                "must not contain control characters",
            ));
        }
        if trimmed.contains(':') {
            return Err(Error::InvalidUsername("must not contain ':'"));
        }
        Ok(Username(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How generate-password came to issue credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// A new account.
    Created,
    /// A pending account abandoned past its enrollment window, taken afresh.
    Recreated,
    /// An expired account, renewed with its renewal token.
    Renewed,
}

/// What authenticate concluded from valid credentials.
pub enum SignIn {
    /// The credentials are valid and current; the account is active.
    Authenticated { username: String },
    /// The credentials are valid but expired; renewal starts with this token.
    Expired {
        username: String,
        renewal_token: String,
    },
}

/// A newly generated 2FA secret, stored encrypted.
pub struct Enrollment {
    pub username: String,
    pub secret: TotpSecret,
}

/// generate-password: stores `password_hash` as the credentials of a new
/// account, of an abandoned pending one, or of an expired one whose renewal
/// token is valid. Returns the username as stored.
pub fn issue_password(
    db: &mut Client,
    config: &Config,
    username: &Username,
    renewal_token: Option<&str>,
    password_hash: &str,
) -> Result<(String, Issue), Error> {
    // The common case, a new username, is one statement (its own
    // transaction): the unique index decides between concurrent requests.
    if renewal_token.is_none() && insert_account(db, username, password_hash)? {
        return Ok((username.as_str().to_owned(), Issue::Created));
    }
    in_transaction(db, |tx| {
        let account = lock(tx, username, &config.policy)?;
        match (account, renewal_token) {
            // Deleted since the insert above found it taken: create it now.
            (None, None) => {
                if !insert_account(tx, username, password_hash)? {
                    return Err(Error::AccountExists);
                }
                Ok((username.as_str().to_owned(), Issue::Created))
            }
            (Some(account), None) if account.enrollment_abandoned => {
                reset_credentials(tx, &account.username, username.as_str(), password_hash)?;
                Ok((username.as_str().to_owned(), Issue::Recreated))
            }
            (Some(_), None) => Err(Error::AccountExists),
            (Some(account), Some(token))
                if account.expired
                    && renewal::is_valid(
                        &config.keyring,
                        token,
                        &account.username,
                        &account.password_hash,
                    ) =>
            {
                reset_credentials(tx, &account.username, &account.username, password_hash)?;
                Ok((account.username, Issue::Renewed))
            }
            (_, Some(_)) => Err(Error::InvalidRenewalToken),
        }
    })
}

/// generate-2fa: for a pending account whose password is right, stores a new
/// TOTP secret (replacing any earlier one) and returns it.
pub fn enroll_two_factor(
    db: &mut Client,
    config: &Config,
    username: &Username,
    password: &str,
) -> Result<Enrollment, Error> {
    let secret = TotpSecret::generate()?;
    let encrypted = config.keyring.encrypt(secret.to_base32().as_bytes());
    in_transaction(db, |tx| {
        let account = check_password(tx, username, password, &config.policy)?;
        if account.expired {
            return Err(Error::CredentialsExpired);
        }
        if account.active {
            return Err(Error::AlreadyEnrolled);
        }
        tx.execute_typed(STORE_SECRET, &[text(&account.username), text(&encrypted)])?;
        Ok(Enrollment {
            username: account.username,
            secret,
        })
    })
}

/// authenticate: checks the password, then the code at `unix_time`; the
/// first success activates the account; valid but expired credentials mark
/// it expired and yield a renewal token.
pub fn authenticate(
    db: &mut Client,
    config: &Config,
    username: &Username,
    password: &str,
    code: &str,
    unix_time: u64,
) -> Result<SignIn, Error> {
    in_transaction(db, |tx| {
        let account = check_password(tx, username, password, &config.policy)?;
        let Some(encrypted) = &account.mfa_secret else {
            return Err(Error::TwoFactorNotEnrolled);
        };
        let secret = decrypt_secret(config, encrypted)?;

        // A step at or before the last accepted one is a replay, even if the
        // code itself is right.
        let step = secret
            .check(code, unix_time)
            .and_then(|step| i64::try_from(step).ok())
            .filter(|step| account.last_totp_step.is_none_or(|last| *step > last));
        let Some(step) = step else {
            record_failure(tx, &account, &config.policy)?;
            return Err(Error::InvalidCredentials);
        };
        // Compare-and-set on the step: redundant under the row lock, but it
        // keeps the guarantee even for writers that do not take the lock.
        let accepted = tx.execute_typed(
            ACCEPT_CODE,
            &[
                text(&account.username),
                (&step, Type::INT8),
                (&account.expired, Type::BOOL),
            ],
        )?;
        if accepted != 1 {
            record_failure(tx, &account, &config.policy)?;
            return Err(Error::InvalidCredentials);
        }

        if account.expired {
            let renewal_token =
                renewal::issue(&config.keyring, &account.username, &account.password_hash);
            Ok(SignIn::Expired {
                username: account.username,
                renewal_token,
            })
        } else {
            Ok(SignIn::Authenticated {
                username: account.username,
            })
        }
    })
}

/// An account row as read under lock, with its time-dependent states.
struct Account {
    /// As stored (the case it was created with).
    username: String,
    password_hash: String,
    mfa_secret: Option<String>,
    active: bool,
    /// The `expired` flag, or credentials older than six months.
    expired: bool,
    /// Pending and older than the enrollment window.
    enrollment_abandoned: bool,
    locked: bool,
    /// Consecutive failures, counted from zero again once a lock has elapsed.
    failed_attempts: i32,
    last_totp_step: Option<i64>,
}

/// Credentials live six calendar months, as PostgreSQL's interval arithmetic
/// counts them (31 August + 6 months = 28 or 29 February).
const LOCK_ACCOUNT: &str = "
    SELECT username, password_hash, mfa_secret,
           activated_at IS NOT NULL,
           expired OR created_at < now() - interval '6 months',
           activated_at IS NULL AND created_at < now() - make_interval(secs => $2),
           coalesce(locked_until > now(), false),
           CASE WHEN locked_until <= now() THEN 0 ELSE failed_attempts END,
           last_totp_step
      FROM users
     WHERE lower(username) = lower($1)
       FOR UPDATE";

/// Returns a row when the account was created, none when the username (in
/// any case) is taken.
const INSERT_ACCOUNT: &str = "
    INSERT INTO users (username, password_hash, created_at, expired)
    VALUES ($1, $2, now(), false)
    ON CONFLICT DO NOTHING
    RETURNING 1";

/// New credentials: everything about the old ones is forgotten.
const RESET_CREDENTIALS: &str = "
    UPDATE users
       SET username = $2, password_hash = $3, created_at = now(), expired = false,
           mfa_secret = NULL, activated_at = NULL, last_totp_step = NULL,
           failed_attempts = 0, locked_until = NULL
     WHERE username = $1";

const STORE_SECRET: &str = "
    UPDATE users
       SET mfa_secret = $2, last_totp_step = NULL, failed_attempts = 0, locked_until = NULL
     WHERE username = $1";

/// $3: the credentials are expired, so the code is consumed but the account
/// is marked expired instead of being activated.
const ACCEPT_CODE: &str = "
    UPDATE users
       SET last_totp_step = $2, failed_attempts = 0, locked_until = NULL,
           activated_at = CASE WHEN $3 THEN activated_at ELSE coalesce(activated_at, now()) END,
           expired = expired OR $3
     WHERE username = $1
       AND (last_totp_step IS NULL OR last_totp_step < $2)";

const RECORD_FAILURE: &str = "
    UPDATE users
       SET failed_attempts = $2,
           locked_until = CASE WHEN $2::integer >= $3::integer
                               THEN now() + make_interval(secs => $4) END
     WHERE username = $1";

/// Runs `work` in a transaction: committed when it succeeds or refuses,
/// rolled back on a server fault ([`crate::db::transaction`]).
fn in_transaction<T>(
    db: &mut Client,
    work: impl FnOnce(&mut Transaction) -> Result<T, Error>,
) -> Result<T, Error> {
    crate::db::transaction(db, work)
}

/// A text parameter, for the typed statements.
fn text(value: &String) -> (&(dyn ToSql + Sync), Type) {
    (value, Type::TEXT)
}

/// Inserts a new pending account; false when the username is taken. Runs on
/// a client (its own transaction) or inside one.
fn insert_account(
    db: &mut impl postgres::GenericClient,
    username: &Username,
    password_hash: &str,
) -> Result<bool, Error> {
    let row = db.query_typed_opt(
        INSERT_ACCOUNT,
        &[
            (&username.as_str(), Type::TEXT),
            (&password_hash, Type::TEXT),
        ],
    )?;
    Ok(row.is_some())
}

/// Locks and reads the account, if there is one.
fn lock(
    tx: &mut Transaction,
    username: &Username,
    policy: &Policy,
) -> Result<Option<Account>, Error> {
    let window = f64::from(policy.enrollment_window_seconds);
    let row = tx.query_typed_opt(
        LOCK_ACCOUNT,
        &[(&username.as_str(), Type::TEXT), (&window, Type::FLOAT8)],
    )?;
    Ok(row.map(|row| Account {
        username: row.get(0),
        password_hash: row.get(1),
        mfa_secret: row.get(2),
        active: row.get(3),
        expired: row.get(4),
        enrollment_abandoned: row.get(5),
        locked: row.get(6),
        failed_attempts: row.get(7),
        last_totp_step: row.get(8),
    }))
}

/// Locks the account and checks its password. Unknown and locked accounts
/// spend a bcrypt check's time too and get the same refusal as a wrong
/// password; a wrong password counts as a failure.
fn check_password(
    tx: &mut Transaction,
    username: &Username,
    password: &str,
    policy: &Policy,
) -> Result<Account, Error> {
    match lock(tx, username, policy)? {
        Some(account) if !account.locked => {
            if password::verify(password, &account.password_hash) {
                Ok(account)
            } else {
                record_failure(tx, &account, policy)?;
                Err(Error::InvalidCredentials)
            }
        }
        _ => {
            password::verify_nothing(password, policy.bcrypt_cost);
            Err(Error::InvalidCredentials)
        }
    }
}

/// Gives the account new credentials (and, when an abandoned account is
/// taken afresh, its new owner's spelling of the username).
fn reset_credentials(
    tx: &mut Transaction,
    stored_username: &str,
    new_username: &str,
    password_hash: &str,
) -> Result<(), Error> {
    tx.execute_typed(
        RESET_CREDENTIALS,
        &[
            (&stored_username, Type::TEXT),
            (&new_username, Type::TEXT),
            (&password_hash, Type::TEXT),
        ],
    )?;
    Ok(())
}

/// Counts one more consecutive failure, locking the account at the threshold.
fn record_failure(tx: &mut Transaction, account: &Account, policy: &Policy) -> Result<(), Error> {
    let failures = account.failed_attempts.saturating_add(1);
    let threshold = i32::try_from(policy.max_failed_attempts).unwrap_or(i32::MAX);
    let lockout = f64::from(policy.lockout_seconds);
    tx.execute_typed(
        RECORD_FAILURE,
        &[
            text(&account.username),
            (&failures, Type::INT4),
            (&threshold, Type::INT4),
            (&lockout, Type::FLOAT8),
        ],
    )?;
    Ok(())
}

/// Decrypts a stored 2FA secret (ours or the Python version's).
fn decrypt_secret(config: &Config, encrypted: &str) -> Result<TotpSecret, Error> {
    let plaintext = config.keyring.decrypt(encrypted).ok_or_else(|| {
        Error::Config(
            "secret encryption-key holds no key that decrypts this account's 2FA secret".to_owned(),
        )
    })?;
    std::str::from_utf8(&plaintext)
        .ok()
        .and_then(TotpSecret::from_base32)
        .ok_or_else(|| Error::Internal("a stored 2FA secret is not base32".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_trimmed_and_checked() {
        assert_eq!(
            Username::parse("  Pierre Goujet \n").unwrap().as_str(),
            "Pierre Goujet"
        );
        assert_eq!(Username::parse("ébè").unwrap().as_str(), "ébè");
        assert!(Username::parse(&"x".repeat(64)).is_ok());
        for bad in [
            "ab",
            "  ab  ",
            "",
            &"x".repeat(65),
            "ali\u{0}ce",
            "ali\tce",
            "a:b:c",
            "bell\u{7}",
        ] {
            assert_eq!(
                Username::parse(bad).unwrap_err().code(),
                "invalid_username",
                "{bad:?}"
            );
        }
    }
}
