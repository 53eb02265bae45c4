//! The database connection and the schema check.
//!
//! The schema itself is SQL under `migrations/`, applied by `make db-migrate`
//! (psql). Functions never create or alter it: they check, once per request,
//! that the version recorded in `cofrap_schema_migrations` is the one this
//! build was written for, and stop with a server error otherwise. Running a
//! function against a half-migrated database would be worse than not running.

use crate::config::{DatabaseSettings, CONNECT_TIMEOUT};
use crate::error::Error;
use postgres::error::SqlState;
use postgres::{Client, NoTls, SimpleQueryMessage};
use std::net::{IpAddr, ToSocketAddrs};

/// The schema version this build needs: the number of the newest file in
/// `migrations/`. A newer database is accepted, since migrations only add.
pub const SCHEMA_VERSION: i32 = 4;

/// Connects as the function's database user. TLS is not used: the database
/// is reached inside the cluster network (see the README).
pub fn connect(settings: &DatabaseSettings, application_name: &str) -> Result<Client, Error> {
    let mut config = postgres::Config::new();
    config.host(&settings.host);
    // Left to itself, the driver resolves the name on a thread of its own,
    // which the process must then wake and join on exit: measurable on every
    // request. Resolving it here, once, on this thread costs neither.
    if !settings.host.starts_with('/') {
        config.hostaddr(resolve(&settings.host, settings.port)?);
    }
    config
        .port(settings.port)
        .dbname(&settings.dbname)
        .user(&settings.user)
        .password(&settings.password)
        .application_name(application_name)
        .connect_timeout(CONNECT_TIMEOUT)
        .connect(NoTls)
        // Connection-phase messages ("password authentication failed for
        // user ...", "connection refused") hold no row data: fit for the log.
        .map_err(|e| Error::DatabaseUnavailable(with_causes(&e)))
}

/// The address of the database host: itself when it is an IP address, or
/// the first address the system resolver gives.
fn resolve(host: &str, port: u16) -> Result<IpAddr, Error> {
    if let Ok(address) = host.parse::<IpAddr>() {
        return Ok(address);
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::DatabaseUnavailable(format!("cannot resolve {host}: {e}")))?
        .map(|address| address.ip())
        .next()
        .ok_or_else(|| Error::DatabaseUnavailable(format!("{host} has no address")))
}

/// "error connecting to server: Connection refused (os error 111)": the
/// driver's message followed by its causes, which say what actually happened.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// Checks that the schema is there and recent enough. A simple query: one
/// round trip, where a prepared one would take two.
pub fn check_schema(client: &mut Client) -> Result<(), Error> {
    let messages = client
        .simple_query("SELECT coalesce(max(version), 0) FROM cofrap_schema_migrations")
        .map_err(|e| match e.code() {
            Some(state) if *state == SqlState::UNDEFINED_TABLE => Error::SchemaMissing,
            _ => Error::from(e),
        })?;
    let found: i32 = messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .ok_or_else(|| Error::Internal("the schema version query returned no number".into()))?;
    if found < SCHEMA_VERSION {
        return Err(Error::SchemaOutdated {
            found,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(())
}
