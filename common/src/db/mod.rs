//! The database: the connection to a server that accepts writes, its time
//! bounds and TLS, transactions, the schema check, and what a PostgreSQL
//! error means for the client.
//!
//! **Every statement runs in a transaction that carries the request's
//! settings**, set with `set_config(..., true)` in the query that opens it,
//! so that they end with it: `statement_timeout` and `lock_timeout` (the
//! server stops a statement or a lock wait that would end after the deadline
//! less its margin), `cofrap.commit_by` (the instant, on the server's clock,
//! after which migration 0003's deferred trigger refuses to commit), and
//! generate-password's `cofrap.creation_request`. Nothing is set for the
//! session: behind a transaction pooler (PgBouncer) the next transaction on
//! the same server connection may be another client's, and must see nothing
//! of ours. The opening query is one round trip, the `BEGIN` with the
//! settings.
//!
//! Every step is bounded by the request's [`Deadline`] (see [`connect`] for
//! resolving and connecting). What the server cannot bound (a frozen server,
//! a stalled TLS handshake, a commit waiting for a synchronous standby) the
//! deadline's guard thread does ([`crate::deadline`]).
//!
//! The schema itself is SQL under `migrations/`, applied by `make db-migrate`.
//! Functions never create or alter it: they check, once per request, in the
//! query that also asks whether the server accepts writes, that the version
//! recorded in `cofrap_schema_migrations` is the one this build was written
//! for, and stop with a server error otherwise. Running a function against a
//! half-migrated database would be worse than not running.

mod connect;
mod tls;

use crate::config::DatabaseSettings;
use crate::deadline::{self, Deadline, Phase};
use crate::error::Error;
use crate::events::{Event, Source};
use crate::log::profile;
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, Row, SimpleQueryMessage};
use postgres_protocol::escape::escape_literal;
use std::time::{Duration, Instant};

/// The schema version this build needs: the number of the newest file in
/// `migrations/`. A newer database is accepted, since migrations only add.
pub const SCHEMA_VERSION: i32 = 8;

/// A statement's parameters, each with its type: statements go out with
/// their types (`query_typed`), one round trip each instead of a prepare
/// and an execute (nothing prepared would be reused by a process that runs
/// one request).
pub type Params<'a> = [(&'a (dyn ToSql + Sync), Type)];

/// A connection to a server that accepts writes, for one request.
pub struct Database {
    client: Client,
    deadline: Deadline,
    /// Where the request came from, for its events; its request id (the
    /// SHA-256, hex, of generate-password's) is also told to the database
    /// by every transaction, whose trigger records it with the password.
    source: Source,
    /// The server not asked yet whether it accepts writes and has the
    /// schema (see [`connect::Reached`]): the next query asks.
    unchecked: Option<String>,
}

impl Database {
    /// Connects as `settings` says, to the first of its servers that accepts
    /// writes, within the deadline, and checks the schema.
    pub fn connect(
        settings: &DatabaseSettings,
        application_name: &str,
        deadline: &Deadline,
    ) -> Result<Database, Error> {
        let (client, unchecked) = match connect::primary(settings, application_name, deadline)? {
            connect::Reached::Checked(client, version) => {
                usable(version, false, "")?;
                (client, None)
            }
            connect::Reached::Unchecked(client, server) => (client, Some(server)),
        };
        Ok(Database {
            client,
            deadline: *deadline,
            source: Source {
                name: application_name.to_owned(),
                ..Source::default()
            },
            unchecked,
        })
    }

    /// Checks the schema and that the server accepts writes, now, if no
    /// query has yet (the floor of `make bench`: connect, one query).
    pub fn check(&mut self) -> Result<(), Error> {
        if let Some(server) = self.unchecked.take() {
            let (version, read_only) = schema_and_role(&mut self.client, None)?;
            usable(version, read_only, &server)?;
        }
        Ok(())
    }

    /// Where the request came from, for the events of its transactions.
    pub fn set_event_source(&mut self, source: Source) {
        let request_id = self.source.request_id.take();
        self.source = Source {
            request_id: source.request_id.or(request_id),
            ..source
        };
    }

    /// From now on, every transaction tells the database that the
    /// passwords it sets are those of the request whose id has this
    /// fingerprint (64 hex digits, see [`crate::request_id`]); events
    /// carry it too.
    pub fn set_creation_request(&mut self, fingerprint: &str) {
        debug_assert!(fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
        self.source.request_id = Some(fingerprint.to_owned());
    }

    /// Runs `work` in a transaction: committed when it succeeds or refuses,
    /// rolled back on a server fault. The deadline's phases say whether a
    /// timeout hit the statements or the commit.
    pub fn transaction<T>(
        &mut self,
        work: impl FnOnce(&mut Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.run(false, work)
    }

    /// Runs `work` in a read-only transaction, which records no event and
    /// commits without the deadline check (it has nothing to commit).
    pub fn read<T>(
        &mut self,
        work: impl FnOnce(&mut Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.run(true, work)
    }

    fn run<T>(
        &mut self,
        read_only: bool,
        work: impl FnOnce(&mut Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        deadline::enter(Phase::Transaction);
        let opening = self.opening(read_only);
        let unchecked = self.unchecked.take();
        // From here on, dropping the transaction rolls it back.
        let mut tx = Transaction {
            client: &mut self.client,
            source: &self.source,
            events: Vec::new(),
            open: true,
            failed: false,
            read_only,
        };
        let sent = Instant::now();
        profile::mark("tx_open");
        match &unchecked {
            // The server's first query: the schema and role check, with the
            // settings.
            Some(server) => {
                let (version, read_only) = schema_and_role(tx.client, Some(&opening))?;
                usable(version, read_only, server)?;
                deadline::enter(Phase::Transaction);
            }
            None => tx.client.batch_execute(&opening)?,
        }
        profile::mark("work");
        // The server read its clock somewhere within the round trip, so its
        // commit_by may be up to a round trip later than ours. Negligible on
        // a healthy network; when it is not, move the instant back by the
        // round trip, so that it is never later than the deadline less the
        // margin.
        let round_trip = sent.elapsed();
        if round_trip > Duration::from_millis(20) {
            tx.client.batch_execute(&format!(
                "SELECT set_config('cofrap.commit_by', \
                        (current_setting('cofrap.commit_by')::double precision \
                         - {}::double precision)::text, true)",
                round_trip.as_secs_f64()
            ))?;
        }
        let outcome = work(&mut tx);
        match &outcome {
            Err(error) if error.is_server_fault() => {} // dropped: rolled back
            _ => {
                deadline::enter(Phase::Commit);
                tx.commit()?;
            }
        }
        deadline::enter(Phase::Work);
        outcome
    }

    /// The query that opens a transaction with the request's settings: the
    /// time left less the deadline's margin, at least 1 ms (0 would mean no
    /// limit).
    fn opening(&self, read_only: bool) -> String {
        let budget_ms = self.deadline.database_budget().as_millis().max(1);
        let begin = if read_only {
            "BEGIN READ ONLY"
        } else {
            "BEGIN"
        };
        let mut opening = format!(
            "{begin}; SELECT set_config('statement_timeout', '{budget_ms}', true), \
                    set_config('lock_timeout', '{budget_ms}', true), \
                    set_config('cofrap.commit_by', \
                               (extract(epoch FROM clock_timestamp()) + {budget_ms} / 1000.0)::text, \
                               true)"
        );
        // Hex digits only: nothing to quote.
        if let Some(fingerprint) = &self.source.request_id {
            opening.push_str(&format!(
                ", set_config('cofrap.creation_request', '{fingerprint}', true)"
            ));
        }
        opening
    }
}

/// An open transaction; rolled back when dropped uncommitted.
pub struct Transaction<'a> {
    client: &'a mut Client,
    source: &'a Source,
    /// Written just before the commit, all in one statement.
    events: Vec<Event>,
    open: bool,
    /// A statement failed: the server has aborted the transaction, and a
    /// refusal made of that failure (a unique violation read as "taken")
    /// commits nothing.
    failed: bool,
    /// Opened `READ ONLY` ([`Database::read`]).
    read_only: bool,
}

impl Transaction<'_> {
    /// Records `event`, written with the transaction's commit (and never
    /// written if it rolls back).
    pub fn record(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Runs a statement; its rows.
    pub fn query_typed(
        &mut self,
        statement: &str,
        params: &Params,
    ) -> Result<Vec<Row>, postgres::Error> {
        self.run(|client| client.query_typed(statement, params))
    }

    /// Runs a statement that returns at most one row.
    pub fn query_typed_opt(
        &mut self,
        statement: &str,
        params: &Params,
    ) -> Result<Option<Row>, postgres::Error> {
        self.run(|client| client.query_typed_opt(statement, params))
    }

    /// Runs a statement; the number of rows it changed.
    pub fn execute_typed(
        &mut self,
        statement: &str,
        params: &Params,
    ) -> Result<u64, postgres::Error> {
        self.run(|client| client.execute_typed(statement, params))
    }

    /// Runs statements without parameters (a `LOCK TABLE`, say).
    pub fn batch_execute(&mut self, statements: &str) -> Result<(), postgres::Error> {
        self.run(|client| client.batch_execute(statements))
    }

    /// Runs `statement` on the connection, timed in the profile, noting
    /// whether it failed.
    fn run<T>(
        &mut self,
        statement: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let result = profile::during("statements", || statement(self.client));
        self.failed |= result.is_err();
        result
    }

    /// Commits, in one round trip: the transaction's events, the check
    /// that its deadline has not passed, and the `COMMIT`, in one message
    /// that the server runs back to back. A server that froze and wakes up
    /// late fails the check (migration 0007) and commits nothing.
    fn commit(&mut self) -> Result<(), Error> {
        if self.failed {
            // Aborted already: nothing to commit; the rollback is Drop's.
            return Ok(());
        }
        if self.read_only {
            debug_assert!(self.events.is_empty(), "events in a read-only transaction");
            self.client.batch_execute("COMMIT")?;
            self.open = false;
            return Ok(());
        }
        let mut message = events_insert(&std::mem::take(&mut self.events), self.source);
        message.push_str(COMMIT_IN_TIME);
        self.client.batch_execute(&message)?;
        self.open = false;
        Ok(())
    }
}

/// The check and the commit: see [`Transaction::commit`].
pub const COMMIT_IN_TIME: &str = "SELECT (extract(epoch FROM clock_timestamp()) \
     <= current_setting('cofrap.commit_by')::double precision)::cofrap_in_time; COMMIT";

/// The constraint (migration 0007) a commit after its deadline fails.
pub const LATE_COMMIT_CONSTRAINT: &str = "cofrap_commit_in_time";

/// The statement that records `events` (nothing when there are none),
/// followed by `;`. Written out as literals, not parameters, so that it
/// travels in the commit's own message (a simple query takes none): every
/// text goes through the driver's escaping (libpq's `PQescapeLiteral`),
/// numbers and addresses are printed by Rust.
fn events_insert(events: &[Event], source: &Source) -> String {
    if events.is_empty() {
        return String::new();
    }
    let text = |value: Option<&str>| value.map_or("NULL".to_owned(), escape_literal);
    let address = source.client_address.map(|a| a.to_string());
    // The functions' role may not write `operator` (migration 0008): only
    // cofrap-admin's events name the column.
    let (operator_column, operator) = match source.operator.as_deref() {
        Some(operator) => (", operator", format!(", {}", text(Some(operator)))),
        None => ("", String::new()),
    };
    let common = format!(
        "{}, {}::inet, {}, {}{operator}",
        text(Some(&source.name)),
        text(address.as_deref()),
        text(source.user_agent.as_deref()),
        text(source.request_id.as_deref()),
    );
    let rows: Vec<String> = events
        .iter()
        .map(|event| {
            let detail = event.detail.as_ref().map(ToString::to_string);
            format!(
                "({}, {}, {}, {}, {}::jsonb, {common})",
                event
                    .account_id
                    .map_or("NULL".to_owned(), |id| id.to_string()),
                text(Some(event.kind)),
                text(Some(event.outcome)),
                text(event.reason),
                text(detail.as_deref()),
            )
        })
        .collect();
    format!(
        "INSERT INTO account_events (account_id, kind, outcome, reason, detail, source, \
         client_address, user_agent, request_id{operator_column}) VALUES {}; ",
        rows.join(", ")
    )
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            // Best effort: a broken connection has lost the transaction
            // anyway, and a frozen server is the deadline's guard's.
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

/// Whether a server with this schema version, read-only or not, can serve
/// the functions (`server` names it for the log).
fn usable(version: i32, read_only: bool, server: &str) -> Result<(), Error> {
    if read_only {
        return Err(Error::DatabaseUnavailable(format!(
            "no server accepts writes: {server}: read-only (a standby)"
        )));
    }
    if version < SCHEMA_VERSION {
        return Err(Error::SchemaOutdated {
            found: version,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// The query of [`schema_and_role`]. Read-only as libpq's
/// `target_session_attrs=read-write` means it (a standby, or
/// `default_transaction_read_only`), asked so that a transaction opened
/// `READ ONLY` on purpose does not count.
const SCHEMA_AND_ROLE: &str = "SELECT coalesce(max(version), 0), \
     (pg_is_in_recovery() OR current_setting('default_transaction_read_only')::boolean)::text \
     FROM cofrap_schema_migrations";

/// The schema version and whether the server is read-only (a standby), in
/// one simple query: alone, outside any transaction, or after `opening`
/// (a transaction's), in the same round trip.
fn schema_and_role(client: &mut Client, opening: Option<&str>) -> Result<(i32, bool), Error> {
    deadline::enter(Phase::SchemaCheck);
    let query = match opening {
        Some(opening) => format!("{opening}; {SCHEMA_AND_ROLE}"),
        None => SCHEMA_AND_ROLE.to_owned(),
    };
    let messages = client.simple_query(&query).map_err(|e| match e.code() {
        Some(state) if *state == SqlState::UNDEFINED_TABLE => Error::SchemaMissing,
        _ => Error::from(e),
    })?;
    // The last row is the check's (an opening's settings come first).
    messages
        .iter()
        .rev()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => {
                let version = row.get(0).and_then(|v| v.parse().ok())?;
                Some((version, row.get(1) == Some("true")))
            }
            _ => None,
        })
        .ok_or_else(|| Error::Internal("the schema version query returned no number".into()))
}

/// "error connecting to server: Connection refused (os error 111)": the
/// driver's message followed by its causes, which say what actually happened.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// How a database error is answered, by its SQLSTATE alone:
/// - `08` (connection exception), `57P01` to `57P03` (the server is shutting
///   down or starting), `53300` (too many connections), `40001` and `40P01`
///   (serialization failure, deadlock: the transaction was rolled back),
///   `25006` (a read-only transaction: the server became a standby, a
///   failover is under way): `database_unavailable`, retryable;
/// - `57014` (statement_timeout) and `55P03` (lock_timeout):
///   `database_timeout`, retryable (so is a commit refused by the deadline
///   check, see [`LATE_COMMIT_CONSTRAINT`]);
/// - anything else: `database_error`.
pub fn classify_sqlstate(state: &str) -> fn(String) -> Error {
    match state {
        _ if state.starts_with("08") => Error::DatabaseUnavailable,
        "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "25006" => {
            Error::DatabaseUnavailable
        }
        "57014" | "55P03" => deadline::timeout,
        _ => Error::Database,
    }
}

impl From<postgres::Error> for Error {
    /// A query failed. Only the SQLSTATE is kept: a server message can quote
    /// row contents (a constraint violation prints the failing row), and rows
    /// hold password hashes. Errors without a SQLSTATE are connection-level
    /// (closed, timed out, TLS) and carry no row data.
    fn from(error: postgres::Error) -> Self {
        let late = error
            .as_db_error()
            .is_some_and(|e| e.constraint() == Some(LATE_COMMIT_CONSTRAINT));
        if late {
            return deadline::timeout("the commit came after the deadline".to_owned());
        }
        match error.code() {
            Some(state) => classify_sqlstate(state.code())(format!("SQLSTATE {}", state.code())),
            None => Error::DatabaseUnavailable(with_causes(&error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_faults_are_classified_by_sqlstate() {
        let code = |state: &str| classify_sqlstate(state)(String::new()).code();
        for state in [
            "08006", "08001", "57P01", "57P02", "57P03", "53300", "40001", "40P01", "25006",
        ] {
            assert_eq!(code(state), "database_unavailable", "{state}");
        }
        for state in ["57014", "55P03"] {
            assert_eq!(code(state), "database_timeout", "{state}");
        }
        for state in ["23505", "42P01", "42501", "XX000", "57000"] {
            assert_eq!(code(state), "database_error", "{state}");
        }
    }
}
