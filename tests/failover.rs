//! Following a failover: a primary and its synchronous standby on this
//! machine (`pg_basebackup -R`, see the harness's `replication` module), the
//! functions given both in `POSTGRES_HOST`.
//!
//! - Under a load of creations (with request ids), enrollments and sign-ins,
//!   the primary is stopped with `pg_ctl stop -m immediate` and the standby
//!   promoted: every answer is a success or a retryable code, every client
//!   that retries ends with its account, nothing acknowledged is missing on
//!   the new primary, and no account is stored that its creator never got a
//!   password for.
//! - A standby alone is never written to: every database function answers
//!   `database_unavailable` (retryable), never `database_error`; a list
//!   holding a closed address and the standby before the primary reaches the
//!   primary.
//! - A commit that waits for a stopped synchronous standby is not ended by
//!   `statement_timeout`: the function answers `database_timeout` at its
//!   deadline, the commit completes when the standby is back, and a retry
//!   with the same request id gets the account.

use cofrap_tests::replication::{request_id, Load, PrimaryAndStandby};
use cofrap_tests::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// stack.yaml's exec_timeout: no answer may take longer.
const EXEC_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn a_failover_under_load_loses_no_acknowledged_account_and_leaves_no_orphan() {
    let started = Instant::now();
    let pair = PrimaryAndStandby::start();
    let functions = pair.functions();
    let load = Load {
        clients: 24,
        parallel: 4,
        kill_after_created: 8,
        patience: Duration::from_secs(15),
        step_patience: Duration::from_secs(20),
    };
    let report = pair.fail_over_under_load(&load, &|function, body| functions.run(function, body));
    let Some(killed) = report.killed_at else {
        panic!(
            "the load never got under way with POSTGRES_HOST={}: no {} accounts created in {:?}; \
             first answers: {}",
            pair.host_list(),
            load.kill_after_created,
            load.patience,
            report.first_answers(4)
        );
    };

    // Every answer: a success, or a code docs/API.md calls retryable (the
    // documented replay of a sign-in code aside), in time.
    for answer in &report.answers {
        assert!(
            answer.is_success() || answer.is_retryable() || answer.replay,
            "{answer:?}"
        );
        assert!(answer.elapsed < EXEC_TIMEOUT, "{answer:?}");
    }
    // No orphan: every account this load stored on the new primary belongs
    // to a client that was given a password for it.
    let mut db = pair.standby.connect();
    let stored = db
        .query(
            "SELECT username, activated_at IS NOT NULL AND mfa_secret IS NOT NULL,
                    creation_request
               FROM users WHERE username LIKE $1 || '-%'",
            &[&report.prefix],
        )
        .unwrap();
    let orphans: Vec<String> = stored
        .iter()
        .map(|row| row.get::<_, String>(0))
        .filter(|username| {
            !report
                .clients
                .iter()
                .any(|c| &c.username == username && c.has_password)
        })
        .collect();
    assert!(
        orphans.is_empty(),
        "accounts stored whose creator got no password: {orphans:?}"
    );
    // Every client that retried ends with its account, enrolled and signed in.
    assert_eq!(report.clients.len(), load.clients);
    for client in &report.clients {
        assert!(client.signed_in, "{client:?}");
    }
    // The switch happened mid-run: accounts were created on both sides.
    let after = report
        .clients
        .iter()
        .filter(|c| c.created_at.is_some_and(|at| at > killed))
        .count();
    assert!(
        after > 0 && after < load.clients,
        "{after} of {} accounts created after the kill",
        load.clients
    );
    // Nothing acknowledged is missing on the new primary: every account,
    // active as its client left it, with the client's own request id.
    for client in &report.clients {
        let row = stored
            .iter()
            .find(|row| row.get::<_, String>(0) == client.username)
            .unwrap_or_else(|| panic!("acknowledged, missing on the new primary: {client:?}"));
        assert!(
            row.get::<_, bool>(1),
            "not active on the new primary: {client:?}"
        );
        let fingerprint: String = db
            .query_one(
                "SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')",
                &[&client.request_id],
            )
            .unwrap()
            .get(0);
        assert_eq!(
            row.get::<_, Option<String>>(2),
            Some(fingerprint),
            "{client:?}"
        );
    }

    let retryable: Vec<String> = report
        .answers
        .iter()
        .filter(|a| a.is_retryable())
        .map(|a| format!("{} {}", a.function, a.code))
        .collect();
    eprintln!(
        "failover: {} answers, {} retryable ({:?}), {} replayed codes; {} of {} accounts \
         created before the kill; promoted {:?} after the kill; first success {:?} after it; \
         {:?} in all",
        report.answers.len(),
        retryable.len(),
        retryable,
        report.answers.iter().filter(|a| a.replay).count(),
        load.clients - after,
        load.clients,
        report.promoted_after.unwrap(),
        report.first_success_after_kill().unwrap(),
        started.elapsed()
    );
}

#[test]
fn a_standby_is_never_written_to_and_a_host_list_finds_the_primary() {
    let pair = PrimaryAndStandby::start();
    // An account to work on, made through the primary alone.
    let direct = pair.primary.functions();
    let user = unique("standby");
    let (password, secret) = direct.enrolled_account(&user);
    let signed_in = direct.authenticate(&user, &password, &secret, current_step() - 1);
    let refresh_token = signed_in["refresh_token"].as_str().unwrap().to_owned();
    wait_until_replayed(&pair, &user);

    // The standby alone (one host, its port in POSTGRES_PORT): every
    // function that writes answers the retryable database_unavailable,
    // never database_error (SQLSTATE 25006).
    let mut on_standby = pair.primary.functions();
    on_standby.set("POSTGRES_HOST", "127.0.0.1");
    on_standby.set("POSTGRES_PORT", &pair.standby.port.to_string());
    for (function, request) in [
        ("generate-password", json!({"username": unique("standby")})),
        (
            "generate-password",
            json!({"username": unique("standby"), "request_id": request_id()}),
        ),
        (
            "generate-2fa",
            json!({"username": user, "password": password}),
        ),
        (
            "authenticate",
            json!({"username": user, "password": password,
                   "totp_code": code_at(&secret, current_step() * 30)}),
        ),
        ("refresh", json!({"refresh_token": refresh_token})),
        ("sign-out", json!({"refresh_token": refresh_token})),
    ] {
        let output = on_standby.run(function, request.to_string().as_bytes());
        assert_eq!(output.status, 1, "{function}: {output:?}");
        assert_eq!(
            output.json()["code"],
            "database_unavailable",
            "{function}: {output:?}"
        );
    }
    // Nothing was changed: the refresh token still works on the primary.
    let refreshed = direct.call("refresh", json!({"refresh_token": refresh_token}));
    assert!(refreshed["access_token"].is_string(), "{refreshed}");

    // A list in every form: an IPv6 literal with a port where nothing
    // listens, the standby by address and port, the primary by name with
    // POSTGRES_PORT. The functions pass over the first two.
    let mut through_list = pair.primary.functions();
    through_list.set(
        "POSTGRES_HOST",
        &format!(
            "[::1]:{},127.0.0.1:{},localhost",
            free_port(),
            pair.standby.port
        ),
    );
    through_list.set("POSTGRES_PORT", &pair.primary.port.to_string());
    let other = unique("listed");
    let (password, secret) = through_list.enrolled_account(&other);
    let answer = through_list.authenticate(&other, &password, &secret, current_step());
    assert_eq!(answer["authenticated"], true, "{answer}");
    let active: bool = pair
        .primary
        .connect()
        .query_one(
            "SELECT activated_at IS NOT NULL FROM users WHERE username = $1",
            &[&other],
        )
        .unwrap()
        .get(0);
    assert!(active);
}

/// Waits (at most 10 s) until the standby has replayed `user`'s account:
/// synchronous commit waits for the standby's flush, not its replay.
fn wait_until_replayed(pair: &PrimaryAndStandby, user: &str) {
    let mut standby = pair.standby.connect();
    let started = Instant::now();
    while count_accounts(&mut standby, &[user.to_owned()]) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the standby never showed {user}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The deadline of the synchronous-commit test (`REQUEST_DEADLINE_MS`).
const DEADLINE: Duration = Duration::from_millis(2000);

#[test]
fn a_commit_waiting_for_a_stopped_standby_answers_at_the_deadline_and_a_retry_gets_the_account() {
    let pair = PrimaryAndStandby::start();
    let mut functions = pair.primary.functions();
    functions.set("REQUEST_DEADLINE_MS", &DEADLINE.as_millis().to_string());
    pair.standby.stop();

    let requests: Vec<Value> = (0..4)
        .map(|_| json!({"username": unique("waiting"), "request_id": request_id()}))
        .collect();
    let users: Vec<String> = requests
        .iter()
        .map(|r| r["username"].as_str().unwrap().to_owned())
        .collect();
    let answers: Vec<(Output, Duration)> = std::thread::scope(|scope| {
        let runs: Vec<_> = requests
            .iter()
            .map(|request| {
                let functions = &functions;
                scope.spawn(move || {
                    let started = Instant::now();
                    let output = functions.run("generate-password", request.to_string().as_bytes());
                    (output, started.elapsed())
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    for (output, elapsed) in &answers {
        assert_eq!(output.status, 1, "{output:?}");
        assert_eq!(output.json()["code"], "database_timeout", "{output:?}");
        // The deadline's guard answered: statement_timeout (the deadline
        // less its margin) did not end the wait.
        let detail = output.log()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(detail.contains("deadline"), "{detail}");
        assert!(
            *elapsed >= DEADLINE && *elapsed < DEADLINE + Duration::from_secs(4),
            "answered after {elapsed:?}"
        );
    }
    // Their commits are written on the primary and wait for the standby,
    // invisible until it acknowledges them.
    let mut db = pair.primary.connect();
    let waiting = |db: &mut postgres::Client| -> i64 {
        db.query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE application_name = 'generate-password' AND wait_event = 'SyncRep'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(waiting(&mut db), 4);
    assert_eq!(count_accounts(&mut db, &users), 0);

    // The standby is back: the commits complete, after their timeouts.
    pair.standby.start_again();
    pair.wait_until_synchronous();
    let started = Instant::now();
    while waiting(&mut db) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "commits still wait for the standby"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count_accounts(&mut db, &users), 4);

    // As docs/API.md says: retried with the same request id, each gets its
    // account (a new password, which works).
    functions.unset("REQUEST_DEADLINE_MS");
    for request in &requests {
        let answer = functions.call("generate-password", request.clone());
        assert_eq!(answer["username"], request["username"], "{answer}");
        let password = decode_qr(answer["qr_code_base64"].as_str().unwrap());
        functions.call(
            "generate-2fa",
            json!({"username": request["username"], "password": password}),
        );
    }
}
