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
//! authenticate from 2 × cores concurrent clients, then times the answers to
//! database faults and the cost of TLS ([`faults`]). It prints a report and
//! writes it to BENCHMARKS.md. Nothing here is a test: `make test` has no
//! timing assertions; the targets are judged here, by a person, on a machine
//! whose name the report carries.

mod faults;

use cofrap_tests::{code_at, current_step, fernet_key, unique, ScratchDatabase};
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
const FUNCTIONS: [&str; 3] = ["generate-password", "generate-2fa", "authenticate"];

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
    refusals: Vec<(&'static str, Series)>,
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

    let refusals = refusals(env, fixtures, next_unused);
    Round {
        population,
        floor,
        refusals,
        functions: vec![
            ("generate-password", created),
            ("generate-2fa", enrolled),
            ("authenticate", authenticated),
        ],
    }
}

/// authenticate refused for an unknown user, a wrong password and a wrong
/// code: the answers are identical (the tests check that); here, their time.
fn refusals(
    env: &Environment,
    fixtures: &Fixtures,
    next_unused: &mut i64,
) -> Vec<(&'static str, Series)> {
    let mut by_cause = Vec::new();
    for cause in ["unknown user", "wrong password", "wrong code"] {
        let mut series = Series::default();
        for _ in 0..REFUSAL_RUNS {
            // A fresh account each time: failures must not add up to a lock.
            let user = format!("bench-{next_unused}");
            *next_unused += 1;
            let right_code = code_at(&fixtures.secret, current_step() * 30);
            let wrong_code = if right_code == "000000" {
                "111111"
            } else {
                "000000"
            };
            let request = match cause {
                "unknown user" => {
                    json!({ "username": unique("nobody-"), "password": PASSWORD, "totp_code": right_code })
                }
                "wrong password" => {
                    json!({ "username": user, "password": "not-the-password", "totp_code": right_code })
                }
                _ => json!({ "username": user, "password": PASSWORD, "totp_code": wrong_code }),
            };
            let (sample, response) = env.run("authenticate", &request);
            expect(
                response["code"] == "invalid_credentials",
                "authenticate refusal",
                &response,
            );
            series.samples.push(sample);
        }
        by_cause.push((cause, series));
    }
    by_cause
}

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

    let _ = writeln!(w, "\n## No enumeration by timing\n");
    let _ = writeln!(
        w,
        "authenticate gives one answer, byte for byte, for an unknown user, a wrong password and a \
         wrong code (the tests check it); an unknown user costs a bcrypt check against a dummy hash, \
         so the three take about as long ({REFUSAL_RUNS} runs each):\n"
    );
    let _ = writeln!(
        w,
        "| accounts | unknown user ms | wrong password ms | wrong code ms |"
    );
    let _ = writeln!(w, "|---:|---:|---:|---:|");
    for round in rounds {
        let medians: Vec<String> = round
            .refusals
            .iter()
            .map(|(_, series)| format!("{:.1}", series.median_wall()))
            .collect();
        let _ = writeln!(w, "| {} | {} |", round.population, medians.join(" | "));
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
    std::fs::write(
        secrets.join("db-credentials-username"),
        &scratch.server.user,
    )
    .unwrap();
    std::fs::write(
        secrets.join("db-credentials-password"),
        &scratch.server.password,
    )
    .unwrap();
    std::fs::write(secrets.join("encryption-key"), &key).unwrap();
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
