//! The functions behind a real PgBouncer, as production runs them behind
//! CloudNativePG's Pooler, in both pool modes: in transaction pooling the
//! next client on a server connection sees whatever a request left on it,
//! and a request's next statement may run on another server connection.
//!
//! - The whole lifecycle, sessions and renewal included; after every
//!   request a client of the same (single) server connection finds nothing
//!   the request set: no timeouts, no commit instant, no request id.
//! - Concurrent clients contesting usernames, with and without request ids,
//!   on a pool of two server connections: nobody but an account's creator
//!   ever gets a password for it, no password handed out stops working, no
//!   answer is an error (a stale or missing setting shows as
//!   `database_error` or a false `database_timeout`).
//! - A lock held on `users` is answered by the database's own lock timeout
//!   (SQLSTATE 55P03 or 57014), as on a direct connection (tests/faults.rs).
//!
//! Each test has a database and a PgBouncer of its own (see the harness's
//! `pgbouncer` module).

use cofrap_tests::pgbouncer::{PgBouncer, PoolMode};
use cofrap_tests::replication::request_id;
use cofrap_tests::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A migrated database of the test's own and a PgBouncer in front of it.
fn behind_pgbouncer(mode: PoolMode, pool_size: u32) -> (ScratchDatabase, PgBouncer) {
    let scratch = ScratchDatabase::create();
    let migrated = scratch.migrate();
    assert!(migrated.status.success(), "{migrated:?}");
    let bouncer = PgBouncer::start(&scratch.server, &scratch.name, mode, pool_size);
    (scratch, bouncer)
}

// The whole lifecycle ------------------------------------------------------

/// What a client of a server connection can see of the requests before it.
const LEFT_BEHIND: &str = "SELECT current_setting('statement_timeout'), \
                                  current_setting('lock_timeout'), \
                                  coalesce(current_setting('cofrap.commit_by', true), ''), \
                                  coalesce(current_setting('cofrap.creation_request', true), '')";

/// The settings a client of PgBouncer finds on its server connection.
fn left_behind(bouncer: &PgBouncer) -> Vec<String> {
    let mut client = bouncer.connect_as_functions();
    client
        .simple_query(LEFT_BEHIND)
        .unwrap()
        .into_iter()
        .find_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or_default().to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .unwrap()
}

fn the_whole_lifecycle(mode: PoolMode) {
    // One server connection: every request and every check shares it.
    let (_scratch, bouncer) = behind_pgbouncer(mode, 1);
    let functions = bouncer.functions();
    let untouched = left_behind(&bouncer);
    assert_eq!(untouched[2..], ["", ""], "a fresh server connection");
    let call = |function: &str, request: Value| -> Value {
        let output = functions.run(function, request.to_string().as_bytes());
        assert_eq!(output.status, 0, "{function} through pgbouncer: {output:?}");
        assert_eq!(
            left_behind(&bouncer),
            untouched,
            "what {function} set outlived it on the server connection \
             (statement_timeout, lock_timeout, cofrap.commit_by, cofrap.creation_request)"
        );
        output.json()
    };

    let user = unique("pooled");
    let created = call(
        "generate-password",
        json!({"username": user, "request_id": request_id()}),
    );
    let password = decode_qr(created["qr_code_base64"].as_str().expect("no QR code"));
    let enrolled = call(
        "generate-2fa",
        json!({"username": user, "password": password}),
    );
    let secret = enrolled["manual_entry_key"].as_str().unwrap().to_owned();
    let step = current_step();
    let sign_in = |password: &str, secret: &str, step: u64| {
        call(
            "authenticate",
            json!({"username": user, "password": password,
                   "totp_code": code_at(secret, step * 30)}),
        )
    };
    // The first code activates; a later one signs in.
    let first = sign_in(&password, &secret, step - 1);
    assert_eq!(
        without_session(&first),
        json!({"authenticated": true, "username": user})
    );
    let second = sign_in(&password, &secret, step);
    assert_eq!(second["authenticated"], true, "{second}");

    // Sessions: a refresh rotates the token, sign-out ends the session.
    let refreshed = call("refresh", json!({"refresh_token": second["refresh_token"]}));
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

    // Renewal: six months later the credentials have expired.
    functions
        .db()
        .execute(
            "UPDATE users SET created_at = now() - interval '6 months 1 day' WHERE username = $1",
            &[&user],
        )
        .unwrap();
    let expired = sign_in(&password, &secret, step + 1);
    assert_eq!(expired["code"], "credentials_expired", "{expired}");
    let renewed = call(
        "generate-password",
        json!({"username": user, "renewal_token": expired["renewal_token"]}),
    );
    let new_password = decode_qr(renewed["qr_code_base64"].as_str().expect("no QR code"));
    let reenrolled = call(
        "generate-2fa",
        json!({"username": user, "password": new_password}),
    );
    let new_secret = reenrolled["manual_entry_key"].as_str().unwrap().to_owned();
    let fresh = sign_in(&new_password, &new_secret, current_step());
    assert_eq!(
        without_session(&fresh),
        json!({"authenticated": true, "username": user})
    );
    let refreshed = call("refresh", json!({"refresh_token": fresh["refresh_token"]}));
    assert!(refreshed["access_token"].is_string(), "{refreshed}");
    assert_eq!(
        sessions_of(&functions, &user),
        [
            Some("renewed".to_owned()),
            Some("signed_out".to_owned()),
            None
        ]
    );
}

#[test]
fn the_whole_lifecycle_in_transaction_pooling_leaves_nothing_on_the_server_connection() {
    the_whole_lifecycle(PoolMode::Transaction);
}

#[test]
fn the_whole_lifecycle_in_session_pooling_leaves_nothing_on_the_server_connection() {
    the_whole_lifecycle(PoolMode::Session);
}

// Contested usernames ------------------------------------------------------

/// Usernames contested, and how many clients want each (2 to 4).
const NAMES: usize = 24;
/// Clients running at once, against a pool of two server connections.
const CLIENTS_AT_ONCE: usize = 8;

/// One client wanting a username.
struct Contender {
    username: String,
    request_id: Option<String>,
}

/// Runs `request(i)` for every i below `count`, CLIENTS_AT_ONCE at a time,
/// in order (so that the clients of one username run together).
fn run_all(count: usize, request: impl Fn(usize) -> Output + Sync) -> Vec<Output> {
    let next = AtomicUsize::new(0);
    let outputs = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS_AT_ONCE {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let output = request(i);
                outputs.lock().unwrap().push((i, output));
            });
        }
    });
    let mut outputs = outputs.into_inner().unwrap();
    outputs.sort_by_key(|(i, _)| *i);
    outputs.into_iter().map(|(_, output)| output).collect()
}

/// The answer's code: `ok` for a success.
fn code(output: &Output) -> String {
    let body: Value = serde_json::from_str(&output.stdout).unwrap_or(Value::Null);
    match body.get("code").and_then(Value::as_str) {
        Some(code) => code.to_owned(),
        None if output.status == 0 && body.is_object() => "ok".to_owned(),
        None => format!("exit {}: {:?}", output.status, output.stdout),
    }
}

/// An answer other than a success or `account_exists`, for the record:
/// a stale or missing setting shows as one of these.
fn error_of(output: &Output) -> Option<String> {
    let code = code(output);
    if output.status == 0 && (code == "ok" || code == "account_exists") {
        return None;
    }
    Some(format!("{code}: {}", output.log_detail()))
}

fn contested_usernames(mode: PoolMode) {
    let started = Instant::now();
    let (_scratch, bouncer) = behind_pgbouncer(mode, 2);
    let functions = bouncer.functions();
    let mut contenders = Vec::new();
    for name in 0..NAMES {
        let username = unique("contested");
        for client in 0..2 + name % 3 {
            contenders.push(Contender {
                username: username.clone(),
                // Every other one with a request id, some names with none.
                request_id: ((name + client) % 2 == 0 && name % 4 != 3).then(request_id),
            });
        }
    }
    let create = |contender: &Contender| {
        let mut request = json!({"username": contender.username});
        if let Some(id) = &contender.request_id {
            request["request_id"] = json!(id);
        }
        functions.run("generate-password", request.to_string().as_bytes())
    };
    let mut errors = Vec::new();

    // Everyone at once: one creator per username.
    let first = run_all(contenders.len(), |i| create(&contenders[i]));
    errors.extend(first.iter().filter_map(error_of));
    let mut creator = std::collections::HashMap::new();
    for (i, output) in first.iter().enumerate() {
        if code(output) == "ok" {
            let previous = creator.insert(contenders[i].username.clone(), i);
            assert!(
                previous.is_none(),
                "two creators of {}",
                contenders[i].username
            );
        }
    }

    // The others retry with their request id, as after a lost reply: a
    // password now would be another's account taken over.
    let retrying: Vec<usize> = (0..contenders.len())
        .filter(|i| contenders[*i].request_id.is_some() && !creator.values().any(|c| c == i))
        .collect();
    let retried = run_all(retrying.len(), |k| create(&contenders[retrying[k]]));
    errors.extend(retried.iter().filter_map(error_of));
    let takeovers: Vec<&String> = retrying
        .iter()
        .zip(&retried)
        .filter(|(_, output)| code(output) == "ok")
        .map(|(i, _)| &contenders[*i].username)
        .collect();

    // Every creator's password still works: it enrolls.
    let creators: Vec<(&String, &usize)> = creator.iter().collect();
    let enrolled = run_all(creators.len(), |k| {
        let (username, i) = creators[k];
        let password = decode_qr(
            serde_json::from_str::<Value>(&first[*i].stdout).unwrap()["qr_code_base64"]
                .as_str()
                .unwrap(),
        );
        functions.run(
            "generate-2fa",
            json!({"username": username, "password": password})
                .to_string()
                .as_bytes(),
        )
    });
    let stopped_working: Vec<String> = creators
        .iter()
        .zip(&enrolled)
        .filter(|(_, output)| code(output) != "ok")
        .map(|((username, _), output)| format!("{username}: {}", code(output)))
        .collect();

    // Each account records its creator's request id, and none when it had
    // none: never another client's.
    let mut db = functions.db();
    let mut foreign_ids = Vec::new();
    for (username, i) in &creators {
        let stored: Option<String> = db
            .query_one(
                "SELECT creation_request FROM users WHERE username = $1",
                &[username],
            )
            .unwrap()
            .get(0);
        let expected: Option<String> = contenders[**i].request_id.as_ref().map(|id| {
            db.query_one(
                "SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')",
                &[id],
            )
            .unwrap()
            .get(0)
        });
        if stored != expected {
            foreign_ids.push((*username).clone());
        }
    }

    assert!(errors.is_empty(), "errors through pgbouncer: {errors:#?}");
    assert!(takeovers.is_empty(), "accounts taken over: {takeovers:?}");
    assert!(
        stopped_working.is_empty(),
        "passwords that stopped working: {stopped_working:?}"
    );
    assert!(
        foreign_ids.is_empty(),
        "accounts carrying another request's id: {foreign_ids:?}"
    );
    assert_eq!(creator.len(), NAMES, "a username nobody created");
    // Server connections really were shared: at most the pool's two served
    // every client.
    let servers: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename = $2",
            &[&bouncer.dbname, &bouncer.role.user],
        )
        .unwrap()
        .get(0);
    assert!((1..=2).contains(&servers), "{servers} server connections");
    eprintln!(
        "{} pooling: {} clients for {NAMES} usernames, {} retries with a request id, {} \
         enrollments, through 2 server connections, in {:?}",
        mode.name(),
        contenders.len(),
        retrying.len(),
        creators.len(),
        started.elapsed()
    );
}

#[test]
fn contested_usernames_in_transaction_pooling_have_one_creator_and_no_takeover() {
    contested_usernames(PoolMode::Transaction);
}

#[test]
fn contested_usernames_in_session_pooling_have_one_creator_and_no_takeover() {
    contested_usernames(PoolMode::Session);
}

// A held lock --------------------------------------------------------------

/// The deadline of the held-lock tests (`REQUEST_DEADLINE_MS`): its margin
/// (500 ms) leaves the server's lock timeout room to answer first.
const DEADLINE: Duration = Duration::from_millis(4000);

fn a_held_lock(mode: PoolMode) {
    // A server connection for each request: none waits in PgBouncer's queue.
    let (scratch, bouncer) = behind_pgbouncer(mode, 4);
    let mut functions = bouncer.functions();
    functions.set("REQUEST_DEADLINE_MS", &DEADLINE.as_millis().to_string());
    let mut holder = scratch.connect();
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let users = [unique("locked"), unique("locked")];
    let requests = [
        ("generate-password", json!({"username": users[0]})),
        (
            "generate-password",
            json!({"username": users[1], "request_id": request_id()}),
        ),
        (
            "authenticate",
            json!({"username": users[0], "password": "pw", "totp_code": "123456"}),
        ),
    ];
    let answers: Vec<(Output, Duration)> = std::thread::scope(|scope| {
        let runs: Vec<_> = requests
            .iter()
            .map(|(function, request)| {
                let functions = &functions;
                scope.spawn(move || {
                    let started = Instant::now();
                    let output = functions.run(function, request.to_string().as_bytes());
                    (output, started.elapsed())
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    for ((function, _), (output, elapsed)) in requests.iter().zip(&answers) {
        assert_eq!(output.status, 1, "{function}: {output:?}");
        assert_eq!(output.json()["code"], "database_timeout", "{output:?}");
        let detail = output.log()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            detail.contains("SQLSTATE 55P03") || detail.contains("SQLSTATE 57014"),
            "{function}: not the database's own timeout: {detail}"
        );
        assert!(*elapsed < DEADLINE + Duration::from_secs(2), "{elapsed:?}");
    }
    // No backend is left waiting for the lock.
    let mut observer = scratch.connect();
    assert_no_backend_waits_for_a_lock(&mut observer, &scratch.name, None);
    holder.batch_execute("COMMIT").unwrap();
    assert_eq!(count_accounts(&mut observer, &users), 0, "orphans");
    // Released: the username is free, through the pooler.
    functions.create_account(&users[0]);
}

#[test]
fn a_held_lock_in_transaction_pooling_is_answered_by_the_databases_lock_timeout() {
    a_held_lock(PoolMode::Transaction);
}

#[test]
fn a_held_lock_in_session_pooling_is_answered_by_the_databases_lock_timeout() {
    a_held_lock(PoolMode::Session);
}
