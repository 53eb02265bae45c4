//! The account events, read and pruned: `events` (one account's history, or
//! one client address's), `report` (what an operator looks at after an
//! incident) and `prune` (the retention period).
//!
//! Times are read and written in UTC: each transaction here sets its
//! `TimeZone` to UTC, so that a date given without a zone means UTC and
//! every time printed is UTC.

use crate::accounts::{self, utc, Designation};
use crate::output::Table;
use crate::{Answer, Failure, Outcome};
use common::db::{Database, Transaction};
use common::events::{kind, Event};
use common::Error;
use postgres::types::Type;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::SystemTime;

/// Where a period starts: a duration back from now, or a date and time.
#[derive(Debug, Clone, PartialEq)]
pub enum Since {
    /// Seconds before now.
    Ago(f64),
    /// A date or date and time, as PostgreSQL reads one (UTC without a zone).
    At(String),
}

impl Since {
    /// As an operator would write it back.
    fn shown(&self) -> String {
        match self {
            Since::Ago(seconds) => format!("{seconds} s ago"),
            Since::At(text) => format!("{text:?}"),
        }
    }

    /// `90m`, `24h`, `7d`, `45s`; or a date such as `2026-03-01` or
    /// `2026-03-01T08:00:00Z`.
    pub fn parse(text: &str) -> Result<Since, String> {
        let text = text.trim();
        let unit = |suffix: char| match suffix {
            's' => Some(1.0),
            'm' => Some(60.0),
            'h' => Some(3600.0),
            'd' => Some(86_400.0),
            _ => None,
        };
        if let Some((seconds, count)) = text
            .chars()
            .last()
            .and_then(|last| Some((unit(last)?, text.strip_suffix(last)?)))
        {
            if let Ok(count) = count.parse::<u32>() {
                return Ok(Since::Ago(f64::from(count) * seconds));
            }
        }
        let looks_like_a_date = text.len() >= 10
            && text.as_bytes()[..10].iter().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    *b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if looks_like_a_date {
            return Ok(Since::At(text.to_owned()));
        }
        Err(format!(
            "{text:?} is neither a duration (90m, 24h, 7d) nor a date (2026-03-01, \
             2026-03-01T08:00:00Z)"
        ))
    }
}

/// The instant `since` designates, by the database's clock (the events'),
/// in a transaction whose time zone is UTC. A date PostgreSQL cannot read
/// is a usage error.
fn instant(tx: &mut Transaction, since: &Since) -> Result<Result<SystemTime, Failure>, Error> {
    tx.batch_execute("SET LOCAL TimeZone = 'UTC'")?;
    let (answer, what) = match since {
        Since::Ago(seconds) => (
            tx.query_typed_opt(
                "SELECT now() - make_interval(secs => $1)",
                &[(seconds, Type::FLOAT8)],
            ),
            "is too far back",
        ),
        Since::At(text) => (
            tx.query_typed_opt("SELECT $1::text::timestamptz", &[(text, Type::TEXT)]),
            "is not a valid date",
        ),
    };
    let row = match answer {
        Ok(row) => row,
        // Class 22, data exception: not an instant PostgreSQL can hold.
        Err(e) if e.code().is_some_and(|c| c.code().starts_with("22")) => {
            return Ok(Err(Failure::Usage(format!(
                "--since {} {what}",
                since.shown()
            ))));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Ok(row
        .map(|row| row.get(0))
        .ok_or_else(|| Error::Internal("no instant".to_owned()))?))
}

/// An address or a network (CIDR), for `events --source`.
#[derive(Debug, Clone, PartialEq)]
pub struct Network(String);

impl Network {
    pub fn parse(text: &str) -> Result<Network, String> {
        let refuse = || {
            format!(
                "--source {text:?} is not an IP address or network (198.51.100.7, 2001:db8::/32)"
            )
        };
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let mut address: IpAddr = address.parse().map_err(|_| refuse())?;
        // An IPv4 address written as IPv6 (::ffff:198.51.100.7) is recorded
        // as IPv4 (common::events): searched for as such.
        if prefix.is_none() {
            address = address.to_canonical();
        }
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(refuse)?,
        };
        Ok(Network(format!("{address}/{prefix}")))
    }
}

/// Whose events.
pub enum Whose {
    Account(Designation),
    Address(Network),
}

/// The columns of an event as printed: every column of the table.
fn event_columns() -> String {
    format!(
        "e.id::bigint, {}, e.account_id::bigint, e.source, e.kind, e.outcome, e.reason,
         e.detail::text, host(e.client_address), e.user_agent, e.request_id, e.operator,
         e.recorded_by::text",
        utc("e.at")
    )
}

struct Row {
    id: i64,
    at: String,
    account_id: Option<i64>,
    source: String,
    kind: String,
    outcome: String,
    reason: Option<String>,
    detail: Option<String>,
    address: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    operator: Option<String>,
    /// The database role that wrote it (migration 0008; NULL before).
    recorded_by: Option<String>,
}

impl Row {
    fn from(row: &postgres::Row) -> Row {
        Row {
            id: row.get(0),
            at: row.get(1),
            account_id: row.get(2),
            source: row.get(3),
            kind: row.get(4),
            outcome: row.get(5),
            reason: row.get(6),
            detail: row.get(7),
            address: row.get(8),
            user_agent: row.get(9),
            request_id: row.get(10),
            operator: row.get(11),
            recorded_by: row.get(12),
        }
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "at": self.at,
            "account_id": self.account_id,
            "source": self.source,
            "kind": self.kind,
            "outcome": self.outcome,
            "reason": self.reason,
            "detail": self.detail.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
            "client_address": self.address,
            "user_agent": self.user_agent,
            "request_id": self.request_id,
            "operator": self.operator,
            "recorded_by": self.recorded_by,
        })
    }
}

fn event_table(rows: &[Row]) -> Table {
    let mut table = Table::new(&[
        "at", "account", "source", "kind", "outcome", "reason", "address", "by", "role", "detail",
    ]);
    let text = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    for row in rows {
        table.row(vec![
            row.at.clone(),
            row.account_id
                .map_or_else(|| "-".to_owned(), |id| id.to_string()),
            row.source.clone(),
            row.kind.clone(),
            row.outcome.clone(),
            text(&row.reason),
            text(&row.address),
            text(&row.operator),
            text(&row.recorded_by),
            text(&row.detail),
        ]);
    }
    table
}

/// `events USER` or `events --source ADDRESS`, newest first.
pub fn events(db: &mut Database, whose: &Whose, since: Option<&Since>, limit: i64) -> Outcome {
    db.read(|tx| {
        let from = match since {
            None => SystemTime::UNIX_EPOCH,
            Some(since) => match instant(tx, since)? {
                Ok(at) => at,
                Err(failure) => return Ok(Err(failure)),
            },
        };
        tx.batch_execute("SET LOCAL TimeZone = 'UTC'")?;
        let (heading, rows) = match whose {
            Whose::Account(designation) => {
                // An erased account's events are still there by its id.
                let (id, heading) = match designation {
                    Designation::Id(id) => (*id, format!("account {id}")),
                    Designation::Name(name) => match common::account::find(tx, name)? {
                        Some(found) => (
                            found.id,
                            format!("account {} ({:?})", found.id, found.username),
                        ),
                        None => return Ok(Err(accounts::unknown(designation))),
                    },
                };
                let rows = tx.query_typed(
                    &format!(
                        "SELECT {} FROM account_events e
                          WHERE e.account_id = $1 AND e.at >= $2
                          ORDER BY e.at DESC, e.id DESC LIMIT $3",
                        event_columns()
                    ),
                    &[
                        (&id, Type::INT8),
                        (&from, Type::TIMESTAMPTZ),
                        (&limit, Type::INT8),
                    ],
                )?;
                (heading, rows)
            }
            Whose::Address(Network(network)) => {
                let rows = tx.query_typed(
                    &format!(
                        "SELECT {} FROM account_events e
                          WHERE e.client_address <<= $1::text::inet AND e.at >= $2
                          ORDER BY e.at DESC, e.id DESC LIMIT $3",
                        event_columns()
                    ),
                    &[
                        (network, Type::TEXT),
                        (&from, Type::TIMESTAMPTZ),
                        (&limit, Type::INT8),
                    ],
                )?;
                (format!("client address {network}"), rows)
            }
        };
        let rows: Vec<Row> = rows.iter().map(Row::from).collect();
        let mut text = format!("Events of {heading}, newest first: {}\n", rows.len());
        if !rows.is_empty() {
            text.push_str(&event_table(&rows).render());
        }
        if i64::try_from(rows.len()).unwrap_or(i64::MAX) == limit {
            let _ = writeln!(
                text,
                "(at most {limit} shown: --limit or --since for others)"
            );
        }
        Ok(Ok(Answer {
            text,
            json: Value::Array(rows.iter().map(Row::json).collect()),
        }))
    })?
}

/// How many rows each part of the report lists.
const REPORT_TOP: i64 = 10;

/// `report --since WHEN`: the addresses and the accounts with the most
/// refusals, and the locks, hard locks and refresh-token reuses, in the
/// period.
pub fn report(db: &mut Database, since: &Since) -> Outcome {
    db.read(|tx| {
        let from = match instant(tx, since)? {
            Ok(at) => at,
            Err(failure) => return Ok(Err(failure)),
        };
        let start: String = tx
            .query_typed_opt(
                &format!("SELECT {}", utc("$1::timestamptz")),
                &[(&from, Type::TIMESTAMPTZ)],
            )?
            .map(|row| row.get(0))
            .unwrap_or_default();
        let period = &[(
            &from as &(dyn postgres::types::ToSql + Sync),
            Type::TIMESTAMPTZ,
        )];

        let addresses = tx.query_typed(
            &format!(
                "SELECT host(client_address), count(*)::bigint, count(DISTINCT account_id)::bigint
                   FROM account_events
                  WHERE kind = '{}' AND at >= $1 AND client_address IS NOT NULL
                  GROUP BY client_address ORDER BY 2 DESC, 1 LIMIT {REPORT_TOP}",
                kind::REFUSED
            ),
            period,
        )?;
        let accounts = tx.query_typed(
            &format!(
                "SELECT e.account_id::bigint, u.username::text, count(*)::bigint,
                        count(DISTINCT e.client_address)::bigint
                   FROM account_events e LEFT JOIN users u ON u.id = e.account_id
                  WHERE e.kind = '{}' AND e.at >= $1
                  GROUP BY e.account_id, u.username ORDER BY 3 DESC, 1 LIMIT {REPORT_TOP}",
                kind::REFUSED
            ),
            period,
        )?;
        let incidents = tx.query_typed(
            &format!(
                "SELECT {} FROM account_events e
                  WHERE e.kind IN ('{}', '{}', '{}') AND e.at >= $1
                  ORDER BY e.at DESC, e.id DESC LIMIT 1000",
                event_columns(),
                kind::LOCKED,
                kind::HARD_LOCKED,
                kind::REUSE_DETECTED
            ),
            period,
        )?;
        let incidents: Vec<Row> = incidents.iter().map(Row::from).collect();

        let mut text = format!("Since {start}\n\nAddresses with the most refusals:\n");
        let mut table = Table::new(&["address", "refusals", "accounts"]);
        for row in &addresses {
            table.row(vec![
                row.get(0),
                row.get::<_, i64>(1).to_string(),
                row.get::<_, i64>(2).to_string(),
            ]);
        }
        text.push_str(&if table.is_empty() {
            "none\n".to_owned()
        } else {
            table.render()
        });
        text.push_str("\nAccounts with the most refusals:\n");
        let mut table = Table::new(&["account", "username", "refusals", "addresses"]);
        for row in &accounts {
            let id: Option<i64> = row.get(0);
            let name: Option<String> = row.get(1);
            table.row(vec![
                id.map_or_else(|| "-".to_owned(), |id| id.to_string()),
                name.map_or_else(|| "(erased)".to_owned(), |name| format!("{name:?}")),
                row.get::<_, i64>(2).to_string(),
                row.get::<_, i64>(3).to_string(),
            ]);
        }
        text.push_str(&if table.is_empty() {
            "none\n".to_owned()
        } else {
            table.render()
        });
        text.push_str("\nLocks, hard locks and refresh-token reuse:\n");
        text.push_str(&if incidents.is_empty() {
            "none\n".to_owned()
        } else {
            event_table(&incidents).render()
        });

        let json = json!({
            "since": start,
            "addresses": addresses.iter().map(|row| json!({
                "address": row.get::<_, String>(0),
                "refusals": row.get::<_, i64>(1),
                "accounts": row.get::<_, i64>(2),
            })).collect::<Vec<_>>(),
            "accounts": accounts.iter().map(|row| json!({
                "account_id": row.get::<_, Option<i64>>(0),
                "username": row.get::<_, Option<String>>(1),
                "refusals": row.get::<_, i64>(2),
                "addresses": row.get::<_, i64>(3),
            })).collect::<Vec<_>>(),
            "locks_and_reuse": incidents.iter().map(Row::json).collect::<Vec<_>>(),
        });
        Ok(Ok(Answer { text, json }))
    })?
}

/// `prune --older-than DAYS`: deletes the events older than the retention
/// period, and records that it did (with how many, never which).
pub fn prune(db: &mut Database, days: u32) -> Outcome {
    db.transaction(|tx| {
        let deleted = tx.execute_typed(
            "DELETE FROM account_events WHERE at < now() - make_interval(days => $1)",
            &[(&i32::try_from(days).unwrap_or(i32::MAX), Type::INT4)],
        )?;
        tx.record(Event {
            account_id: None,
            kind: kind::PRUNED,
            outcome: "ok",
            reason: None,
            detail: Some(json!({"older_than_days": days, "deleted": deleted})),
        });
        let sentence = format!("{deleted} events older than {days} days deleted");
        Ok(Ok(Answer {
            text: format!("{sentence}\n"),
            json: json!({"deleted": deleted, "older_than_days": days}),
        }))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_durations_or_dates() {
        assert_eq!(Since::parse("90m"), Ok(Since::Ago(5400.0)));
        assert_eq!(Since::parse("24h"), Ok(Since::Ago(86_400.0)));
        assert_eq!(Since::parse("7d"), Ok(Since::Ago(604_800.0)));
        assert_eq!(
            Since::parse("2026-03-01"),
            Ok(Since::At("2026-03-01".into()))
        );
        assert!(Since::parse("yesterday").is_err());
        assert!(Since::parse("-3d").is_err());
        assert!(Since::parse("3w").is_err());
        assert!(Since::parse("").is_err());
    }

    #[test]
    fn the_operations_docs_list_every_kind_of_event() {
        let operations = include_str!("../../docs/OPERATIONS.md");
        let start = operations
            .find("\n## Account events\n")
            .expect("no events section");
        let section =
            &operations[start..start + 1 + operations[start + 1..].find("\n## ").unwrap()];
        for kind in kind::ALL {
            assert!(
                section.contains(&format!("\n| `{kind}` |")),
                "the table of events of docs/OPERATIONS.md lacks {kind}"
            );
        }
    }

    #[test]
    fn addresses_and_networks() {
        assert_eq!(
            Network::parse("198.51.100.7"),
            Ok(Network("198.51.100.7/32".into()))
        );
        assert_eq!(
            Network::parse("2001:db8::/32"),
            Ok(Network("2001:db8::/32".into()))
        );
        assert_eq!(
            Network::parse("::ffff:198.51.100.7"),
            Ok(Network("198.51.100.7/32".into()))
        );
        assert!(Network::parse("198.51.100.7/33").is_err());
        assert!(Network::parse("example.com").is_err());
    }
}
