//! What an attacker tries, through the binaries on a real PostgreSQL:
//! taking an account over through renewal, guessing codes across locks,
//! look-alike usernames, requests made by other web sites; and what the
//! operator sees (the account's id in the log, never a path or a username).

use cofrap_tests::*;
use serde_json::{json, Value};

/// An active account whose credentials are seven months old and whose owner
/// has just signed in: returns the password, the secret, the renewal token
/// and the last step used (the next one is still within the window).
fn renewing_account(functions: &Functions, user: &str) -> (String, String, String, u64) {
    let (password, secret) = functions.enrolled_account(user);
    let step = current_step();
    assert_eq!(
        functions.authenticate(user, &password, &secret, step - 1)["authenticated"],
        true
    );
    sql(
        functions,
        "UPDATE users SET created_at = now() - interval '7 months' WHERE username = $1",
        user,
    );
    let response = functions.authenticate(user, &password, &secret, step);
    assert_eq!(response["code"], "credentials_expired");
    let token = response["renewal_token"].as_str().unwrap().to_owned();
    (password, secret, token, step)
}

fn renew(functions: &Functions, user: &str, token: &str) -> Value {
    functions.call(
        "generate-password",
        json!({"username": user, "renewal_token": token}),
    )
}

#[test]
fn an_interrupted_renewal_cannot_be_taken_over() {
    // The reproduction of the report: ENROLLMENT_WINDOW_SECONDS=60, activate,
    // age by seven months, sign in (token), renew, let the window pass,
    // generate-password without a token.
    let mut functions = Functions::new();
    functions.set("ENROLLMENT_WINDOW_SECONDS", "60");
    let user = unique("takeover");
    let (_, _, token, _) = renewing_account(&functions, &user);
    let new_password = decode_qr(
        renew(&functions, &user, &token)["qr_code_base64"]
            .as_str()
            .unwrap(),
    );
    // The window has passed, as far as the database can tell.
    sql(
        &functions,
        "UPDATE users SET created_at = created_at - interval '1 hour' WHERE username = $1",
        &user,
    );
    let attack = functions.call("generate-password", json!({"username": user}));
    assert_eq!(attack["code"], "account_exists");
    assert!(attack.get("qr_code_base64").is_none());

    // Still not once the new password has been proven and a new 2FA staged.
    functions.call(
        "generate-2fa",
        json!({"username": user, "password": new_password}),
    );
    let attack = functions.call("generate-password", json!({"username": user}));
    assert_eq!(attack["code"], "account_exists");
}

#[test]
fn accounts_the_python_version_enrolled_are_never_abandoned() {
    // A 2FA secret written by the Python version (not by our generate-2fa)
    // makes an account one that is never taken afresh, even if it was never
    // signed in here.
    let mut functions = Functions::new();
    functions.set("ENROLLMENT_WINDOW_SECONDS", "60");
    let user = unique("py-enrolled");
    let password = functions.create_account(&user);
    functions.call(
        "generate-2fa",
        json!({"username": user, "password": password}),
    );
    sql(
        &functions,
        "UPDATE users SET mfa_secret = 'gAAAAA-written-by-python', created_at = now() - interval '1 hour' WHERE username = $1",
        &user,
    );
    assert_eq!(
        functions.call("generate-password", json!({"username": user}))["code"],
        "account_exists"
    );
    // Ours, pending and abandoned, still is (the enrollment window's promise).
    let pending = unique("abandoned");
    let password = functions.create_account(&pending);
    functions.call(
        "generate-2fa",
        json!({"username": pending, "password": password}),
    );
    sql(
        &functions,
        "UPDATE users SET created_at = now() - interval '1 hour' WHERE username = $1",
        &pending,
    );
    let taken = functions.call("generate-password", json!({"username": pending}));
    assert!(taken["qr_code_base64"].is_string(), "{taken}");
}

#[test]
fn the_owner_restarts_an_interrupted_renewal_and_no_one_else_can() {
    let functions = Functions::new();
    let user = unique("restart");
    let (old_password, old_secret, token, step) = renewing_account(&functions, &user);

    // The new password's QR code is lost: the old credentials start again.
    let lost = decode_qr(
        renew(&functions, &user, &token)["qr_code_base64"]
            .as_str()
            .unwrap(),
    );
    let response = functions.authenticate(&user, &old_password, &old_secret, step + 1);
    assert_eq!(response["code"], "credentials_expired");
    let second_token = response["renewal_token"].as_str().unwrap().to_owned();
    // The spent token and another account's stay refused.
    assert_eq!(
        renew(&functions, &user, &token)["code"],
        "invalid_renewal_token"
    );
    let other = unique("restart-other");
    let (_, _, other_token, _) = renewing_account(&functions, &other);
    assert_eq!(
        renew(&functions, &user, &other_token)["code"],
        "invalid_renewal_token"
    );
    let new_password = decode_qr(
        renew(&functions, &user, &second_token)["qr_code_base64"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(
        renew(&functions, &user, &second_token)["code"],
        "invalid_renewal_token",
        "once only"
    );
    // The lost password is worth nothing now.
    assert_eq!(
        functions.call("generate-2fa", json!({"username": user, "password": lost}))["code"],
        "invalid_credentials"
    );

    // The new 2FA QR code is lost too: the new password stages another.
    let first = functions.call(
        "generate-2fa",
        json!({"username": user, "password": new_password}),
    );
    let lost_secret = first["manual_entry_key"].as_str().unwrap().to_owned();
    let again = functions.call(
        "generate-2fa",
        json!({"username": user, "password": new_password}),
    );
    let new_secret = again["manual_entry_key"].as_str().unwrap().to_owned();
    assert_ne!(lost_secret, new_secret);
    // From here the old password is spent, and the old secret's codes count
    // for nothing.
    for (password, secret) in [
        (&old_password, &old_secret),
        (&new_password, &old_secret),
        (&new_password, &lost_secret),
    ] {
        let code = code_at(secret, (step + 1) * 30);
        assert_eq!(
            sign_in(&functions, &user, password, &code).json()["code"],
            "invalid_credentials"
        );
    }
    // The first good code of the new secret confirms the renewal.
    assert_eq!(
        without_session(&functions.authenticate(&user, &new_password, &new_secret, step + 1)),
        json!({"authenticated": true, "username": user})
    );
    let row = functions
        .db()
        .query_one(
            "SELECT expired, created_at > now() - interval '1 minute',
                    renewal_password_hash IS NULL AND renewal_mfa_secret IS NULL
               FROM users WHERE username = $1",
            &[&user],
        )
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    assert!(row.get::<_, bool>(1), "fresh credentials");
    assert!(row.get::<_, bool>(2), "nothing staged any more");
}

fn lock_state(functions: &Functions, user: &str) -> (i32, Option<f64>) {
    let row = functions
        .db()
        .query_one(
            "SELECT failed_attempts,
                    CASE WHEN locked_until = 'infinity' THEN 'infinity'::float8
                         ELSE extract(epoch FROM locked_until - now())::float8 END
               FROM users WHERE username = $1",
            &[&user],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// Lets the current lock elapse, as far as the database can tell.
fn elapse_lock(functions: &Functions, user: &str) {
    sql(
        functions,
        "UPDATE users SET locked_until = now() - interval '1 second' WHERE username = $1",
        user,
    );
}

#[test]
fn wrong_codes_lock_escalate_until_the_hard_limit_and_unlocking_forces_a_renewal() {
    let mut functions = Functions::new();
    functions.set("MAX_FAILED_ATTEMPTS", "2");
    functions.set("LOCKOUT_SECONDS", "100");
    functions.set("LOCKOUT_MAX_SECONDS", "300");
    functions.set("HARD_LOCK_ATTEMPTS", "8");
    let user = unique("escalate");
    let (password, secret) = functions.enrolled_account(&user);
    let bad = wrong_code(&secret);

    let mut lasts = Vec::new();
    for round in 0..3 {
        sign_in(&functions, &user, &password, &bad);
        sign_in(&functions, &user, &password, &bad);
        let (failures, locked_for) = lock_state(&functions, &user);
        assert_eq!(
            failures,
            2 * (round + 1),
            "failures keep counting across locks"
        );
        lasts.push(locked_for.unwrap());
        elapse_lock(&functions, &user);
    }
    // 100 s, doubled, then capped at 300 s.
    for (lasted, expected) in lasts.iter().zip([100.0, 200.0, 300.0]) {
        assert!((expected - 30.0..=expected).contains(lasted), "{lasts:?}");
    }
    // The eighth failure locks for good: even the right credentials are refused.
    sign_in(&functions, &user, &password, &bad);
    sign_in(&functions, &user, &password, &bad);
    assert_eq!(lock_state(&functions, &user), (8, Some(f64::INFINITY)));
    let step = current_step();
    assert_eq!(
        functions.authenticate(&user, &password, &secret, step)["code"],
        "invalid_credentials"
    );

    // The operator unlocks it (docs/OPERATIONS.md: cofrap-admin unlock), naming it as
    // the functions would find it. A hard lock means someone else holds the
    // password: the owner's next sign-in renews the credentials instead of
    // carrying on with them.
    let output = functions.admin(&["unlock", &user.to_uppercase()]);
    assert_eq!(output.status, 0, "{output:?}");
    assert!(output
        .stdout
        .contains(&format!("account {} ", account_id(&functions, &user))));
    assert!(output.stdout.contains("renews"), "{output:?}");
    assert_eq!(lock_state(&functions, &user), (0, None));
    let renewal = functions.authenticate(&user, &password, &secret, step);
    assert_eq!(renewal["code"], "credentials_expired", "{renewal}");
    assert!(renewal["renewal_token"].is_string());
    assert!(renewal.get("access_token").is_none());
}

#[test]
fn a_lock_that_was_not_hard_is_lifted_without_a_renewal() {
    let mut functions = Functions::new();
    functions.set("MAX_FAILED_ATTEMPTS", "2");
    let user = unique("soft-unlock");
    let (password, secret) = functions.enrolled_account(&user);
    for _ in 0..2 {
        sign_in(&functions, &user, &password, &wrong_code(&secret));
    }
    assert!(lock_state(&functions, &user).1.is_some_and(f64::is_finite));
    let output = functions.admin(&["unlock", &user]);
    assert_eq!(output.status, 0, "{output:?}");
    assert_eq!(
        functions.authenticate(&user, &password, &secret, current_step())["authenticated"],
        true
    );
}

/// Opens a session for a new enrolled account: its password, secret and
/// refresh token.
fn signed_in_account(functions: &Functions, user: &str) -> (String, String, String) {
    let (password, secret) = functions.enrolled_account(user);
    let answer = functions.authenticate(user, &password, &secret, current_step() - 1);
    let refresh_token = answer["refresh_token"]
        .as_str()
        .expect("signed in")
        .to_owned();
    (password, secret, refresh_token)
}

/// The owner of an account a stranger has just attacked: nothing was
/// counted, the session opened before is still open, and a sign-in works at
/// once.
fn assert_untouched(functions: &Functions, user: &str, password: &str, secret: &str) {
    assert_eq!(lock_state(functions, user), (0, None), "{user}");
    assert_eq!(
        sessions_of(functions, user),
        [None],
        "{user}: the session goes on"
    );
    let again = functions.authenticate(user, password, secret, current_step());
    assert_eq!(again["authenticated"], true, "{user}: {again}");
}

#[test]
fn wrong_passwords_never_lock_end_sessions_or_count() {
    // A stranger who knows only the username: far more than a lock's worth
    // of requests, past the hard limit too, with codes of every kind.
    let mut functions = Functions::new();
    functions.set("MAX_FAILED_ATTEMPTS", "2");
    functions.set("HARD_LOCK_ATTEMPTS", "4");
    let user = unique("stranger");
    let (password, secret, _) = signed_in_account(&functions, &user);
    for attempt in 0..6 {
        let code = if attempt % 2 == 0 {
            "000000".to_owned()
        } else {
            code_at(&secret, current_step() * 30)
        };
        let refused = sign_in(&functions, &user, "x", &code).json();
        assert_eq!(refused["code"], "invalid_credentials");
    }
    assert_untouched(&functions, &user, &password, &secret);
}

#[test]
fn a_spray_of_one_password_over_many_accounts_locks_none() {
    let mut functions = Functions::new();
    functions.set("MAX_FAILED_ATTEMPTS", "5");
    let victims: Vec<(String, String, String)> = (0..12)
        .map(|_| {
            let user = unique("spray");
            let (password, secret, _) = signed_in_account(&functions, &user);
            (user, password, secret)
        })
        .collect();
    // Five rounds of one wrong password over every account, 60 requests,
    // four at a time.
    let requests: Vec<String> = (0..5)
        .flat_map(|_| victims.iter())
        .map(|(user, _, _)| {
            json!({"username": user, "password": "Spring2026!", "totp_code": "123456"}).to_string()
        })
        .collect();
    std::thread::scope(|scope| {
        for chunk in requests.chunks(requests.len().div_ceil(4)) {
            let functions = &functions;
            scope.spawn(move || {
                for request in chunk {
                    let output = functions.run("authenticate", request.as_bytes());
                    assert_eq!(output.json()["code"], "invalid_credentials");
                }
            });
        }
    });
    for (user, password, secret) in &victims {
        assert_untouched(&functions, user, password, secret);
    }
}

#[test]
fn a_stranger_cannot_keep_the_owner_from_enrolling() {
    // generate-2fa checks no code, so nothing it refuses counts: a stranger
    // hammering a new account's generate-2fa changes nothing for its owner.
    let mut functions = Functions::new();
    functions.set("MAX_FAILED_ATTEMPTS", "2");
    functions.set("HARD_LOCK_ATTEMPTS", "3");
    let user = unique("squat");
    let password = functions.create_account(&user);
    for _ in 0..5 {
        let refused = functions.call("generate-2fa", json!({"username": user, "password": "x"}));
        assert_eq!(refused["code"], "invalid_credentials");
    }
    assert_eq!(lock_state(&functions, &user), (0, None));
    let enrolled = functions.call(
        "generate-2fa",
        json!({"username": user, "password": password}),
    );
    let secret = enrolled["manual_entry_key"]
        .as_str()
        .expect("enrolled at once");
    // Nor afterwards, on the pending account with its secret.
    for _ in 0..5 {
        functions.call("generate-2fa", json!({"username": user, "password": "x"}));
    }
    assert_eq!(
        functions.authenticate(&user, &password, secret, current_step())["authenticated"],
        true
    );
}

#[test]
fn every_refusal_does_the_bcrypt_work_of_one_check_at_bcrypt_cost() {
    // The work is counted by the functions' profile (COFRAP_PROFILE=1), in
    // units of a check at cost 0: 2^BCRYPT_COST for each refusal, whatever
    // it refuses, hashes made at a lower cost included.
    let mut functions = Functions::new();
    functions.set("COFRAP_PROFILE", "1");
    // Active accounts, so that generate-2fa refuses even the right password.
    let active = |functions: &Functions, user: &str| {
        let (password, secret) = functions.enrolled_account(user);
        let answer = functions.authenticate(user, &password, &secret, current_step() - 1);
        assert_eq!(answer["authenticated"], true);
        (password, secret)
    };
    let low = unique("low-cost");
    let (low_password, low_secret) = active(&functions, &low); // BCRYPT_COST 10
    let user = unique("work");
    let locked = unique("work-locked");
    let hard = unique("work-hard");
    functions.set("BCRYPT_COST", "11");
    let (password, secret) = active(&functions, &user);
    let (locked_password, _) = functions.enrolled_account(&locked);
    let (hard_password, _) = functions.enrolled_account(&hard);
    sql(
        &functions,
        "UPDATE users SET locked_until = now() + interval '5 minutes' WHERE username = $1",
        &locked,
    );
    sql(
        &functions,
        "UPDATE users SET locked_until = 'infinity' WHERE username = $1",
        &hard,
    );
    let code = code_at(&secret, current_step() * 30);
    let refusals = [
        (
            "unknown user",
            unique("nobody"),
            "x".to_owned(),
            code.clone(),
        ),
        ("wrong password", user.clone(), "x".to_owned(), code.clone()),
        (
            "wrong code",
            user.clone(),
            password.clone(),
            wrong_code(&secret),
        ),
        ("locked", locked.clone(), locked_password, code.clone()),
        ("hard-locked", hard.clone(), hard_password, code.clone()),
        (
            "lower cost, wrong password",
            low.clone(),
            "x".to_owned(),
            code.clone(),
        ),
        (
            "lower cost, wrong code",
            low.clone(),
            low_password.clone(),
            wrong_code(&low_secret),
        ),
    ];
    let mut answers = Vec::new();
    for (what, username, password, totp_code) in &refusals {
        let output = sign_in(&functions, username, password, totp_code);
        assert_eq!(
            output.log()["profile"]["bcrypt_work"],
            1 << 11,
            "authenticate, {what}: {}",
            output.stderr
        );
        answers.push(output.stdout);
        let output = functions.run(
            "generate-2fa",
            json!({"username": username, "password": password})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(output.json()["code"], "invalid_credentials", "{what}");
        assert_eq!(
            output.log()["profile"]["bcrypt_work"],
            1 << 11,
            "generate-2fa, {what}: {}",
            output.stderr
        );
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "byte for byte");
}

#[test]
fn a_success_ends_the_escalation() {
    let mut functions = Functions::new();
    functions.set("MAX_FAILED_ATTEMPTS", "2");
    let user = unique("escalate-reset");
    let (password, secret) = functions.enrolled_account(&user);
    let bad = wrong_code(&secret);
    for _ in 0..2 {
        sign_in(&functions, &user, &password, &bad);
    }
    elapse_lock(&functions, &user);
    assert_eq!(lock_state(&functions, &user).0, 2);
    assert_eq!(
        functions.authenticate(&user, &password, &secret, current_step())["authenticated"],
        true
    );
    assert_eq!(lock_state(&functions, &user), (0, None));
    // The next lock is a first lock again: LOCKOUT_SECONDS (300).
    for _ in 0..2 {
        sign_in(&functions, &user, &password, &bad);
    }
    let locked_for = lock_state(&functions, &user).1.unwrap();
    assert!((270.0..=300.0).contains(&locked_for), "{locked_for}");
}

fn stored_cost(functions: &Functions, user: &str) -> String {
    let hash: String = functions
        .db()
        .query_one(
            "SELECT password_hash FROM users WHERE username = $1",
            &[&user],
        )
        .unwrap()
        .get(0);
    hash[..7].to_owned()
}

#[test]
fn a_hash_of_another_cost_is_redone_at_sign_in_and_only_then() {
    let mut functions = Functions::new();
    let user = unique("rehash");
    let (password, secret) = functions.enrolled_account(&user);
    assert_eq!(stored_cost(&functions, &user), "$2b$10$");
    functions.set("BCRYPT_COST", "11");
    // Refusals change nothing.
    sign_in(&functions, &user, &password, &wrong_code(&secret));
    assert_eq!(stored_cost(&functions, &user), "$2b$10$");
    let step = current_step();
    assert_eq!(
        functions.authenticate(&user, &password, &secret, step)["authenticated"],
        true
    );
    assert_eq!(stored_cost(&functions, &user), "$2b$11$");
    // The new hash is the same password, and Python's bcrypt agrees.
    let hash: String = functions
        .db()
        .query_one(
            "SELECT password_hash FROM users WHERE username = $1",
            &[&user],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        python("bcrypt_check", json!({"password": password, "hash": hash}))["ok"],
        true
    );
    assert_eq!(
        functions.authenticate(&user, &password, &secret, step + 1)["authenticated"],
        true
    );
}

#[test]
fn look_alike_usernames_are_one_account_or_refused() {
    let functions = Functions::new();
    let base = unique("look");
    let password = functions.create_account(&base);
    let fullwidth: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                char::from_u32(c as u32 - 0x21 + 0xff01).unwrap()
            } else {
                c
            }
        })
        .collect();
    for same in [base.to_uppercase(), fullwidth.clone()] {
        assert_eq!(
            functions.call("generate-password", json!({"username": same}))["code"],
            "account_exists",
            "{same}"
        );
    }
    // The one account answers to its look-alike spellings, shown as written first.
    let enrolled = functions.call(
        "generate-2fa",
        json!({"username": fullwidth, "password": password}),
    );
    assert_eq!(enrolled["username"], base.as_str());
    for refused in [
        format!("{base}\u{200b}"),
        format!("\u{430}{}", &base[1..]),
        format!("{}\u{200d}{}", &base[..2], &base[2..]),
    ] {
        let output = functions.run(
            "generate-password",
            json!({"username": refused}).to_string().as_bytes(),
        );
        assert_eq!(output.status, 0);
        assert_eq!(output.json()["code"], "invalid_username", "{refused:?}");
    }
    // The database holds the compared form, under a unique index.
    let key: String = functions
        .db()
        .query_one(
            "SELECT username_key FROM users WHERE username = $1",
            &[&base],
        )
        .unwrap()
        .get(0);
    assert_eq!(key, base.to_lowercase());
    let duplicate = functions.db().execute(
        "INSERT INTO users (username, username_key, password_hash) VALUES ($1, $2, 'x')",
        &[&format!("{base}-other"), &key],
    );
    assert!(
        duplicate.is_err(),
        "the database refuses a second account with one key"
    );
}

#[test]
fn requests_other_web_sites_make_browsers_send_are_refused() {
    let user = unique("csrf");
    for (headers, refused) in [
        (vec![("Http_Sec_Fetch_Site", "cross-site")], true),
        (vec![("Http_Sec_Fetch_Site", "same-site")], true),
        (
            vec![
                ("Http_Origin", "https://evil.example"),
                ("Http_Host", "gw.example"),
            ],
            true,
        ),
        (
            vec![("Http_Origin", "null"), ("Http_Host", "gw.example")],
            true,
        ),
        (vec![("Http_Sec_Fetch_Site", "same-origin")], false),
        (
            vec![
                ("Http_Origin", "https://gw.example"),
                ("Http_Host", "gw.example"),
            ],
            false,
        ),
        (vec![], false),
    ] {
        let mut functions = Functions::new();
        for (name, value) in &headers {
            functions.set(name, value);
        }
        for (function, body) in [
            ("generate-password", json!({"username": user})),
            ("generate-2fa", json!({"username": user, "password": "x"})),
            (
                "authenticate",
                json!({"username": user, "password": "x", "totp_code": "123456"}),
            ),
        ] {
            let output = functions.run(function, body.to_string().as_bytes());
            assert_eq!(output.status, 0, "{output:?}");
            let code = output.json()["code"].clone();
            assert_eq!(
                code == "cross_site_request",
                refused,
                "{function} with {headers:?}: {code}"
            );
            if function == "authenticate" {
                assert_eq!(output.json()["authenticated"], false);
            }
        }
        if refused {
            let rows: i64 = functions
                .db()
                .query_one("SELECT count(*) FROM users WHERE username = $1", &[&user])
                .unwrap()
                .get(0);
            assert_eq!(rows, 0, "nothing was created");
        }
    }
}

#[test]
fn every_authenticate_answer_but_success_says_authenticated_false() {
    let functions = Functions::new();
    let user = unique("authfalse");
    let password = functions.create_account(&user);
    for body in [
        b"".to_vec(),
        b"not json".to_vec(),
        json!({"username": user}).to_string().into_bytes(),
        json!({"username": "a", "password": "x", "totp_code": "123456"})
            .to_string()
            .into_bytes(),
        json!({"username": user, "password": password, "totp_code": "123456"})
            .to_string()
            .into_bytes(),
        json!({"username": user, "password": "wrong", "totp_code": "123456"})
            .to_string()
            .into_bytes(),
    ] {
        let body = functions.run("authenticate", &body).json();
        assert_eq!(body["authenticated"], false, "{body}");
        assert!(body["code"].is_string(), "{body}");
    }
    // Server faults too.
    let mut broken = Functions::new();
    broken.unset("POSTGRES_HOST");
    let output = broken.run(
        "authenticate",
        json!({"username": user, "password": "x", "totp_code": "123456"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(output.status, 1);
    assert_eq!(output.json()["authenticated"], false);
}

#[test]
fn outcomes_are_logged_with_the_account_id_never_the_username() {
    let functions = Functions::new();
    let user = unique("logged");
    let (password, secret) = functions.enrolled_account(&user);
    let id = account_id(&functions, &user);
    let step = current_step();
    let outputs = [
        sign_in(&functions, &user, "wrong", "123456"),
        sign_in(&functions, &user, &password, &wrong_code(&secret)),
        sign_in(&functions, &user, &password, &code_at(&secret, step * 30)),
        functions.run(
            "generate-2fa",
            json!({"username": user, "password": password})
                .to_string()
                .as_bytes(),
        ),
        functions.run(
            "generate-password",
            json!({"username": user}).to_string().as_bytes(),
        ),
    ];
    for output in &outputs {
        assert_eq!(output.log()["account_id"], id, "{output:?}");
        assert!(!output.stderr.contains(&user));
    }
    let unknown = sign_in(&functions, &unique("nobody"), "x", "123456");
    assert!(unknown.log().get("account_id").is_none());
}

#[test]
fn configuration_errors_name_the_secret_but_never_its_path() {
    let functions = Functions::new();
    functions.remove_secret("encryption-key");
    let output = functions.run(
        "generate-password",
        json!({"username": unique("path")}).to_string().as_bytes(),
    );
    assert_eq!(output.status, 1);
    let body = output.json();
    assert_eq!(body["code"], "configuration_error");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("encryption-key"), "{message}");
    assert!(!message.contains('/'), "{message}");
    let dir = functions.secrets_dir().display().to_string();
    assert!(!output.stdout.contains(&dir));
    assert!(
        output.log()["detail"].as_str().unwrap().contains(&dir),
        "the path is for the operator: {output:?}"
    );
}

#[test]
fn what_the_client_sends_for_its_events_is_stored_as_sent_never_run() {
    // An event's user agent (and every text) travels as an escaped literal
    // in the commit's own message: quotes, backslashes, a statement, a
    // dollar quote and text in other scripts are stored as they came.
    let mut functions = Functions::new();
    let user = unique("hostile");
    functions.enrolled_account(&user);
    let agents = [
        "x'); DELETE FROM users; --",
        "back\\slash \\' and E'\\\\x41'",
        "$$; DROP TABLE users; $$ $tag$ quoted $tag$",
        "Mozilla/5.0 (Версия; 日本語) \u{1F600}",
    ];
    for agent in agents {
        functions.set("Http_User_Agent", agent);
        let refused = sign_in(&functions, &user, "not-the-password", "123456").json();
        assert_eq!(refused["code"], "invalid_credentials");
    }
    let stored: Vec<String> = functions
        .db()
        .query(
            "SELECT e.user_agent FROM account_events e JOIN users u ON u.id = e.account_id
              WHERE u.username = $1 AND e.kind = 'refused' ORDER BY e.id",
            &[&user],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(stored, agents);
    let accounts: i64 = functions
        .db()
        .query_one("SELECT count(*) FROM users WHERE username = $1", &[&user])
        .unwrap()
        .get(0);
    assert_eq!(accounts, 1);
}
