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
use postgres::{Client, NoTls};

/// The schema version this build needs: the number of the newest file in
/// `migrations/`. A newer database is accepted, since migrations only add.
pub const SCHEMA_VERSION: i32 = 1;

/// Connects as the function's database user. TLS is not used: the database
/// is reached inside the cluster network (see the README).
pub fn connect(settings: &DatabaseSettings, application_name: &str) -> Result<Client, Error> {
    postgres::Config::new()
        .host(&settings.host)
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

/// Checks that the schema is there and recent enough.
pub fn check_schema(client: &mut Client) -> Result<(), Error> {
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM cofrap_schema_migrations",
            &[],
        )
        .map_err(|e| match e.code() {
            Some(state) if *state == SqlState::UNDEFINED_TABLE => Error::SchemaMissing,
            _ => Error::from(e),
        })?;
    let found: i32 = row.get(0);
    if found < SCHEMA_VERSION {
        return Err(Error::SchemaOutdated {
            found,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(())
}
