//! `make bench`: what one request of each function costs, measured the way the
//! classic watchdog runs it (a fresh process, the request on stdin), against
//! two yardsticks measured in the same run:
//!
//! - the floor: `floor`, a process that reads stdin, connects the same way,
//!   runs one indexed query and prints JSON — what any function pays at least;
//! - bcrypt alone, in process, at the configured cost: what the password
//!   functions pay by design (the cost is never lowered to look fast).
//!
//! Each bcrypt-bound run is paired with an in-process bcrypt operation of the
//! same kind, measured just before it, and its overhead is the difference:
//! bcrypt's own jitter (a few ms) would otherwise drown the few ms under test.
//!
//! It runs with 10,000 and then 1,000,000 accounts in the table, then runs
//! authenticate from 2 × cores concurrent clients. refresh and jwks, which
//! run no bcrypt, are held to the floor alone. Then it times the answers to
//! database faults and the cost of TLS ([`faults`]). It prints a report and
//! writes it to BENCHMARKS.md. Nothing here is a test: `make test` has no
//! timing assertions; the targets are judged here, by a person, on a machine
//! whose name the report carries.

mod faults;

use cofrap_tests::{code_at, current_step, fernet_key, unique, FunctionRole, ScratchDatabase};
use common::encryption::Keyring;
use common::totp::TotpSecret;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs per function and population.
const RUNS: usize = 30;
/// The floor is quick and the reference of every ratio: more runs (10, then
/// one before each function run).
const FLOOR_RUNS: usize = 3 * RUNS + 10;
/// Accounts in the table for each round.
const POPULATIONS: [i64; 2] = [10_000, 1_000_000];
const CONCURRENCY: Duration = Duration::from_secs(20);
/// The production setting (stack.yaml): never lowered here.
const BCRYPT_COST: u32 = 12;
const PASSWORD: &str = "Bench-Password-0123456789!";
const FUNCTIONS: [&str; 6] = [
    "generate-password",
    "generate-2fa",
    "authenticate",
    "refresh",
    "sign-out",
    "jwks",
];

/// Targets (issue: "make bench").
const MAX_OVERHEAD_FLOORS: f64 = 1.3;
const MAX_PEAK_RSS_MIB: f64 = 16.0;
const MAX_BINARY_MB: f64 = 8.0;
const MIN_CONCURRENT_SHARE: f64 = 0.85;

/// One process run.
#[derive(Clone, Copy)]
struct Sample {
    wall_ms: f64,
    cpu_ms: f64,
    peak_rss_kib: i64,
}

/// A series of runs, with the paired bcrypt times when there are some.
#[derive(Default)]
struct Series {
    samples: Vec<Sample>,
    bcrypt_ms: Vec<f64>,
}

impl Series {
    fn median_wall(&self) -> f64 {
        median(self.samples.iter().map(|s| s.wall_ms).collect())
    }

    fn p95_wall(&self) -> f64 {
        let mut walls: Vec<f64> = self.samples.iter().map(|s| s.wall_ms).collect();
        walls.sort_by(f64::total_cmp);
        walls[((walls.len() as f64 * 0.95).ceil() as usize).max(1) - 1]
    }

    fn median_cpu(&self) -> f64 {
        median(self.samples.iter().map(|s| s.cpu_ms).collect())
    }

    fn peak_rss_mib(&self) -> f64 {
        self.samples
            .iter()
            .map(|s| s.peak_rss_kib)
            .max()
            .unwrap_or(0) as f64
            / 1024.0
    }

    /// Median of (run − its paired bcrypt operation).
    fn median_overhead(&self) -> f64 {
        median(
            self.samples
                .iter()
                .zip(&self.bcrypt_ms)
                .map(|(s, b)| s.wall_ms - b)
                .collect(),
        )
    }

    fn median_bcrypt(&self) -> f64 {
        median(self.bcrypt_ms.clone())
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Where the function binaries are: beside this one (target/release/).
fn binary(name: &str) -> PathBuf {
    std::env::current_exe().unwrap().with_file_name(name)
}

/// Waits for `child` and returns its exit status and resource usage.
#[allow(unsafe_code)]
fn wait_with_usage(child: &std::process::Child) -> (i32, libc::rusage) {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data, for which all-zero bytes are valid;
    // wait4 only writes through the two pointers, which point to live locals;
    // `pid` is our own child, not yet reaped (std reaps only in wait()).
    let (reaped, usage) = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let reaped = libc::wait4(pid, &mut status, 0, &mut usage);
        (reaped, usage)
    };
    assert_eq!(reaped, pid, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage)
}

fn millis(time: libc::timeval) -> f64 {
    time.tv_sec as f64 * 1000.0 + time.tv_usec as f64 / 1000.0
}

/// The functions' environment, as stack.yaml sets it.
struct Environment {
    variables: Vec<(String, String)>,
}

impl Environment {
    /// Sets (or replaces) one variable.
    fn set(&mut self, name: &str, value: &str) {
        self.variables.retain(|(k, _)| k != name);
        self.variables.push((name.to_owned(), value.to_owned()));
    }

    /// Runs `program` once on `request`, as the watchdog does.
    // The child is reaped by wait4 (wait_with_usage), not by Child::wait.
    #[allow(clippy::zombie_processes)]
    fn run(&self, program: &str, request: &Value) -> (Sample, Value) {
        let started = Instant::now();
        let mut child = Command::new(binary(program))
            .env_clear()
            .envs(self.variables.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.to_string().as_bytes())
            .unwrap();
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let (status, usage) = wait_with_usage(&child);
        let sample = Sample {
            wall_ms: started.elapsed().as_secs_f64() * 1000.0,
            cpu_ms: millis(usage.ru_utime) + millis(usage.ru_stime),
            peak_rss_kib: usage.ru_maxrss,
        };
        let response = serde_json::from_str(&stdout)
            .unwrap_or_else(|_| json!({"error": "not JSON", "stdout": stdout}));
        if status != 0 {
            return (
                sample,
                json!({"error": "exit status", "status": status, "response": response}),
            );
        }
        (sample, response)
    }
}

fn timed(work: impl FnOnce()) -> f64 {
    let started = Instant::now();
    work();
    started.elapsed().as_secs_f64() * 1000.0
}

/// The fixtures every round uses: one password hash, one encrypted secret.
struct Fixtures {
    password_hash: String,
    secret: String,
    encrypted_secret: String,
}

fn fill(db: &mut postgres::Client, fixtures: &Fixtures, from: i64, to: i64) {
    // Active accounts with a known password and 2FA, in one statement.
    db.execute(
        "INSERT INTO users (username, password_hash, mfa_secret, created_at, expired, activated_at)
         SELECT 'bench-' || g, $1, $2, now(), false, now() FROM generate_series($3::bigint, $4::bigint) g",
        &[&fixtures.password_hash, &fixtures.encrypted_secret, &from, &to],
    )
    .unwrap();
    // Settle the table before measuring: statistics, visibility map, and no
    // checkpoint of a million fresh rows running under the measurements.
    // Two statements: VACUUM refuses to run in the implicit transaction of
    // a multi-statement query.
    db.batch_execute("VACUUM ANALYZE users").unwrap();
    db.batch_execute("CHECKPOINT").unwrap();
}

/// Pending accounts with the known password, for generate-2fa.
fn pending_accounts(db: &mut postgres::Client, fixtures: &Fixtures, count: usize) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|_| unique("pending-")).collect();
    for name in &names {
        db.execute(
            "INSERT INTO users (username, password_hash) VALUES ($1, $2)",
            &[name, &fixtures.password_hash],
        )
        .unwrap();
    }
    names
}

struct Round {
    population: i64,
    floor: Series,
    functions: Vec<(&'static str, Series)>,
    /// authenticate's refusals, by cause: they must take about as long.
    refusals: Vec<Refusals>,
    /// refresh and jwks: no bcrypt, so against the floor alone.
    sessions: Vec<(&'static str, Series)>,
}

/// Runs of authenticate that are refused, per cause.
const REFUSAL_RUNS: usize = 10;

/// Errors seen (a function that did not give its normal answer).
static ERRORS: AtomicUsize = AtomicUsize::new(0);

fn expect(ok: bool, what: &str, response: &Value) {
    if !ok {
        ERRORS.fetch_add(1, Ordering::Relaxed);
        eprintln!("unexpected answer from {what}: {response}");
    }
}

fn round(
    env: &Environment,
    refusal_env: &Environment,
    db: &mut postgres::Client,
    fixtures: &Fixtures,
    population: i64,
    next_unused: &mut i64,
) -> Round {
    eprintln!("round with {population} accounts");
    // The floor runs interleaved with the functions, so that both are
    // measured under the same conditions: a few first, then one before each
    // function run.
    let mut floor = Series::default();
    let mut floor_run = || {
        let user = format!(
            "bench-{}",
            1 + (floor.samples.len() as i64 * 7919) % population
        );
        let (sample, response) = env.run("floor", &json!({ "username": user }));
        expect(response["exists"] == true, "floor", &response);
        floor.samples.push(sample);
    };
    for _ in 0..FLOOR_RUNS - 3 * RUNS {
        floor_run();
    }

    let mut created = Series::default();
    for _ in 0..RUNS {
        floor_run();
        created.bcrypt_ms.push(timed(|| {
            bcrypt::hash(PASSWORD, BCRYPT_COST).unwrap();
        }));
        let (sample, response) =
            env.run("generate-password", &json!({ "username": unique("new-") }));
        expect(
            response["qr_code_base64"].is_string(),
            "generate-password",
            &response,
        );
        created.samples.push(sample);
    }

    let mut enrolled = Series::default();
    for user in pending_accounts(db, fixtures, RUNS) {
        floor_run();
        enrolled.bcrypt_ms.push(timed(|| {
            bcrypt::verify(PASSWORD, &fixtures.password_hash).unwrap();
        }));
        let (sample, response) = env.run(
            "generate-2fa",
            &json!({ "username": user, "password": PASSWORD }),
        );
        expect(
            response["manual_entry_key"].is_string(),
            "generate-2fa",
            &response,
        );
        enrolled.samples.push(sample);
    }

    let mut authenticated = Series::default();
    for _ in 0..RUNS {
        let user = format!("bench-{next_unused}");
        *next_unused += 1;
        floor_run();
        authenticated.bcrypt_ms.push(timed(|| {
            bcrypt::verify(PASSWORD, &fixtures.password_hash).unwrap();
        }));
        let code = code_at(&fixtures.secret, current_step() * 30);
        let request = json!({ "username": user, "password": PASSWORD, "totp_code": code });
        let (sample, response) = env.run("authenticate", &request);
        expect(response["authenticated"] == true, "authenticate", &response);
        authenticated.samples.push(sample);
    }

    // refresh: one sign-in, then a chain of rotations, each run exchanging
    // the refresh token the previous one gave.
    let user = format!("bench-{next_unused}");
    *next_unused += 1;
    let code = code_at(&fixtures.secret, current_step() * 30);
    let (_, signed_in) = env.run(
        "authenticate",
        &json!({ "username": user, "password": PASSWORD, "totp_code": code }),
    );
    let mut refresh_token = signed_in["refresh_token"].clone();
    let mut refreshed = Series::default();
    for _ in 0..RUNS {
        floor_run();
        let (sample, response) = env.run("refresh", &json!({ "refresh_token": refresh_token }));
        expect(response["access_token"].is_string(), "refresh", &response);
        refresh_token = response["refresh_token"].clone();
        refreshed.samples.push(sample);
    }
    let mut published = Series::default();
    for _ in 0..RUNS {
        floor_run();
        let (sample, response) = env.run("jwks", &json!({}));
        expect(response["keys"].is_array(), "jwks", &response);
        published.samples.push(sample);
    }

    let refusals = refusals(refusal_env, db, fixtures, next_unused);
    Round {
        population,
        floor,
        refusals,
        sessions: vec![("refresh", refreshed), ("jwks", published)],
        functions: vec![
            ("generate-password", created),
            ("generate-2fa", enrolled),
            ("authenticate", authenticated),
        ],
    }
}

/// The causes of an authenticate refusal whose times are compared.
const CAUSES: [&str; 4] = [
    "unknown user",
    "wrong password",
    "wrong code",
    "locked account",
];

/// Refusals timed for one cause (in the order of [`CAUSES`]): one request
/// at a time, then [`REFUSAL_CLIENTS`] at once on one account.
struct Refusals {
    sequential: Series,
    concurrent: Series,
}

/// Requests at once on one account in the concurrent refusal runs.
const REFUSAL_CLIENTS: usize = 4;

/// authenticate refused for an unknown user, a wrong password, a wrong code
/// and a locked account: the answers are identical (the tests check that);
/// here, their time, one at a time and [`REFUSAL_CLIENTS`] at once on one
/// account (where a row lock held through bcrypt would queue them). The
/// environment sets thresholds high enough that the failures do not lock.
fn refusals(
    env: &Environment,
    db: &mut postgres::Client,
    fixtures: &Fixtures,
    next_unused: &mut i64,
) -> Vec<Refusals> {
    let mut next_account = || {
        *next_unused += 1;
        format!("bench-{}", *next_unused - 1)
    };
    let request = |cause: &str, user: &str| {
        let right_code = code_at(&fixtures.secret, current_step() * 30);
        let wrong_code = if right_code == "000000" {
            "111111"
        } else {
            "000000"
        };
        match cause {
            "wrong password" => {
                json!({ "username": user, "password": "not-the-password", "totp_code": right_code })
            }
            "wrong code" => {
                json!({ "username": user, "password": PASSWORD, "totp_code": wrong_code })
            }
            // Unknown and locked: the right password and code.
            _ => json!({ "username": user, "password": PASSWORD, "totp_code": right_code }),
        }
    };
    let mut lock = |user: &str| {
        db.execute(
            "UPDATE users SET locked_until = 'infinity' WHERE username = $1",
            &[&user],
        )
        .unwrap();
    };
    let mut account_for = |cause: &str| -> String {
        match cause {
            "unknown user" => unique("nobody-"),
            "locked account" => {
                let user = next_account();
                lock(&user);
                user
            }
            _ => next_account(),
        }
    };
    let mut by_cause = Vec::new();
    for cause in CAUSES {
        let mut sequential = Series::default();
        for _ in 0..REFUSAL_RUNS {
            let user = account_for(cause);
            let (sample, response) = env.run("authenticate", &request(cause, &user));
            expect(
                response["code"] == "invalid_credentials",
                "authenticate refusal",
                &response,
            );
            sequential.samples.push(sample);
        }
        let mut concurrent = Series::default();
        let user = account_for(cause);
        for _ in 0..REFUSAL_RUNS {
            let body = request(cause, &user);
            let samples: Vec<(Sample, Value)> = std::thread::scope(|scope| {
                let runs: Vec<_> = (0..REFUSAL_CLIENTS)
                    .map(|_| scope.spawn(|| env.run("authenticate", &body)))
                    .collect();
                runs.into_iter().map(|run| run.join().unwrap()).collect()
            });
            for (sample, response) in samples {
                expect(
                    response["code"] == "invalid_credentials",
                    "concurrent authenticate refusal",
                    &response,
                );
                concurrent.samples.push(sample);
            }
        }
        by_cause.push(Refusals {
            sequential,
            concurrent,
        });
    }
    by_cause
}

/// How far apart the slowest and the quickest of some medians are, as a
/// share of the quickest.
fn spread(medians: &[f64]) -> f64 {
    let low = medians.iter().copied().fold(f64::INFINITY, f64::min);
    let high = medians.iter().copied().fold(0.0, f64::max);
    high / low - 1.0
}

/// Refusal times are judged within 5 % of each other.
const MAX_REFUSAL_SPREAD: f64 = 0.05;

struct Concurrency {
    clients: usize,
    seconds: f64,
    successes: u64,
    errors: u64,
    ideal_per_second: f64,
}

/// authenticate from 2 × cores clients at once, each on accounts of its own.
fn concurrency(
    env: &Environment,
    fixtures: &Fixtures,
    first_unused: i64,
    verify_ms: f64,
) -> Concurrency {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let clients = 2 * cores;
    eprintln!("authenticate from {clients} concurrent clients for {CONCURRENCY:?}");
    let next = AtomicU64::new(first_unused as u64);
    let successes = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                while started.elapsed() < CONCURRENCY {
                    let user = format!("bench-{}", next.fetch_add(1, Ordering::Relaxed));
                    let code = code_at(&fixtures.secret, current_step() * 30);
                    let request =
                        json!({ "username": user, "password": PASSWORD, "totp_code": code });
                    let (_, response) = env.run("authenticate", &request);
                    if response["authenticated"] == true {
                        successes.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("concurrent authenticate: {response}");
                    }
                }
            });
        }
    });
    Concurrency {
        clients,
        seconds: started.elapsed().as_secs_f64(),
        successes: successes.into_inner(),
        errors: errors.into_inner(),
        ideal_per_second: cores as f64 / (verify_ms / 1000.0),
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {memory_gib:.0} GiB, Linux {}",
        kernel.trim()
    )
}

fn today() -> String {
    let output = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output();
    output.map_or_else(
        |_| "unknown date".into(),
        |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

fn report(
    rounds: &[Round],
    hash_ms: f64,
    verify_ms: f64,
    sizes: &[(String, f64)],
    load: &Concurrency,
    postgres_version: &str,
) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(w, "Written by `make bench` on {}.\n", today());
    let _ = writeln!(w, "- Machine: {}", machine());
    let _ = writeln!(
        w,
        "- Database: {postgres_version}, local, over TCP on loopback (password auth)"
    );
    let _ = writeln!(
        w,
        "- Each function run as the watchdog runs it: a fresh process, the request on stdin; \
         {RUNS} runs per function and population, {FLOOR_RUNS} for the floor."
    );
    let _ = writeln!(
        w,
        "- bcrypt at cost {BCRYPT_COST} (production's), in process: hash {hash_ms:.1} ms, verify {verify_ms:.1} ms (medians)."
    );
    let _ = writeln!(
        w,
        "- Overhead: a bcrypt-bound run minus an in-process bcrypt operation of the same kind \
         timed just before it, median over the runs; its target is at most {MAX_OVERHEAD_FLOORS} × the floor's median.\n"
    );

    let _ = writeln!(w, "| function | accounts | median ms | p95 ms | median CPU ms | peak RSS MiB | overhead over bcrypt ms | overhead / floor | target |");
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for round in rounds {
        let floor = round.floor.median_wall();
        let _ = writeln!(
            w,
            "| floor | {} | {:.1} | {:.1} | {:.1} | {:.1} | | 1.00 | (reference) |",
            round.population,
            floor,
            round.floor.p95_wall(),
            round.floor.median_cpu(),
            round.floor.peak_rss_mib()
        );
        for (name, series) in &round.functions {
            let overhead = series.median_overhead();
            let ratio = overhead / floor;
            let _ = writeln!(
                w,
                "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {} |",
                round.population,
                series.median_wall(),
                series.p95_wall(),
                series.median_cpu(),
                series.peak_rss_mib(),
                overhead,
                ratio,
                verdict(ratio <= MAX_OVERHEAD_FLOORS && series.peak_rss_mib() <= MAX_PEAK_RSS_MIB)
            );
        }
    }

    let _ = writeln!(w, "\n## generate-2fa against the floor alone\n");
    let _ = writeln!(
        w,
        "The brief's target for generate-2fa is {MAX_OVERHEAD_FLOORS} × the floor, with no bcrypt allowance. \
         It cannot be met as written: generate-2fa must check the password before it replaces a \
         2FA secret (the lifecycle issue: \"for a pending account whose password verifies\"), and \
         that check is a bcrypt verification at cost {BCRYPT_COST}, {verify_ms:.0} ms here, many floors long. \
         It is therefore held to the password functions' target, bcrypt + {MAX_OVERHEAD_FLOORS} × floor, in the table above.\n"
    );
    let _ = writeln!(
        w,
        "| accounts | generate-2fa median ms | floor median ms | ratio | bcrypt verify share |"
    );
    let _ = writeln!(w, "|---:|---:|---:|---:|---:|");
    for round in rounds {
        let series = &round.functions[1].1;
        let floor = round.floor.median_wall();
        let _ = writeln!(
            w,
            "| {} | {:.1} | {:.1} | {:.1} | {:.0} % |",
            round.population,
            series.median_wall(),
            floor,
            series.median_wall() / floor,
            100.0 * series.median_bcrypt() / series.median_wall()
        );
    }

    let _ = writeln!(w, "\n## Sessions against the floor\n");
    let _ = writeln!(
        w,
        "refresh (look up the token's hash, rotate it, sign an Ed25519 access token) and jwks \
         (read the signing keys, print the public ones; no database) run no bcrypt: their target is \
         {MAX_OVERHEAD_FLOORS} × the floor's median, with the floor measured between their runs as above.\n"
    );
    let _ = writeln!(
        w,
        "| function | accounts | median ms | p95 ms | median CPU ms | peak RSS MiB | floor median ms | ratio | target |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for round in rounds {
        let floor = round.floor.median_wall();
        for (name, series) in &round.sessions {
            let ratio = series.median_wall() / floor;
            let _ = writeln!(
                w,
                "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {} |",
                round.population,
                series.median_wall(),
                series.p95_wall(),
                series.median_cpu(),
                series.peak_rss_mib(),
                floor,
                ratio,
                verdict(ratio <= MAX_OVERHEAD_FLOORS && series.peak_rss_mib() <= MAX_PEAK_RSS_MIB)
            );
        }
    }

    let _ = writeln!(w, "\n## No enumeration by timing\n");
    let _ = writeln!(
        w,
        "authenticate gives one answer, byte for byte, for an unknown user, a wrong password, a \
         wrong code and a locked account (the tests check it). An unknown user costs a bcrypt check \
         against a dummy hash at BCRYPT_COST, a locked account a check of its own hash, and the \
         password is checked before the account's row is locked. Median ms of {REFUSAL_RUNS} runs \
         one at a time, and of {REFUSAL_RUNS} × {REFUSAL_CLIENTS} runs with {REFUSAL_CLIENTS} at \
         once on one account (one unknown name, one account); judged within {:.0} % of each other:\n",
        MAX_REFUSAL_SPREAD * 100.0
    );
    let header: Vec<String> = CAUSES.iter().map(|c| format!("{c} ms")).collect();
    let _ = writeln!(
        w,
        "| accounts | runs | {} | spread | within {:.0} % |",
        header.join(" | "),
        MAX_REFUSAL_SPREAD * 100.0
    );
    let _ = writeln!(w, "|---:|---|{}---:|---|", "---:|".repeat(CAUSES.len()));
    for round in rounds {
        for (runs, pick) in [("one at a time", false), ("4 at once, one account", true)] {
            let medians: Vec<f64> = round
                .refusals
                .iter()
                .map(|r| {
                    if pick {
                        r.concurrent.median_wall()
                    } else {
                        r.sequential.median_wall()
                    }
                })
                .collect();
            let cells: Vec<String> = medians.iter().map(|m| format!("{m:.1}")).collect();
            let spread = spread(&medians);
            let _ = writeln!(
                w,
                "| {} | {runs} | {} | {:.1} % | {} |",
                round.population,
                cells.join(" | "),
                spread * 100.0,
                if spread <= MAX_REFUSAL_SPREAD {
                    "yes"
                } else {
                    "**no**"
                }
            );
        }
    }

    let _ = writeln!(w, "\n## Concurrency\n");
    let per_second = load.successes as f64 / load.seconds;
    let share = per_second / load.ideal_per_second;
    let _ = writeln!(
        w,
        "authenticate from {} concurrent clients for {:.0} s with {} accounts: {:.2} requests/s, {} errors. \
         The bcrypt-bound ideal is cores / verify time = {:.2} requests/s, so {:.0} % of it (target {:.0} %, no errors): {}.",
        load.clients,
        load.seconds,
        rounds.last().map_or(0, |r| r.population),
        per_second,
        load.errors,
        load.ideal_per_second,
        share * 100.0,
        MIN_CONCURRENT_SHARE * 100.0,
        verdict(share >= MIN_CONCURRENT_SHARE && load.errors == 0)
    );

    let _ = writeln!(w, "\n## Binaries\n");
    let _ = writeln!(w, "| binary | stripped size MB | target |");
    let _ = writeln!(w, "|---|---:|---|");
    for (name, mb) in sizes {
        let _ = writeln!(
            w,
            "| {name} | {mb:.2} | {} |",
            verdict(*mb <= MAX_BINARY_MB)
        );
    }
    let _ = writeln!(
        w,
        "\nRelease profile (Cargo.toml): `lto = true`, `codegen-units = 1`, `panic = \"abort\"`, `strip = true`."
    );
    let _ = writeln!(
        w,
        "\nWhere the time goes, and how the targets stand: README.md, section Performance."
    );
    out
}

fn main() {
    // `cofrap-bench images`: only the images, their section of BENCHMARKS.md
    // replaced (no database needed).
    if std::env::args().nth(1).as_deref() == Some("images") {
        let path = cofrap_tests::repo_root().join("BENCHMARKS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let kept = old.split("\n## Images\n").next().unwrap_or_default();
        let section = images_section();
        print!("{section}");
        std::fs::write(&path, format!("{}\n{section}", kept.trim_end())).unwrap();
        return;
    }
    let scratch = ScratchDatabase::create();
    let migrated = scratch.migrate();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let mut db = scratch.connect();
    let postgres_version: String = db.query_one("SHOW server_version", &[]).unwrap().get(0);

    let secrets = std::env::temp_dir().join(unique("cofrap-bench-secrets-"));
    std::fs::create_dir_all(&secrets).unwrap();
    let key = fernet_key();
    // The functions log in as their own role, as deployed (make db-roles).
    let role = FunctionRole::from_test_secrets();
    std::fs::write(secrets.join("db-credentials-username"), &role.user).unwrap();
    std::fs::write(secrets.join("db-credentials-password"), &role.password).unwrap();
    std::fs::write(secrets.join("encryption-key"), &key).unwrap();
    std::fs::write(
        secrets.join("jwt-signing-keys"),
        cofrap_tests::signing_key(),
    )
    .unwrap();
    let env = Environment {
        variables: vec![
            ("SECRETS_DIR".into(), secrets.display().to_string()),
            ("POSTGRES_HOST".into(), scratch.server.host.clone()),
            ("POSTGRES_PORT".into(), scratch.server.port.to_string()),
            ("POSTGRES_DB".into(), scratch.name.clone()),
            ("BCRYPT_COST".into(), BCRYPT_COST.to_string()),
            ("POSTGRES_SSLMODE".into(), "disable".into()),
        ],
    };

    // Failures by the refusal runs must neither lock nor escalate.
    let mut refusal_env = Environment {
        variables: env.variables.clone(),
    };
    refusal_env
        .variables
        .push(("MAX_FAILED_ATTEMPTS".into(), "1000".into()));
    refusal_env
        .variables
        .push(("HARD_LOCK_ATTEMPTS".into(), "100000".into()));

    eprintln!("bcrypt at cost {BCRYPT_COST}, in process");
    let password_hash = bcrypt::hash(PASSWORD, BCRYPT_COST).unwrap();
    let hash_ms = median(
        (0..10)
            .map(|_| timed(|| drop(bcrypt::hash(PASSWORD, BCRYPT_COST))))
            .collect(),
    );
    let verify_ms = median(
        (0..10)
            .map(|_| timed(|| drop(bcrypt::verify(PASSWORD, &password_hash))))
            .collect(),
    );

    let secret = TotpSecret::generate().unwrap();
    let fixtures = Fixtures {
        encrypted_secret: Keyring::parse(&key)
            .unwrap()
            .encrypt(secret.to_base32().as_bytes()),
        secret: secret.to_base32(),
        password_hash,
    };

    let mut rounds = Vec::new();
    let mut filled = 0;
    // Accounts are used once each (a code is accepted once per account and step).
    let mut next_unused = 1;
    for population in POPULATIONS {
        eprintln!("filling the table to {population} accounts");
        fill(&mut db, &fixtures, filled + 1, population);
        filled = population;
        rounds.push(round(
            &env,
            &refusal_env,
            &mut db,
            &fixtures,
            population,
            &mut next_unused,
        ));
    }
    let load = concurrency(&env, &fixtures, next_unused, verify_ms);

    let sizes: Vec<(String, f64)> = FUNCTIONS
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::metadata(binary(f)).unwrap().len() as f64 / 1e6,
            )
        })
        .collect();
    let mut text = report(
        &rounds,
        hash_ms,
        verify_ms,
        &sizes,
        &load,
        &postgres_version,
    );
    text.push_str(&faults::section(&env, &secrets));
    text.push_str(&images_section());
    print!("{text}");
    let path: &Path = &cofrap_tests::repo_root().join("BENCHMARKS.md");
    std::fs::write(path, &text).unwrap();
    eprintln!("written to {}", path.display());
    std::fs::remove_dir_all(&secrets).unwrap();

    let errors = ERRORS.load(Ordering::Relaxed) as u64 + load.errors;
    if errors > 0 {
        eprintln!("{errors} runs did not give the expected answer");
        std::process::exit(1);
    }
}

/// Runs per image for the start time.
const IMAGE_STARTS: usize = 5;
/// Goal for every image, uncompressed.
const MAX_IMAGE_MB: f64 = 12.0;

/// The images as `make images` builds them (podman, offline, with the classic
/// watchdog of ../shared/tools): their size, uncompressed and gzipped, and the
/// time from `podman run` to the first answer of the function (a request it
/// refuses before reading any configuration, so no database is involved).
fn images_section() -> String {
    use cofrap_tests::containers::{self, Container, RunOptions};
    let mut out = String::from("\n## Images\n\n");
    if let Some(reason) = containers::why_containers_cannot_run() {
        eprintln!("images not measured: {reason}");
        out.push_str(&format!("Not measured: {reason}.\n"));
        return out;
    }
    eprintln!("images: make images (podman, offline)");
    let functions = containers::build_images();
    let version = {
        let container = Container::run(&containers::image(&functions[0]), &RunOptions::default());
        watchdog_version(&container.logs())
    };
    let w = &mut out;
    let _ = writeln!(
        w,
        "Built by `make images` with podman from the unchanged Dockerfile, offline, with the classic \
         watchdog {} (stripped, as the official images' is). Start: median of {IMAGE_STARTS} runs, \
         from `podman run` (read-only root, no capabilities, user 10001) to the first answer of the \
         function through the watchdog.\n",
        version
    );
    let _ = writeln!(
        w,
        "| image | size MB | gzip MB | start to first answer ms | target ≤ {MAX_IMAGE_MB:.0} MB |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---|");
    for function in &functions {
        let image = containers::image(function);
        let (size, gzip) = containers::image_sizes(&image);
        let starts: Vec<f64> = (0..IMAGE_STARTS)
            .map(|_| {
                let started = Instant::now();
                let container = Container::run(&image, &RunOptions::default());
                let body: &[u8] = if function == "frontend" { b"" } else { b"{}" };
                let answer = containers::request(&container.url(), Some(body));
                // jwks runs here without its one secret (no database, no
                // keys mounted): its configuration_error is still the
                // function's first answer through the watchdog.
                let expected = if function == "jwks" { 500 } else { 200 };
                assert_eq!(answer.status, expected, "{function}: {answer:?}");
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        let mb = size as f64 / 1e6;
        let _ = writeln!(
            w,
            "| {function} | {mb:.2} | {:.2} | {:.0} | {} |",
            gzip as f64 / 1e6,
            median(starts),
            verdict(mb <= MAX_IMAGE_MB)
        );
    }
    out
}

/// The version the watchdog prints when it starts ("Version: 0.2.1 SHA: ...").
fn watchdog_version(logs: &str) -> String {
    logs.split("Version: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("of unknown version")
        .to_owned()
}
