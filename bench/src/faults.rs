//! The fault section of BENCHMARKS.md: how long a function takes to answer
//! when the database fails, at the production deadline (8 s, stack.yaml),
//! how long the functions take to follow a failover, and what TLS to the
//! database costs per request.
//!
//! The faults are those of tests/faults.rs, which checks the answers; here
//! only their timing is recorded. Faults that would disturb the main
//! measurements (a held lock, a stopped server) run on a cluster of their own.
//! The failover is tests/failover.rs's: a primary and a synchronous standby,
//! the functions given both, the primary killed under load (see the tests'
//! `replication` module).

use crate::measure::{median, Environment};
use cofrap_tests::replication::{Load, PrimaryAndStandby};
use cofrap_tests::{
    run_with_input, tls_certificates, tls_settings, unique, Cluster, FunctionRole, Output,
};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Runs per quick fault; slow ones (a deadline each) get fewer.
const QUICK_RUNS: usize = 10;
const SLOW_RUNS: usize = 3;
/// Runs per TLS mode.
const TLS_RUNS: usize = 30;
/// Failovers, each on a primary and standby of its own.
const FAILOVER_RUNS: usize = 3;

/// One fault's timings.
#[derive(Clone)]
struct Fault {
    what: &'static str,
    code: String,
    walls: Vec<f64>,
}

/// The code of a response as `Environment::run` returns it.
fn code(response: &Value) -> String {
    let inner = response.get("response").unwrap_or(response);
    inner["code"].as_str().unwrap_or("ok").to_owned()
}

fn measure(env: &Environment, what: &'static str, runs: usize) -> Fault {
    let mut walls = Vec::new();
    let mut codes = Vec::new();
    for _ in 0..runs {
        let (sample, response) = env.run(
            "generate-password",
            &json!({ "username": unique("fault-") }),
        );
        walls.push(sample.wall_ms);
        codes.push(code(&response));
    }
    codes.dedup();
    Fault {
        what,
        code: codes.join(", "),
        walls,
    }
}

/// The environment of `cluster` with the production deadline.
fn environment(base: &Environment, cluster: &Cluster) -> Environment {
    production(base, &cluster.server.host, cluster.port)
}

/// `base`'s secrets and bcrypt cost, the database at `host` (a name or a
/// list) and `port`, and the production deadline.
fn production(base: &Environment, host: &str, port: u16) -> Environment {
    let mut variables: Vec<(String, String)> = base
        .variables
        .iter()
        .filter(|(k, _)| k.starts_with("SECRETS_DIR") || k == "BCRYPT_COST")
        .cloned()
        .collect();
    variables.extend([
        ("POSTGRES_HOST".into(), host.to_owned()),
        ("POSTGRES_PORT".into(), port.to_string()),
        ("POSTGRES_DB".into(), "cofrap_db".into()),
        ("POSTGRES_SSLMODE".into(), "disable".into()),
        ("REQUEST_DEADLINE_MS".into(), "8000".into()),
    ]);
    Environment { variables }
}

/// Points the functions' database secrets at `user` and `password`.
fn log_in_as(secrets: &std::path::Path, user: &str, password: &str) {
    std::fs::write(secrets.join("db-credentials-username"), user).unwrap();
    std::fs::write(secrets.join("db-credentials-password"), password).unwrap();
}

/// Measures every fault, the failover and TLS; `base` is the bench's
/// environment, whose secrets directory is reused (its user and password
/// are replaced).
pub fn section(base: &Environment, secrets: &Path) -> String {
    let certs = tls_certificates();
    let cluster = Cluster::start(&tls_settings(&certs));
    log_in_as(secrets, &cluster.server.user, &cluster.server.password);
    let env = environment(base, &cluster);
    let mut faults = quick_faults(base, &env, &cluster, secrets);
    let terminated = terminated_in_a_loop(&env, &cluster);
    if !terminated.fault.walls.is_empty() {
        faults.push(terminated.fault.clone());
    }
    faults.extend(slow_faults(base, &env, &cluster));
    let modes = tls_modes(base, &cluster, secrets, &certs);
    let _ = std::fs::remove_dir_all(&certs);
    let mut out = fault_table(&faults, &terminated);
    out.push_str(&failover_section(base, secrets));
    log_in_as(secrets, &cluster.server.user, &cluster.server.password);
    out.push_str(&tls_table(&modes));
    out
}

/// Faults answered at once: none, nothing listening, no connection slot.
fn quick_faults(
    base: &Environment,
    env: &Environment,
    cluster: &Cluster,
    secrets: &Path,
) -> Vec<Fault> {
    eprintln!("faults: healthy, refused, slots exhausted");
    let mut faults = vec![measure(env, "none (an account created)", QUICK_RUNS)];
    let mut refused = environment(base, cluster);
    refused.set("POSTGRES_PORT", "1");
    faults.push(measure(
        &refused,
        "nothing listens (connection refused)",
        QUICK_RUNS,
    ));
    let role = unique("slots");
    cluster
        .connect()
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{role}' CONNECTION LIMIT 0"
        ))
        .unwrap();
    log_in_as(secrets, &role, &role);
    faults.push(measure(
        env,
        "connection slots exhausted (53300)",
        QUICK_RUNS,
    ));
    log_in_as(secrets, &cluster.server.user, &cluster.server.password);
    faults
}

/// What the loop of terminated backends gave.
struct Terminated {
    fault: Fault,
    created: usize,
    orphans: i64,
}

/// 100 creations while the server's backends are terminated every 300 ms.
fn terminated_in_a_loop(env: &Environment, cluster: &Cluster) -> Terminated {
    eprintln!("faults: backends terminated in a loop");
    let stop = AtomicBool::new(false);
    let what = "backends terminated in a loop (failed requests only)";
    let mut fault = Fault {
        what,
        code: String::new(),
        walls: Vec::new(),
    };
    let (mut created, mut failed) = (0, Vec::new());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut killer = cluster.connect();
            while !stop.load(Ordering::Relaxed) {
                let _ = killer.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                      WHERE application_name = 'generate-password'",
                    &[],
                );
                // A request lives about 260 ms (bcrypt at cost 12): killed
                // every 300 ms, some finish and some do not.
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        for _ in 0..100 {
            let user = unique("killed-");
            let (sample, response) = env.run("generate-password", &json!({ "username": user }));
            if response.get("qr_code_base64").is_some() {
                created += 1;
                continue;
            }
            fault.walls.push(sample.wall_ms);
            let code = code(&response);
            if !fault.code.split(", ").any(|seen| seen == code) {
                if !fault.code.is_empty() {
                    fault.code.push_str(", ");
                }
                fault.code.push_str(&code);
            }
            failed.push(user);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let mut admin = cluster.connect();
    let orphans = admin
        .query_one(
            "SELECT count(*) FROM users WHERE username = ANY($1)",
            &[&failed],
        )
        .unwrap()
        .get::<_, i64>(0);
    Terminated {
        fault,
        created,
        orphans,
    }
}

/// Faults answered at the deadline: a held lock, a silent server; and a
/// stopped database.
fn slow_faults(base: &Environment, env: &Environment, cluster: &Cluster) -> Vec<Fault> {
    eprintln!("faults: a held table lock");
    let mut holder = cluster.connect();
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let mut faults = vec![measure(env, "`users` locked by another session", SLOW_RUNS)];
    holder.batch_execute("COMMIT").unwrap();

    eprintln!("faults: a server that never answers");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    let mut silent = environment(base, cluster);
    silent.set("POSTGRES_PORT", &silent_port.to_string());
    faults.push(measure(
        &silent,
        "a server that accepts and never answers",
        SLOW_RUNS,
    ));

    eprintln!("faults: the database stopped");
    cluster.stop();
    faults.push(measure(env, "the database stopped", QUICK_RUNS));
    cluster.start_again();
    faults
}

/// The floor by sslmode, interleaved so that the machine's drift touches
/// every mode alike (the first runs warm the caches and are not kept):
/// (mode, walls, CPU times).
fn tls_modes(
    base: &Environment,
    cluster: &Cluster,
    secrets: &Path,
    certs: &Path,
) -> Vec<(&'static str, Vec<f64>, Vec<f64>)> {
    eprintln!("TLS: the floor by sslmode");
    let ca = std::fs::read_to_string(certs.join("ca.pem")).unwrap();
    std::fs::write(secrets.join("db-ca-certificate"), ca).unwrap();
    let mut modes: Vec<(&str, Environment, Vec<f64>, Vec<f64>)> =
        ["disable", "require", "verify-full"]
            .into_iter()
            .map(|mode| {
                let mut env = environment(base, cluster);
                env.set("POSTGRES_HOST", "localhost");
                env.set("POSTGRES_SSLMODE", mode);
                (mode, env, Vec::new(), Vec::new())
            })
            .collect();
    for run in 0..TLS_RUNS + 3 {
        for (mode, env, walls, cpus) in &mut modes {
            let (sample, response) = env.run("floor", &json!({ "username": "nobody" }));
            assert!(
                response["connected"] == true,
                "floor with {mode}: {response}"
            );
            if run >= 3 {
                walls.push(sample.wall_ms);
                cpus.push(sample.cpu_ms);
            }
        }
    }
    std::fs::remove_file(secrets.join("db-ca-certificate")).unwrap();
    modes
        .into_iter()
        .map(|(mode, _, walls, cpus)| (mode, walls, cpus))
        .collect()
}

fn fault_table(faults: &[Fault], terminated: &Terminated) -> String {
    let mut w = String::from("\n## Database faults\n\n");
    let _ = writeln!(
        w,
        "generate-password against a cluster of its own, at the production deadline \
         (`REQUEST_DEADLINE_MS` 8000, exec_timeout 10 s). Time to answer, as the client of the \
         process sees it; tests/faults.rs checks the answers and counts orphans.\n"
    );
    let _ = writeln!(
        w,
        "| fault | answer | runs | median ms | max ms |\n|---|---|---:|---:|---:|"
    );
    for fault in faults {
        let max = fault.walls.iter().copied().fold(0.0, f64::max);
        let median = median(fault.walls.clone());
        let _ = writeln!(
            w,
            "| {} | `{}` | {} | {median:.1} | {max:.1} |",
            fault.what,
            fault.code,
            fault.walls.len()
        );
    }
    let _ = writeln!(
        w,
        "\nBackends terminated every 300 ms during 100 requests: {} accounts created and \
         answered, {} requests answered with an error, {} orphan account(s) (committed, then \
         the connection was cut before the reply: see docs/API.md, \"a commit whose reply \
         is lost\").",
        terminated.created,
        terminated.fault.walls.len(),
        terminated.orphans
    );
    let _ = writeln!(
        w,
        "\nA held lock is answered by the server's own lock timeout, set to the deadline less \
         its margin (1 s): about 7 s. A silent server is answered by the deadline's guard: 8 s."
    );
    w
}

fn tls_table(modes: &[(&str, Vec<f64>, Vec<f64>)]) -> String {
    let mut w = String::from("\n## TLS to the database\n\n");
    let _ = writeln!(
        w,
        "The floor (connect, one query) by `POSTGRES_SSLMODE`, {TLS_RUNS} runs each, interleaved, \
         against the same local cluster (an ECDSA P-256 certificate; rustls with the ring provider):\n"
    );
    let _ = writeln!(
        w,
        "| sslmode | median ms | median CPU ms | cost over disable ms |\n|---|---:|---:|---:|"
    );
    let plain = median(modes[0].1.clone());
    for (mode, walls, cpus) in modes {
        let wall = median(walls.clone());
        let cpu = median(cpus.clone());
        let _ = writeln!(w, "| {mode} | {wall:.1} | {cpu:.1} | {:.1} |", wall - plain);
    }
    w
}

/// The failover of tests/failover.rs, timed: from `pg_ctl stop -m immediate`
/// of the primary to the first success of a request sent after it, at the
/// production deadline and bcrypt cost, with the release binaries.
fn failover_section(base: &Environment, secrets: &std::path::Path) -> String {
    let role = FunctionRole::from_test_secrets();
    log_in_as(secrets, &role.user, &role.password);
    let load = Load {
        clients: 24,
        parallel: 4,
        kill_after_created: 8,
        patience: Duration::from_secs(30),
        step_patience: Duration::from_secs(30),
    };
    let mut rows = Vec::new();
    for run in 1..=FAILOVER_RUNS {
        eprintln!("failover: run {run} of {FAILOVER_RUNS}");
        let pair = PrimaryAndStandby::start();
        let variables = production(base, &pair.host_list(), pair.primary.port).variables;
        let run_function = |function: &str, body: &[u8]| {
            let output = run_with_input(
                std::process::Command::new(crate::measure::binary(function))
                    .env_clear()
                    .envs(variables.iter().map(|(k, v)| (k, v))),
                body,
            );
            Output {
                status: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        };
        let report = pair.fail_over_under_load(&load, &run_function);
        let ms = |d: Option<Duration>| match d {
            Some(d) => format!("{:.0}", d.as_secs_f64() * 1000.0),
            None => "none".to_owned(),
        };
        let retryable = report.answers.iter().filter(|a| a.is_retryable()).count();
        let other = report
            .answers
            .iter()
            .filter(|a| !a.is_success() && !a.is_retryable() && !a.replay)
            .count();
        let signed_in = report.clients.iter().filter(|c| c.signed_in).count();
        if report.killed_at.is_none() {
            eprintln!("failover: never under way: {}", report.first_answers(4));
        }
        rows.push(format!(
            "| {run} | {} | {} | {} | {retryable} | {other} | {signed_in} of {} |",
            ms(report.promoted_after),
            ms(report.first_success_after_kill()),
            report.answers.len(),
            load.clients
        ));
    }

    failover_table(&load, &rows)
}

fn failover_table(load: &Load, rows: &[String]) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "\n## Following a failover\n");
    let _ = writeln!(
        w,
        "The setup of tests/failover.rs, {FAILOVER_RUNS} times, each on a new primary and \
         synchronous standby (`pg_basebackup -R`) on this machine, `POSTGRES_HOST` naming both: \
         {} clients, {} at a time, each creating an account with a request id, enrolling and \
         signing in, retrying every 100 ms what a retryable code answers. Once {} accounts are \
         created, the primary is stopped with `pg_ctl stop -m immediate` and the standby promoted \
         with `pg_ctl promote`. Times from the moment the stop returned; the first success is that \
         of a request sent after it. Production deadline (8 s) and bcrypt cost (12), release \
         binaries.\n",
        load.clients, load.parallel, load.kill_after_created
    );
    let _ = writeln!(
        w,
        "| run | promoted after ms | first success after ms | answers | retryable | other | clients signed in |"
    );
    let _ = writeln!(w, "|---:|---:|---:|---:|---:|---:|---|");
    for row in rows {
        let _ = writeln!(w, "{row}");
    }
    out
}
