//! How cofrap-admin reaches the database: as its administrator, the role
//! that owns nothing the functions can use and may do what they may not.
//!
//! The connection comes, in this order, from
//! 1. `DATABASE_URL` (`postgresql://user:password@host:port/dbname`), as
//!    psql reads it (without a password in it, `PGPASSWORD`'s);
//! 2. `POSTGRES_HOST` and the administrator's secret files
//!    (`db-admin-username`, `db-admin-password` in `SECRETS_DIR`), with
//!    `POSTGRES_PORT`, `POSTGRES_DB`, `POSTGRES_SSLMODE` and
//!    `db-ca-certificate` exactly as the functions read theirs: how it runs
//!    in the cluster, beside them;
//! 3. libpq's `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD` and `PGDATABASE`,
//!    as `make db-migrate` and the test clusters hand them over.
//!
//! With 1 and 3, TLS is libpq's `sslmode` (in the URL, or `PGSSLMODE`):
//! `disable`, `prefer` (the default, as with psql), `require`, or
//! `verify-full` with the CA in `sslrootcert` (or `PGSSLROOTCERT`).
//!
//! Every wait is bounded by the command's deadline (`--timeout`), as the
//! functions' are by theirs ([`common::deadline`]).

use common::config::{self, DatabaseSettings, Endpoint, Tls};
use common::db::Database;
use common::deadline::Deadline;
use common::Error;
use std::path::Path;

/// Where to connect, and as whom, from the environment.
pub fn settings() -> Result<DatabaseSettings, Error> {
    if let Some(url) = config::setting("DATABASE_URL")? {
        return from_url(&url);
    }
    if config::setting("POSTGRES_HOST")?.is_some() {
        return DatabaseSettings::load(
            &config::setting,
            &config::secrets_dir(&config::setting)?,
            config::DB_ADMIN_USER_SECRET,
            config::DB_ADMIN_PASSWORD_SECRET,
        );
    }
    from_libpq_variables()
}

/// Connects within `deadline` to a server that accepts writes and checks
/// the schema; each transaction is bounded by what remains of the deadline.
pub fn connect(settings: &DatabaseSettings, deadline: &Deadline) -> Result<Database, Error> {
    Database::connect(settings, "cofrap-admin", deadline)
}

/// A `postgresql://` URL. Its `sslmode` and `sslrootcert` are read here;
/// the rest is the driver's to parse.
fn from_url(url: &str) -> Result<DatabaseSettings, Error> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let (mut sslmode, mut sslrootcert) = (None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", value)) => sslmode = Some(value.to_owned()),
            Some(("sslrootcert", value)) => sslrootcert = Some(value.to_owned()),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let parsed: postgres::Config = rest
        .parse()
        .map_err(|_| Error::Config("setting DATABASE_URL is not a PostgreSQL URL".to_owned()))?;
    let ports = parsed.get_ports();
    let mut endpoints: Vec<Endpoint> = parsed
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| Endpoint {
            host: match host {
                postgres::config::Host::Tcp(host) => host.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            },
            // One port for all hosts, or one each, as libpq takes them.
            port: ports.get(index).or(ports.first()).copied().unwrap_or(5432),
        })
        .collect();
    if endpoints.is_empty() {
        endpoints.push(Endpoint {
            host: "/var/run/postgresql".to_owned(),
            port: ports.first().copied().unwrap_or(5432),
        });
    }
    let user = parsed
        .get_user()
        .ok_or_else(|| Error::Config("setting DATABASE_URL names no user".to_owned()))?;
    Ok(DatabaseSettings {
        endpoints,
        dbname: parsed.get_dbname().unwrap_or(user).to_owned(),
        user: user.to_owned(),
        // As libpq: a URL without a password takes PGPASSWORD's.
        password: match parsed.get_password() {
            Some(password) => String::from_utf8_lossy(password).into_owned(),
            None => config::setting("PGPASSWORD")?.unwrap_or_default(),
        },
        tls: tls(sslmode.as_deref(), sslrootcert.as_deref(), "DATABASE_URL")?,
    })
}

/// libpq's environment variables.
fn from_libpq_variables() -> Result<DatabaseSettings, Error> {
    let var = |name: &str| config::setting(name);
    let user = var("PGUSER")?.unwrap_or_else(|| "postgres".to_owned());
    let port = match var("PGPORT")? {
        Some(port) => port
            .parse()
            .map_err(|_| Error::Config("setting PGPORT is not a port".to_owned()))?,
        None => 5432,
    };
    let hosts = var("PGHOST")?.unwrap_or_else(|| "/var/run/postgresql".to_owned());
    Ok(DatabaseSettings {
        endpoints: Endpoint::parse_list(&hosts, port)
            .map_err(|what| Error::Config(format!("setting PGHOST {what}")))?,
        dbname: var("PGDATABASE")?.unwrap_or_else(|| user.clone()),
        password: var("PGPASSWORD")?.unwrap_or_default(),
        user,
        tls: tls(
            var("PGSSLMODE")?.as_deref(),
            var("PGSSLROOTCERT")?.as_deref(),
            "PGSSLMODE",
        )?,
    })
}

/// libpq's `sslmode`, of the values the driver can keep.
fn tls(mode: Option<&str>, root_certificate: Option<&str>, setting: &str) -> Result<Tls, Error> {
    Ok(match mode.unwrap_or("prefer") {
        "disable" => Tls::Disable,
        "prefer" => Tls::Prefer,
        "require" => Tls::Require,
        "verify-full" => {
            let path = root_certificate.ok_or_else(|| {
                Error::Config(format!("{setting}: verify-full needs sslrootcert"))
            })?;
            Tls::VerifyFull {
                ca_pem: std::fs::read_to_string(Path::new(path)).map_err(|e| {
                    Error::SecretFile {
                        message: format!("{setting}: the sslrootcert file cannot be read"),
                        path: format!("{path}: {e}"),
                    }
                })?,
            }
        }
        _ => {
            return Err(Error::Config(format!(
                "{setting}: sslmode must be disable, prefer, require or verify-full"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_its_parts_and_its_sslmode() {
        let settings =
            from_url("postgresql://admin:s%20cret@db.example:6543/cofrap_db?sslmode=require")
                .unwrap();
        assert_eq!(
            settings.endpoints,
            [Endpoint {
                host: "db.example".into(),
                port: 6543
            }]
        );
        assert_eq!(settings.user, "admin");
        assert_eq!(settings.dbname, "cofrap_db");
        assert!(matches!(settings.tls, Tls::Require));
        let settings = from_url("postgresql://admin@localhost/cofrap_db").unwrap();
        assert!(matches!(settings.tls, Tls::Prefer), "psql's default");
        assert!(from_url("postgresql://admin@h/db?sslmode=allow").is_err());
        assert!(from_url("postgresql://admin@h/db?sslmode=verify-full").is_err());
        assert!(from_url("not a url").is_err());
    }
}
