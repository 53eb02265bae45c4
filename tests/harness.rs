//! What the integration tests share: a real PostgreSQL, a configuration for
//! the functions, a way to run a function binary exactly as the classic
//! watchdog does (a fresh process, the body on stdin, stdout and the exit
//! status read back), QR decoding, and the Python peer.
//!
//! The database comes from `DATABASE_URL`, or else from the standard `PG*`
//! variables (which `pg_virtualenv` sets when `make test` starts a throwaway
//! cluster): an administrator's connection. Its roles and schema must already
//! be applied (`make test` does it, as operators do: `make db-roles`, then
//! `make db-migrate`). Tests share that database and keep out of each other's
//! way with unique usernames; the few that need a database of their own
//! create and drop it.
//!
//! Modules beside this file: the function images (`containers`), a PgBouncer in front of a
//! test database (`pgbouncer`), and a primary with its synchronous standby
//! and a failover under load (`replication`).
//!
//! The functions always log in as the functions' role (`FunctionRole`: only
//! SELECT, INSERT and UPDATE on the tables), never as the administrator, so
//! that every test also proves that those grants suffice.

use base64::Engine as _;
use postgres::{Client, NoTls};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub mod containers;
pub mod markdown;
pub mod pgbouncer;
pub mod replication;

/// The root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where cargo put the function binaries: the test executable lives in
/// `target/<profile>/deps/`, the binaries in `target/<profile>/`, beside
/// `make bench`'s driver (which uses the harness too).
pub fn binary(function: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap();
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir = dir.parent().unwrap();
    }
    let path = dir.join(function);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (make test does)",
        path.display()
    );
    path
}

/// Runs `command` with `input` on its stdin and returns what it printed:
/// how the watchdog runs a function, and how the tests run every process.
pub fn run_with_input(command: &mut Command, input: &[u8]) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    // A process may exit before reading everything (a function given a body
    // over its limit): a broken pipe here is expected then.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let mut random = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut random)
        .unwrap();
    format!(
        "{prefix}{}x{}x{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        u32::from_le_bytes(random)
    )
}

/// How to reach the test database server.
#[derive(Clone, Debug)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dbname: String,
}

impl Server {
    /// From `DATABASE_URL`, or else the `PG*` variables.
    pub fn from_env() -> Server {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            let config: postgres::Config = url.parse().expect("DATABASE_URL does not parse");
            let host = match &config.get_hosts()[0] {
                postgres::config::Host::Tcp(host) => host.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            return Server {
                host,
                port: config.get_ports().first().copied().unwrap_or(5432),
                user: config
                    .get_user()
                    .expect("DATABASE_URL has no user")
                    .to_owned(),
                password: config
                    .get_password()
                    .map(|p| String::from_utf8(p.to_vec()).unwrap())
                    .unwrap_or_default(),
                dbname: config.get_dbname().unwrap_or("postgres").to_owned(),
            };
        }
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        Server {
            host: var("PGHOST", "localhost"),
            port: var("PGPORT", "5432").parse().unwrap(),
            user: var("PGUSER", "postgres"),
            password: var("PGPASSWORD", ""),
            dbname: var("PGDATABASE", "postgres"),
        }
    }

    pub fn connect(&self) -> Client {
        self.connect_to(&self.dbname)
    }

    pub fn connect_to(&self, dbname: &str) -> Client {
        postgres::Config::new()
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(dbname)
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to the test database {dbname}: {e}"))
    }

    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgresql://{}:{}@{}:{}/{}",
            self.user, self.password, self.host, self.port, dbname
        )
    }
}

/// The folder of the functions' role's secret files (`db-credentials-username`
/// and `db-credentials-password`) that `make test` generates and gives to
/// `make db-roles`: `COFRAP_TEST_SECRETS`, or `target/test-secrets`.
pub fn test_secrets_dir() -> PathBuf {
    std::env::var_os("COFRAP_TEST_SECRETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-secrets"))
}

/// The role the functions log in as.
#[derive(Clone, Debug)]
pub struct FunctionRole {
    pub user: String,
    pub password: String,
}

impl FunctionRole {
    /// The functions' role `make db-roles` created from the test secrets.
    pub fn from_test_secrets() -> FunctionRole {
        let dir = test_secrets_dir();
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .unwrap_or_else(|e| {
                    panic!(
                        "{}: {e}: run the tests with make test, which creates the functions' role",
                        dir.join(name).display()
                    )
                })
                .trim()
                .to_owned()
        };
        FunctionRole {
            user: read("db-credentials-username"),
            password: read("db-credentials-password"),
        }
    }
}

/// The owner of the tables (the Makefile's OWNER_ROLE).
pub const OWNER_ROLE: &str = "cofrap_owner";

/// Runs `make db-roles` on database `dbname`: the owner and the functions'
/// role, their privileges there. Roles belong to the whole server, so two
/// tests of one process never run it at once (concurrent ALTER ROLE fail).
pub fn apply_roles(server: &Server, dbname: &str) -> std::process::Output {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    Command::new("make")
        .args(["--no-print-directory", "-s", "db-roles"])
        .current_dir(repo_root())
        .env("DATABASE_URL", server.url(dbname))
        .env("SECRETS_DIR", test_secrets_dir())
        .output()
        .unwrap()
}

/// Runs `make db-migrate` on database `dbname`, as an administrator: the
/// schema as the owner role, then `cofrap-admin rekey` (this build's).
pub fn migrate(server: &Server, dbname: &str) -> std::process::Output {
    Command::new("make")
        .args(["--no-print-directory", "-s", "db-migrate"])
        .current_dir(repo_root())
        .env("DATABASE_URL", server.url(dbname))
        .env("ADMIN", binary("cofrap-admin"))
        .output()
        .unwrap()
}

/// A database of a test's own, dropped at the end. Its roles are set up as
/// `make db-roles` sets them up; its schema is not applied until `migrate`.
pub struct ScratchDatabase {
    pub server: Server,
    pub name: String,
}

impl ScratchDatabase {
    pub fn create() -> ScratchDatabase {
        let server = Server::from_env();
        let name = unique("cofrap_t");
        server
            .connect()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let roles = apply_roles(&server, &name);
        assert!(
            roles.status.success(),
            "make db-roles: {}",
            String::from_utf8_lossy(&roles.stderr)
        );
        ScratchDatabase { server, name }
    }

    /// A connection as the administrator.
    pub fn connect(&self) -> Client {
        self.server.connect_to(&self.name)
    }

    /// The role that owns `table`.
    pub fn table_owner(&self, table: &str) -> String {
        self.connect()
            .query_one(
                "SELECT tableowner::text FROM pg_tables WHERE tablename = $1",
                &[&table],
            )
            .unwrap()
            .get(0)
    }

    /// Applies the roles and the schema the way operators do: `make db-roles`
    /// (which also gives tables created by others to the owner: the upgrade
    /// of a Python database), then `make db-migrate`. The output of the
    /// first that fails, or of the migration.
    pub fn migrate(&self) -> std::process::Output {
        let roles = apply_roles(&self.server, &self.name);
        if !roles.status.success() {
            return roles;
        }
        migrate(&self.server, &self.name)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let _ = self.server.connect().batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// A fresh Fernet key (32 random bytes, URL-safe base64).
pub fn fernet_key() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

/// A fresh Ed25519 signing key for access tokens (a 32-byte seed, base64),
/// in the format of the `jwt-signing-keys` secret.
pub fn signing_key() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// What a function's process gave back.
#[derive(Debug)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout as the one JSON object the contract promises.
    pub fn json(&self) -> Value {
        let body: Value = serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {:?}", self.stdout));
        assert!(body.is_object(), "stdout is not an object: {body}");
        assert!(self.stdout.ends_with('\n') && self.stdout.trim_end().lines().count() == 1);
        body
    }

    /// The log line on stderr.
    pub fn log(&self) -> Value {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one log line, got {:?}",
            self.stderr
        );
        serde_json::from_str(lines[0]).expect("the log line is not JSON")
    }

    /// The log line's `detail`, or nothing: for tests that record whatever
    /// a process said, under load, rather than check the log line itself.
    pub fn log_detail(&self) -> String {
        self.stderr
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find_map(|log| log["detail"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// Waits (at most 3 s) until no backend of `dbname` (of `applications` only,
/// when given) waits for a lock: after their clients have answered, the
/// server must end their waits itself (a backend waiting for a lock does not
/// notice that its client has gone).
pub fn assert_no_backend_waits_for_a_lock(
    db: &mut Client,
    dbname: &str,
    applications: Option<&[&str]>,
) {
    let applications: Option<Vec<&str>> = applications.map(<[&str]>::to_vec);
    let started = std::time::Instant::now();
    loop {
        let waiting: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = $1 AND wait_event_type = 'Lock'
                    AND ($2::text[] IS NULL OR application_name = ANY($2))",
                &[&dbname, &applications],
            )
            .unwrap()
            .get(0);
        if waiting == 0 {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{waiting} backends still wait for the lock after their clients answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The environment a function runs in: settings and a secrets directory.
pub struct Functions {
    pub server: Server,
    pub dbname: String,
    pub key: String,
    /// Who the functions log in as.
    pub role: FunctionRole,
    secrets_dir: PathBuf,
    settings: Vec<(String, String)>,
}

impl Default for Functions {
    /// The functions, configured for the shared test database.
    fn default() -> Functions {
        let server = Server::from_env();
        let dbname = server.dbname.clone();
        Functions::on(server, &dbname)
    }
}

impl Functions {
    /// The functions, configured for the shared test database.
    pub fn new() -> Functions {
        Functions::default()
    }

    /// The functions, configured for database `dbname` of `server`.
    pub fn on(server: Server, dbname: &str) -> Functions {
        let secrets_dir = std::env::temp_dir().join(unique("cofrap-secrets-"));
        std::fs::create_dir_all(&secrets_dir).unwrap();
        let key = fernet_key();
        let role = FunctionRole::from_test_secrets();
        let functions = Functions {
            settings: vec![
                ("SECRETS_DIR".into(), secrets_dir.display().to_string()),
                ("POSTGRES_HOST".into(), server.host.clone()),
                ("POSTGRES_PORT".into(), server.port.to_string()),
                ("POSTGRES_DB".into(), dbname.to_owned()),
                // The lowest cost allowed, to keep the suite quick.
                ("BCRYPT_COST".into(), "10".into()),
                // The test server has no TLS (tests/tls.rs tests it).
                ("POSTGRES_SSLMODE".into(), "disable".into()),
            ],
            dbname: dbname.to_owned(),
            key: key.clone(),
            secrets_dir,
            server: server.clone(),
            role: role.clone(),
        };
        functions.write_secret("db-credentials-username", &format!("{}\n", role.user));
        functions.write_secret("db-credentials-password", &format!("{}\n", role.password));
        functions.write_secret("encryption-key", &format!("{key}\n"));
        functions.write_secret("jwt-signing-keys", &format!("{}\n", signing_key()));
        functions
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.settings.retain(|(k, _)| k != name);
        self.settings.push((name.to_owned(), value.to_owned()));
    }

    pub fn unset(&mut self, name: &str) {
        self.settings.retain(|(k, _)| k != name);
    }

    /// The environment the functions get (settings and SECRETS_DIR).
    pub fn settings(&self) -> &[(String, String)] {
        &self.settings
    }

    pub fn write_secret(&self, name: &str, value: &str) {
        std::fs::write(self.secrets_dir.join(name), value).unwrap();
    }

    pub fn secrets_dir(&self) -> &Path {
        &self.secrets_dir
    }

    pub fn secret_path(&self, name: &str) -> PathBuf {
        self.secrets_dir.join(name)
    }

    pub fn remove_secret(&self, name: &str) {
        std::fs::remove_file(self.secrets_dir.join(name)).unwrap();
    }

    /// A connection as the administrator.
    pub fn db(&self) -> Client {
        self.server.connect_to(&self.dbname)
    }

    /// A connection as the functions' role, with its privileges only.
    pub fn db_as_functions(&self) -> Client {
        Server {
            user: self.role.user.clone(),
            password: self.role.password.clone(),
            ..self.server.clone()
        }
        .connect_to(&self.dbname)
    }

    /// Runs `function` as the watchdog does: a fresh process, `body` on
    /// stdin, nothing inherited from the test's environment.
    pub fn run(&self, function: &str, body: &[u8]) -> Output {
        let output = run_with_input(
            Command::new(binary(function))
                .env_clear()
                .envs(self.settings.iter().map(|(k, v)| (k, v))),
            body,
        );
        Output {
            status: output.status.code().expect("killed by a signal"),
            stdout: String::from_utf8(output.stdout).expect("stdout is not UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is not UTF-8"),
        }
    }

    /// Runs `function` on a JSON request; expects exit status 0 and returns
    /// the response object.
    pub fn call(&self, function: &str, request: Value) -> Value {
        let output = self.run(function, request.to_string().as_bytes());
        assert_eq!(output.status, 0, "{function} failed: {output:?}");
        output.json()
    }

    /// Creates an account; returns its password, read from the QR code.
    pub fn create_account(&self, username: &str) -> String {
        let response = self.call(
            "generate-password",
            serde_json::json!({ "username": username }),
        );
        decode_qr(
            response["qr_code_base64"]
                .as_str()
                .expect("no qr_code_base64"),
        )
    }

    /// Creates an account and its 2FA; returns the password and the base32 secret.
    pub fn enrolled_account(&self, username: &str) -> (String, String) {
        let password = self.create_account(username);
        let response = self.call(
            "generate-2fa",
            serde_json::json!({ "username": username, "password": password }),
        );
        let secret = response["manual_entry_key"]
            .as_str()
            .expect("no manual_entry_key");
        (password, secret.to_owned())
    }

    /// Signs in with the code of `step` (30-second steps since the epoch).
    pub fn authenticate(&self, username: &str, password: &str, secret: &str, step: u64) -> Value {
        self.call(
            "authenticate",
            serde_json::json!({
                "username": username,
                "password": password,
                "totp_code": code_at(secret, step * 30),
            }),
        )
    }
}

/// The operator's name the tests act as with cofrap-admin.
pub const OPERATOR: &str = "test-operator";

impl Functions {
    /// Runs cofrap-admin (this build's) with `args` on the functions'
    /// database, as its administrator (the `PG*` variables, as psql takes
    /// them) and as operator [`OPERATOR`]; nothing else inherited.
    pub fn admin(&self, args: &[&str]) -> Output {
        let output = Command::new(binary("cofrap-admin"))
            .env_clear()
            .env("PGHOST", &self.server.host)
            .env("PGPORT", self.server.port.to_string())
            .env("PGUSER", &self.server.user)
            .env("PGPASSWORD", &self.server.password)
            .env("PGDATABASE", &self.dbname)
            .env("PGSSLMODE", "disable")
            .env("COFRAP_OPERATOR", OPERATOR)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Output {
            status: output.status.code().expect("killed by a signal"),
            stdout: String::from_utf8(output.stdout).expect("stdout is not UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is not UTF-8"),
        }
    }

    /// cofrap-admin with `args` and `--json`; expects success and returns
    /// what it printed.
    pub fn admin_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let output = self.admin(&all);
        assert_eq!(output.status, 0, "cofrap-admin {args:?}: {output:?}");
        serde_json::from_str(&output.stdout)
            .unwrap_or_else(|e| panic!("cofrap-admin {args:?}: not JSON ({e}): {output:?}"))
    }
}

impl Drop for Functions {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.secrets_dir);
    }
}

/// A successful sign-in's answer without the session it opened (whose
/// fields are checked present here; tests/sessions.rs checks their content),
/// to compare with the rest.
pub fn without_session(answer: &Value) -> Value {
    let mut rest = answer.clone();
    let fields = rest.as_object_mut().expect("not an object");
    for (name, is_right_type) in [
        ("access_token", Value::is_string as fn(&Value) -> bool),
        ("token_type", Value::is_string),
        ("expires_in", Value::is_i64),
        ("refresh_token", Value::is_string),
        ("refresh_expires_in", Value::is_i64),
    ] {
        let value = fields
            .remove(name)
            .unwrap_or_else(|| panic!("no {name} in {answer}"));
        assert!(is_right_type(&value), "{name} in {answer}");
    }
    rest
}

/// One person's whole session, through `call` (a function's name and its
/// request, to its JSON answer, however the function is reached): an account
/// created (its QR decoded), enrolled and signed in; the access token's key
/// published by jwks; the refresh token exchanged; the session signed out,
/// the exchanged token refused after that. The static binaries in an empty
/// root (tests/deployment.rs) and the pushed images (tests/push.rs) run it.
pub fn run_a_whole_session(prefix: &str, call: impl Fn(&str, Value) -> Value) {
    use serde_json::json;
    let user = unique(prefix);
    let created = call("generate-password", json!({"username": user}));
    let password = decode_qr(created["qr_code_base64"].as_str().expect("no QR code"));
    let enrolled = call(
        "generate-2fa",
        json!({"username": user, "password": password}),
    );
    let secret = enrolled["manual_entry_key"].as_str().expect("no key");
    let signed_in = call(
        "authenticate",
        json!({"username": user, "password": password,
               "totp_code": code_at(secret, current_step() * 30)}),
    );
    assert_eq!(
        without_session(&signed_in),
        json!({"authenticated": true, "username": user})
    );

    // jwks publishes the key that signed the access token.
    let keys = call("jwks", json!({}));
    assert_eq!(keys["keys"][0]["crv"], "Ed25519", "{keys}");
    let token = signed_in["access_token"].as_str().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .expect("the token's header is not base64url");
    let kid = serde_json::from_slice::<Value>(&header).unwrap()["kid"].clone();
    assert!(
        keys["keys"]
            .as_array()
            .expect("no keys")
            .iter()
            .any(|key| key["kid"] == kid),
        "jwks does not publish {kid}: {keys}"
    );

    let refreshed = call(
        "refresh",
        json!({"refresh_token": signed_in["refresh_token"]}),
    );
    assert!(refreshed["access_token"].is_string(), "{refreshed}");
    assert_eq!(refreshed["username"], user.as_str(), "{refreshed}");
    let signed_out = call(
        "sign-out",
        json!({"refresh_token": refreshed["refresh_token"]}),
    );
    assert_eq!(signed_out, json!({"signed_out": true}));
    let ended = call(
        "refresh",
        json!({"refresh_token": refreshed["refresh_token"]}),
    );
    assert_eq!(ended["code"], "invalid_refresh_token", "{ended}");
}

/// Runs one statement with `username` as its only parameter, as the
/// administrator: how tests age, lock or otherwise stage an account.
pub fn sql(functions: &Functions, statement: &str, username: &str) {
    functions.db().execute(statement, &[&username]).unwrap();
}

/// authenticate with this code, its output whatever it is.
pub fn sign_in(functions: &Functions, username: &str, password: &str, code: &str) -> Output {
    functions.run(
        "authenticate",
        serde_json::json!({"username": username, "password": password, "totp_code": code})
            .to_string()
            .as_bytes(),
    )
}

/// A code that is not the secret's for any step near now.
pub fn wrong_code(secret: &str) -> String {
    let step = current_step();
    let near: Vec<String> = (step - 2..=step + 2)
        .map(|s| code_at(secret, s * 30))
        .collect();
    (0..)
        .map(|n| format!("{:06}", n * 7919 % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// The account's `users.id`.
pub fn account_id(functions: &Functions, username: &str) -> i64 {
    functions
        .db()
        .query_one("SELECT id FROM users WHERE username = $1", &[&username])
        .unwrap()
        .get(0)
}

/// The end reasons of the account's sessions, oldest first (None: open).
pub fn sessions_of(functions: &Functions, user: &str) -> Vec<Option<String>> {
    functions
        .db()
        .query(
            "SELECT s.end_reason FROM sessions s JOIN users u ON u.id = s.user_id
              WHERE u.username = $1 ORDER BY s.id",
            &[&user],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The current 30-second TOTP step.
///
/// Tests sign in with the code of this step or the one before, which the
/// functions accept for one step either side: a step that ends while a slow
/// process runs would make the one before too old. So within the last 5 s of
/// a step this waits for the next one, which then has 25 s to run.
pub fn current_step() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into_step = now.as_secs_f64() % 30.0;
    if into_step > 25.0 {
        std::thread::sleep(std::time::Duration::from_secs_f64(30.05 - into_step));
    }
    common::totp::unix_now() / 30
}

/// The TOTP code of a base32 secret at `unix_time`.
pub fn code_at(secret: &str, unix_time: u64) -> String {
    common::totp::TotpSecret::from_base32(secret)
        .expect("not base32")
        .code_at(unix_time)
}

/// Decodes the QR code in a base64 PNG; asserts that it holds exactly one.
pub fn decode_qr(png_base64: &str) -> String {
    let png = base64::engine::general_purpose::STANDARD
        .decode(png_base64)
        .expect("not standard base64");
    let image = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
        .expect("not a PNG")
        .to_luma8();
    let (width, height) = image.dimensions();
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(width as usize, height as usize, |x, y| {
            image.get_pixel(x as u32, y as u32).0[0]
        });
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "expected exactly one QR code in the image");
    grids[0].decode().expect("the QR code does not decode").1
}

/// Calls the Python peer (`tests/peer.py`, Python's bcrypt, cryptography and
/// pyotp from the virtual environment `make test` sets up).
pub fn python(operation: &str, args: Value) -> Value {
    let interpreter = std::env::var("COFRAP_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".venv/bin/python"));
    assert!(
        interpreter.exists(),
        "{} is missing: run make test, which installs the Python peers",
        interpreter.display()
    );
    let output = run_with_input(
        Command::new(interpreter)
            .arg(repo_root().join("tests/peer.py"))
            .arg(operation),
        args.to_string().as_bytes(),
    );
    assert!(output.status.success(), "peer.py {operation} failed");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A PostgreSQL cluster of a test's own (initdb and pg_ctl in a temporary
/// folder, on a free port of 127.0.0.1 and a socket folder of its own), for
/// the faults a shared server must not suffer: stopping it, restarting it,
/// turning TLS on and off. Stopped and removed when dropped. PostgreSQL
/// refuses to run as root: as root it runs as the `postgres` user.
pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    pub server: Server,
    bin: PathBuf,
}

impl Cluster {
    /// A new cluster with the schema applied to database `cofrap_db`;
    /// `settings` are extra `postgresql.conf` lines.
    pub fn start(settings: &str) -> Cluster {
        let bin = postgres_bin();
        let dir = std::env::temp_dir().join(unique("cofrap-cluster-"));
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let password = unique("pw");
        std::fs::write(dir.join("pwfile"), format!("{password}\n")).unwrap();
        let port = free_port();
        let cluster = Cluster {
            server: Server {
                host: "127.0.0.1".into(),
                port,
                user: "cofrap_admin".into(),
                password,
                dbname: "cofrap_db".into(),
            },
            dir,
            port,
            bin,
        };
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&cluster.dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let pgdata = cluster.dir.join("data");
        let initdb = cluster.as_owner(cluster.bin.join("initdb"), |c| {
            c.arg("--pgdata")
                .arg(&pgdata)
                .args(["--username=cofrap_admin", "--auth=scram-sha-256"])
                .arg(format!("--pwfile={}", cluster.dir.join("pwfile").display()))
                .args(["--encoding=UTF8", "--no-instructions", "--no-sync"])
        });
        assert!(initdb.status.success(), "initdb: {initdb:?}");
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nshared_buffers = 16MB\nmax_connections = 20\n{settings}\n",
            cluster.dir.join("run").display()
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(pgdata.join("postgresql.conf"))
            .unwrap();
        file.write_all(conf.as_bytes()).unwrap();
        cluster.start_again();
        cluster
            .server
            .connect_to("postgres")
            .batch_execute("CREATE DATABASE cofrap_db")
            .unwrap();
        // As operators do: the roles, then the schema as the owner role.
        let roles = apply_roles(&cluster.server, "cofrap_db");
        assert!(roles.status.success(), "db-roles: {roles:?}");
        let migrated = migrate(&cluster.server, "cofrap_db");
        assert!(migrated.status.success(), "db-migrate: {migrated:?}");
        cluster
    }

    /// Runs a PostgreSQL program as the cluster's owner.
    fn as_owner(
        &self,
        program: PathBuf,
        args: impl FnOnce(&mut Command) -> &mut Command,
    ) -> std::process::Output {
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        args(&mut command).stdin(Stdio::null()).output().unwrap()
    }

    /// pg_ctl `action` (start, stop, reload...), waiting for it.
    pub fn pg_ctl(&self, action: &str) {
        let pgdata = self.dir.join("data");
        let log = self.dir.join("postgres.log");
        let output = self.as_owner(self.bin.join("pg_ctl"), |c| {
            c.arg("--pgdata").arg(&pgdata).arg("--log").arg(&log).args([
                "--wait",
                "--silent",
                "--mode=fast",
                action,
            ])
        });
        assert!(output.status.success(), "pg_ctl {action}: {output:?}");
    }

    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    pub fn start_again(&self) {
        self.pg_ctl("start");
    }

    pub fn connect(&self) -> Client {
        self.server.connect()
    }

    /// The functions, configured for this cluster's `cofrap_db`.
    pub fn functions(&self) -> Functions {
        Functions::on(self.server.clone(), "cofrap_db")
    }

    /// The process id of the postmaster.
    pub fn postmaster_pid(&self) -> u32 {
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap();
        pid.lines().next().unwrap().trim().parse().unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Woken first, in case a test stopped it with SIGSTOP and failed.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("data/postmaster.pid")) {
            let pid = pid.lines().next().unwrap_or("").trim().to_owned();
            let _ = Command::new("kill").args(["-CONT", &pid]).output();
        }
        let pgdata = self.dir.join("data");
        let _ = self.as_owner(self.bin.join("pg_ctl"), |c| {
            c.arg("--pgdata")
                .arg(&pgdata)
                .args(["--wait", "--silent", "--mode=immediate", "stop"])
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `bin` folder of the newest PostgreSQL installed (initdb, pg_ctl,
/// pg_basebackup).
fn postgres_bin() -> PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (make test installs it)")
        .map(|entry| entry.unwrap().path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .max_by_key(|bin| {
            bin.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        })
        .expect("no initdb under /usr/lib/postgresql")
}

/// A TCP port of 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether the tests run as root (`make test` does, as CI does).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// Sends `signal` (STOP, CONT, TERM...) to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Counts the accounts among `usernames` that exist in the database.
pub fn count_accounts(db: &mut Client, usernames: &[String]) -> i64 {
    db.query_one(
        "SELECT count(*) FROM users WHERE username = ANY($1)",
        &[&usernames],
    )
    .unwrap()
    .get(0)
}

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is missing (make test installs it)");
    assert!(output.status.success(), "openssl {args:?}: {output:?}");
}

/// For TLS tests: a CA (`ca.pem`), another CA nobody uses (`other-ca.pem`), and the
/// server's key and certificate for `localhost` signed by the first
/// (`server.key`, `server.pem`), readable by the cluster's owner.
pub fn tls_certificates() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("cofrap-tls-"));
    std::fs::create_dir_all(&dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
        let subject = format!("/CN=COFRAP test {ca}");
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subject];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &pem]);
        openssl(&dir, &args);
    }
    let mut args = vec!["req", "-subj", "/CN=localhost"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&dir, &args);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = DNS:localhost\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    if is_root() {
        assert!(Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir)
            .status()
            .unwrap()
            .success());
    }
    assert!(Command::new("chmod")
        .args(["600"])
        .arg(dir.join("server.key"))
        .status()
        .unwrap()
        .success());
    dir
}

/// The `postgresql.conf` lines that serve TLS with [`tls_certificates`].
pub fn tls_settings(certs: &Path) -> String {
    format!(
        "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'",
        certs.join("server.pem").display(),
        certs.join("server.key").display()
    )
}
