//! Finding the account an operator names, and saying its state in words
//! (`cofrap-admin show`).
//!
//! A name is looked up exactly as the functions look it up
//! ([`common::account::find`], the same WHERE clause), so that the operator
//! acts on the account a sign-in would reach. `id:N` reaches a row by its id
//! instead: one whose name the rules now refuse, or one of two look-alikes
//! kept from before the rules.
//!
//! What is read here is never a secret: no password hash, 2FA secret or
//! token column is selected, only whether one is there.

use crate::output::Table;
use crate::{Answer, Failure, Outcome};
use common::account::{self, Username};
use common::db::{Database, Transaction};
use common::Error;
use postgres::types::Type;
use serde_json::{json, Value};
use std::fmt;
use std::fmt::Write as _;

/// How an operator names an account.
#[derive(Debug, Clone)]
pub enum Designation {
    Name(Username),
    Id(i64),
}

impl Designation {
    /// A username, or `id:N`. A name the rules refuse is a usage error that
    /// says why, and how to reach the row anyway.
    pub fn parse(text: &str) -> Result<Designation, String> {
        if let Some(id) = text.trim().strip_prefix("id:") {
            return id
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .map(Designation::Id)
                .ok_or_else(|| format!("{text:?}: id: must be followed by an account's number"));
        }
        Username::parse(text).map(Designation::Name).map_err(|e| {
            let reason = match e {
                Error::InvalidUsername(reason) => reason,
                _ => "is not valid",
            };
            format!(
                "{text:?} is not a username the functions accept: it {reason}. \
                 To reach an account by its number, write id:42"
            )
        })
    }
}

impl fmt::Display for Designation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Designation::Name(name) => write!(f, "{:?}", name.as_str()),
            Designation::Id(id) => write!(f, "id:{id}"),
        }
    }
}

/// The refusal for a name or id that designates no account, said plainly.
pub fn unknown(designation: &Designation) -> Failure {
    Failure::Refused(match designation {
        Designation::Name(_) => format!("no account is named {designation}"),
        Designation::Id(id) => format!("no account has the id {id}"),
    })
}

/// A timestamp as RFC 3339 in UTC, to the second (`infinity` stays so).
pub fn utc(column: &str) -> String {
    format!(
        "CASE WHEN {column} = 'infinity' THEN 'infinity' \
              ELSE to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') END"
    )
}

/// An account as an operator sees it: its lifecycle, locks and sessions.
pub struct Snapshot {
    pub id: i64,
    pub username: String,
    pub created_at: String,
    pub activated_at: Option<String>,
    /// The `expired` flag, or credentials older than six months.
    pub expired: bool,
    pub renewal_password_staged: bool,
    pub renewal_two_factor_staged: bool,
    pub two_factor_enrolled: bool,
    pub failed_attempts: i32,
    pub hard_locked: bool,
    /// Until when a lock that is not hard lasts, while it lasts.
    pub locked_until: Option<String>,
    pub disabled_at: Option<String>,
    pub two_factor_reset_at: Option<String>,
    pub last_signed_in: Option<String>,
    pub open_sessions: Vec<OpenSession>,
    /// The credentials expire before the longest enrollment window
    /// (`ENROLLMENT_WINDOW_SECONDS`' maximum, 7 days) would end.
    pub expires_within_a_window: bool,
}

pub struct OpenSession {
    pub id: i64,
    pub started_at: String,
    pub last_used_at: String,
    pub expires_at: String,
}

impl Snapshot {
    /// Where the account is in its lifecycle: pending, active, expired or
    /// renewing (the words of docs/API.md).
    pub fn lifecycle(&self) -> &'static str {
        if self.renewal_password_staged || self.renewal_two_factor_staged {
            "renewing"
        } else if self.expired {
            "expired"
        } else if self.activated_at.is_none() {
            "pending"
        } else {
            "active"
        }
    }

    /// Whether a lock (hard or not) refuses every sign-in now.
    pub fn locked(&self) -> bool {
        self.hard_locked || self.locked_until.is_some()
    }

    /// The state in words: the lifecycle, then what else holds.
    pub fn state(&self) -> String {
        let mut words = vec![self.lifecycle().to_owned()];
        if let Some(at) = &self.disabled_at {
            words.push(format!("disabled since {at}"));
        }
        if self.hard_locked {
            words.push("hard-locked (until an operator unlocks it)".to_owned());
        } else if let Some(until) = &self.locked_until {
            words.push(format!("locked until {until}"));
        }
        if let Some(at) = &self.two_factor_reset_at {
            words.push(format!("2FA reset at {at}, not enrolled again yet"));
        }
        words.join(", ")
    }
}

/// Finds the account and reads it, its row locked when `for_update` (an
/// action's first statement, so that nothing changes it meanwhile).
pub fn locate(
    tx: &mut Transaction,
    designation: &Designation,
    for_update: bool,
) -> Result<Option<Snapshot>, Error> {
    let id = match designation {
        Designation::Id(id) => *id,
        Designation::Name(name) => match account::find(tx, name)? {
            Some(found) => found.id,
            None => return Ok(None),
        },
    };
    let statement = format!(
        "SELECT u.id::bigint, u.username::text, {created}, {activated},
                u.expired OR u.created_at < now() - interval '6 months',
                u.renewal_password_hash IS NOT NULL, u.renewal_mfa_secret IS NOT NULL,
                u.mfa_secret IS NOT NULL, u.failed_attempts,
                coalesce(u.locked_until = 'infinity', false),
                CASE WHEN u.locked_until > now() AND u.locked_until <> 'infinity' THEN {locked} END,
                {disabled}, {reset},
                (SELECT {last} FROM account_events e
                  WHERE e.account_id = u.id AND e.kind = 'signed_in'),
                u.created_at < now() + interval '7 days' - interval '6 months'
           FROM users u WHERE u.id = $1 {lock}",
        created = utc("u.created_at"),
        activated = utc("u.activated_at"),
        locked = utc("u.locked_until"),
        disabled = utc("u.disabled_at"),
        reset = utc("u.two_factor_reset_at"),
        last = utc("max(e.at)"),
        lock = if for_update { "FOR UPDATE OF u" } else { "" },
    );
    let Some(row) = tx.query_typed_opt(&statement, &[(&id, Type::INT8)])? else {
        return Ok(None);
    };
    let sessions = tx.query_typed(
        &format!(
            "SELECT id::bigint, {}, {}, {} FROM sessions
              WHERE user_id = $1 AND ended_at IS NULL AND expires_at > now()
              ORDER BY id",
            utc("started_at"),
            utc("last_used_at"),
            utc("expires_at")
        ),
        &[(&id, Type::INT8)],
    )?;
    Ok(Some(Snapshot {
        id: row.get(0),
        username: row.get(1),
        created_at: row.get(2),
        activated_at: row.get(3),
        expired: row.get(4),
        renewal_password_staged: row.get(5),
        renewal_two_factor_staged: row.get(6),
        two_factor_enrolled: row.get(7),
        failed_attempts: row.get(8),
        hard_locked: row.get(9),
        locked_until: row.get(10),
        disabled_at: row.get(11),
        two_factor_reset_at: row.get(12),
        last_signed_in: row.get(13),
        expires_within_a_window: row.get(14),
        open_sessions: sessions
            .iter()
            .map(|row| OpenSession {
                id: row.get(0),
                started_at: row.get(1),
                last_used_at: row.get(2),
                expires_at: row.get(3),
            })
            .collect(),
    }))
}

/// `show USER`.
pub fn show(db: &mut Database, designation: &Designation) -> Outcome {
    db.read(|tx| {
        Ok(match locate(tx, designation, false)? {
            None => Err(unknown(designation)),
            Some(account) => Ok(describe(&account)),
        })
    })?
}

fn describe(account: &Snapshot) -> Answer {
    let mut text = String::new();
    let none = || "never".to_owned();
    let _ = writeln!(text, "account     {} ({:?})", account.id, account.username);
    let _ = writeln!(text, "state       {}", account.state());
    let _ = writeln!(text, "credentials issued {}", account.created_at);
    let _ = writeln!(
        text,
        "activated   {}",
        account.activated_at.clone().unwrap_or_else(none)
    );
    let two_factor = match (
        account.two_factor_enrolled,
        account.renewal_two_factor_staged,
    ) {
        (_, true) => "a new one staged by the renewal, waiting for its first code",
        (true, false) => "enrolled",
        (false, false) => "none",
    };
    let _ = writeln!(text, "2FA         {two_factor}");
    if account.renewal_password_staged {
        let _ = writeln!(
            text,
            "renewal     a new password staged, waiting for generate-2fa"
        );
    }
    let _ = writeln!(
        text,
        "failures    {} in a row (wrong codes after a right password)",
        account.failed_attempts
    );
    let _ = writeln!(
        text,
        "last sign-in {}",
        account.last_signed_in.clone().unwrap_or_else(none)
    );
    if account.open_sessions.is_empty() {
        let _ = writeln!(text, "sessions    none open");
    } else {
        let _ = writeln!(text, "sessions    {} open:", account.open_sessions.len());
        let mut table = Table::new(&["session", "started", "last used", "ends"]);
        for session in &account.open_sessions {
            table.row(vec![
                session.id.to_string(),
                session.started_at.clone(),
                session.last_used_at.clone(),
                session.expires_at.clone(),
            ]);
        }
        text.push_str(&table.render());
    }
    Answer {
        text,
        json: snapshot_json(account),
    }
}

/// The account as JSON: what `show --json` prints and actions report.
pub fn snapshot_json(account: &Snapshot) -> Value {
    json!({
        "id": account.id,
        "username": account.username,
        "state": account.lifecycle(),
        "disabled_at": account.disabled_at,
        "locked": account.locked(),
        "hard_locked": account.hard_locked,
        "locked_until": if account.hard_locked {
            Some("infinity".to_owned())
        } else {
            account.locked_until.clone()
        },
        "failed_attempts": account.failed_attempts,
        "credentials_issued_at": account.created_at,
        "activated_at": account.activated_at,
        "two_factor_enrolled": account.two_factor_enrolled,
        "two_factor_reset_at": account.two_factor_reset_at,
        "renewal_password_staged": account.renewal_password_staged,
        "renewal_two_factor_staged": account.renewal_two_factor_staged,
        "last_signed_in": account.last_signed_in,
        "open_sessions": account.open_sessions.iter().map(|session| json!({
            "id": session.id,
            "started_at": session.started_at,
            "last_used_at": session.last_used_at,
            "expires_at": session.expires_at,
        })).collect::<Vec<_>>(),
    })
}
