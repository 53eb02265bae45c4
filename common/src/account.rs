//! The account lifecycle: what each function does to an account, and when.
//!
//! ```text
//!   generate-password ──► PENDING ──(generate-2fa, then a first good code)──► ACTIVE
//!     │ never activated within the enrollment window                              │
//!     └─ (and no 2FA but ours): generate-password may take the username afresh   │
//!                                                                                 ▼
//!   EXPIRED ◄───────── good password and code, credentials older than six months
//!     │  ▲ (the old password and code restart renewal: a new token)
//!     ▼  │
//!   RENEWING: generate-password + renewal token stages a new password (the old
//!     │       credentials still work, for restarting only); generate-2fa with
//!     │       the new password makes it current and stages a new 2FA secret
//!     │       (again, to replace a lost QR code)
//!     └────► first good code of the new secret: ACTIVE, with fresh credentials
//! ```
//!
//! An account that was ever activated (or is expired, or holds a 2FA secret
//! the Python version wrote) is never "abandoned": only its renewal token
//! gives it new credentials. The Python columns keep their meaning
//! throughout: `password_hash` and `mfa_secret` are the credentials in force,
//! `expired` stays true until renewal is confirmed; what is staged lives in
//! `renewal_password_hash` and `renewal_mfa_secret`.
//!
//! Passwords are checked before the account's row is locked (bcrypt is the
//! slow part; holding the lock through it would queue concurrent requests
//! for one account while those for unknown ones ran in parallel, a timing
//! tell). Then one transaction locks the row (`SELECT ... FOR UPDATE`),
//! confirms the hash it checked is still the stored one, and does the work.
//! Concurrent requests for one account are serialised there: two logins with
//! one code cannot both pass, failures are counted exactly, and two creations
//! of one username cannot both succeed. Refusals commit too, since a refusal
//! may have counted a failure; server faults roll back.
//!
//! Time-dependent states (expired, locked, enrollment abandoned) are computed
//! by the database from its own clock, in the query that reads the row.
//!
//! Statements are sent with their parameter types (`query_typed`), which
//! saves the prepare round trip of each: every request is a fresh process
//! with a fresh connection, so nothing prepared would ever be reused.

use crate::config::{Config, Policy};
use crate::db::{Database, Transaction};
use crate::error::Error;
use crate::events::{kind, Event};
use crate::log::note_account_id;
use crate::password;
use crate::renewal;
use crate::totp::TotpSecret;
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use serde_json::json;

pub use crate::username::Username;

/// The code of the answer every sign-in refusal gets.
const INVALID: &str = "invalid_credentials";

/// How generate-password came to issue credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// A new account.
    Created,
    /// A pending account abandoned past its enrollment window, taken afresh.
    Recreated,
    /// An expired account, renewed with its renewal token: the new password
    /// is staged until generate-2fa proves it was received.
    Renewed,
}

/// The account a sign-in succeeded for, as [`authenticate`]'s `on_success`
/// sees it inside the sign-in transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// `users.id`.
    pub id: i64,
    /// As stored (the spelling it was created with).
    pub username: String,
}

/// What authenticate concluded from valid credentials.
pub enum SignIn<T> {
    /// The credentials are valid and current; the account is active.
    /// `on_success` is what the caller's `on_success` returned.
    Authenticated {
        id: i64,
        username: String,
        on_success: T,
    },
    /// The credentials are valid but expired; renewal starts with this token.
    Expired {
        id: i64,
        username: String,
        renewal_token: String,
    },
}

/// A newly generated 2FA secret, stored encrypted.
pub struct Enrollment {
    pub username: String,
    pub secret: TotpSecret,
}

/// An account as an operator designates it by name (cofrap-admin): its
/// `users.id` and its name as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: i64,
    pub username: String,
}

/// The account `username` designates, found exactly as the functions find
/// it (the same statement's WHERE clause), without locking it.
pub fn find(tx: &mut Transaction, username: &Username) -> Result<Option<Found>, Error> {
    let row = tx.query_typed_opt(
        &select_named("id::bigint, username::text"),
        &[
            (&username.skeleton(), Type::TEXT),
            (&username.key(), Type::TEXT),
        ],
    )?;
    Ok(row.map(|row| Found {
        id: row.get(0),
        username: row.get(1),
    }))
}

/// generate-password: stores `password_hash` as the credentials of a new
/// account or of an abandoned pending one, or stages it as the renewal of an
/// expired one whose renewal token is valid. Returns the username as stored.
pub fn issue_password(
    db: &mut Database,
    config: &Config,
    username: &Username,
    renewal_token: Option<&str>,
    password_hash: &str,
) -> Result<(String, Issue), Error> {
    // The common case, a new username, is one statement in a transaction of
    // its own: the unique indexes decide between concurrent requests.
    if renewal_token.is_none()
        && db.transaction(|tx| insert_account(tx, username, password_hash))?
    {
        return Ok((username.as_str().to_owned(), Issue::Created));
    }
    db.transaction(|tx| {
        let account = read(tx, username, &config.policy, FOR_UPDATE)?;
        if let Some(account) = &account {
            note_account_id(account.id);
        }
        match (account, renewal_token) {
            // Gone since the insert above found it taken: create it now.
            (None, None) => {
                if !insert_account(tx, username, password_hash)? {
                    return Err(Error::AccountExists);
                }
                Ok((username.as_str().to_owned(), Issue::Created))
            }
            (Some(account), None) if account.enrollment_abandoned => {
                tx.execute_typed(
                    TAKE_AFRESH,
                    &[
                        (&account.id, Type::INT8),
                        (&username.as_str(), Type::TEXT),
                        (&username.key(), Type::TEXT),
                        (&username.skeleton(), Type::TEXT),
                        (&username.display_skeleton(), Type::TEXT),
                        (&password_hash, Type::TEXT),
                    ],
                )
                // The new spelling looks like another account's as written.
                .map_err(|e| match e.code() {
                    Some(state) if *state == SqlState::UNIQUE_VIOLATION => Error::AccountExists,
                    _ => Error::from(e),
                })?;
                tx.record(Event::ok(account.id, kind::TAKEN_AFRESH));
                Ok((username.as_str().to_owned(), Issue::Recreated))
            }
            (Some(account), None) => {
                tx.record(Event::refused(
                    account.id,
                    "account_exists",
                    "account_exists",
                ));
                Err(Error::AccountExists)
            }
            (Some(account), Some(token))
                if account.expired
                    && renewal::is_valid(
                        &config.keyring()?,
                        token,
                        &account.username,
                        &account.credentials(),
                    ) =>
            {
                tx.execute_typed(
                    STAGE_PASSWORD,
                    &[(&account.id, Type::INT8), (&password_hash, Type::TEXT)],
                )?;
                tx.record(Event::ok(account.id, kind::RENEWAL_PASSWORD_STAGED));
                Ok((account.username, Issue::Renewed))
            }
            (Some(account), Some(_)) => {
                tx.record(Event::refused(
                    account.id,
                    "invalid_renewal_token",
                    "invalid_renewal_token",
                ));
                Err(Error::InvalidRenewalToken)
            }
            (None, Some(_)) => Err(Error::InvalidRenewalToken),
        }
    })
}

/// generate-2fa: for a pending account whose password is right, stores a new
/// TOTP secret (replacing any earlier one) and returns it. During renewal,
/// for the new password, it makes that password current and stages the new
/// secret (again replacing an earlier staged one).
pub fn enroll_two_factor(
    db: &mut Database,
    config: &Config,
    username: &Username,
    password: &str,
) -> Result<Enrollment, Error> {
    let secret = TotpSecret::generate()?;
    let encrypted = config.keyring()?.encrypt(secret.to_base32().as_bytes());
    // Renewing: the staged password is the one to prove.
    let which = |account: &Account| {
        if account.expired {
            account.renewal_password_hash.clone()
        } else {
            None
        }
        .unwrap_or_else(|| account.password_hash.clone())
    };
    let verified = verify_unlocked(db, username, password, which, &config.policy)?;
    db.transaction(|tx| {
        let account = lock_verified(tx, username, password, verified, which, &config.policy)?;
        let id: (&(dyn ToSql + Sync), Type) = (&account.id, Type::INT8);
        // What generate-2fa cannot do (an active account's 2FA changes only
        // by renewal; an expired one must sign in first) is refused exactly
        // like a wrong password: a different answer would tell whoever holds
        // a candidate password, without any code, that it is right.
        let event = if account.expired {
            if account.renewal_password_hash.is_some() {
                tx.execute_typed(STAGE_SECRET_AND_PROMOTE, &[id, text(&encrypted)])?;
                Event::ok(account.id, kind::RENEWAL_TWO_FACTOR_STAGED)
                    .with(json!({"new_password_received": true}))
            } else if account.renewal_mfa_secret.is_some() {
                tx.execute_typed(STAGE_SECRET, &[id, text(&encrypted)])?;
                Event::ok(account.id, kind::RENEWAL_TWO_FACTOR_STAGED)
            } else {
                tx.record(Event::refused(account.id, INVALID, "expired_sign_in_first"));
                return Err(Error::InvalidCredentials);
            }
        } else if account.active && !account.two_factor_reenrollable {
            tx.record(Event::refused(account.id, INVALID, "already_enrolled"));
            return Err(Error::InvalidCredentials);
        } else {
            tx.execute_typed(STORE_SECRET, &[id, text(&encrypted)])?;
            Event::ok(account.id, kind::TWO_FACTOR_ENROLLED)
                .with(json!({"replaced": account.mfa_secret.is_some()}))
        };
        tx.record(event);
        Ok(Enrollment {
            username: account.username,
            secret,
        })
    })
}

/// authenticate: checks the password, then the code at `unix_time`.
///
/// The first success activates the account; the first success with a staged
/// renewal secret confirms the renewal (fresh credentials). For a current
/// success `on_success` runs inside the same transaction, after the code is
/// accepted, and its result comes back with the success (sessions are
/// created there, so that sign-in and session are one transaction). If it
/// fails with a server fault, the whole sign-in rolls back (the code is not
/// consumed); a refusal from it would commit what was done, so it should not
/// refuse. Valid but expired credentials mark the account expired and yield
/// a renewal token.
pub fn authenticate<T>(
    db: &mut Database,
    config: &Config,
    username: &Username,
    password: &str,
    code: &str,
    unix_time: u64,
    on_success: impl FnOnce(&mut Transaction, &SignedIn) -> Result<T, Error>,
) -> Result<SignIn<T>, Error> {
    let which = |account: &Account| account.password_hash.clone();
    let verified = verify_unlocked(db, username, password, which, &config.policy)?;
    db.transaction(|tx| {
        let account = lock_verified(tx, username, password, verified, which, &config.policy)?;
        // Renewing, with the new password made current by generate-2fa: only
        // the staged secret's codes count.
        let confirming_renewal = account.expired && account.renewal_mfa_secret.is_some();
        let stored = if confirming_renewal {
            &account.renewal_mfa_secret
        } else {
            &account.mfa_secret
        };
        let Some(encrypted) = stored else {
            tx.record(Event::refused(
                account.id,
                "two_factor_not_enrolled",
                "two_factor_not_enrolled",
            ));
            return Err(Error::TwoFactorNotEnrolled);
        };
        let secret = decrypt_secret(config, encrypted)?;

        // A step at or before the last accepted one is a replay, even if the
        // code itself is right.
        let matched = secret
            .check(code, unix_time)
            .and_then(|step| i64::try_from(step).ok());
        let step = matched.filter(|step| account.last_totp_step.is_none_or(|last| *step > last));
        let Some(step) = step else {
            let reason = if matched.is_some() {
                "replayed_code"
            } else {
                "wrong_code"
            };
            tx.record(Event::refused(account.id, INVALID, reason));
            record_failure(tx, &account, &config.policy)?;
            return Err(Error::InvalidCredentials);
        };
        let id: (&(dyn ToSql + Sync), Type) = (&account.id, Type::INT8);
        let step_param: (&(dyn ToSql + Sync), Type) = (&step, Type::INT8);
        // Compare-and-set on the step: redundant under the row lock, but it
        // keeps the guarantee even for writers that do not take the lock.
        let accepted = if confirming_renewal {
            tx.execute_typed(CONFIRM_RENEWAL, &[id.clone(), step_param])?
        } else {
            let expired: (&(dyn ToSql + Sync), Type) = (&account.expired, Type::BOOL);
            tx.execute_typed(ACCEPT_CODE, &[id.clone(), step_param, expired])?
        };
        if accepted != 1 {
            tx.record(Event::refused(account.id, INVALID, "replayed_code"));
            record_failure(tx, &account, &config.policy)?;
            return Err(Error::InvalidCredentials);
        }

        if account.expired && !confirming_renewal {
            let renewal_token = renewal::issue(
                &config.keyring()?,
                &account.username,
                &account.credentials(),
            );
            tx.record(Event::ok(account.id, kind::RENEWAL_STARTED).answered("credentials_expired"));
            return Ok(SignIn::Expired {
                id: account.id,
                username: account.username,
                renewal_token,
            });
        }
        // Hashes made at another cost (an older BCRYPT_COST, the Python
        // version's 12) are brought to the configured one, so that every
        // account's check costs what an unknown user's dummy check costs.
        if password::cost_of(&account.password_hash) != Some(config.policy.bcrypt_cost) {
            let rehashed = password::hash(password, config.policy.bcrypt_cost)?;
            tx.execute_typed(REHASH, &[id, text(&rehashed)])?;
        }
        if confirming_renewal {
            tx.record(Event::ok(account.id, kind::RENEWAL_COMPLETED));
        } else if !account.active {
            tx.record(Event::ok(account.id, kind::ACTIVATED));
        }
        tx.record(Event::ok(account.id, kind::SIGNED_IN));
        let signed_in = SignedIn {
            id: account.id,
            username: account.username,
        };
        let outcome = on_success(tx, &signed_in)?;
        Ok(SignIn::Authenticated {
            id: signed_in.id,
            username: signed_in.username,
            on_success: outcome,
        })
    })
}

/// An account row with its time-dependent states.
struct Account {
    id: i64,
    /// As stored (the spelling it was created with).
    username: String,
    password_hash: String,
    mfa_secret: Option<String>,
    /// Renewal: the new password, until generate-2fa proves it was received.
    renewal_password_hash: Option<String>,
    /// Renewal: the new 2FA secret, until its first good code.
    renewal_mfa_secret: Option<String>,
    active: bool,
    /// The `expired` flag, or credentials older than six months.
    expired: bool,
    /// Never activated, never expired, no 2FA but the one our generate-2fa
    /// stored while pending, and older than the enrollment window.
    enrollment_abandoned: bool,
    locked: bool,
    /// Locked until an operator unlocks it.
    hard_locked: bool,
    /// Disabled by an operator: refused like a wrong password.
    disabled: bool,
    /// An operator reset its 2FA (a lost phone) less than the enrollment
    /// window ago: generate-2fa enrolls it again with the password.
    two_factor_reenrollable: bool,
    /// Consecutive failures, across locks, since the last success.
    failed_attempts: i32,
    last_totp_step: Option<i64>,
}

impl Account {
    /// What a renewal token is bound to: the credentials in force and any
    /// staged password, so that staging one spends the token.
    fn credentials(&self) -> String {
        match &self.renewal_password_hash {
            None => self.password_hash.clone(),
            Some(staged) => format!("{}\n{}", self.password_hash, staged),
        }
    }
}

/// `SELECT columns` of the account a name designates, the one piece of SQL
/// that says "the account named so", for the functions ([`read`], and
/// generate-password's retry in [`crate::request_id`]) and for cofrap-admin
/// ([`find`]): the one with the name's skeleton ($1), or one whose skeleton
/// is not computed yet (a row of the Python version's, or of a name that
/// already collided when migration 0005 came) with its exact compared form
/// ($2), which wins when both exist.
pub(crate) fn select_named(columns: &str) -> String {
    format!(
        "SELECT {columns}
           FROM users
          WHERE username_skeleton = $1 OR (username_skeleton IS NULL AND username_key = $2)
          ORDER BY username_key = $2 DESC
          LIMIT 1"
    )
}

/// An account with its time-dependent states; $3 is the enrollment window
/// in seconds. Credentials live six calendar months, as PostgreSQL's
/// interval arithmetic counts them (31 August + 6 months = 28 or 29
/// February).
const ACCOUNT_COLUMNS: &str = "
    id::bigint, username, password_hash, mfa_secret, renewal_password_hash, renewal_mfa_secret,
    activated_at IS NOT NULL,
    expired OR created_at < now() - interval '6 months',
    activated_at IS NULL AND NOT expired
        AND renewal_password_hash IS NULL AND renewal_mfa_secret IS NULL
        AND (mfa_secret IS NULL OR mfa_secret = pending_mfa_secret)
        AND disabled_at IS NULL
        AND created_at < now() - make_interval(secs => $3),
    coalesce(locked_until > now(), false),
    coalesce(locked_until = 'infinity', false),
    disabled_at IS NOT NULL,
    coalesce(two_factor_reset_at > now() - make_interval(secs => $3), false),
    failed_attempts,
    last_totp_step";

const FOR_UPDATE: bool = true;
const NO_LOCK: bool = false;

/// Returns a row when the account was created, none when the username (as
/// compared, or as it looks) is taken. Every statement that sets
/// `password_hash` also sets `creation_request` as migration 0003's trigger
/// would (from the request id this transaction gives, see
/// [`crate::request_id`]), so that the trigger is not called: a fresh
/// connection that calls no PL/pgSQL saves loading and compiling it.
const INSERT_ACCOUNT: &str = "
    INSERT INTO users (username, username_key, username_skeleton, username_display_skeleton,
                       password_hash, creation_request, created_at, expired)
    VALUES ($1, $2, $3, $4, $5, nullif(current_setting('cofrap.creation_request', true), ''),
            now(), false)
    ON CONFLICT DO NOTHING
    RETURNING id::bigint";

/// An abandoned pending account for its new owner: everything about the old
/// one is forgotten.
const TAKE_AFRESH: &str = "
    UPDATE users
       SET username = $2, username_key = $3, username_skeleton = $4,
           username_display_skeleton = $5, password_hash = $6, created_at = now(),
           creation_request = nullif(current_setting('cofrap.creation_request', true), ''),
           expired = false, mfa_secret = NULL, pending_mfa_secret = NULL,
           renewal_password_hash = NULL, renewal_mfa_secret = NULL,
           activated_at = NULL, last_totp_step = NULL, failed_attempts = 0, locked_until = NULL
     WHERE id = $1";

/// Renewal, first step: the new password waits beside the old credentials.
const STAGE_PASSWORD: &str = "
    UPDATE users
       SET renewal_password_hash = $2, renewal_mfa_secret = NULL
     WHERE id = $1";

/// Renewal, second step: the new password was received; it becomes current
/// and the new secret waits for its first code.
const STAGE_SECRET_AND_PROMOTE: &str = "
    UPDATE users
       SET password_hash = renewal_password_hash, renewal_password_hash = NULL,
           creation_request = nullif(current_setting('cofrap.creation_request', true), ''),
           renewal_mfa_secret = $2, last_totp_step = NULL
     WHERE id = $1";

/// Renewal, second step again: the staged secret's QR code was lost.
const STAGE_SECRET: &str = "
    UPDATE users SET renewal_mfa_secret = $2, last_totp_step = NULL WHERE id = $1";

/// A pending account's secret; `pending_mfa_secret` marks it as ours, so
/// that a secret the Python version wrote is never mistaken for one.
const STORE_SECRET: &str = "
    UPDATE users
       SET mfa_secret = $2, pending_mfa_secret = $2, last_totp_step = NULL,
           failed_attempts = 0, locked_until = NULL
     WHERE id = $1";

/// $3: the credentials are expired, so the code is consumed but the account
/// is marked expired instead of being activated.
const ACCEPT_CODE: &str = "
    UPDATE users
       SET last_totp_step = $2, failed_attempts = 0, locked_until = NULL,
           activated_at = CASE WHEN $3 THEN activated_at ELSE coalesce(activated_at, now()) END,
           pending_mfa_secret = CASE WHEN $3 THEN pending_mfa_secret END,
           two_factor_reset_at = NULL,
           expired = expired OR $3
     WHERE id = $1
       AND (last_totp_step IS NULL OR last_totp_step < $2)";

/// Renewal, last step: the staged secret's first good code. The new
/// credentials are in force from now.
const CONFIRM_RENEWAL: &str = "
    UPDATE users
       SET mfa_secret = renewal_mfa_secret, renewal_mfa_secret = NULL,
           renewal_password_hash = NULL, pending_mfa_secret = NULL,
           created_at = now(), expired = false,
           activated_at = coalesce(activated_at, now()),
           last_totp_step = $2, failed_attempts = 0, locked_until = NULL,
           two_factor_reset_at = NULL
     WHERE id = $1
       AND renewal_mfa_secret IS NOT NULL
       AND (last_totp_step IS NULL OR last_totp_step < $2)";

const REHASH: &str = "
    UPDATE users
       SET password_hash = $2,
           creation_request = nullif(current_setting('cofrap.creation_request', true), '')
     WHERE id = $1";

/// $3: lock for good; else $4 > 0: lock for $4 seconds; else no new lock.
const RECORD_FAILURE: &str = "
    UPDATE users
       SET failed_attempts = $2,
           locked_until = CASE WHEN $3 THEN 'infinity'::timestamptz
                               WHEN $4 > 0 THEN now() + make_interval(secs => $4)
                               ELSE locked_until END
     WHERE id = $1";

/// A text parameter, for the typed statements.
fn text(value: &String) -> (&(dyn ToSql + Sync), Type) {
    (value, Type::TEXT)
}

/// Inserts a new pending account; false when the username is taken.
fn insert_account(
    db: &mut Transaction,
    username: &Username,
    password_hash: &str,
) -> Result<bool, Error> {
    let created = db.query_typed_opt(
        INSERT_ACCOUNT,
        &[
            (&username.as_str(), Type::TEXT),
            (&username.key(), Type::TEXT),
            (&username.skeleton(), Type::TEXT),
            (&username.display_skeleton(), Type::TEXT),
            (&password_hash, Type::TEXT),
        ],
    )?;
    let Some(row) = created else {
        return Ok(false);
    };
    let id: i64 = row.get(0);
    note_account_id(id);
    db.record(Event::ok(id, kind::CREATED));
    Ok(true)
}

/// Reads the account, if there is one; locks its row when `for_update`.
fn read(
    db: &mut Transaction,
    username: &Username,
    policy: &Policy,
    for_update: bool,
) -> Result<Option<Account>, Error> {
    let window = f64::from(policy.enrollment_window_seconds);
    let mut statement = select_named(ACCOUNT_COLUMNS);
    if for_update {
        statement.push_str(" FOR UPDATE");
    }
    let row = db.query_typed_opt(
        &statement,
        &[
            (&username.skeleton(), Type::TEXT),
            (&username.key(), Type::TEXT),
            (&window, Type::FLOAT8),
        ],
    )?;
    Ok(row.map(|row| Account {
        id: row.get(0),
        username: row.get(1),
        password_hash: row.get(2),
        mfa_secret: row.get(3),
        renewal_password_hash: row.get(4),
        renewal_mfa_secret: row.get(5),
        active: row.get(6),
        expired: row.get(7),
        enrollment_abandoned: row.get(8),
        locked: row.get(9),
        hard_locked: row.get(10),
        disabled: row.get(11),
        two_factor_reenrollable: row.get(12),
        failed_attempts: row.get(13),
        last_totp_step: row.get(14),
    }))
}

/// The outcome of the password check made before the row is locked: which
/// hash was checked (none for an unknown account), and whether the password
/// matched it.
struct Verified {
    hash: Option<String>,
    matches: bool,
}

/// Checks the password against the hash `which` picks, without any lock.
/// Every path does the work of one check at the configured cost: an unknown
/// account a dummy check, a locked one a real check of its own hash (so it
/// costs the same as a wrong password), a hash of a lower cost its check
/// plus dummy work ([`password::verify_with_work_of`]). All are refused by
/// [`lock_verified`], after the same transaction as the others, so that no
/// refusal is quicker than another.
fn verify_unlocked(
    db: &mut Database,
    username: &Username,
    password: &str,
    which: impl Fn(&Account) -> String,
    policy: &Policy,
) -> Result<Verified, Error> {
    // A transaction of its own: the check below (bcrypt, the slow part)
    // runs outside any, so that a pooler's server connection is not held
    // through it.
    let Some(account) = db.read(|tx| read(tx, username, policy, NO_LOCK))? else {
        password::verify_nothing(password, policy.bcrypt_cost);
        return Ok(Verified {
            hash: None,
            matches: false,
        });
    };
    note_account_id(account.id);
    let hash = which(&account);
    let matches = password::verify_with_work_of(password, &hash, policy.bcrypt_cost);
    Ok(Verified {
        hash: Some(hash),
        matches,
    })
}

/// Locks the account checked by [`verify_unlocked`] and returns it when the
/// password was right and the account is not locked. Should the hash have
/// changed in between (a concurrent renewal or rehash), the password is
/// checked again against the new one.
///
/// Nothing is counted here. Every password in this system is generated (24
/// characters over 94, about 157 bits): nobody guesses one, so a wrong
/// password is never a near miss, and counting it would only let a stranger
/// who knows a username lock its owner out. What must be throttled is the
/// 6-digit code, which only the holder of the password can reach:
/// [`authenticate`] counts a wrong code after a right password.
fn lock_verified(
    tx: &mut Transaction,
    username: &Username,
    password: &str,
    verified: Verified,
    which: impl Fn(&Account) -> String,
    policy: &Policy,
) -> Result<Account, Error> {
    let Some(account) = read(tx, username, policy, FOR_UPDATE)? else {
        return Err(Error::InvalidCredentials);
    };
    note_account_id(account.id);
    // Refused before the password is even compared, after the same bcrypt
    // work as any other refusal (done in verify_unlocked).
    let shut = if account.disabled {
        Some("disabled")
    } else if account.hard_locked {
        Some("hard_locked")
    } else if account.locked {
        Some("locked")
    } else {
        None
    };
    if let Some(reason) = shut {
        tx.record(Event::refused(account.id, INVALID, reason));
        return Err(Error::InvalidCredentials);
    }
    let hash = which(&account);
    let matches = if verified.hash.as_ref() == Some(&hash) {
        verified.matches
    } else {
        password::verify_with_work_of(password, &hash, policy.bcrypt_cost)
    };
    if !matches {
        tx.record(Event::refused(account.id, INVALID, "wrong_password"));
        return Err(Error::InvalidCredentials);
    }
    Ok(account)
}

/// How a failure changes the account's lock.
#[derive(Debug, PartialEq)]
enum Lock {
    /// Not at a threshold: the account stays as it is.
    Unchanged,
    /// Locked for this many seconds.
    For(f64),
    /// At the hard limit: locked until an operator unlocks it.
    ForGood,
}

/// Failures count across locks until a success. Every
/// `max_failed_attempts`-th failure locks the account, the first time for
/// `lockout_seconds`, then twice as long each time, up to
/// `lockout_max_seconds`; the `hard_lock_attempts`-th locks it for good.
fn lock_after(failures: u32, policy: &Policy) -> Lock {
    if failures >= policy.hard_lock_attempts {
        return Lock::ForGood;
    }
    if !failures.is_multiple_of(policy.max_failed_attempts) {
        return Lock::Unchanged;
    }
    // Doublings beyond 40 exceed any allowed cap already.
    let doublings = (failures / policy.max_failed_attempts - 1).min(40);
    let seconds = f64::from(policy.lockout_seconds) * 2f64.powi(doublings as i32);
    Lock::For(seconds.min(f64::from(policy.lockout_max_seconds)))
}

/// Counts one more consecutive failure, locking the account at a threshold.
fn record_failure(tx: &mut Transaction, account: &Account, policy: &Policy) -> Result<(), Error> {
    let failures = account.failed_attempts.saturating_add(1);
    let (for_good, seconds) = match lock_after(u32::try_from(failures).unwrap_or(0), policy) {
        Lock::Unchanged => (false, 0.0),
        Lock::For(seconds) => {
            tx.record(
                Event::ok(account.id, kind::LOCKED)
                    .answered(INVALID)
                    .with(json!({"seconds": seconds, "failures": failures})),
            );
            (false, seconds)
        }
        Lock::ForGood => {
            tx.record(
                Event::ok(account.id, kind::HARD_LOCKED)
                    .answered(INVALID)
                    .with(json!({"failures": failures})),
            );
            (true, 0.0)
        }
    };
    tx.execute_typed(
        RECORD_FAILURE,
        &[
            (&account.id, Type::INT8),
            (&failures, Type::INT4),
            (&for_good, Type::BOOL),
            (&seconds, Type::FLOAT8),
        ],
    )?;
    Ok(())
}

/// Decrypts a stored 2FA secret (ours or the Python version's).
fn decrypt_secret(config: &Config, encrypted: &str) -> Result<TotpSecret, Error> {
    let plaintext = config.keyring()?.decrypt(encrypted).ok_or_else(|| {
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

    fn policy(max: u32, lockout: u32, cap: u32, hard: u32) -> Policy {
        Policy {
            bcrypt_cost: 10,
            max_failed_attempts: max,
            lockout_seconds: lockout,
            lockout_max_seconds: cap,
            hard_lock_attempts: hard,
            enrollment_window_seconds: 900,
        }
    }

    #[test]
    fn locks_double_up_to_the_cap_and_the_hard_limit_is_for_good() {
        let p = policy(5, 300, 3600, 100);
        assert_eq!(lock_after(1, &p), Lock::Unchanged);
        assert_eq!(lock_after(4, &p), Lock::Unchanged);
        assert_eq!(lock_after(5, &p), Lock::For(300.0));
        assert_eq!(lock_after(6, &p), Lock::Unchanged);
        assert_eq!(lock_after(10, &p), Lock::For(600.0));
        assert_eq!(lock_after(15, &p), Lock::For(1200.0));
        assert_eq!(lock_after(20, &p), Lock::For(2400.0));
        assert_eq!(lock_after(25, &p), Lock::For(3600.0));
        assert_eq!(lock_after(95, &p), Lock::For(3600.0));
        assert_eq!(lock_after(99, &p), Lock::Unchanged);
        assert_eq!(lock_after(100, &p), Lock::ForGood);
        assert_eq!(lock_after(1000, &p), Lock::ForGood);
        // Extreme settings neither overflow nor go below one lock.
        let p = policy(1, 86_400, 31_536_000, 100_000);
        assert_eq!(lock_after(99_999, &p), Lock::For(31_536_000.0));
    }
}
