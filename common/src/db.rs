//! The database connection, its time bounds and TLS, transactions, and the
//! schema check.
//!
//! Every step is bounded by the request's [`Deadline`]: name resolution runs
//! on a thread we stop waiting for, the TCP connect has the remaining time,
//! and the session's first query sets `statement_timeout` and `lock_timeout`
//! to what remains less the deadline's margin, so that a lock wait or a slow
//! statement ends in an error and a rollback while there is still time to
//! answer. What the server cannot bound (a frozen server, a stalled TLS
//! handshake) the deadline's guard thread does ([`crate::deadline`]).
//!
//! A commit is the one step whose outcome a client can lose: sent to a
//! server that freezes, then wakes up after we have given up. So the schema
//! check also tells the session the instant after which it must refuse to
//! commit (`cofrap.commit_by`, on the server's clock); migration 0003's
//! deferred trigger on `users` enforces it at commit time. A commit that
//! arrives late is rolled back by the database itself.
//!
//! TLS is rustls with the ring provider, linked into the fully static
//! binaries (see the README's Decisions).
//!
//! The schema itself is SQL under `migrations/`, applied by `make db-migrate`
//! (psql). Functions never create or alter it: they check, once per request,
//! that the version recorded in `cofrap_schema_migrations` is the one this
//! build was written for, and stop with a server error otherwise. Running a
//! function against a half-migrated database would be worse than not running.

use crate::config::{DatabaseSettings, Tls};
use crate::deadline::{self, Deadline, Phase};
use crate::error::Error;
use postgres::config::SslMode;
use postgres::error::SqlState;
use postgres::{Client, SimpleQueryMessage, Transaction};
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The schema version this build needs: the number of the newest file in
/// `migrations/`. A newer database is accepted, since migrations only add.
pub const SCHEMA_VERSION: i32 = 5;

/// Connects as the function's database user, within the deadline.
pub fn connect(
    settings: &DatabaseSettings,
    application_name: &str,
    deadline: &Deadline,
) -> Result<Client, Error> {
    let socket = settings.host.starts_with('/');
    let mut config = postgres::Config::new();
    config.host(&settings.host);
    if !socket {
        deadline::enter(Phase::Resolve);
        config.hostaddr(resolve(&settings.host, settings.port, deadline)?);
    }
    deadline::enter(Phase::Connect);
    config
        .port(settings.port)
        .dbname(&settings.dbname)
        .user(&settings.user)
        .password(&settings.password)
        .application_name(application_name)
        .connect_timeout(deadline.remaining().max(Duration::from_millis(1)));
    let connected = match (&settings.tls, socket) {
        // TLS over a Unix socket protects nothing: libpq skips it too.
        (Tls::Disable, _) | (_, true) => config.connect(postgres::NoTls),
        (tls, false) => {
            config.ssl_mode(match tls {
                Tls::Prefer => SslMode::Prefer,
                _ => SslMode::Require,
            });
            config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(
                tls,
            )?))
        }
    };
    // Connection-phase messages ("password authentication failed for user
    // ...", "connection refused", "invalid peer certificate: UnknownIssuer")
    // hold no row data: fit for the log.
    // Every refusal at this stage (wrong password, unknown database, no
    // slot) is "unavailable"; a connect_timeout is the deadline.
    connected.map_err(|e| {
        if deadline.remaining().is_zero() {
            Error::timeout(with_causes(&e))
        } else {
            Error::DatabaseUnavailable(with_causes(&e))
        }
    })
}

/// The address of the database host: itself when it is an IP address, or
/// the first address the system resolver gives. The resolver can hang (a
/// silent DNS server): it runs on a thread of its own, and we stop waiting
/// for it at the deadline.
fn resolve(host: &str, port: u16, deadline: &Deadline) -> Result<IpAddr, Error> {
    if let Ok(address) = host.parse::<IpAddr>() {
        return Ok(address);
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("resolve".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let first = (name.as_str(), port)
                .to_socket_addrs()
                .map(|mut addresses| addresses.next().map(|address| address.ip()));
            let _ = sender.send(first);
        })
        .map_err(|e| Error::Internal(format!("cannot start the resolver thread: {e}")))?;
    match receiver.recv_timeout(deadline.remaining()) {
        Ok(Ok(Some(address))) => Ok(address),
        Ok(Ok(None)) => Err(Error::DatabaseUnavailable(format!("{host} has no address"))),
        Ok(Err(e)) => Err(Error::DatabaseUnavailable(format!(
            "cannot resolve {host}: {e}"
        ))),
        Err(_) => Err(Error::timeout(format!("no address for {host} in time"))),
    }
}

/// The rustls configuration for `require` or `verify-full`.
fn tls_config(tls: &Tls) -> Result<rustls::ClientConfig, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS configuration: {e}")))?;
    let config = match tls {
        Tls::VerifyFull { ca_pem } => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
                let certificate = certificate.map_err(|e| {
                    Error::Config(format!(
                        "secret {} is not a PEM certificate ({e})",
                        crate::config::DB_CA_SECRET
                    ))
                })?;
                roots.add(certificate).map_err(|e| {
                    Error::Config(format!(
                        "secret {} holds an unusable certificate ({e})",
                        crate::config::DB_CA_SECRET
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(Error::Config(format!(
                    "secret {} holds no PEM certificate",
                    crate::config::DB_CA_SECRET
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Tls::Require | Tls::Prefer | Tls::Disable => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// `require`: any certificate is accepted (libpq's meaning of the mode), but
/// the handshake's signatures are still checked, so the session is
/// encrypted with the key of whoever holds that certificate.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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

/// Checks that the schema is there and recent enough, and sets the
/// session's time bounds, in one simple query (one round trip):
/// - `statement_timeout` and `lock_timeout`: the server stops any statement,
///   and any lock wait, that would end after the deadline less its margin;
/// - `cofrap.commit_by`: the instant, on the server's clock, after which it
///   must refuse to commit (see the module's doc).
///
/// They are set here rather than as connection options so that a pooler in
/// front of PostgreSQL (PgBouncer refuses unknown startup options) is no
/// obstacle.
pub fn check_schema(client: &mut Client, deadline: &Deadline) -> Result<(), Error> {
    deadline::enter(Phase::SchemaCheck);
    // 0 would mean "no limit": at least 1 ms.
    let budget_ms = deadline.database_budget().as_millis().max(1);
    let sent = Instant::now();
    let messages = client
        .simple_query(&format!(
            "SELECT coalesce(max(version), 0), \
                    set_config('statement_timeout', '{budget_ms}', false), \
                    set_config('lock_timeout', '{budget_ms}', false), \
                    set_config('cofrap.commit_by', \
                               (extract(epoch FROM clock_timestamp()) + {budget_ms} / 1000.0)::text, \
                               false) \
               FROM cofrap_schema_migrations"
        ))
        .map_err(|e| match e.code() {
            Some(state) if *state == SqlState::UNDEFINED_TABLE => Error::SchemaMissing,
            _ => Error::from(e),
        })?;
    let round_trip = sent.elapsed();
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
    // The server read its clock somewhere within the round trip, so its
    // commit_by may be up to a round trip later than ours. Negligible on a
    // healthy network; when it is not, move the instant back by the round
    // trip, so that it is never later than the deadline less the margin.
    if round_trip > Duration::from_millis(20) {
        client
            .simple_query(&format!(
                "SELECT set_config('cofrap.commit_by', \
                        (current_setting('cofrap.commit_by')::double precision - {}::double precision)::text, \
                        false)",
                round_trip.as_secs_f64()
            ))
            .map_err(Error::from)?;
    }
    Ok(())
}

/// Runs `work` in a transaction: committed when it succeeds or refuses,
/// rolled back on a server fault. The deadline's phases say whether a
/// timeout hit the statements or the commit.
pub fn transaction<T>(
    db: &mut Client,
    work: impl FnOnce(&mut Transaction) -> Result<T, Error>,
) -> Result<T, Error> {
    deadline::enter(Phase::Transaction);
    let mut tx = db.transaction()?;
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
