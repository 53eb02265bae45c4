//! Account events: the audit trail operators read with `cofrap-admin events`
//! (migration 0006's `account_events`).
//!
//! Every state change of an account, and every refusal that names an
//! existing account, is recorded in the transaction of the change
//! ([`crate::db::Transaction::record`]), all of a transaction's events in
//! one statement just before its `COMMIT`: an event exists if and only if
//! its change committed, and a refusal's event commits with the refusal.
//! An event carries the account's id, what happened and why, the answer's
//! code, and where the request came from as the edge passed it; never a
//! username (an erased account's events keep its id and lose its name), a
//! password, a hash, a secret, a code or a token.

use serde_json::Value;
use std::net::IpAddr;

/// What an event says happened. docs/OPERATIONS.md lists them (Account events).
pub mod kind {
    pub const CREATED: &str = "created";
    pub const TAKEN_AFRESH: &str = "taken_afresh";
    pub const PASSWORD_REISSUED: &str = "password_reissued";
    pub const TWO_FACTOR_ENROLLED: &str = "two_factor_enrolled";
    pub const ACTIVATED: &str = "activated";
    pub const SIGNED_IN: &str = "signed_in";
    pub const RENEWAL_STARTED: &str = "renewal_started";
    pub const RENEWAL_PASSWORD_STAGED: &str = "renewal_password_staged";
    pub const RENEWAL_TWO_FACTOR_STAGED: &str = "renewal_two_factor_staged";
    pub const RENEWAL_COMPLETED: &str = "renewal_completed";
    pub const SESSION_OPENED: &str = "session_opened";
    pub const REFRESHED: &str = "refreshed";
    pub const REUSE_DETECTED: &str = "reuse_detected";
    pub const SESSION_ENDED: &str = "session_ended";
    pub const SIGNED_OUT: &str = "signed_out";
    pub const REFUSED: &str = "refused";
    pub const LOCKED: &str = "locked";
    pub const HARD_LOCKED: &str = "hard_locked";
    // An operator's (cofrap-admin).
    pub const UNLOCKED: &str = "unlocked";
    pub const DISABLED: &str = "disabled";
    pub const ENABLED: &str = "enabled";
    pub const EXPIRED: &str = "expired";
    pub const SESSIONS_ENDED: &str = "sessions_ended";
    pub const TWO_FACTOR_RESET: &str = "two_factor_reset";
    pub const DELETED: &str = "deleted";
    pub const PRUNED: &str = "pruned";

    /// Every kind, for what must list them all (the table of docs/OPERATIONS.md).
    pub const ALL: [&str; 26] = [
        CREATED,
        TAKEN_AFRESH,
        PASSWORD_REISSUED,
        TWO_FACTOR_ENROLLED,
        ACTIVATED,
        SIGNED_IN,
        RENEWAL_STARTED,
        RENEWAL_PASSWORD_STAGED,
        RENEWAL_TWO_FACTOR_STAGED,
        RENEWAL_COMPLETED,
        SESSION_OPENED,
        REFRESHED,
        REUSE_DETECTED,
        SESSION_ENDED,
        SIGNED_OUT,
        REFUSED,
        LOCKED,
        HARD_LOCKED,
        UNLOCKED,
        DISABLED,
        ENABLED,
        EXPIRED,
        SESSIONS_ENDED,
        TWO_FACTOR_RESET,
        DELETED,
        PRUNED,
    ];
}

/// One event, before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `users.id`; `None` for an action on no account (a prune).
    pub account_id: Option<i64>,
    /// One of [`kind`].
    pub kind: &'static str,
    /// The answer's code: `ok`, or the refusal's.
    pub outcome: &'static str,
    /// Why, for a refusal: `wrong_password`, `wrong_code`...
    pub reason: Option<&'static str>,
    /// Anything else worth keeping (a lock's seconds, a session's id).
    pub detail: Option<Value>,
}

impl Event {
    /// A change that succeeded.
    pub fn ok(account_id: i64, kind: &'static str) -> Event {
        Event {
            account_id: Some(account_id),
            kind,
            outcome: "ok",
            reason: None,
            detail: None,
        }
    }

    /// A refusal of a request that named this account.
    pub fn refused(account_id: i64, outcome: &'static str, reason: &'static str) -> Event {
        Event {
            account_id: Some(account_id),
            kind: kind::REFUSED,
            outcome,
            reason: Some(reason),
            detail: None,
        }
    }

    /// The same event with a detail.
    pub fn with(mut self, detail: Value) -> Event {
        self.detail = Some(detail);
        self
    }

    /// The same event with another answer's code.
    pub fn answered(mut self, outcome: &'static str) -> Event {
        self.outcome = outcome;
        self
    }
}

/// Where a transaction's events come from: the function or tool, and the
/// request as the edge passed it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Source {
    /// The function's name, or `cofrap-admin`.
    pub name: String,
    pub client_address: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// SHA-256 (hex) of generate-password's request id.
    pub request_id: Option<String>,
    /// The operator, for cofrap-admin.
    pub operator: Option<String>,
}

/// The longest user agent kept; the rest is cut.
pub const MAX_USER_AGENT_CHARS: usize = 256;

impl Source {
    /// A request to function `name`, its headers read through `header` (the
    /// watchdog's `Http_*` variables). The client's address is the `hops`-th
    /// address of `X-Forwarded-For` from the right: each proxy the operator
    /// runs appends the address it received the request from, so that one
    /// is the last the operator's own proxies vouch for, and anything to its
    /// left is whatever the client sent. `hops` 0 records no address; an
    /// entry that is not an IP address, or a header with fewer entries,
    /// records none either.
    pub fn request(name: &str, header: impl Fn(&str) -> Option<String>, hops: u32) -> Source {
        let client_address = header("Http_X_Forwarded_For").and_then(|forwarded| {
            let hop = usize::try_from(hops).ok()?.checked_sub(1)?;
            let entry = forwarded.rsplit(',').nth(hop)?.trim();
            parse_address(entry)
        });
        let user_agent = header("Http_User_Agent")
            .map(|agent| agent.chars().take(MAX_USER_AGENT_CHARS).collect::<String>())
            .filter(|agent| !agent.is_empty());
        Source {
            name: name.to_owned(),
            client_address,
            user_agent,
            ..Source::default()
        }
    }
}

/// An IP address as X-Forwarded-For writes it: bare, `[v6]`, or with a port
/// (`198.51.100.7:4711`, `[2001:db8::1]:4711`). An IPv4 address a dual-stack
/// proxy wrote as IPv6 (`::ffff:198.51.100.7`) is kept as the IPv4 address
/// it is, so that one client is one address in `events --source` and
/// `report`.
fn parse_address(entry: &str) -> Option<IpAddr> {
    let parsed = entry.parse::<IpAddr>().ok().or_else(|| {
        if let Some(rest) = entry.strip_prefix('[') {
            return rest.split(']').next()?.parse().ok();
        }
        let (address, port) = entry.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        address.parse().ok()
    });
    parsed.map(|address| address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(forwarded: Option<&str>, hops: u32) -> Option<IpAddr> {
        Source::request(
            "authenticate",
            |name| match name {
                "Http_X_Forwarded_For" => forwarded.map(str::to_owned),
                _ => None,
            },
            hops,
        )
        .client_address
    }

    #[test]
    fn the_client_address_is_the_trusted_hop_from_the_right() {
        let ip = |text: &str| Some(text.parse::<IpAddr>().unwrap());
        // The client forged the first entry; the edge appended the real one,
        // the gateway its own.
        let forwarded = Some("6.6.6.6, 198.51.100.7, 10.0.0.2");
        assert_eq!(source(forwarded, 1), ip("10.0.0.2"));
        assert_eq!(source(forwarded, 2), ip("198.51.100.7"));
        assert_eq!(source(forwarded, 4), None, "fewer entries than hops");
        assert_eq!(source(forwarded, 0), None, "no address recorded");
        assert_eq!(source(None, 1), None);
        assert_eq!(source(Some("not-an-address"), 1), None);
        assert_eq!(source(Some("198.51.100.7:4711"), 1), ip("198.51.100.7"));
        assert_eq!(source(Some("[2001:db8::1]:4711"), 1), ip("2001:db8::1"));
        assert_eq!(source(Some("2001:db8::1"), 1), ip("2001:db8::1"));
        assert_eq!(source(Some("::ffff:198.51.100.7"), 1), ip("198.51.100.7"));
        assert_eq!(
            source(Some("[::ffff:198.51.100.7]:80"), 1),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn user_agents_are_cut() {
        let long = "x".repeat(1000);
        let source = Source::request(
            "refresh",
            |name| (name == "Http_User_Agent").then(|| long.clone()),
            1,
        );
        assert_eq!(source.user_agent.unwrap().len(), MAX_USER_AGENT_CHARS);
    }
}
