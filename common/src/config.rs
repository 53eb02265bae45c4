//! Configuration the OpenFaaS way: secrets are files mounted in
//! `/var/openfaas/secrets` (one file per secret, named like the secret), and
//! settings are environment variables.
//!
//! The names below are the only place they are spelled: docs/OPERATIONS.md,
//! stack.yaml and the tests check themselves against [`SECRETS`] and
//! [`SETTINGS`] (tests/docs.rs, tests/deployment.rs). Secret
//! names are the Python version's, so that both read the same Kubernetes secrets.
//!
//! Every missing or malformed value is a [`Error::Config`] that names it and
//! never shows its value.

use crate::encryption::Keyring;
use crate::error::Error;
use crate::jwt::SigningKeys;
use crate::log::profile;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where OpenFaaS mounts secrets; `SECRETS_DIR` overrides it for local runs.
pub const DEFAULT_SECRETS_DIR: &str = "/var/openfaas/secrets";

/// The secrets directory: `SECRETS_DIR`, or [`DEFAULT_SECRETS_DIR`].
pub fn secrets_dir(env: &impl Fn(&str) -> Result<Option<String>, Error>) -> Result<PathBuf, Error> {
    Ok(PathBuf::from(
        env(SECRETS_DIR)?.unwrap_or_else(|| DEFAULT_SECRETS_DIR.to_owned()),
    ))
}

/// Secret: the database user.
pub const DB_USER_SECRET: &str = "db-credentials-username";
/// Secret: its password.
pub const DB_PASSWORD_SECRET: &str = "db-credentials-password";
/// Secret: the Fernet keys, one per line (see [`Keyring`]).
pub const ENCRYPTION_KEY_SECRET: &str = "encryption-key";

/// Secret: the Ed25519 keys that sign access tokens, one per line (see
/// [`SigningKeys`]). Read only by the functions that sign or publish them.
pub const JWT_SIGNING_KEYS_SECRET: &str = "jwt-signing-keys";

/// The secret files the database functions are given.
pub const SECRETS: [&str; 4] = [
    DB_USER_SECRET,
    DB_PASSWORD_SECRET,
    ENCRYPTION_KEY_SECRET,
    JWT_SIGNING_KEYS_SECRET,
];

/// Secrets of the database's administrator: no function reads them, only
/// the schema Job and cofrap-admin.
pub const DB_ADMIN_USER_SECRET: &str = "db-admin-username";
/// Its password.
pub const DB_ADMIN_PASSWORD_SECRET: &str = "db-admin-password";

/// Secret, optional: the PEM certificate(s) of the CA that signed the
/// database server's certificate. Read at `POSTGRES_SSLMODE=verify-full`
/// and at no other mode, so it is not in [`SECRETS`] (stack.yaml gives it to
/// every database function, since one switch turns verify-full on).
pub const DB_CA_SECRET: &str = "db-ca-certificate";

const POSTGRES_HOST: &str = "POSTGRES_HOST";
const POSTGRES_PORT: &str = "POSTGRES_PORT";
const POSTGRES_DB: &str = "POSTGRES_DB";
const BCRYPT_COST: &str = "BCRYPT_COST";
const MAX_FAILED_ATTEMPTS: &str = "MAX_FAILED_ATTEMPTS";
const LOCKOUT_SECONDS: &str = "LOCKOUT_SECONDS";
const ENROLLMENT_WINDOW_SECONDS: &str = "ENROLLMENT_WINDOW_SECONDS";
const LOCKOUT_MAX_SECONDS: &str = "LOCKOUT_MAX_SECONDS";
const HARD_LOCK_ATTEMPTS: &str = "HARD_LOCK_ATTEMPTS";
const ACCESS_TOKEN_SECONDS: &str = "ACCESS_TOKEN_SECONDS";
const SESSION_SECONDS: &str = "SESSION_SECONDS";
const TOKEN_ISSUER: &str = "TOKEN_ISSUER";
const TOKEN_AUDIENCE: &str = "TOKEN_AUDIENCE";
const POSTGRES_SSLMODE: &str = "POSTGRES_SSLMODE";
/// Public: the stack test checks it against the watchdog's exec_timeout.
pub const REQUEST_DEADLINE_MS: &str = "REQUEST_DEADLINE_MS";
const FORWARDED_FOR_HOPS: &str = "FORWARDED_FOR_HOPS";

/// The environment variables every function reads, besides [`SECRETS_DIR`].
pub const SETTINGS: [&str; 16] = [
    POSTGRES_HOST,
    POSTGRES_PORT,
    POSTGRES_DB,
    BCRYPT_COST,
    MAX_FAILED_ATTEMPTS,
    LOCKOUT_SECONDS,
    ENROLLMENT_WINDOW_SECONDS,
    LOCKOUT_MAX_SECONDS,
    HARD_LOCK_ATTEMPTS,
    ACCESS_TOKEN_SECONDS,
    SESSION_SECONDS,
    TOKEN_ISSUER,
    TOKEN_AUDIENCE,
    POSTGRES_SSLMODE,
    REQUEST_DEADLINE_MS,
    FORWARDED_FOR_HOPS,
];

/// Overrides [`DEFAULT_SECRETS_DIR`]; only local runs set it.
pub const SECRETS_DIR: &str = "SECRETS_DIR";

/// The default of [`REQUEST_DEADLINE_MS`]: comfortably below stack.yaml's
/// `exec_timeout` of 10 s, so that the function, not the watchdog, answers.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_millis(8000);

/// Everything a function needs, read once at start-up.
pub struct Config {
    pub database: DatabaseSettings,
    /// How long one request may take, from the process's start
    /// (`REQUEST_DEADLINE_MS`, default 8000, 1000 to 600000).
    pub request_deadline: Duration,
    pub policy: Policy,
    pub sessions: SessionPolicy,
    /// Which address of `X-Forwarded-For`, from the right, is the client's,
    /// for the account events (`FORWARDED_FOR_HOPS`, default 1, 0 to 16; 0:
    /// none is recorded). See [`crate::events::Source::request`].
    pub forwarded_for_hops: u32,
    /// Where the secrets are: the signing keys and the Fernet keys are read
    /// from there only by the functions that need them
    /// ([`Config::signing_keys`], [`Config::keyring`]).
    secrets_dir: PathBuf,
}

/// The numbers and names of sessions (see `session` and `jwt`).
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    /// How long an access token is valid (`ACCESS_TOKEN_SECONDS`, default
    /// 600, 1 to 86400).
    pub access_token_seconds: u32,
    /// The absolute lifetime of a session, refreshes included
    /// (`SESSION_SECONDS`, default 43200 = 12 hours, 60 to 2592000).
    pub session_seconds: u32,
    /// The access tokens' `iss` (`TOKEN_ISSUER`, default `cofrap`).
    pub issuer: String,
    /// The access tokens' `aud` (`TOKEN_AUDIENCE`, default `cofrap`).
    pub audience: String,
}

/// Where and as whom to connect. Deliberately not `Debug`: it holds a password.
pub struct DatabaseSettings {
    /// The servers to try, in order (`POSTGRES_HOST`, a comma-separated
    /// list as libpq takes it); the first that accepts writes is used.
    pub endpoints: Vec<Endpoint>,
    pub dbname: String,
    pub user: String,
    pub password: String,
    pub tls: Tls,
}

/// `POSTGRES_SSLMODE`: whether and how the connection is encrypted. The names
/// and meanings are libpq's; `prefer`, `allow` and `verify-ca` are left out
/// (the first two fall back to plain text silently, the third checks the CA
/// but not the name, which protects little).
pub enum Tls {
    /// `disable`: plain TCP, for a database reached over a trusted network
    /// (the bundled in-cluster one) or a Unix socket.
    Disable,
    /// `require`: encrypted, but the server's certificate is not checked:
    /// protects against listening, not against an impostor.
    Require,
    /// `prefer`: encrypted when the server offers it, plain otherwise, the
    /// certificate not checked. libpq's default, offered to cofrap-admin's
    /// `DATABASE_URL` and `PG*` settings only, as psql reads them; the
    /// functions refuse it (it falls back to plain text silently).
    Prefer,
    /// `verify-full` (the default): encrypted, and the server must present a
    /// certificate for `POSTGRES_HOST` signed by the CA of the
    /// `db-ca-certificate` secret (PEM), which is then required.
    VerifyFull { ca_pem: String },
}

/// One server of `POSTGRES_HOST`: a host name, an IP address or a Unix
/// socket directory (starting with `/`), and its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses a comma-separated list of `host[:port]` as libpq takes it in
    /// a URL: `db1,db2:5433,10.0.0.3`, `[fd00::1]:5432` for an IPv6 address
    /// with a port (a bare IPv6 address takes `default_port`), `/path` for a
    /// Unix socket directory. Returns what is wrong, without the value.
    pub fn parse_list(text: &str, default_port: u16) -> Result<Vec<Endpoint>, &'static str> {
        let mut endpoints = Vec::new();
        for item in text.split(',').map(str::trim) {
            if item.is_empty() {
                return Err("has an empty host");
            }
            let (host, port) = if let Some(rest) = item.strip_prefix('[') {
                let (address, after) = rest.split_once(']').ok_or("has an unclosed [")?;
                match after.strip_prefix(':') {
                    Some(port) => (address, Some(port)),
                    None if after.is_empty() => (address, None),
                    None => return Err("has text after an IPv6 address"),
                }
            } else if item.starts_with('/') || item.matches(':').count() > 1 {
                (item, None) // a socket directory, or a bare IPv6 address
            } else {
                match item.split_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (item, None),
                }
            };
            let port = match port {
                Some(port) => port
                    .parse()
                    .ok()
                    .filter(|port| *port > 0)
                    .ok_or("has a port that is not a number from 1 to 65535")?,
                None => default_port,
            };
            if host.is_empty() {
                return Err("has an empty host");
            }
            endpoints.push(Endpoint {
                host: host.to_owned(),
                port,
            });
        }
        Ok(endpoints)
    }

    /// Whether the host is a Unix socket directory.
    pub fn is_socket(&self) -> bool {
        self.host.starts_with('/')
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl DatabaseSettings {
    /// Reads `POSTGRES_HOST`, `POSTGRES_PORT`, `POSTGRES_DB` and
    /// `POSTGRES_SSLMODE` through `env`, and the role and its password from
    /// the secret files `user_secret` and `password_secret` in
    /// `secrets_dir` (the functions' `db-credentials-*`, or the
    /// administrator's `db-admin-*` for cofrap-admin).
    pub fn load(
        env: &impl Fn(&str) -> Result<Option<String>, Error>,
        secrets_dir: &Path,
        user_secret: &str,
        password_secret: &str,
    ) -> Result<DatabaseSettings, Error> {
        let host = env(POSTGRES_HOST)?
            .ok_or_else(|| Error::Config(format!("setting {POSTGRES_HOST} is not set")))?;
        let tls = match env(POSTGRES_SSLMODE)?.as_deref() {
            Some("disable") => Tls::Disable,
            Some("require") => Tls::Require,
            Some("verify-full") | None => Tls::VerifyFull {
                ca_pem: read_secret(secrets_dir, DB_CA_SECRET).map_err(|e| {
                    let why = |what| {
                        format!("{POSTGRES_SSLMODE} is verify-full (the default), but {what}")
                    };
                    match e {
                        Error::Config(what) => Error::Config(why(what)),
                        Error::SecretFile { message, path } => Error::SecretFile {
                            message: why(message),
                            path,
                        },
                        other => other,
                    }
                })?,
            },
            Some(_) => {
                return Err(Error::Config(format!(
                    "setting {POSTGRES_SSLMODE} must be disable, require or verify-full"
                )))
            }
        };
        let default_port = number(env, POSTGRES_PORT, 5432, 1..=65535)?;
        Ok(DatabaseSettings {
            endpoints: Endpoint::parse_list(&host, default_port)
                .map_err(|what| Error::Config(format!("setting {POSTGRES_HOST} {what}")))?,
            dbname: env(POSTGRES_DB)?.unwrap_or_else(|| "cofrap_db".to_owned()),
            user: read_secret(secrets_dir, user_secret)?,
            password: read_secret(secrets_dir, password_secret)?,
            tls,
        })
    }
}

/// The numbers of the account lifecycle.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// bcrypt work factor for new hashes (`BCRYPT_COST`, default 12, 10 to 31).
    pub bcrypt_cost: u32,
    /// Consecutive failures that lock an account (`MAX_FAILED_ATTEMPTS`, default 5).
    pub max_failed_attempts: u32,
    /// How long the first lock lasts (`LOCKOUT_SECONDS`, default 300); each
    /// further lock without a success in between lasts twice as long.
    pub lockout_seconds: u32,
    /// The longest a lock lasts, however many came before
    /// (`LOCKOUT_MAX_SECONDS`, default 86400).
    pub lockout_max_seconds: u32,
    /// Consecutive failures (across locks) after which the account stays
    /// locked until an operator unlocks it (`HARD_LOCK_ATTEMPTS`, default 100).
    pub hard_lock_attempts: u32,
    /// How long a new account may stay pending before its username can be
    /// taken afresh (`ENROLLMENT_WINDOW_SECONDS`, default 900).
    pub enrollment_window_seconds: u32,
}

impl Config {
    /// Reads the configuration from the process environment and the secrets
    /// directory.
    pub fn from_env() -> Result<Config, Error> {
        Config::load(setting)
    }

    /// Reads the configuration through `env`, which returns a setting's
    /// trimmed value or `None` when it is unset or empty.
    pub fn load(env: impl Fn(&str) -> Result<Option<String>, Error>) -> Result<Config, Error> {
        let secrets_dir = &secrets_dir(&env)?;

        let default_deadline_ms = DEFAULT_REQUEST_DEADLINE.as_millis() as u64;
        let request_deadline_ms: u64 = number(
            &env,
            REQUEST_DEADLINE_MS,
            default_deadline_ms,
            1000..=600_000,
        )?;
        let database =
            DatabaseSettings::load(&env, secrets_dir, DB_USER_SECRET, DB_PASSWORD_SECRET)?;
        let policy = Policy {
            bcrypt_cost: number(&env, BCRYPT_COST, 12, 10..=31)?,
            max_failed_attempts: number(&env, MAX_FAILED_ATTEMPTS, 5, 1..=1000)?,
            lockout_seconds: number(&env, LOCKOUT_SECONDS, 300, 1..=86_400)?,
            enrollment_window_seconds: number(&env, ENROLLMENT_WINDOW_SECONDS, 900, 60..=604_800)?,
            lockout_max_seconds: number(&env, LOCKOUT_MAX_SECONDS, 86_400, 1..=31_536_000)?,
            hard_lock_attempts: number(&env, HARD_LOCK_ATTEMPTS, 100, 1..=100_000)?,
        };
        let sessions = SessionPolicy {
            access_token_seconds: number(&env, ACCESS_TOKEN_SECONDS, 600, 1..=86_400)?,
            session_seconds: number(&env, SESSION_SECONDS, 43_200, 60..=2_592_000)?,
            issuer: env(TOKEN_ISSUER)?.unwrap_or_else(|| "cofrap".to_owned()),
            audience: env(TOKEN_AUDIENCE)?.unwrap_or_else(|| "cofrap".to_owned()),
        };
        Ok(Config {
            database,
            request_deadline: Duration::from_millis(request_deadline_ms),
            policy,
            sessions,
            forwarded_for_hops: number(&env, FORWARDED_FOR_HOPS, 1, 0..=16)?,
            secrets_dir: secrets_dir.to_path_buf(),
        })
    }

    /// Reads the access-token signing keys (the `jwt-signing-keys` secret).
    pub fn signing_keys(&self) -> Result<SigningKeys, Error> {
        profile::during("secrets", || load_signing_keys(&self.secrets_dir))
    }

    /// Reads the Fernet keys (the `encryption-key` secret) when a function
    /// first needs them: only the functions that encrypt or decrypt (2FA
    /// secrets, renewal tokens) are given that secret, so that refresh,
    /// sign-out and jwks never hold the key to every stored TOTP secret.
    pub fn keyring(&self) -> Result<Keyring, Error> {
        profile::during("secrets", || {
            Keyring::parse(&read_secret(&self.secrets_dir, ENCRYPTION_KEY_SECRET)?)
                .map_err(|reason| Error::Config(format!("secret {ENCRYPTION_KEY_SECRET} {reason}")))
        })
    }
}

/// A setting from the process environment, trimmed; `None` when unset or
/// empty. How every function (and cofrap-admin) reads its settings.
pub fn setting(name: &str) -> Result<Option<String>, Error> {
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => Ok(Some(value.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(Error::Config(format!("setting {name} is not valid UTF-8")))
        }
    }
}

/// The signing keys alone, for the `jwks` function, which needs nothing else:
/// no database, no other secret, no setting but [`SECRETS_DIR`].
pub fn signing_keys_from_env() -> Result<SigningKeys, Error> {
    load_signing_keys(&secrets_dir(&setting)?)
}

fn load_signing_keys(secrets_dir: &Path) -> Result<SigningKeys, Error> {
    SigningKeys::parse(&read_secret(secrets_dir, JWT_SIGNING_KEYS_SECRET)?)
        .map_err(|reason| Error::Config(format!("secret {JWT_SIGNING_KEYS_SECRET} {reason}")))
}

/// Reads an integer setting, or its default when unset.
fn number<T>(
    env: &impl Fn(&str) -> Result<Option<String>, Error>,
    name: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, Error>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let Some(text) = env(name)? else {
        return Ok(default);
    };
    match text.parse::<T>() {
        Ok(value) if range.contains(&value) => Ok(value),
        _ => Err(Error::Config(format!(
            "setting {name} must be an integer from {} to {}",
            range.start(),
            range.end()
        ))),
    }
}

/// Reads a secret file, trimmed of surrounding white space (as the Python
/// version's `.strip()` does, so that `echo` and `kubectl` newlines are harmless).
fn read_secret(dir: &Path, name: &str) -> Result<String, Error> {
    let path: PathBuf = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let problem = match e.kind() {
            std::io::ErrorKind::NotFound => "is missing",
            std::io::ErrorKind::InvalidData => "is not valid UTF-8",
            _ => "cannot be read",
        };
        Error::SecretFile {
            message: format!("secret {name} {problem}"),
            path: format!("{}: {e}", path.display()),
        }
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Config(format!("secret {name} is empty")));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
    const SEED: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";

    fn load(settings: &[(&str, &str)], secrets: &[(&str, &str)]) -> Result<Config, Error> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("cofrap-config-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, value) in secrets {
            std::fs::write(dir.join(name), value).unwrap();
        }
        let mut env: HashMap<String, String> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("SECRETS_DIR".into(), dir.display().to_string());
        let result = Config::load(|name| Ok(env.get(name).cloned()));
        std::fs::remove_dir_all(&dir).unwrap();
        result
    }

    fn all_secrets() -> Vec<(&'static str, &'static str)> {
        vec![
            ("db-credentials-username", "cofrap\n"),
            ("db-credentials-password", " s3cret \n"),
            ("encryption-key", KEY),
            ("jwt-signing-keys", SEED),
            // Parsed when connecting, not here.
            ("db-ca-certificate", "-----BEGIN CERTIFICATE-----\n"),
        ]
    }

    fn config_error<T>(result: Result<T, Error>) -> String {
        match result {
            Err(Error::Config(message)) => message,
            Err(Error::SecretFile { message, path }) => {
                assert!(!message.contains('/'), "a path in {message}");
                assert!(path.contains("cofrap-config-test"), "{path}");
                message
            }
            Err(other) => panic!("expected a configuration error, got {other:?}"),
            Ok(_) => panic!("expected a configuration error"),
        }
    }

    #[test]
    fn defaults_apply_and_secrets_are_trimmed() {
        let config = load(&[("POSTGRES_HOST", "db")], &all_secrets()).unwrap();
        assert_eq!(
            config.database.endpoints,
            [Endpoint {
                host: "db".into(),
                port: 5432
            }]
        );
        assert_eq!(config.database.dbname, "cofrap_db");
        assert_eq!(config.database.user, "cofrap");
        assert_eq!(config.database.password, "s3cret");
        assert_eq!(config.policy.bcrypt_cost, 12);
        assert_eq!(config.policy.max_failed_attempts, 5);
        assert_eq!(config.policy.lockout_seconds, 300);
        assert_eq!(config.policy.enrollment_window_seconds, 900);
        assert_eq!(config.policy.lockout_max_seconds, 86_400);
        assert_eq!(config.policy.hard_lock_attempts, 100);
        assert_eq!(config.sessions.access_token_seconds, 600);
        assert_eq!(config.sessions.session_seconds, 43_200);
        assert_eq!(config.sessions.issuer, "cofrap");
        assert_eq!(config.sessions.audience, "cofrap");
        assert_eq!(config.request_deadline, DEFAULT_REQUEST_DEADLINE);
        assert!(matches!(config.database.tls, Tls::VerifyFull { .. }));
    }

    #[test]
    fn tls_modes_and_the_ca_secret() {
        let disable = [("POSTGRES_HOST", "db"), ("POSTGRES_SSLMODE", "disable")];
        let config = load(&disable, &all_secrets()[..3]).unwrap();
        assert!(matches!(config.database.tls, Tls::Disable));
        let require = [("POSTGRES_HOST", "db"), ("POSTGRES_SSLMODE", "require")];
        let config = load(&require, &all_secrets()[..3]).unwrap();
        assert!(matches!(config.database.tls, Tls::Require));

        // verify-full, by default or by name, needs the CA.
        let message = config_error(load(&[("POSTGRES_HOST", "db")], &all_secrets()[..3]));
        assert!(
            message.contains("verify-full") && message.contains("db-ca-certificate is missing"),
            "{message}"
        );
        let message = config_error(load(
            &[("POSTGRES_HOST", "db"), ("POSTGRES_SSLMODE", "prefer")],
            &all_secrets(),
        ));
        assert!(message.contains("POSTGRES_SSLMODE"), "{message}");
    }

    #[test]
    fn postgres_host_is_a_list_of_hosts_and_ports() {
        let endpoint = |host: &str, port| Endpoint {
            host: host.to_owned(),
            port,
        };
        assert_eq!(
            Endpoint::parse_list(
                "db1, db2:5433,10.0.0.3,[fd00::1]:6000,fd00::2,/run/pg",
                5432
            ),
            Ok(vec![
                endpoint("db1", 5432),
                endpoint("db2", 5433),
                endpoint("10.0.0.3", 5432),
                endpoint("fd00::1", 6000),
                endpoint("fd00::2", 5432),
                endpoint("/run/pg", 5432),
            ])
        );
        for bad in [
            "",
            "db1,",
            "db:0",
            "db:http",
            "[fd00::1",
            "[fd00::1]x",
            ":5432",
        ] {
            assert!(Endpoint::parse_list(bad, 5432).is_err(), "{bad:?}");
        }
        let message = config_error(load(&[("POSTGRES_HOST", "db1,,db2")], &all_secrets()));
        assert!(message.contains("POSTGRES_HOST"), "{message}");
        assert_eq!(endpoint("fd00::1", 5432).to_string(), "[fd00::1]:5432");
    }

    #[test]
    fn the_deadline_is_bounded() {
        for bad in ["999", "600001", "8s"] {
            let message = config_error(load(
                &[("POSTGRES_HOST", "db"), ("REQUEST_DEADLINE_MS", bad)],
                &all_secrets(),
            ));
            assert!(message.contains("REQUEST_DEADLINE_MS"), "{message}");
        }
    }

    #[test]
    fn the_code_reads_exactly_the_listed_settings() {
        let asked = std::cell::RefCell::new(Vec::new());
        let dir = std::env::temp_dir().join(format!("cofrap-config-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, value) in all_secrets() {
            std::fs::write(dir.join(name), value).unwrap();
        }
        let config = Config::load(|name| {
            asked.borrow_mut().push(name.to_owned());
            Ok(match name {
                SECRETS_DIR => Some(dir.display().to_string()),
                POSTGRES_HOST => Some("db".to_owned()),
                _ => None,
            })
        });
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            config.is_ok(),
            "the secrets directory holds exactly SECRETS"
        );
        let mut asked = asked.into_inner();
        asked.sort();
        let mut listed: Vec<String> = SETTINGS.iter().map(|s| s.to_string()).collect();
        listed.push(SECRETS_DIR.to_owned());
        listed.sort();
        assert_eq!(asked, listed);
    }

    #[test]
    fn a_missing_or_malformed_value_is_named() {
        let message = config_error(load(&[], &all_secrets()));
        assert!(message.contains("POSTGRES_HOST"), "{message}");

        let message = config_error(load(
            &[("POSTGRES_HOST", "db"), ("BCRYPT_COST", "9")],
            &all_secrets(),
        ));
        assert!(message.contains("BCRYPT_COST"), "{message}");

        let message = config_error(load(
            &[("POSTGRES_HOST", "db"), ("POSTGRES_PORT", "http")],
            &all_secrets(),
        ));
        assert!(message.contains("POSTGRES_PORT"), "{message}");

        let mut secrets = all_secrets();
        secrets[1].1 = "\n";
        let message = config_error(load(&[("POSTGRES_HOST", "db")], &secrets));
        assert!(
            message.contains("db-credentials-password is empty"),
            "{message}"
        );
    }

    #[test]
    fn key_secrets_are_read_when_asked_and_named_but_never_shown() {
        // Each is read only by the functions that use it (stack.yaml gives
        // it to no other), so loading the configuration does not need it.
        type Read = fn(&Config) -> Result<(), Error>;
        let secrets: [(&str, Read); 2] = [
            (JWT_SIGNING_KEYS_SECRET, |config| {
                config.signing_keys().map(drop)
            }),
            (ENCRYPTION_KEY_SECRET, |config| config.keyring().map(drop)),
        ];
        for (secret, read) in secrets {
            let dir = std::env::temp_dir().join(format!(
                "cofrap-config-test-{secret}-{}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let env = |name: &str| {
                Ok(match name {
                    SECRETS_DIR => Some(dir.display().to_string()),
                    POSTGRES_HOST => Some("db".to_owned()),
                    _ => None,
                })
            };
            for (name, value) in all_secrets() {
                std::fs::write(dir.join(name), value).unwrap();
            }
            let config = Config::load(env).unwrap();
            assert!(read(&config).is_ok(), "{secret}");
            std::fs::write(dir.join(secret), "secret-looking-junk").unwrap();
            let message = config_error(read(&config));
            assert!(message.contains(secret), "{message}");
            assert!(!message.contains("secret-looking-junk"), "{message}");
            std::fs::remove_file(dir.join(secret)).unwrap();
            let config = Config::load(env).unwrap();
            let message = config_error(read(&config));
            assert!(
                message.contains(&format!("{secret} is missing")),
                "{message}"
            );
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
