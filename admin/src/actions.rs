//! What an operator does to an account: `unlock`, `disable`, `enable`,
//! `expire`, `sign-out`, `reset-2fa`, `delete`.
//!
//! Each is one transaction: the account's row is locked first (so that no
//! sign-in changes it meanwhile), what is asked is checked against its
//! state, then the change and its event are written and committed together.
//! A refusal is decided before anything is written. An action that finds
//! its work already done says so and writes nothing (no event: nothing
//! changed).
//!
//! The sessions an action ends are ended by the database's trigger on
//! `users` (migrations 0004 and 0006), as when the functions lock or renew
//! an account: `sign-out` is the one that ends them itself.

use crate::accounts::{self, locate, snapshot_json, Designation, Snapshot};
use crate::{Answer, Failure, Outcome};
use common::db::{Database, Transaction};
use common::events::{kind, Event};
use common::Error;
use postgres::types::Type;
use serde_json::{json, Value};

/// Runs `act` on the locked account in one transaction; an unknown account
/// is refused before anything else.
fn on_account(
    db: &mut Database,
    designation: &Designation,
    act: impl FnOnce(&mut Transaction, &Snapshot) -> Result<Outcome, Error>,
) -> Outcome {
    db.transaction(|tx| match locate(tx, designation, true)? {
        None => Ok(Err(accounts::unknown(designation))),
        Some(account) => act(tx, &account),
    })?
}

/// The answer of an action: one sentence, and the account as it is now.
fn done(tx: &mut Transaction, account: &Snapshot, sentence: String) -> Result<Outcome, Error> {
    let now = locate(tx, &Designation::Id(account.id), false)?;
    Ok(Ok(Answer {
        text: format!("{sentence}\n"),
        json: json!({
            "done": sentence,
            "account": now.as_ref().map(snapshot_json).unwrap_or(Value::Null),
        }),
    }))
}

/// An action whose work was already done: nothing written.
fn nothing_to_do(account: &Snapshot, why: &str) -> Result<Outcome, Error> {
    let sentence = format!(
        "account {} ({:?}) {why}: nothing to do",
        account.id, account.username
    );
    Ok(Ok(Answer {
        text: format!("{sentence}\n"),
        json: json!({"done": Value::Null, "nothing_to_do": sentence, "account": snapshot_json(account)}),
    }))
}

/// What is left when an owner can neither sign in to renew nor enroll: the
/// operator's own check of who is asking, then a new account.
const NO_WAY_BACK: &str = "After checking who is asking, delete the account and let its owner \
                           create it again";

/// An action refused for the account's state: nothing written.
fn refused(account: &Snapshot, why: &str) -> Result<Outcome, Error> {
    Ok(Err(Failure::Refused(format!(
        "account {} ({:?}) {why}",
        account.id, account.username
    ))))
}

/// Runs an UPDATE of the account's row ($1 its id).
fn update(tx: &mut Transaction, account: &Snapshot, statement: &str) -> Result<(), Error> {
    tx.execute_typed(statement, &[(&account.id, Type::INT8)])?;
    Ok(())
}

fn sessions(count: usize) -> String {
    match count {
        0 => "no session was open".to_owned(),
        1 => "its open session ended".to_owned(),
        n => format!("its {n} open sessions ended"),
    }
}

/// `unlock USER`: lifts the lock and clears the failure count. A hard lock
/// means someone else holds the password: the account is also marked
/// expired, so that its owner's next sign-in renews the credentials.
pub fn unlock(db: &mut Database, designation: &Designation) -> Outcome {
    on_account(db, designation, |tx, account| {
        if !account.locked() && account.failed_attempts == 0 {
            return nothing_to_do(account, "is not locked and has no failures counted");
        }
        // Its owner could neither renew (no 2FA to sign in with) nor enroll
        // (an expired account does not enroll): see NO_WAY_BACK.
        if account.hard_locked && account.two_factor_reset_at.is_some() {
            return refused(
                account,
                &format!("is hard-locked and its 2FA was reset: {NO_WAY_BACK}"),
            );
        }
        update(
            tx,
            account,
            "UPDATE users
                SET expired = expired OR coalesce(locked_until = 'infinity', false),
                    failed_attempts = 0, locked_until = NULL
              WHERE id = $1",
        )?;
        tx.record(Event::ok(account.id, kind::UNLOCKED).with(json!({
            "hard_locked": account.hard_locked,
            "locked": account.locked(),
            "failures": account.failed_attempts,
            "must_renew": account.hard_locked,
        })));
        let what = if account.hard_locked {
            "unlocked from a hard lock: its next sign-in renews its credentials (new password, new 2FA)"
        } else if account.locked() {
            "unlocked"
        } else {
            "was not locked: its failure count is cleared"
        };
        done(
            tx,
            account,
            format!("account {} ({:?}) {what}", account.id, account.username),
        )
    })
}

/// `disable USER`: every sign-in is refused as a wrong password is, and the
/// account's sessions end.
pub fn disable(db: &mut Database, designation: &Designation) -> Outcome {
    on_account(db, designation, |tx, account| {
        if let Some(since) = &account.disabled_at {
            return nothing_to_do(account, &format!("is disabled already, since {since}"));
        }
        update(
            tx,
            account,
            "UPDATE users SET disabled_at = now() WHERE id = $1",
        )?;
        let ended = account.open_sessions.len();
        tx.record(Event::ok(account.id, kind::DISABLED).with(json!({"sessions_ended": ended})));
        done(
            tx,
            account,
            format!(
                "account {} ({:?}) disabled: every sign-in is refused; {}",
                account.id,
                account.username,
                sessions(ended)
            ),
        )
    })
}

/// `enable USER`: undoes `disable`.
pub fn enable(db: &mut Database, designation: &Designation) -> Outcome {
    on_account(db, designation, |tx, account| {
        if account.disabled_at.is_none() {
            return nothing_to_do(account, "is not disabled");
        }
        update(
            tx,
            account,
            "UPDATE users SET disabled_at = NULL WHERE id = $1",
        )?;
        tx.record(Event::ok(account.id, kind::ENABLED));
        done(
            tx,
            account,
            format!(
                "account {} ({:?}) enabled: its owner may sign in again",
                account.id, account.username
            ),
        )
    })
}

/// `expire USER`: the credentials are expired, so the next sign-in (right
/// password and code) starts a renewal; the sessions end.
pub fn expire(db: &mut Database, designation: &Designation) -> Outcome {
    on_account(db, designation, |tx, account| {
        match account.lifecycle() {
            "expired" | "renewing" => {
                return nothing_to_do(account, "is expired already");
            }
            // An expired pending account could never be taken afresh, and
            // has no credentials in use to renew.
            "pending" => {
                return refused(
                    account,
                    "is pending, never activated: there are no credentials in use to renew \
                     (delete it to free the name at once)",
                )
            }
            _ => {}
        }
        // A renewal starts with a sign-in, which needs a 2FA: expired before
        // its owner has enrolled again, the account would have no way back.
        if account.two_factor_reset_at.is_some() {
            return refused(
                account,
                "has its 2FA reset and not enrolled again: expired now, it could never be \
                 renewed. Expire it once its owner has enrolled again, or delete the account",
            );
        }
        update(tx, account, "UPDATE users SET expired = true WHERE id = $1")?;
        let ended = account.open_sessions.len();
        tx.record(Event::ok(account.id, kind::EXPIRED).with(json!({"sessions_ended": ended})));
        done(
            tx,
            account,
            format!(
                "account {} ({:?}) expired: its next sign-in renews its credentials; {}",
                account.id,
                account.username,
                sessions(ended)
            ),
        )
    })
}

/// `sign-out USER`: ends every open session (their refresh tokens stop
/// working; access tokens already issued run to their own expiry).
pub fn sign_out(db: &mut Database, designation: &Designation) -> Outcome {
    on_account(db, designation, |tx, account| {
        if account.open_sessions.is_empty() {
            return nothing_to_do(account, "has no open session");
        }
        let ended = tx.execute_typed(
            "UPDATE sessions SET ended_at = now(), end_reason = 'operator'
              WHERE user_id = $1 AND ended_at IS NULL AND expires_at > now()",
            &[(&account.id, Type::INT8)],
        )?;
        tx.record(Event::ok(account.id, kind::SESSIONS_ENDED).with(json!({"sessions": ended})));
        done(
            tx,
            account,
            format!(
                "account {} ({:?}): {}",
                account.id,
                account.username,
                sessions(usize::try_from(ended).unwrap_or(usize::MAX))
            ),
        )
    })
}

/// `reset-2fa USER`: a lost phone. The 2FA secret is forgotten at once (the
/// lost phone's codes stop working, and nobody signs in), and for the
/// enrollment window the owner may enroll a new one with the password
/// (generate-2fa); the first good code of the new one ends the reset.
pub fn reset_two_factor(db: &mut Database, designation: &Designation) -> Outcome {
    on_account(db, designation, |tx, account| {
        let refusal = match account.lifecycle() {
            "pending" => Some(
                "is pending, never activated: its owner enrolls with generate-2fa as usual"
                    .to_owned(),
            ),
            "expired" | "renewing" => Some(format!(
                "has expired credentials: their renewal needs the old 2FA, which a reset \
                 cannot replace. {NO_WAY_BACK}"
            )),
            // Someone else holds the password: enrolling with it would be a
            // race the stranger may win, and unlocked it must renew.
            _ if account.hard_locked => Some(format!(
                "is hard-locked: someone else has used its password, so its owner needs new \
                 credentials, which a lost authenticator cannot renew. {NO_WAY_BACK}"
            )),
            // Expired before the owner has enrolled again, it could neither
            // enroll nor sign in to renew.
            _ if account.expires_within_a_window => Some(format!(
                "has credentials that expire within 7 days (the longest enrollment window), \
                 before its owner could be sure to enroll again. {NO_WAY_BACK}"
            )),
            _ => None,
        };
        if let Some(why) = refusal {
            return refused(account, &why);
        }
        update(
            tx,
            account,
            "UPDATE users
                SET mfa_secret = NULL, pending_mfa_secret = NULL, last_totp_step = NULL,
                    two_factor_reset_at = now()
              WHERE id = $1",
        )?;
        let ended = account.open_sessions.len();
        tx.record(
            Event::ok(account.id, kind::TWO_FACTOR_RESET).with(json!({"sessions_ended": ended})),
        );
        let mut sentence = format!(
            "account {} ({:?}): 2FA reset, {}. Its owner now enrolls a new authenticator with \
             the password (generate-2fa) within the enrollment window; until its first good \
             code nobody signs in",
            account.id,
            account.username,
            sessions(ended)
        );
        if account.locked() || account.disabled_at.is_some() {
            sentence.push_str(
                ". It is locked or disabled: unlock or enable it too, or the owner cannot enroll",
            );
        }
        done(tx, account, sentence)
    })
}

/// `delete USER --yes`: erasure. The row goes, and its sessions and refresh
/// tokens with it (foreign keys, ON DELETE CASCADE); its events stay, with
/// its id and no name (events never hold one).
pub fn delete(db: &mut Database, designation: &Designation) -> Outcome {
    on_account(db, designation, |tx, account| {
        let erased = tx.query_typed_opt(
            "WITH gone AS (DELETE FROM users WHERE id = $1 RETURNING id)
             SELECT count(*)::bigint FROM sessions s JOIN gone ON s.user_id = gone.id",
            &[(&account.id, Type::INT8)],
        )?;
        let sessions: i64 = erased.map(|row| row.get(0)).unwrap_or(0);
        // The planner's statistics (pg_stats) sample the names: gathered
        // again now, without the erased row (its deletion is this
        // transaction's, so ANALYZE leaves it out), they no longer hold it.
        tx.batch_execute("ANALYZE users")?;
        tx.record(Event::ok(account.id, kind::DELETED).with(json!({"sessions_erased": sessions})));
        let sentence = format!(
            "account {} ({:?}) erased, with its {sessions} session(s); its events keep the id \
             {} and hold no name (cofrap-admin events id:{})",
            account.id, account.username, account.id, account.id
        );
        Ok(Ok(Answer {
            text: format!("{sentence}\n"),
            json: json!({"done": sentence, "account": Value::Null, "erased_id": account.id}),
        }))
    })
}
