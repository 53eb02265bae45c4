//! generate-password through its binary: the password it hands over, what it
//! stores, and who may (not) take a username.

use cofrap_tests::*;
use serde_json::json;
use std::collections::HashSet;

fn stored(functions: &Functions, username: &str) -> postgres::Row {
    functions
        .db()
        .query_one(
            "SELECT username, password_hash, mfa_secret, expired, activated_at IS NULL AS pending,
                    now() - created_at < interval '1 minute' AS fresh
               FROM users WHERE lower(username) = lower($1)",
            &[&username],
        )
        .unwrap()
}

#[test]
fn it_hands_over_a_strong_password_once_and_stores_only_its_hash() {
    let functions = Functions::new();
    let user = unique("create");
    let output = functions.run(
        "generate-password",
        json!({"username": user}).to_string().as_bytes(),
    );
    assert_eq!(output.status, 0);
    let response = output.json();

    let keys: HashSet<&str> = response
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from(["username", "qr_code_base64", "message", "next"])
    );
    assert_eq!(response["username"], user.as_str());
    assert_eq!(response["next"], "generate-2fa");
    assert!(!response["qr_code_base64"]
        .as_str()
        .unwrap()
        .starts_with("data:"));

    let password = decode_qr(response["qr_code_base64"].as_str().unwrap());
    assert_eq!(password.chars().count(), 24);
    assert!(password.chars().any(|c| c.is_ascii_uppercase()));
    assert!(password.chars().any(|c| c.is_ascii_lowercase()));
    assert!(password.chars().any(|c| c.is_ascii_digit()));
    assert!(password.chars().any(|c| c.is_ascii_punctuation()));
    assert!(password.chars().all(|c| c.is_ascii_graphic()));
    // The QR code is the only place the password appears.
    assert!(!output.stdout.contains(&password));

    let row = stored(&functions, &user);
    let hash: String = row.get("password_hash");
    assert!(
        hash.starts_with("$2b$10$"),
        "BCRYPT_COST=10 is used: {hash}"
    );
    assert!(common::password::verify(&password, &hash));
    assert_eq!(row.get::<_, Option<String>>("mfa_secret"), None);
    assert!(!row.get::<_, bool>("expired"));
    assert!(row.get::<_, bool>("pending"), "a new account is pending");
    assert!(row.get::<_, bool>("fresh"));
}

#[test]
fn every_call_draws_a_new_password() {
    let functions = Functions::new();
    let passwords: HashSet<String> = (0..5)
        .map(|_| functions.create_account(&unique("draw")))
        .collect();
    assert_eq!(passwords.len(), 5);
}

#[test]
fn an_existing_username_is_refused_and_its_row_left_untouched() {
    let functions = Functions::new();
    let user = unique("Taken");
    functions.create_account(&user);
    let before: String = stored(&functions, &user).get("password_hash");

    for attempt in [
        user.clone(),
        user.to_lowercase(),
        format!("  {}  ", user.to_uppercase()),
    ] {
        let response = functions.call("generate-password", json!({"username": attempt}));
        assert_eq!(response["code"], "account_exists", "{attempt}: {response}");
        assert!(response.get("qr_code_base64").is_none());
    }
    let row = stored(&functions, &user);
    assert_eq!(row.get::<_, String>("password_hash"), before);
    assert_eq!(
        row.get::<_, String>("username"),
        user,
        "the first spelling is kept"
    );
}

#[test]
fn usernames_are_trimmed_and_keep_their_case() {
    let functions = Functions::new();
    let user = unique("Mixed Case ");
    let response = functions.call(
        "generate-password",
        json!({"username": format!("  {user}\t")}),
    );
    assert_eq!(response["username"], user.trim());
    assert_eq!(
        stored(&functions, user.trim()).get::<_, String>("username"),
        user.trim()
    );
}

#[test]
fn concurrent_creations_of_one_username_let_exactly_one_through() {
    let functions = Functions::new();
    let user = unique("race");
    let body = json!({"username": user}).to_string();
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| functions.run("generate-password", body.as_bytes())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let responses: Vec<_> = outputs
        .iter()
        .map(|o| {
            assert_eq!(o.status, 0);
            o.json()
        })
        .collect();
    let winners: Vec<_> = responses
        .iter()
        .filter(|r| r.get("qr_code_base64").is_some())
        .collect();
    assert_eq!(winners.len(), 1, "{responses:?}");
    assert!(responses
        .iter()
        .filter(|r| r.get("qr_code_base64").is_none())
        .all(|r| r["code"] == "account_exists"));

    let password = decode_qr(winners[0]["qr_code_base64"].as_str().unwrap());
    let hash: String = stored(&functions, &user).get("password_hash");
    assert!(
        common::password::verify(&password, &hash),
        "the password handed over is the one stored"
    );
}

#[test]
fn an_abandoned_pending_account_may_be_taken_afresh() {
    let functions = Functions::new();
    let user = unique("abandoned");
    let first = functions.create_account(&user);

    // Ten minutes old: still within the 15-minute enrollment window.
    functions
        .db()
        .execute(
            "UPDATE users SET created_at = now() - interval '10 minutes' WHERE username = $1",
            &[&user],
        )
        .unwrap();
    assert_eq!(
        functions.call("generate-password", json!({"username": user}))["code"],
        "account_exists"
    );

    // Sixteen minutes old and never activated: the username is free again.
    functions
        .db()
        .execute(
            "UPDATE users SET created_at = now() - interval '16 minutes' WHERE username = $1",
            &[&user],
        )
        .unwrap();
    let second = functions.create_account(&user);
    assert_ne!(first, second);
    let hash: String = stored(&functions, &user).get("password_hash");
    assert!(common::password::verify(&second, &hash));
    assert!(!common::password::verify(&first, &hash));
}

#[test]
fn an_active_account_is_never_taken_however_old() {
    let functions = Functions::new();
    let user = unique("active");
    let (password, secret) = functions.enrolled_account(&user);
    assert_eq!(
        functions.authenticate(&user, &password, &secret, current_step())["authenticated"],
        true
    );
    functions
        .db()
        .execute(
            "UPDATE users SET created_at = now() - interval '1 year' WHERE username = $1",
            &[&user],
        )
        .unwrap();
    assert_eq!(
        functions.call("generate-password", json!({"username": user}))["code"],
        "account_exists"
    );
}

#[test]
fn the_enrollment_window_is_configurable() {
    let mut functions = Functions::new();
    functions.set("ENROLLMENT_WINDOW_SECONDS", "3600");
    let user = unique("window");
    functions.create_account(&user);
    functions
        .db()
        .execute(
            "UPDATE users SET created_at = now() - interval '30 minutes' WHERE username = $1",
            &[&user],
        )
        .unwrap();
    assert_eq!(
        functions.call("generate-password", json!({"username": user}))["code"],
        "account_exists"
    );
}
