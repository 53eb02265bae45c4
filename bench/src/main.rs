//! `make bench`: what one request of each function costs, measured the way the
//! classic watchdog runs it (a fresh process, the request on stdin), against
//! two yardsticks measured in the same run:
//!
//! - the floor: `floor`, a process that reads stdin and connects the same way
//!   as the functions (with their one query), and prints JSON: what any
//!   function pays at least;
//! - bcrypt alone, in process, at the configured cost: what the password
//!   functions pay by design (the cost is never lowered to look fast).
//!
//! Each bcrypt-bound run is paired with an in-process bcrypt operation of the
//! same kind, measured just before it, and its overhead is the difference:
//! bcrypt's own jitter (a few ms) would otherwise drown the few ms under test.
//! Every function profiles itself (`COFRAP_PROFILE=1`), so the report says
//! where the time goes, phase by phase.
//!
//! Rounds ([`rounds`]): 10,000 then 1,000,000 accounts, each directly and
//! through PgBouncer in transaction pooling; then authenticate's refusals
//! side by side ([`refusals`]), authenticate from 2 × cores concurrent
//! clients, the database faults and a failover ([`faults`]), the images
//! ([`images`]). It prints the report and writes it to BENCHMARKS.md.
//! Nothing here is a test: `make test` has no timing assertions; the targets
//! are judged here, by a person, on a machine whose name the report carries.

mod faults;
mod images;
mod measure;
mod refusals;
mod report;
mod rounds;

use cofrap_tests::pgbouncer::{PgBouncer, PoolMode};
use cofrap_tests::{fernet_key, unique, FunctionRole, ScratchDatabase};
use common::encryption::Keyring;
use common::totp::TotpSecret;
use measure::{median, timed, Environment};
use rounds::Fixtures;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs per function, population and connection.
pub const RUNS: usize = 30;
/// Accounts in the table for each round.
const POPULATIONS: [i64; 2] = [10_000, 1_000_000];
const CONCURRENCY: Duration = Duration::from_secs(20);
/// The production setting (stack.yaml): never lowered here.
pub const BCRYPT_COST: u32 = 12;
pub const PASSWORD: &str = "Bench-Password-0123456789!";
const BINARIES: [&str; 8] = [
    "generate-password",
    "generate-2fa",
    "authenticate",
    "refresh",
    "sign-out",
    "jwks",
    "frontend",
    "cofrap-admin",
];

/// Errors seen (a function that did not give its normal answer).
static ERRORS: AtomicUsize = AtomicUsize::new(0);

pub fn expect(ok: bool, what: &str, response: &Value) {
    if !ok {
        ERRORS.fetch_add(1, Ordering::Relaxed);
        eprintln!("unexpected answer from {what}: {response}");
    }
}

fn main() {
    // `cofrap-bench images`: only the images, their section of BENCHMARKS.md
    // replaced (no database needed).
    if std::env::args().nth(1).as_deref() == Some("images") {
        let path = cofrap_tests::repo_root().join("BENCHMARKS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let kept = old.split("\n## Images\n").next().unwrap_or_default();
        let section = images::section();
        print!("{section}");
        std::fs::write(&path, format!("{}\n{section}", kept.trim_end())).unwrap();
        return;
    }
    // `cofrap-bench quick`: the rounds of the smaller population only,
    // printed, BENCHMARKS.md untouched (for a quick look while optimising).
    let quick = std::env::args().nth(1).as_deref() == Some("quick");
    let scratch = ScratchDatabase::create();
    let migrated = scratch.migrate();
    assert!(migrated.status.success(), "{migrated:?}");
    let secrets = std::env::temp_dir().join(unique("cofrap-bench-secrets-"));
    let (env, key) = environment(&scratch, &secrets);
    let (fixtures, hash_ms, verify_ms) = fixtures(&key);
    let pooler = PgBouncer::start(&scratch.server, &scratch.name, PoolMode::Transaction, 8);
    let mut pooled = env.clone();
    pooled.set("POSTGRES_HOST", "127.0.0.1");
    pooled.set("POSTGRES_PORT", &pooler.port.to_string());

    let mut db = scratch.connect();
    let mut next_unused = 1;
    let populations = if quick {
        &POPULATIONS[..1]
    } else {
        &POPULATIONS[..]
    };
    let rounds = all_rounds(
        &scratch,
        populations,
        [&env, &pooled],
        &fixtures,
        &mut next_unused,
    );
    if quick {
        print!("{}", report::quick(&rounds, verify_ms));
        return;
    }
    let mut refusal_env = env.clone();
    refusal_env.set("MAX_FAILED_ATTEMPTS", "1000");
    refusal_env.set("HARD_LOCK_ATTEMPTS", "100000");
    let mut next_account = || {
        next_unused += 1;
        format!("bench-{}", next_unused - 1)
    };
    let refusals = refusals::measure(&refusal_env, &mut db, &fixtures, &mut next_account);
    let load = concurrency(&env, &fixtures, next_unused, verify_ms);

    let sizes: Vec<(String, f64)> = BINARIES
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::metadata(measure::binary(f)).unwrap().len() as f64 / 1e6,
            )
        })
        .collect();
    let context = report::Context {
        date: today(),
        machine: machine(),
        postgres_version: db.query_one("SHOW server_version", &[]).unwrap().get(0),
        hash_ms,
        verify_ms,
        refusals: &refusals,
        load: &load,
        sizes: &sizes,
    };
    let mut text = report::write(&rounds, &context);
    drop(pooler);
    text.push_str(&faults::section(&env, &secrets));
    text.push_str(&images::section());
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

/// Every population, each directly and through the pooler (`envs`, in that
/// order).
fn all_rounds(
    scratch: &ScratchDatabase,
    populations: &[i64],
    envs: [&Environment; 2],
    fixtures: &Fixtures,
    next_unused: &mut i64,
) -> Vec<rounds::Round> {
    let mut db = scratch.connect();
    let (mut rounds, mut filled) = (Vec::new(), 0);
    for &population in populations {
        eprintln!("filling the table to {population} accounts");
        rounds::fill(scratch, fixtures, filled + 1, population);
        filled = population;
        for (connection, env) in ["direct", "pooler"].into_iter().zip(envs) {
            let round = (population, connection);
            rounds.push(rounds::round(env, &mut db, fixtures, round, next_unused));
        }
    }
    rounds
}

/// The functions' environment for `scratch`, their secrets written in
/// `secrets` (the functions' role, as deployed: make db-roles); returns it
/// and the Fernet key.
fn environment(scratch: &ScratchDatabase, secrets: &Path) -> (Environment, String) {
    std::fs::create_dir_all(secrets).unwrap();
    let key = fernet_key();
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
    (env, key)
}

/// The fixtures, and bcrypt's own hash and verify times (medians of 10).
fn fixtures(key: &str) -> (Fixtures, f64, f64) {
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
        encrypted_secret: Keyring::parse(key)
            .unwrap()
            .encrypt(secret.to_base32().as_bytes()),
        secret: secret.to_base32(),
        password_hash,
    };
    (fixtures, hash_ms, verify_ms)
}

pub struct Concurrency {
    pub clients: usize,
    pub seconds: f64,
    pub successes: u64,
    pub errors: u64,
    pub ideal_per_second: f64,
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
    let (successes, errors) = (AtomicU64::new(0), AtomicU64::new(0));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                while started.elapsed() < CONCURRENCY {
                    let user = format!("bench-{}", next.fetch_add(1, Ordering::Relaxed));
                    let code =
                        cofrap_tests::code_at(&fixtures.secret, cofrap_tests::current_step() * 30);
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
