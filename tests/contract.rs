//! The contract every function keeps, driven through the binaries as the
//! watchdog drives them: malformed requests, configuration and database
//! failures, exit statuses, stdout holding exactly one JSON object, and the
//! one log line on stderr.

use cofrap_tests::*;
use serde_json::{json, Value};

const FUNCTIONS: [&str; 3] = ["generate-password", "generate-2fa", "authenticate"];

/// Runs `body` through `function`; asserts a client error (exit 0) with
/// `code`, the contract's shape, and the matching log line.
fn assert_refused(functions: &Functions, function: &str, body: &[u8], code: &str) -> Value {
    let output = functions.run(function, body);
    assert_eq!(output.status, 0, "{function}: {output:?}");
    let response = output.json();
    assert_eq!(
        response["code"],
        code,
        "{function} on {:?}: {response}",
        String::from_utf8_lossy(body)
    );
    assert!(response["error"].as_str().is_some_and(|e| !e.is_empty()));
    let log = output.log();
    assert_eq!(log["function"], function);
    assert_eq!(log["outcome"], code);
    assert!(log["duration_ms"].is_u64());
    response
}

/// Asserts a server fault: exit status 1, still one JSON error on stdout.
fn assert_server_fault(output: &Output, code: &str) -> Value {
    assert_eq!(output.status, 1, "{output:?}");
    let response = output.json();
    assert_eq!(response["code"], code, "{response}");
    assert_eq!(output.log()["outcome"], code);
    response
}

#[test]
fn malformed_bodies_get_their_own_codes_from_every_function() {
    let functions = Functions::new();
    let cases: [(&[u8], &str); 9] = [
        (b"", "empty_request"),
        (b"  \n ", "empty_request"),
        (b"\xff\xfe{}", "invalid_utf8"),
        (b"{\"username\": ", "invalid_json"),
        (b"{\"username\": \"alice\"} trailing", "invalid_json"),
        (b"[\"alice\"]", "not_an_object"),
        (b"42", "not_an_object"),
        (
            b"{\"username\": \"alice\", \"username\": \"bob\"}",
            "duplicate_field",
        ),
        (
            b"{\"username\": \"alice\", \"admin\": true}",
            "unknown_field",
        ),
    ];
    for function in FUNCTIONS {
        for (body, code) in cases {
            assert_refused(&functions, function, body, code);
        }
    }
}

#[test]
fn missing_and_mistyped_fields_are_named() {
    let functions = Functions::new();
    let complete = json!({"username": "alice", "password": "pw", "totp_code": "123456"});
    let fields: [(&str, &[&str]); 3] = [
        ("generate-password", &["username"]),
        ("generate-2fa", &["username", "password"]),
        ("authenticate", &["username", "password", "totp_code"]),
    ];
    for (function, names) in fields {
        for name in names {
            let mut request = json!({});
            for other in names.iter().filter(|n| *n != name) {
                request[other] = complete[other].clone();
            }
            let response = assert_refused(
                &functions,
                function,
                request.to_string().as_bytes(),
                "missing_field",
            );
            assert_eq!(response["field"], *name);

            request[name] = json!(123456);
            let response = assert_refused(
                &functions,
                function,
                request.to_string().as_bytes(),
                "invalid_field_type",
            );
            assert_eq!(response["field"], *name);

            request[name] = Value::Null;
            assert_refused(
                &functions,
                function,
                request.to_string().as_bytes(),
                "invalid_field_type",
            );
        }
    }
}

#[test]
fn usernames_follow_the_same_rules_everywhere() {
    let functions = Functions::new();
    for function in FUNCTIONS {
        for bad in [
            "ab",
            "   ab   ",
            "x\u{0}yz",
            "new\nline",
            "colon:name",
            &"x".repeat(65),
        ] {
            let request = json!({"username": bad, "password": "pw", "totp_code": "123456"});
            let mut request = request.as_object().unwrap().clone();
            if function == "generate-password" {
                request.retain(|k, _| k == "username");
            } else if function == "generate-2fa" {
                request.remove("totp_code");
            }
            let body = Value::Object(request).to_string();
            let response =
                assert_refused(&functions, function, body.as_bytes(), "invalid_username");
            assert_eq!(response["field"], "username");
        }
    }
}

#[test]
fn other_fields_are_checked_before_any_account_is_touched() {
    let functions = Functions::new();
    let long = "p".repeat(73);
    for (request, function) in [
        (json!({"username": "alice", "password": ""}), "generate-2fa"),
        (
            json!({"username": "alice", "password": long}),
            "generate-2fa",
        ),
        (
            json!({"username": "alice", "password": "pw", "totp_code": "12345"}),
            "authenticate",
        ),
        (
            json!({"username": "alice", "password": "pw", "totp_code": "abcdef"}),
            "authenticate",
        ),
    ] {
        assert_refused(
            &functions,
            function,
            request.to_string().as_bytes(),
            "invalid_field",
        );
    }
}

#[test]
fn a_body_over_64_kib_is_refused_and_one_at_the_limit_is_read() {
    let functions = Functions::new();
    let mut big = br#"{"username": "alice"}"#.to_vec();
    big.resize(64 * 1024 + 1, b' ');
    assert_refused(&functions, "generate-password", &big, "request_too_large");

    let user = unique("limit");
    let mut exact = json!({"username": user}).to_string().into_bytes();
    exact.resize(64 * 1024, b' ');
    let output = functions.run("generate-password", &exact);
    assert_eq!(output.status, 0);
    assert_eq!(output.json()["username"], user.as_str());
}

#[test]
fn malformed_requests_are_answered_even_when_the_server_is_broken() {
    let mut functions = Functions::new();
    functions.unset("POSTGRES_HOST");
    functions.remove_secret("encryption-key");
    assert_refused(&functions, "generate-password", b"{}", "missing_field");
}

#[test]
fn a_missing_or_malformed_setting_or_secret_is_a_named_server_fault() {
    let request = json!({"username": unique("config")}).to_string();
    let broken: [(&str, &str, &str); 5] = [
        ("POSTGRES_PORT", "not-a-port", "POSTGRES_PORT"),
        ("BCRYPT_COST", "9", "BCRYPT_COST"),
        ("BCRYPT_COST", "twelve", "BCRYPT_COST"),
        ("MAX_FAILED_ATTEMPTS", "-1", "MAX_FAILED_ATTEMPTS"),
        ("LOCKOUT_SECONDS", "-5", "LOCKOUT_SECONDS"),
    ];
    for (name, value, named) in broken {
        let mut functions = Functions::new();
        functions.set(name, value);
        let response = assert_server_fault(
            &functions.run("generate-password", request.as_bytes()),
            "configuration_error",
        );
        assert!(
            response["error"].as_str().unwrap().contains(named),
            "{response}"
        );
        assert!(
            !response["error"].as_str().unwrap().contains(value),
            "{response}"
        );
    }

    let mut functions = Functions::new();
    functions.unset("POSTGRES_HOST");
    let response = assert_server_fault(
        &functions.run(
            "authenticate",
            br#"{"username": "alice", "password": "pw", "totp_code": "123456"}"#,
        ),
        "configuration_error",
    );
    assert!(response["error"]
        .as_str()
        .unwrap()
        .contains("POSTGRES_HOST"));

    for secret in [
        "db-credentials-username",
        "db-credentials-password",
        "encryption-key",
    ] {
        let functions = Functions::new();
        functions.remove_secret(secret);
        let response = assert_server_fault(
            &functions.run("generate-password", request.as_bytes()),
            "configuration_error",
        );
        assert!(
            response["error"].as_str().unwrap().contains(secret),
            "{response}"
        );
    }

    let functions = Functions::new();
    functions.write_secret("encryption-key", &format!("{}\nnot-a-key\n", functions.key));
    let response = assert_server_fault(
        &functions.run("generate-password", request.as_bytes()),
        "configuration_error",
    );
    let message = response["error"].as_str().unwrap();
    assert!(
        message.contains("encryption-key") && message.contains("line 2"),
        "{message}"
    );
    assert!(!message.contains("not-a-key"), "{message}");
}

#[test]
fn an_unreachable_database_is_a_server_fault_without_driver_text() {
    let mut functions = Functions::new();
    // Port 1 on loopback: nothing listens there, the connection is refused.
    functions.set("POSTGRES_HOST", "127.0.0.1");
    functions.set("POSTGRES_PORT", "1");
    let user = unique("down");
    let output = functions.run(
        "generate-password",
        json!({"username": user}).to_string().as_bytes(),
    );
    let response = assert_server_fault(&output, "database_unavailable");
    assert_eq!(response["error"], "The database is unavailable.");
    // The operator's detail is in the log, not in the response.
    assert!(output.log()["detail"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));

    let functions = Functions::new();
    functions.write_secret("db-credentials-password", "wrong-password");
    let output = functions.run(
        "generate-password",
        json!({"username": user}).to_string().as_bytes(),
    );
    assert_server_fault(&output, "database_unavailable");
    assert!(!output.stdout.contains("wrong-password") && !output.stderr.contains("wrong-password"));
}

#[test]
fn a_missing_or_outdated_schema_stops_the_functions_without_touching_it() {
    let scratch = ScratchDatabase::create();
    let functions = Functions::on(scratch.server.clone(), &scratch.name);
    let request = json!({"username": unique("schema")}).to_string();
    for function_request in [
        ("generate-password", request.clone()),
        (
            "generate-2fa",
            json!({"username": "alice", "password": "pw"}).to_string(),
        ),
        (
            "authenticate",
            json!({"username": "alice", "password": "pw", "totp_code": "123456"}).to_string(),
        ),
    ] {
        let output = functions.run(function_request.0, function_request.1.as_bytes());
        assert_server_fault(&output, "schema_missing");
    }
    // The function created nothing.
    let tables: i64 = scratch
        .connect()
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);

    // Created as the owner role, as a migration would: the functions' role
    // reads it through the owner's default privileges.
    scratch
        .connect()
        .batch_execute(&format!(
            "SET ROLE {OWNER_ROLE}; CREATE TABLE cofrap_schema_migrations (version integer PRIMARY KEY)"
        ))
        .unwrap();
    let output = functions.run("generate-password", request.as_bytes());
    let response = assert_server_fault(&output, "schema_outdated");
    assert!(response["error"]
        .as_str()
        .unwrap()
        .contains("make db-migrate"));
}

#[test]
fn success_is_logged_as_ok_and_nothing_secret_reaches_the_log() {
    let functions = Functions::new();
    let user = unique("log");
    let output = functions.run(
        "generate-password",
        json!({"username": user}).to_string().as_bytes(),
    );
    assert_eq!(output.status, 0);
    let response = output.json();
    let password = decode_qr(response["qr_code_base64"].as_str().unwrap());
    let log = output.log();
    assert_eq!(
        log,
        json!({"function": "generate-password", "outcome": "ok", "duration_ms": log["duration_ms"],
               "account_id": account_id(&functions, &user)})
    );
    assert!(!output.stderr.contains(&password));
    assert!(
        !output.stderr.contains(&user),
        "usernames are not logged either"
    );

    let output = functions.run(
        "generate-2fa",
        json!({"username": user, "password": password})
            .to_string()
            .as_bytes(),
    );
    let secret = output.json()["manual_entry_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(output.log()["outcome"], "ok");
    assert!(!output.stderr.contains(&secret) && !output.stderr.contains(&password));

    let code = code_at(&secret, current_step() * 30);
    let output = functions.run(
        "authenticate",
        json!({"username": user, "password": password, "totp_code": code})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(output.json()["authenticated"], true);
    assert_eq!(output.log()["outcome"], "ok");
    for secret_text in [&password, &secret, &code] {
        assert!(!output.stderr.contains(secret_text.as_str()));
    }
    assert!(!output.stdout.contains(&password) && !output.stdout.contains(&secret));
}

#[test]
fn the_profile_accounts_for_the_whole_run() {
    // COFRAP_PROFILE=1 (make bench) makes the log line carry where the time
    // went, phase by phase; with the spawn's instant and the exit's, the
    // phases add up to the time measured from outside (within 10 %).
    let mut functions = Functions::new();
    functions.set("COFRAP_PROFILE", "1");
    let unix_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as f64
    };
    for (function, body) in [
        ("generate-password", json!({"username": unique("profile")})),
        ("jwks", json!({})),
    ] {
        let spawned = unix_ns();
        let output = run_with_input(
            std::process::Command::new(binary(function))
                .env_clear()
                .envs(functions.settings().iter().map(|(k, v)| (k, v)))
                .env("COFRAP_PROFILE_SPAWNED_AT", format!("{spawned:.0}")),
            body.to_string().as_bytes(),
        );
        let exited = unix_ns();
        assert!(output.status.success(), "{output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        let log: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
        let profile = &log["profile"];
        let phases = profile["phases_ms"].as_object().expect("phases");
        let in_phases: f64 = phases.values().map(|ms| ms.as_f64().unwrap()).sum();
        let to_main = profile["spawn_to_main_ms"].as_f64().expect("spawn to main");
        let to_exit = (exited - profile["taken_unix_ns"].as_f64().unwrap()) / 1e6;
        let total = (exited - spawned) / 1e6;
        let accounted = to_main + in_phases + to_exit;
        assert!(
            (accounted - total).abs() <= 0.1 * total,
            "{function}: {accounted:.2} ms accounted for of {total:.2}: {profile}"
        );
        if function == "generate-password" {
            for phase in [
                "connect",
                "tx_open",
                "statements",
                "commit",
                "bcrypt",
                "qr_png",
                "password_generation",
            ] {
                assert!(phases.contains_key(phase), "{phase} missing: {profile}");
            }
        }
    }
}
