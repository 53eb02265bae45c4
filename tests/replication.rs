//! A primary and its synchronous standby on this machine, and a failover
//! under load: what `tests/failover.rs` checks and `make bench` times.
//!
//! The primary is a [`Cluster`] of the test's own with the schema applied;
//! the standby is made from it with `pg_basebackup -R` (streaming
//! replication) and started beside it on another free port. Only then is
//! the primary made synchronous (`synchronous_standby_names = '*'`: a
//! commit is acknowledged once the standby has flushed it), so that the
//! schema's own writes never wait for a standby that does not exist yet.
//! The standby's `synchronous_standby_names` stays empty, so that once
//! promoted it accepts writes alone. Both are stopped and removed when
//! dropped, like every `Cluster`.
//!
//! [`PrimaryAndStandby::fail_over_under_load`] plays clients and operator at
//! once: clients create accounts (with request ids), enroll and sign in, a
//! few at a time, retrying whatever a retryable code answers, while the
//! primary is stopped with `pg_ctl stop -m immediate` mid-run and the
//! standby promoted. It records every answer; the caller judges them.

use crate::{code_at, current_step, decode_qr, free_port, is_root, unique, Cluster, Output};
use base64::Engine as _;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the standby may take to become the primary's synchronous standby.
const SYNC_PATIENCE: Duration = Duration::from_secs(30);

impl Cluster {
    /// Runs pg_ctl with `args` as the cluster's owner, waiting for it (at
    /// most 30 s).
    fn pg_ctl_with(&self, args: &[&str]) {
        let pgdata = self.dir.join("data");
        let log = self.dir.join("postgres.log");
        let output = self.as_owner(self.bin.join("pg_ctl"), |c| {
            c.arg("--pgdata")
                .arg(&pgdata)
                .arg("--log")
                .arg(&log)
                .args(["--wait", "--timeout=30", "--silent"])
                .args(args)
        });
        assert!(output.status.success(), "pg_ctl {args:?}: {output:?}");
    }

    /// Stops the server as a crash would: `pg_ctl stop -m immediate` (no
    /// checkpoint, every backend killed at once).
    pub fn stop_immediately(&self) {
        self.pg_ctl_with(&["--mode=immediate", "stop"]);
    }

    /// Promotes a standby to primary, returning once it accepts writes.
    pub fn promote(&self) {
        self.pg_ctl_with(&["promote"]);
    }
}

/// A primary, its synchronous standby, and the functions' view of both.
pub struct PrimaryAndStandby {
    pub primary: Cluster,
    pub standby: Cluster,
}

impl PrimaryAndStandby {
    /// A primary with the schema applied and a synchronous standby
    /// streaming from it; returns once the primary reports the standby as
    /// synchronous.
    pub fn start() -> PrimaryAndStandby {
        let primary = Cluster::start("");
        let dir = std::env::temp_dir().join(unique("cofrap-standby-"));
        std::fs::create_dir_all(dir.join("run")).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let port = free_port();
        let standby = Cluster {
            server: crate::Server {
                port,
                ..primary.server.clone()
            },
            dir,
            port,
            bin: primary.bin.clone(),
        };
        let pgdata = standby.dir.join("data");
        // -R: standby.signal, and primary_conninfo (with the password) in
        // postgresql.auto.conf.
        let backup = standby.as_owner(standby.bin.join("pg_basebackup"), |c| {
            c.env("PGPASSWORD", &primary.server.password)
                .args(["--host=127.0.0.1", &format!("--port={}", primary.port)])
                .arg(format!("--username={}", primary.server.user))
                .arg("--pgdata")
                .arg(&pgdata)
                .args([
                    "--write-recovery-conf",
                    "--wal-method=stream",
                    "--checkpoint=fast",
                    "--no-sync",
                ])
        });
        assert!(backup.status.success(), "pg_basebackup: {backup:?}");
        // The copied postgresql.conf is the primary's: the later lines win.
        let conf = format!(
            "\n# The standby's own.\nport = {port}\nunix_socket_directories = '{}'\n\
             cluster_name = 'cofrap_standby'\nsynchronous_standby_names = ''\n",
            standby.dir.join("run").display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(pgdata.join("postgresql.conf"))
            .unwrap()
            .write_all(conf.as_bytes())
            .unwrap();
        standby.start_again();
        let mut admin = primary.connect();
        // Two statements: ALTER SYSTEM cannot run in a transaction block.
        admin
            .batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            .unwrap();
        admin.batch_execute("SELECT pg_reload_conf()").unwrap();
        let pair = PrimaryAndStandby { primary, standby };
        pair.wait_until_synchronous();
        pair
    }

    /// Waits (bounded) until the primary reports its standby as
    /// synchronous and caught up.
    pub fn wait_until_synchronous(&self) {
        let started = Instant::now();
        let mut db = self.primary.connect();
        loop {
            let synchronous: i64 = db
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication
                      WHERE sync_state = 'sync' AND state = 'streaming'",
                    &[],
                )
                .unwrap()
                .get(0);
            if synchronous == 1 {
                return;
            }
            assert!(
                started.elapsed() < SYNC_PATIENCE,
                "the standby did not become synchronous within {SYNC_PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `POSTGRES_HOST` naming both, the primary first: `host:port,host:port`.
    pub fn host_list(&self) -> String {
        format!(
            "127.0.0.1:{},127.0.0.1:{}",
            self.primary.port, self.standby.port
        )
    }

    /// The functions' settings for both servers (`POSTGRES_HOST` the list);
    /// their `db()` reaches the primary.
    pub fn functions(&self) -> crate::Functions {
        let mut functions = self.primary.functions();
        functions.set("POSTGRES_HOST", &self.host_list());
        functions
    }

    /// Runs `load` through `run` (a function's name and request body, to
    /// what its process gave back), stops the primary with `-m immediate`
    /// once `load.kill_after_created` accounts are created, promotes the
    /// standby, and lets the clients finish. Aborts the load, without
    /// killing anything, if that many accounts are not created within
    /// `load.patience`.
    pub fn fail_over_under_load(
        &self,
        load: &Load,
        run: &(dyn Fn(&str, &[u8]) -> Output + Sync),
    ) -> SwitchReport {
        let prefix = unique("fo");
        let next = AtomicUsize::new(0);
        let created = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let answers = Mutex::new(Vec::new());
        let clients = Mutex::new(Vec::new());
        let started = Instant::now();
        let mut killed_at = None;
        let mut promoted_at = None;
        std::thread::scope(|scope| {
            for _ in 0..load.parallel {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= load.clients || stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let mut person = Person {
                        run,
                        username: format!("{prefix}-{index}"),
                        request_id: request_id(),
                        stop: &stop,
                        patience: load.step_patience,
                        answers: Vec::new(),
                    };
                    let outcome = person.journey(&created);
                    answers.lock().unwrap().append(&mut person.answers);
                    clients.lock().unwrap().push(outcome);
                });
            }
            // The operator: waits for the load to be under way, then kills
            // the primary and promotes the standby.
            loop {
                if created.load(Ordering::Relaxed) >= load.kill_after_created {
                    self.primary.stop_immediately();
                    let killed = Instant::now();
                    killed_at = Some(killed);
                    self.standby.promote();
                    promoted_at = Some(killed.elapsed());
                    break;
                }
                // Never under way (every client gave up), or not in time.
                let finished = clients.lock().unwrap().len() == load.clients;
                if finished || started.elapsed() > load.patience {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let mut clients = clients.into_inner().unwrap();
        clients.sort_by(|a, b| a.username.cmp(&b.username));
        let mut answers = answers.into_inner().unwrap();
        answers.sort_by_key(|answer: &Answer| answer.started);
        SwitchReport {
            prefix,
            clients,
            answers,
            killed_at,
            promoted_after: promoted_at,
        }
    }
}

/// A failover load: `clients` people, `parallel` at a time, each creating an
/// account with a request id, enrolling and signing in.
pub struct Load {
    pub clients: usize,
    pub parallel: usize,
    /// The primary is killed once this many accounts are created.
    pub kill_after_created: usize,
    /// How long the operator waits for that before giving up.
    pub patience: Duration,
    /// How long a client retries one step before giving up.
    pub step_patience: Duration,
}

/// What a client was told by one request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub function: &'static str,
    pub started: Instant,
    pub elapsed: Duration,
    pub status: i32,
    /// `ok` for a success, else the JSON's `code` (or what came instead).
    pub code: String,
    /// The log line's `detail` (never a secret: the functions see to it).
    pub detail: String,
    /// authenticate refused a code that an earlier attempt, answered with a
    /// retryable code, had consumed after all (its reply was lost): the
    /// documented replay, after which the client waits for the next code.
    pub replay: bool,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        self.status == 0 && self.code == "ok"
    }

    /// `database_unavailable` or `database_timeout`, exit status 1.
    pub fn is_retryable(&self) -> bool {
        self.status == 1 && RETRYABLE.contains(&self.code.as_str())
    }
}

/// The codes docs/API.md calls retryable.
pub const RETRYABLE: [&str; 2] = ["database_unavailable", "database_timeout"];

/// How one client's journey ended.
#[derive(Debug, Clone)]
pub struct ClientOutcome {
    pub username: String,
    pub request_id: String,
    /// The last password it was given (it works, unless `failure`).
    pub has_password: bool,
    /// When its account's creation was first acknowledged.
    pub created_at: Option<Instant>,
    pub enrolled: bool,
    pub signed_in: bool,
    /// Why it stopped before signing in.
    pub failure: Option<String>,
}

/// Everything a failover load saw.
pub struct SwitchReport {
    /// Every client's username starts with it, then `-`.
    pub prefix: String,
    pub clients: Vec<ClientOutcome>,
    /// Every answer, in the order the requests started.
    pub answers: Vec<Answer>,
    /// When `pg_ctl stop -m immediate` of the primary returned (None: the
    /// load never got under way, and nothing was killed).
    pub killed_at: Option<Instant>,
    /// From the kill to the standby's promotion returning.
    pub promoted_after: Option<Duration>,
}

impl SwitchReport {
    /// From the kill to the first success of a request sent after it.
    pub fn first_success_after_kill(&self) -> Option<Duration> {
        let killed = self.killed_at?;
        self.answers
            .iter()
            .filter(|a| a.started >= killed && a.is_success())
            .map(|a| (a.started + a.elapsed) - killed)
            .min()
    }

    /// The first answers, to say why a load never got under way.
    pub fn first_answers(&self, n: usize) -> String {
        self.answers
            .iter()
            .take(n)
            .map(|a| format!("{} {} ({}): {}", a.function, a.status, a.code, a.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One person with their client, retrying as docs/API.md says.
struct Person<'a> {
    run: &'a (dyn Fn(&str, &[u8]) -> Output + Sync),
    username: String,
    request_id: String,
    stop: &'a AtomicBool,
    patience: Duration,
    answers: Vec<Answer>,
}

/// How long a client pauses before retrying. Shorter than docs/API.md's
/// advice (one second, then more), to time the switch finely.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

impl Person<'_> {
    /// Create (with the request id), enroll, sign in.
    fn journey(&mut self, created: &AtomicUsize) -> ClientOutcome {
        let mut outcome = ClientOutcome {
            username: self.username.clone(),
            request_id: self.request_id.clone(),
            has_password: false,
            created_at: None,
            enrolled: false,
            signed_in: false,
            failure: None,
        };
        let create = json!({"username": self.username, "request_id": self.request_id});
        let password = match self.until_done("generate-password", &create) {
            Ok(answer) => {
                outcome.has_password = true;
                outcome.created_at = Some(Instant::now());
                created.fetch_add(1, Ordering::Relaxed);
                decode_qr(answer["qr_code_base64"].as_str().unwrap_or_default())
            }
            Err(why) => {
                outcome.failure = Some(why);
                return outcome;
            }
        };
        let enroll = json!({"username": self.username, "password": password});
        let secret = match self.until_done("generate-2fa", &enroll) {
            Ok(answer) => {
                outcome.enrolled = true;
                answer["manual_entry_key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            }
            Err(why) => {
                outcome.failure = Some(why);
                return outcome;
            }
        };
        match self.sign_in(&password, &secret) {
            Ok(()) => outcome.signed_in = true,
            Err(why) => outcome.failure = Some(why),
        }
        outcome
    }

    /// Sends `request` until it succeeds, retrying retryable answers.
    fn until_done(&mut self, function: &'static str, request: &Value) -> Result<Value, String> {
        let started = Instant::now();
        loop {
            let (answer, body) = self.send(function, request);
            if answer.is_success() {
                return Ok(body);
            }
            self.retry_or_give_up(&answer, started)?;
        }
    }

    /// authenticate until it succeeds. A retried code may have been
    /// consumed by an attempt whose reply was lost: refused then as a
    /// replay, the client waits for the next code (as docs/API.md says).
    fn sign_in(&mut self, password: &str, secret: &str) -> Result<(), String> {
        let started = Instant::now();
        let mut step = current_step();
        let mut uncertain = false;
        loop {
            let request = json!({"username": self.username, "password": password,
                                 "totp_code": code_at(secret, step * 30)});
            let (answer, _) = self.send("authenticate", &request);
            if answer.is_success() {
                return Ok(());
            }
            if uncertain && answer.status == 0 && answer.code == "invalid_credentials" {
                self.answers.last_mut().unwrap().replay = true;
                while current_step() <= step {
                    if started.elapsed() > self.patience + Duration::from_secs(30) {
                        return Err("no new code in time".into());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                step = current_step();
                uncertain = false;
                continue;
            }
            self.retry_or_give_up(&answer, started)?;
            uncertain = true;
        }
    }

    /// Pauses before a retry; an error when the answer is not retryable,
    /// the step has taken too long, or the load was stopped.
    fn retry_or_give_up(&self, answer: &Answer, started: Instant) -> Result<(), String> {
        if !answer.is_retryable() {
            return Err(format!(
                "{} answered {} (exit {}): {}",
                answer.function, answer.code, answer.status, answer.detail
            ));
        }
        if started.elapsed() > self.patience {
            return Err(format!(
                "{} still answered {} after {:?}: {}",
                answer.function, answer.code, self.patience, answer.detail
            ));
        }
        if self.stop.load(Ordering::Relaxed) {
            return Err(format!("stopped; last answer {}", answer.code));
        }
        std::thread::sleep(RETRY_PAUSE);
        Ok(())
    }

    /// One request, recorded.
    fn send(&mut self, function: &'static str, request: &Value) -> (Answer, Value) {
        let started = Instant::now();
        let output = (self.run)(function, request.to_string().as_bytes());
        let elapsed = started.elapsed();
        let body: Value = serde_json::from_str(&output.stdout).unwrap_or(Value::Null);
        let code = match (&body, output.status) {
            (Value::Object(fields), status) => match fields.get("code").and_then(Value::as_str) {
                Some(code) => code.to_owned(),
                None if status == 0 => "ok".to_owned(),
                None => "no code".to_owned(),
            },
            _ => format!(
                "not JSON: {:?}",
                output.stdout.chars().take(80).collect::<String>()
            ),
        };
        let detail = output.log_detail();
        let answer = Answer {
            function,
            started,
            elapsed,
            status: output.status,
            code,
            detail,
            replay: false,
        };
        self.answers.push(answer.clone());
        (answer, body)
    }
}

/// A fresh request id: 16 random bytes, base64url (22 characters).
pub fn request_id() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
