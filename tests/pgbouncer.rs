//! A real PgBouncer (Debian's `pgbouncer`, which `make pooler-deps`
//! installs) in front of a test database, as production runs the functions
//! behind CloudNativePG's Pooler: what `tests/pooler.rs` drives the
//! functions through.
//!
//! Each `PgBouncer` is the test's own: a configuration, a password file and
//! a log in a temporary folder, listening on a free port of 127.0.0.1 (no
//! Unix socket), in session or transaction pooling, with a pool small
//! enough that server connections really are passed from one client to the
//! next. It authenticates the functions' role (SCRAM, the role's password
//! in its own password file, which it also uses to log in to PostgreSQL).
//! PgBouncer refuses to run as root: as root it runs as the `postgres`
//! user. It is stopped and its folder removed when dropped.

use crate::{is_root, unique, FunctionRole, Functions, Server};
use postgres::{Client, NoTls};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long PgBouncer may take to listen.
const START_PATIENCE: Duration = Duration::from_secs(10);

/// How PgBouncer hands server connections to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client, for the client's whole session;
    /// `DISCARD ALL` when the client leaves, before the next one gets it.
    Session,
    /// A server connection per transaction (or per statement outside one):
    /// the next statement of the same client may run on another one, and
    /// nothing is reset in between.
    Transaction,
}

impl PoolMode {
    /// Its name in pgbouncer.ini.
    pub fn name(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// A running PgBouncer in front of database `dbname` of `server`.
pub struct PgBouncer {
    /// Where it listens, on 127.0.0.1.
    pub port: u16,
    /// The database behind it (and its name in PgBouncer).
    pub dbname: String,
    /// The PostgreSQL server behind it, reached directly (as the administrator).
    pub server: Server,
    /// The role it lets in, and logs in to PostgreSQL as.
    pub role: FunctionRole,
    dir: PathBuf,
    child: Child,
}

impl PgBouncer {
    /// Starts PgBouncer in front of `dbname` on `server`, pooling in `mode`
    /// with at most `pool_size` server connections; returns once it listens.
    pub fn start(server: &Server, dbname: &str, mode: PoolMode, pool_size: u32) -> PgBouncer {
        let dir = std::env::temp_dir().join(unique("cofrap-pgbouncer-"));
        std::fs::create_dir_all(&dir).unwrap();
        let role = FunctionRole::from_test_secrets();
        let port = crate::free_port();
        let quote = |value: &str| format!("\"{}\"", value.replace('"', "\"\""));
        write_private(
            &dir.join("userlist.txt"),
            &format!("{} {}\n", quote(&role.user), quote(&role.password)),
        );
        // query_wait_timeout: a client waits at most this long in the queue
        // for a server connection, as in production (k8s/cnpg/pooler.yaml).
        let ini = format!(
            "[databases]\n\
             {dbname} = host={host} port={server_port} dbname={dbname}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = scram-sha-256\n\
             auth_file = {userlist}\n\
             pool_mode = {mode}\n\
             default_pool_size = {pool_size}\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             max_db_connections = {pool_size}\n\
             max_client_conn = 100\n\
             query_wait_timeout = 5\n\
             server_tls_sslmode = disable\n\
             logfile = {log}\n",
            host = server.host,
            server_port = server.port,
            userlist = dir.join("userlist.txt").display(),
            mode = mode.name(),
            log = dir.join("pgbouncer.log").display(),
        );
        write_private(&dir.join("pgbouncer.ini"), &ini);
        let mut command = Command::new(pgbouncer_binary());
        command
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            let (uid, gid) = postgres_user();
            let status = Command::new("chown")
                .args(["-R", &format!("{uid}:{gid}")])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success(), "chown {}", dir.display());
            // Also drops root's supplementary groups (std does, with uid).
            command.uid(uid).gid(gid);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("pgbouncer: {e} (make test installs it)"));
        let mut bouncer = PgBouncer {
            port,
            dbname: dbname.to_owned(),
            server: server.clone(),
            role,
            dir,
            child,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = bouncer.child.try_wait().unwrap() {
                panic!("pgbouncer exited ({status}): {}", bouncer.log());
            }
            assert!(
                started.elapsed() < START_PATIENCE,
                "pgbouncer did not listen on {port} within {START_PATIENCE:?}: {}",
                bouncer.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        bouncer
    }

    /// The functions, configured to reach the database through this
    /// PgBouncer; their `db()` still reaches the server directly, as the
    /// administrator.
    pub fn functions(&self) -> Functions {
        let mut functions = Functions::on(self.server.clone(), &self.dbname);
        functions.set("POSTGRES_HOST", "127.0.0.1");
        functions.set("POSTGRES_PORT", &self.port.to_string());
        functions
    }

    /// A client of PgBouncer as the functions' role: it gets one of the
    /// server connections the functions used. Only simple queries work in
    /// transaction pooling (no prepared statements).
    pub fn connect_as_functions(&self) -> Client {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(&self.role.user)
            .password(&self.role.password)
            .dbname(&self.dbname)
            .connect_timeout(Duration::from_secs(10))
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("cannot connect through pgbouncer: {e}: {}", self.log()))
    }

    /// PgBouncer's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // SIGKILL: its server connections close, their backends end.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes a file only its owner may read (PgBouncer's password file).
fn write_private(path: &std::path::Path, contents: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(contents.as_bytes()).unwrap();
}

/// Debian installs pgbouncer in /usr/sbin, which is not on every user's PATH.
fn pgbouncer_binary() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/pgbouncer");
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from("pgbouncer")
    }
}

/// The user and group ids of `postgres`.
fn postgres_user() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        assert!(output.status.success(), "no postgres user");
        String::from_utf8(output.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}
