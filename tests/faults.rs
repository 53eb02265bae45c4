//! Database faults, driven through the binaries (and once through the real
//! classic watchdog): a table lock held by another session, a frozen server,
//! a frozen backend, backends terminated during requests, connection slots
//! exhausted, the database stopped and restarted mid-sequence.
//!
//! For each: the answer (its code), the exit status, the time bound (every
//! answer comes before stack.yaml's exec_timeout), and the count of orphan
//! accounts — accounts stored although their creator got an error — which
//! must be zero wherever the database can know.
//!
//! Faults that would disturb other tests (locking `users`, stopping a
//! server) run on a database or a cluster of the test's own.

use cofrap_tests::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The request deadline these tests configure (`REQUEST_DEADLINE_MS`).
const DEADLINE_MS: u64 = 2000;

/// Every answer must arrive within this: the deadline plus slack for a busy
/// machine, still well below stack.yaml's exec_timeout (10 s). Without the
/// deadline, these faults hang until the watchdog kills the function.
const ANSWER_BOUND: Duration = Duration::from_secs(6);

/// Runs `function` on `request`, timed.
fn timed(functions: &Functions, function: &str, request: &Value) -> (Output, Duration) {
    let started = Instant::now();
    let output = functions.run(function, request.to_string().as_bytes());
    (output, started.elapsed())
}

/// Asserts a server fault answered in time: exit 1, one JSON error with
/// `code`, the log line with the same outcome; returns the log's detail.
fn assert_fault_in_time(output: &Output, elapsed: Duration, code: &str) -> String {
    assert_eq!(output.status, 1, "{output:?}");
    assert_eq!(output.json()["code"], code, "{output:?}");
    let log = output.log();
    assert_eq!(log["outcome"], code, "{output:?}");
    assert!(
        elapsed < ANSWER_BOUND,
        "answered after {elapsed:?}: {output:?}"
    );
    log["detail"].as_str().unwrap_or_default().to_owned()
}

/// A migrated database of the test's own on the shared server, and the
/// functions configured for it with the test deadline.
fn scratch() -> (ScratchDatabase, Functions) {
    let scratch = ScratchDatabase::create();
    let migrated = scratch.migrate();
    assert!(migrated.status.success(), "{migrated:?}");
    let mut functions = Functions::on(scratch.server.clone(), &scratch.name);
    functions.set("REQUEST_DEADLINE_MS", &DEADLINE_MS.to_string());
    (scratch, functions)
}

/// Waits (at most 10 s) until a backend of `function` on `dbname` waits for
/// a lock; returns its process id.
fn backend_waiting_for_lock(db: &mut postgres::Client, dbname: &str, function: &str) -> i32 {
    let started = Instant::now();
    loop {
        let row = db
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                  WHERE datname = $1 AND application_name = $2 AND wait_event_type = 'Lock'",
                &[&dbname, &function],
            )
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{function} never waited for the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_slow_statement_is_ended_by_the_server_not_left_running() {
    // Not a lock wait: a statement that is simply slow (here a trigger that
    // sleeps). The server's statement_timeout ends it before the deadline;
    // without it the function would still answer (its guard), but the
    // backend would go on working for a client that has gone.
    let (scratch, functions) = scratch();
    scratch
        .connect()
        .batch_execute(
            "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql
                 AS $$ BEGIN PERFORM pg_sleep(60); RETURN NEW; END $$;
             CREATE TRIGGER slow_insert BEFORE INSERT ON users
                 FOR EACH ROW EXECUTE FUNCTION slow_insert();",
        )
        .unwrap();
    let user = unique("slow");
    let (output, elapsed) = timed(
        &functions,
        "generate-password",
        &json!({ "username": user }),
    );
    let detail = assert_fault_in_time(&output, elapsed, "database_timeout");
    assert!(
        detail.contains("SQLSTATE 57014") || detail.contains("deadline"),
        "{detail}"
    );
    let mut observer = scratch.connect();
    let started = Instant::now();
    loop {
        let busy: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = $1 AND application_name = 'generate-password'
                    AND state = 'active'",
                &[&scratch.name],
            )
            .unwrap()
            .get(0);
        if busy == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the slow statement outlived its request"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count_accounts(&mut observer, &[user]), 0);
}

#[test]
fn a_held_table_lock_answers_database_timeout_in_time_and_stores_nothing() {
    let (scratch, functions) = scratch();
    let mut holder = scratch.connect();
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .unwrap();

    let users: Vec<String> = (0..4).map(|_| unique("locked")).collect();
    let outcomes: Vec<(Output, Duration)> = std::thread::scope(|scope| {
        let runs: Vec<_> = users
            .iter()
            .map(|user| {
                let functions = &functions;
                scope.spawn(move || {
                    timed(functions, "generate-password", &json!({ "username": user }))
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    // The other functions wait for the same lock.
    let (output, elapsed) = timed(
        &functions,
        "authenticate",
        &json!({"username": users[0], "password": "pw", "totp_code": "123456"}),
    );
    let mut details = vec![assert_fault_in_time(&output, elapsed, "database_timeout")];
    for (output, elapsed) in &outcomes {
        details.push(assert_fault_in_time(output, *elapsed, "database_timeout"));
    }
    for detail in details {
        // The server's lock_timeout or statement_timeout ended the wait, a
        // little before the deadline; on a busy machine the deadline's guard
        // may answer first.
        assert!(
            detail.contains("SQLSTATE 55P03")
                || detail.contains("SQLSTATE 57014")
                || detail.contains("deadline"),
            "{detail}"
        );
    }
    // The server bounds the wait itself: a backend waiting for a lock does
    // not notice that its client has gone, and would otherwise wait on.
    assert_no_backend_waits_for_a_lock(
        &mut scratch.connect(),
        &scratch.name,
        Some(&["generate-password", "authenticate"]),
    );

    // Released: no statement is left waiting to insert behind it.
    holder.batch_execute("COMMIT").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count_accounts(&mut scratch.connect(), &users), 0, "orphans");
    // And the usernames are free.
    functions.create_account(&users[0]);
}

#[test]
fn a_server_that_accepts_and_never_answers_gets_database_timeout_in_time() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts every connection and keeps it open, silent.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let mut functions = Functions::new();
    functions.set("REQUEST_DEADLINE_MS", &DEADLINE_MS.to_string());
    functions.set("POSTGRES_HOST", "127.0.0.1");
    functions.set("POSTGRES_PORT", &port.to_string());
    for (function, request) in [
        ("generate-password", json!({"username": unique("frozen")})),
        (
            "generate-2fa",
            json!({"username": "frozen", "password": "pw"}),
        ),
        (
            "authenticate",
            json!({"username": "frozen", "password": "pw", "totp_code": "123456"}),
        ),
    ] {
        let (output, elapsed) = timed(&functions, function, &request);
        let detail = assert_fault_in_time(&output, elapsed, "database_timeout");
        assert!(detail.contains("connecting"), "{function}: {detail}");
        // At the deadline, not long before: the guard waited its budget.
        assert!(elapsed >= Duration::from_millis(DEADLINE_MS), "{elapsed:?}");
    }
    // TLS waits on the same silent server the same way.
    functions.set("POSTGRES_SSLMODE", "require");
    let (output, elapsed) = timed(
        &functions,
        "generate-password",
        &json!({"username": unique("frozen")}),
    );
    assert_fault_in_time(&output, elapsed, "database_timeout");
}

/// A stopped process, continued when dropped.
struct Frozen(u32);

impl Drop for Frozen {
    fn drop(&mut self) {
        // Not `signal`: no panic in a drop that may run while unwinding.
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

#[test]
fn a_backend_frozen_mid_request_and_woken_after_the_deadline_stores_nothing() {
    if !is_root() {
        eprintln!("skipped: signalling a PostgreSQL backend needs root (make test runs as root)");
        return;
    }
    let (scratch, functions) = scratch();
    let mut holder = scratch.connect();
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let user = unique("frozen");
    let request = json!({ "username": user });
    std::thread::scope(|scope| {
        let run = scope.spawn(|| timed(&functions, "generate-password", &request));
        let mut observer = scratch.server.connect();
        let pid = backend_waiting_for_lock(&mut observer, &scratch.name, "generate-password");
        // Frozen while its INSERT waits; then the lock goes away, so that a
        // woken backend would find nothing in its way.
        signal(pid as u32, "STOP");
        // Woken whatever happens: a backend left stopped would hang the
        // server's DROP DATABASE of every other test.
        let frozen = Frozen(pid as u32);
        holder.batch_execute("COMMIT").unwrap();
        let (output, elapsed) = run.join().unwrap();
        let detail = assert_fault_in_time(&output, elapsed, "database_timeout");
        assert!(detail.contains("statements"), "{detail}");

        // Woken after the deadline: it must neither insert nor commit.
        drop(frozen);
        let started = Instant::now();
        while observer
            .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .unwrap()
            .is_some()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the backend lingers"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert_eq!(
        count_accounts(&mut scratch.connect(), &[user]),
        0,
        "orphans"
    );
}

#[test]
fn the_database_refuses_a_commit_after_the_deadline_it_was_given() {
    // The check the functions send with every COMMIT (migration 0007): the
    // server runs it right before the COMMIT, so a server that wakes up
    // after the instant the transaction set fails it and commits nothing.
    let (scratch, _functions) = scratch();
    let mut db = scratch.connect();
    let late = unique("late");
    let insert = format!(
        "INSERT INTO users (username, password_hash, created_at, expired)
         VALUES ('{late}', 'x', now(), false)"
    );
    for (commit_by, commits) in [("- 1", false), ("+ 60", true)] {
        db.batch_execute(&format!(
            "BEGIN; SELECT set_config('cofrap.commit_by',
                (extract(epoch FROM clock_timestamp()) {commit_by})::text, true); {insert}"
        ))
        .unwrap();
        let outcome = db.batch_execute(common::db::COMMIT_IN_TIME);
        assert_eq!(outcome.is_ok(), commits, "{outcome:?}");
        if let Err(error) = outcome {
            let error = error.as_db_error().unwrap();
            assert_eq!(error.code().code(), "23514");
            assert_eq!(error.constraint(), Some(common::db::LATE_COMMIT_CONSTRAINT));
            db.batch_execute("ROLLBACK").unwrap();
        }
        assert_eq!(
            count_accounts(&mut db, std::slice::from_ref(&late)),
            i64::from(commits)
        );
    }
}

#[test]
fn every_commit_of_the_functions_goes_through_the_deadline_check() {
    // With a check that always fails (as if every deadline had passed), no
    // function commits anything: each answers database_timeout, and
    // nothing it would have written is there.
    let (scratch, functions) = scratch();
    let user = unique("checked");
    let (password, secret) = functions.enrolled_account(&user);
    let signed_in = functions.authenticate(&user, &password, &secret, current_step() - 1);
    let mut db = scratch.connect();
    db.batch_execute(
        "ALTER DOMAIN cofrap_in_time DROP CONSTRAINT cofrap_commit_in_time;
         ALTER DOMAIN cofrap_in_time ADD CONSTRAINT cofrap_commit_in_time CHECK (VALUE AND false);",
    )
    .unwrap();
    let events_before: i64 = db
        .query_one("SELECT count(*) FROM account_events", &[])
        .unwrap()
        .get(0);
    let new_user = unique("never");
    let refresh = json!({"refresh_token": signed_in["refresh_token"]});
    for (function, body) in [
        ("generate-password", json!({"username": new_user})),
        (
            "authenticate",
            json!({"username": user, "password": password,
                                "totp_code": code_at(&secret, current_step() * 30)}),
        ),
        ("refresh", refresh.clone()),
        ("sign-out", refresh),
    ] {
        let (output, elapsed) = timed(&functions, function, &body);
        let detail = assert_fault_in_time(&output, elapsed, "database_timeout");
        assert!(
            detail.contains("after the deadline"),
            "{function}: {detail}"
        );
    }
    assert_eq!(count_accounts(&mut db, &[new_user]), 0);
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM account_events),
                    (SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id
                      WHERE u.username = $1 AND s.ended_at IS NULL)",
            &[&user],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), events_before, "no event either");
    assert_eq!(
        row.get::<_, i64>(1),
        1,
        "one session, still open, not rotated"
    );
}

#[test]
fn backends_terminated_during_requests_answer_database_unavailable() {
    let (scratch, mut functions) = scratch();
    // Nothing here waits for the deadline: the default one (8 s), so that a
    // busy machine cannot turn an outage into a timeout.
    functions.unset("REQUEST_DEADLINE_MS");
    let stop = AtomicBool::new(false);
    let mut answered = Vec::new();
    let mut failed = Vec::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut killer = scratch.connect();
            while !stop.load(Ordering::Relaxed) {
                killer
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                          WHERE datname = $1 AND application_name = 'generate-password'",
                        &[&scratch.name],
                    )
                    .unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        for _ in 0..40 {
            let user = unique("killed");
            let (output, elapsed) = timed(
                &functions,
                "generate-password",
                &json!({ "username": user, "request_id": request_id(&user) }),
            );
            if output.status == 0 {
                decode_qr(output.json()["qr_code_base64"].as_str().unwrap());
                answered.push(user);
            } else {
                let detail = assert_fault_in_time(&output, elapsed, "database_unavailable");
                assert!(!detail.is_empty());
                failed.push(user);
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        !failed.is_empty(),
        "no request was hit: the test tested nothing"
    );
    let mut db = scratch.connect();
    assert_eq!(count_accounts(&mut db, &answered), answered.len() as i64);
    // An orphan is possible only when the server committed and was killed
    // before its reply left (no client can prevent that): it stays pending
    // and its username frees itself after the enrollment window.
    let orphans = count_accounts(&mut db, &failed);
    eprintln!(
        "terminated backends: {} answered, {} database_unavailable, {orphans} orphan(s)",
        answered.len(),
        failed.len()
    );
    let activated: i64 = db
        .query_one(
            "SELECT count(*) FROM users WHERE username = ANY($1)
                AND (activated_at IS NOT NULL OR mfa_secret IS NOT NULL)",
            &[&failed],
        )
        .unwrap()
        .get(0);
    assert_eq!(activated, 0);

    // Every failed request, retried with its request id, gets a password
    // that works: orphans included.
    for user in &failed {
        let password = decode_qr(
            functions.call(
                "generate-password",
                json!({ "username": user, "request_id": request_id(user) }),
            )["qr_code_base64"]
                .as_str()
                .unwrap(),
        );
        functions.call(
            "generate-2fa",
            json!({"username": user, "password": password}),
        );
    }
}

/// A request id for `user`'s creation: random, as a client makes it, and
/// the same for its retries.
fn request_id(user: &str) -> String {
    format!(
        "{:0>22}",
        user.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    )
}

#[test]
fn a_retry_with_the_same_request_id_after_a_lost_reply_gets_a_password() {
    let functions = Functions::new();
    let user = unique("lost");
    let id = "u8rV0iXq3lP-7dZkQm2aYw_TqF";
    // Created, but suppose the reply never arrived.
    let first = decode_qr(
        functions.call(
            "generate-password",
            json!({"username": user, "request_id": id}),
        )["qr_code_base64"]
            .as_str()
            .unwrap(),
    );
    // Anyone else, with another id or none: taken.
    for other in [
        json!({"username": user}),
        json!({"username": user.to_uppercase(), "request_id": "another-request-id-1234567"}),
    ] {
        let output = functions.run("generate-password", other.to_string().as_bytes());
        assert_eq!(output.json()["code"], "account_exists", "{output:?}");
    }
    // The same request again: a new password, which works; the lost one not.
    let retried = functions.call(
        "generate-password",
        json!({"username": user, "request_id": id}),
    );
    assert_eq!(retried["username"], user.as_str());
    let second = decode_qr(retried["qr_code_base64"].as_str().unwrap());
    assert_ne!(first, second);
    let output = functions.run(
        "generate-2fa",
        json!({"username": user, "password": first})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(output.json()["code"], "invalid_credentials");
    functions.call(
        "generate-2fa",
        json!({"username": user, "password": second}),
    );
    // Once enrolled, the id is worth nothing.
    let output = functions.run(
        "generate-password",
        json!({"username": user, "request_id": id})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(output.json()["code"], "account_exists", "{output:?}");
    // A malformed id is refused before anything else.
    let output = functions.run(
        "generate-password",
        json!({"username": unique("lost"), "request_id": "short"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(output.json()["code"], "invalid_field");
    assert_eq!(output.json()["field"], "request_id");
}

#[test]
fn a_reissue_never_extends_the_enrollment_window() {
    // Whoever holds a request id may get the password again, but the window
    // after which an unenrolled name is free again runs from the first
    // creation: retrying cannot keep a name for ever.
    let mut functions = Functions::new();
    functions.set("ENROLLMENT_WINDOW_SECONDS", "60");
    let user = unique("squatter");
    let id = "Squatting-request-id-0000001";
    let create = json!({"username": user, "request_id": id});
    functions.call("generate-password", create.clone());
    // 50 s into the 60 s window, the holder of the request id retries.
    sql(
        &functions,
        "UPDATE users SET created_at = now() - interval '50 seconds' WHERE username = $1",
        &user,
    );
    let reissued = functions.call("generate-password", create);
    assert!(reissued["qr_code_base64"].is_string(), "{reissued}");
    // 20 s later the window, counted from the first creation, has passed.
    sql(
        &functions,
        "UPDATE users SET created_at = created_at - interval '20 seconds' WHERE username = $1",
        &user,
    );
    let taken = functions.call("generate-password", json!({"username": user}));
    assert!(
        taken["qr_code_base64"].is_string(),
        "the window passed, whatever the reissue: {taken}"
    );
}

#[test]
fn a_password_set_without_the_request_id_forgets_it() {
    // The Python generate-password (or any session without a request id)
    // overwriting the account takes the reissue away from the first client.
    let functions = Functions::new();
    let user = unique("forgot");
    let id = "Forgotten-request-id-000000";
    functions.call(
        "generate-password",
        json!({"username": user, "request_id": id}),
    );
    let mut db = functions.db();
    db.execute(
        "UPDATE users SET password_hash = 'x' WHERE username = $1",
        &[&user],
    )
    .unwrap();
    let output = functions.run(
        "generate-password",
        json!({"username": user, "request_id": id})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(output.json()["code"], "account_exists", "{output:?}");
}

#[test]
fn exhausted_connection_slots_answer_database_unavailable() {
    let (scratch, functions) = scratch();
    // A role of its own with one connection slot, which the test takes:
    // the server answers the function with SQLSTATE 53300, as when
    // max_connections is reached (a limit the shared server cannot afford).
    let role = unique("slots");
    let mut admin = scratch.connect();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{role}' CONNECTION LIMIT 1;
             GRANT CONNECT ON DATABASE {} TO {role}",
            scratch.name
        ))
        .unwrap();
    let taken = postgres::Config::new()
        .host(&scratch.server.host)
        .port(scratch.server.port)
        .user(&role)
        .password(&role)
        .dbname(&scratch.name)
        .connect(postgres::NoTls)
        .unwrap();
    functions.write_secret("db-credentials-username", &role);
    functions.write_secret("db-credentials-password", &role);
    let user = unique("slots");
    let (output, elapsed) = timed(
        &functions,
        "generate-password",
        &json!({ "username": user }),
    );
    let detail = assert_fault_in_time(&output, elapsed, "database_unavailable");
    assert!(detail.contains("too many connections"), "{detail}");
    drop(taken);
    drop(admin);
    drop(scratch);
    Server::from_env()
        .connect()
        .batch_execute(&format!("DROP ROLE {role}"))
        .unwrap();
}

#[test]
fn the_database_stopped_and_restarted_mid_sequence() {
    let cluster = Cluster::start("");
    // The default deadline (8 s): the server's shutdown, not the deadline,
    // must end the request under way, however busy the machine.
    let functions = cluster.functions();
    let before = unique("before");
    let password = functions.create_account(&before);

    // A request under way (waiting for a lock) when the server shuts down.
    let mut holder = cluster.connect();
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let during = unique("during");
    std::thread::scope(|scope| {
        let run = scope.spawn(|| {
            timed(
                &functions,
                "generate-password",
                &json!({ "username": during }),
            )
        });
        backend_waiting_for_lock(&mut cluster.connect(), "cofrap_db", "generate-password");
        cluster.stop();
        let (output, elapsed) = run.join().unwrap();
        let detail = assert_fault_in_time(&output, elapsed, "database_unavailable");
        // The server's "terminating connection due to administrator
        // command" (57P01), or the closed connection if it came first.
        assert!(
            detail.contains("57P01") || detail.contains("closed"),
            "{detail}"
        );
    });

    // Stopped: refused at once, with the same code.
    let after = unique("after");
    for (function, request) in [
        ("generate-password", json!({ "username": after })),
        (
            "generate-2fa",
            json!({"username": before, "password": password}),
        ),
    ] {
        let (output, elapsed) = timed(&functions, function, &request);
        let detail = assert_fault_in_time(&output, elapsed, "database_unavailable");
        assert!(detail.contains("refused"), "{detail}");
    }

    // Restarted: everything works again, and nothing half-done was kept.
    cluster.start_again();
    functions.create_account(&after);
    functions.call(
        "generate-2fa",
        json!({"username": before, "password": password}),
    );
    let mut db = cluster.connect();
    assert_eq!(count_accounts(&mut db, &[during]), 0, "orphans");
}

/// The real classic watchdog (../shared/tools/fwatchdog, 0.2.1) in front of
/// generate-password, a lock held: the client gets HTTP 500 with the JSON
/// `database_timeout`, not the watchdog's 408 "Killed process."
#[test]
fn through_the_real_watchdog_a_held_lock_is_a_500_with_json_not_a_kill() {
    let watchdog = repo_root().join("../shared/tools/fwatchdog");
    if !watchdog.exists() {
        eprintln!("skipped: {} is missing", watchdog.display());
        return;
    }
    // The 0.2.1 watchdog always opens its metrics port 8081 too: this is
    // the only test of this file that starts one (test files run one at a
    // time; frontend.rs has the other), and it says so if the port is taken.
    assert!(
        std::net::TcpListener::bind("0.0.0.0:8081").is_ok(),
        "port 8081 is taken: the classic watchdog needs it for its metrics"
    );
    let (scratch, functions) = scratch();
    let mut holder = scratch.connect();
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(&watchdog)
        .env_clear()
        .envs(functions.settings().iter().map(|(k, v)| (k, v)))
        .env("fprocess", binary("generate-password"))
        .env("port", port.to_string())
        .env("exec_timeout", "10s")
        .env("read_timeout", "5s")
        .env("write_timeout", "12s")
        .env("content_type", "application/json")
        .env("combine_output", "false")
        .env("write_debug", "false")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the watchdog did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let user = unique("watchdog");
    let started = Instant::now();
    let response = ureq::post(&url)
        .config()
        .http_status_as_error(false)
        .build()
        .send(json!({ "username": user }).to_string());
    let elapsed = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let mut response = response.unwrap();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap();
    assert_eq!(status, 500, "{body}");
    let json: Value = serde_json::from_str(&body[body.find('{').expect(&body)..]).unwrap();
    assert_eq!(json["code"], "database_timeout", "{body}");
    assert!(elapsed < ANSWER_BOUND, "{elapsed:?}");
    holder.batch_execute("COMMIT").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        count_accounts(&mut scratch.connect(), &[user]),
        0,
        "orphans"
    );
}

/// A resolver that never answers (a name server that swallows queries), in a
/// network and mount namespace of the test's own: the function stops
/// waiting for the name at the deadline.
#[test]
fn a_silent_resolver_gets_database_timeout_in_time() {
    if !is_root() {
        eprintln!("skipped: namespaces need root (make test runs as root)");
        return;
    }
    let mut functions = Functions::new();
    functions.set("REQUEST_DEADLINE_MS", &DEADLINE_MS.to_string());
    functions.set("POSTGRES_HOST", "db.cofrap.invalid");
    let dir = std::env::temp_dir().join(unique("cofrap-resolver-"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("resolv.conf"),
        "nameserver 127.0.0.1\noptions timeout:30 attempts:5\n",
    )
    .unwrap();
    std::fs::write(dir.join("hosts"), "127.0.0.1 localhost\n").unwrap();
    // In the namespaces: loopback up, our resolv.conf and hosts, a UDP
    // listener on port 53 that reads queries and never answers, then the
    // function.
    let script = r#"
        ip link set lo up &&
        mount --bind "$1/resolv.conf" /etc/resolv.conf &&
        mount --bind "$1/hosts" /etc/hosts || exit 2
        python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
while True: s.recvfrom(512)' </dev/null >/dev/null 2>&1 &
        listener=$!
        sleep 0.3
        "$2"
        status=$?
        kill $listener
        exit $status
    "#;
    let started = Instant::now();
    let output = run_with_input(
        std::process::Command::new("unshare")
            .args(["--net", "--mount", "--", "sh", "-c", script, "sh"])
            .arg(&dir)
            .arg(binary("generate-password"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(functions.settings().iter().map(|(k, v)| (k, v))),
        json!({"username": unique("dns")}).to_string().as_bytes(),
    );
    let elapsed = started.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    let output = Output {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    if output.status == 2 || (output.status != 1 && output.stderr.contains("unshare")) {
        eprintln!(
            "skipped: namespaces are not available here: {}",
            output.stderr
        );
        return;
    }
    let detail = assert_fault_in_time(&output, elapsed, "database_timeout");
    assert!(detail.contains("resolving"), "{detail}");
}
