//! Reaching a server that accepts writes: every address of every host of
//! `POSTGRES_HOST`, in order, within the request's deadline, as libpq does
//! with a host list and `target_session_attrs=read-write`.
//!
//! After a failover the old primary is gone (connection refused, or no
//! answer) and a standby has been promoted; a standby not promoted yet, or
//! an old primary come back as one, is read-only. So each server reached is
//! asked, in the query that also checks the schema, whether it accepts
//! writes, and the next one is tried when it does not. Name resolution runs
//! on a thread we stop waiting for (a silent DNS server must not outlast the
//! deadline); each connection attempt gets its share of the time left, so
//! that a host that drops packets does not eat the whole budget.

use super::{schema_and_role, tls};
use crate::config::{DatabaseSettings, Endpoint, Tls};
use crate::deadline::{self, Deadline, Phase};
use crate::error::Error;
use postgres::config::SslMode;
use postgres::Client;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

/// Every connection attempt gets at least this much (or what is left),
/// however many servers remain to be tried.
const MIN_ATTEMPT: Duration = Duration::from_secs(1);

/// What [`primary`] found.
pub(super) enum Reached {
    /// A server that accepts writes, with this schema version.
    Checked(Client, i32),
    /// The last server of the list, not asked yet (its answer would change
    /// nothing: there is no other to try): the first transaction asks, in
    /// the query that opens it, one round trip fewer. Named for the log.
    Unchecked(Client, String),
}

/// Connects to the first server of `settings` that accepts writes, and
/// checks its schema (see [`Reached`]).
pub(super) fn primary(
    settings: &DatabaseSettings,
    application_name: &str,
    deadline: &Deadline,
) -> Result<Reached, Error> {
    // Built once: parsing the CA and the provider's set-up cost the same for
    // every attempt.
    let connector = match settings.tls {
        Tls::Disable => None,
        ref tls => Some(tokio_postgres_rustls::MakeRustlsConnect::new(tls::config(
            tls,
        )?)),
    };
    let mut failures = Vec::new();
    let endpoints = &settings.endpoints;
    for (index, endpoint) in endpoints.iter().enumerate() {
        let addresses = if endpoint.is_socket() {
            vec![None]
        } else {
            deadline::enter(Phase::Resolve);
            match resolve(&endpoint.host, endpoint.port, deadline) {
                Ok(addresses) => addresses.into_iter().map(Some).collect(),
                Err(error @ Error::DatabaseTimeout(_)) => return Err(error),
                Err(error) => {
                    failures.push(format!("{endpoint}: {}", detail(&error)));
                    continue;
                }
            }
        };
        for (number, address) in addresses.iter().enumerate() {
            deadline::enter(Phase::Connect);
            // This address, the rest of this host's, one for each host after.
            let left = (addresses.len() - number) + (endpoints.len() - index - 1);
            let share = deadline.remaining() / u32::try_from(left).unwrap_or(u32::MAX);
            let timeout = share.max(MIN_ATTEMPT).min(deadline.remaining());
            let attempt = connect_once(
                settings,
                endpoint,
                *address,
                application_name,
                timeout,
                connector.as_ref(),
            );
            let client = match attempt {
                Ok(client) => client,
                Err(error) if deadline.remaining().is_zero() => {
                    return Err(deadline::timeout(super::with_causes(&error)))
                }
                Err(error) => {
                    failures.push(format!(
                        "{}: {}",
                        shown(endpoint, *address),
                        super::with_causes(&error)
                    ));
                    continue;
                }
            };
            let last = index + 1 == endpoints.len() && number + 1 == addresses.len();
            if last {
                return Ok(Reached::Unchecked(client, shown(endpoint, *address)));
            }
            let mut client = client;
            let (version, read_only) = schema_and_role(&mut client, None)?;
            if !read_only {
                return Ok(Reached::Checked(client, version));
            }
            failures.push(format!(
                "{}: read-only (a standby)",
                shown(endpoint, *address)
            ));
        }
    }
    if deadline.remaining().is_zero() {
        return Err(deadline::timeout(failures.join("; ")));
    }
    Err(Error::DatabaseUnavailable(format!(
        "no server accepts writes: {}",
        failures.join("; ")
    )))
}

/// One connection to one address of `endpoint` (its socket directory when
/// `address` is `None`), within `timeout`.
fn connect_once(
    settings: &DatabaseSettings,
    endpoint: &Endpoint,
    address: Option<IpAddr>,
    application_name: &str,
    timeout: Duration,
    connector: Option<&tokio_postgres_rustls::MakeRustlsConnect>,
) -> Result<Client, postgres::Error> {
    let mut config = postgres::Config::new();
    // The name is what TLS checks the certificate against; the address is
    // where to connect.
    config.host(&endpoint.host);
    if let Some(address) = address {
        config.hostaddr(address);
    }
    config
        .port(endpoint.port)
        .dbname(&settings.dbname)
        .user(&settings.user)
        .password(&settings.password)
        .application_name(application_name)
        .connect_timeout(timeout.max(Duration::from_millis(1)));
    match (connector, endpoint.is_socket()) {
        // TLS over a Unix socket protects nothing: libpq skips it too.
        (None, _) | (_, true) => config.connect(postgres::NoTls),
        (Some(connector), false) => {
            config.ssl_mode(match settings.tls {
                Tls::Prefer => SslMode::Prefer,
                _ => SslMode::Require,
            });
            config.connect(connector.clone())
        }
    }
}

/// How an attempt is named in the log: the host as configured, and the
/// address when the name had to be resolved.
fn shown(endpoint: &Endpoint, address: Option<IpAddr>) -> String {
    match address {
        Some(ip) if ip.to_string() != endpoint.host => format!("{endpoint} ({ip})"),
        _ => endpoint.to_string(),
    }
}

/// The operator's detail of an error, or its message.
fn detail(error: &Error) -> String {
    error
        .log_detail()
        .map(str::to_owned)
        .unwrap_or_else(|| error.to_string())
}

/// The addresses of a database host, in the resolver's order: itself when
/// it is an IP address. The resolver can hang (a silent DNS server): it runs
/// on a thread of its own, and we stop waiting for it at the deadline.
fn resolve(host: &str, port: u16, deadline: &Deadline) -> Result<Vec<IpAddr>, Error> {
    if let Ok(address) = host.parse::<IpAddr>() {
        return Ok(vec![address]);
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("resolve".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let addresses = (name.as_str(), port).to_socket_addrs().map(|found| {
                let mut addresses: Vec<IpAddr> = Vec::new();
                for address in found {
                    if !addresses.contains(&address.ip()) {
                        addresses.push(address.ip());
                    }
                }
                addresses
            });
            let _ = sender.send(addresses);
        })
        .map_err(|e| Error::Internal(format!("cannot start the resolver thread: {e}")))?;
    match receiver.recv_timeout(deadline.remaining()) {
        Ok(Ok(addresses)) if addresses.is_empty() => {
            Err(Error::DatabaseUnavailable(format!("{host} has no address")))
        }
        Ok(Ok(addresses)) => Ok(addresses),
        Ok(Err(e)) => Err(Error::DatabaseUnavailable(format!(
            "cannot resolve {host}: {e}"
        ))),
        Err(_) => Err(deadline::timeout(format!("no address for {host} in time"))),
    }
}
