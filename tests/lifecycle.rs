//! The whole account lifecycle through the three binaries on a real
//! PostgreSQL: enrollment, activation, replay, lockout, expiry and renewal,
//! and what concurrency may not break.

use cofrap_tests::*;
use serde_json::{json, Value};

fn account_state(functions: &Functions, username: &str) -> postgres::Row {
    functions
        .db()
        .query_one(
            "SELECT activated_at IS NOT NULL AS active, expired, failed_attempts,
                    locked_until > now() AS locked, mfa_secret, last_totp_step, password_hash
               FROM users WHERE username = $1",
            &[&username],
        )
        .unwrap()
}

#[test]
fn enrollment_gives_a_scannable_uri_whose_secret_is_the_manual_key() {
    let functions = Functions::new();
    let user = unique("Enroll Me ");
    let user = user.trim();
    let password = functions.create_account(user);
    let response = functions.call(
        "generate-2fa",
        json!({"username": user, "password": password}),
    );

    assert_eq!(response["username"], user);
    assert_eq!(response["next"], "authenticate");
    let key = response["manual_entry_key"].as_str().unwrap();
    assert_eq!(key.len(), 32, "160 bits in base32");
    assert!(key
        .chars()
        .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));

    let uri = decode_qr(response["qr_code_2fa_base64"].as_str().unwrap());
    let (label, query) = uri
        .strip_prefix("otpauth://totp/")
        .and_then(|rest| rest.split_once('?'))
        .unwrap_or_else(|| panic!("not an otpauth TOTP URI: {uri}"));
    assert_eq!(label, format!("COFRAP:{}", user.replace(' ', "%20")));
    let params: Vec<(&str, &str)> = query
        .split('&')
        .map(|p| p.split_once('=').unwrap())
        .collect();
    assert_eq!(params, vec![("secret", key), ("issuer", "COFRAP")]);

    // The stored secret is encrypted, not the key itself.
    let row = account_state(&functions, user);
    let stored: String = row.get("mfa_secret");
    assert!(!stored.contains(key));
    assert!(
        !row.get::<_, bool>("active"),
        "still pending until the first code"
    );
}

#[test]
fn the_first_good_code_activates_and_later_ones_just_succeed() {
    let functions = Functions::new();
    let user = unique("activate");
    let (password, secret) = functions.enrolled_account(&user);
    let step = current_step();

    let response = functions.authenticate(&user, &password, &secret, step);
    assert_eq!(
        without_session(&response),
        json!({"authenticated": true, "username": user})
    );
    assert!(account_state(&functions, &user).get::<_, bool>("active"));

    let response = functions.authenticate(&user, &password, &secret, step + 1);
    assert_eq!(
        without_session(&response),
        json!({"authenticated": true, "username": user})
    );

    // Case does not matter when signing in.
    let response = functions.authenticate(&user.to_uppercase(), &password, &secret, step - 1);
    assert_eq!(
        response["code"], "invalid_credentials",
        "step - 1 is older than step + 1"
    );
}

#[test]
fn a_code_is_accepted_once_and_older_steps_never_again() {
    let functions = Functions::new();
    let user = unique("replay");
    let (password, secret) = functions.enrolled_account(&user);
    let step = current_step();

    assert_eq!(
        functions.authenticate(&user, &password, &secret, step)["authenticated"],
        true
    );
    let replay = functions.authenticate(&user, &password, &secret, step);
    assert_eq!(replay["code"], "invalid_credentials");
    let older = functions.authenticate(&user, &password, &secret, step - 1);
    assert_eq!(older["code"], "invalid_credentials");
    assert_eq!(
        account_state(&functions, &user).get::<_, Option<i64>>("last_totp_step"),
        Some(step as i64)
    );

    // Steps further than one from now are refused too.
    let far = functions.authenticate(&user, &password, &secret, step + 3);
    assert_eq!(far["code"], "invalid_credentials");
    assert_eq!(
        functions.authenticate(&user, &password, &secret, step + 1)["authenticated"],
        true
    );
}

#[test]
fn unknown_user_wrong_password_wrong_code_and_lock_look_the_same() {
    let functions = Functions::new();
    let user = unique("same");
    let (password, secret) = functions.enrolled_account(&user);
    let code = code_at(&secret, current_step() * 30);

    let unknown = sign_in(&functions, &unique("nobody"), &password, &code);
    let wrong_password = sign_in(&functions, &user, "not-the-password", &code);
    let wrong_code = sign_in(&functions, &user, &password, &wrong_code(&secret));
    sql(
        &functions,
        "UPDATE users SET locked_until = now() + interval '5 minutes' WHERE username = $1",
        &user,
    );
    let locked = sign_in(&functions, &user, &password, &code);

    for output in [&unknown, &wrong_password, &wrong_code, &locked] {
        assert_eq!(output.status, 0);
        assert_eq!(output.stdout, unknown.stdout, "byte for byte");
    }
    assert_eq!(unknown.json()["code"], "invalid_credentials");
    assert_eq!(unknown.json()["authenticated"], false);

    // generate-2fa: an unknown user and a wrong password look the same too.
    let unknown = functions.run(
        "generate-2fa",
        json!({"username": unique("nobody"), "password": "x"})
            .to_string()
            .as_bytes(),
    );
    let wrong = functions.run(
        "generate-2fa",
        json!({"username": user, "password": "x"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(unknown.stdout, wrong.stdout);
    assert_eq!(unknown.json()["code"], "invalid_credentials");
}

#[test]
fn five_wrong_codes_lock_the_account_until_the_lock_elapses() {
    let functions = Functions::new();
    let user = unique("lock");
    let (password, secret) = functions.enrolled_account(&user);
    let bad = wrong_code(&secret);

    for attempt in 1..=5 {
        // Wrong passwords in between count for nothing.
        let stranger = sign_in(&functions, &user, "wrong", &bad);
        assert_eq!(stranger.json()["code"], "invalid_credentials");
        let failure = sign_in(&functions, &user, &password, &bad);
        assert_eq!(failure.stdout, stranger.stdout, "byte for byte");
        let row = account_state(&functions, &user);
        assert_eq!(row.get::<_, i32>("failed_attempts"), attempt);
        assert_eq!(
            row.get::<_, Option<bool>>("locked").unwrap_or(false),
            attempt == 5
        );
    }

    // Locked: even the right password and code are refused, without counting.
    let step = current_step();
    assert_eq!(
        functions.authenticate(&user, &password, &secret, step)["code"],
        "invalid_credentials"
    );
    assert_eq!(
        account_state(&functions, &user).get::<_, i32>("failed_attempts"),
        5
    );

    // Once the lock has elapsed, the right credentials work and reset the count.
    sql(
        &functions,
        "UPDATE users SET locked_until = now() - interval '1 second' WHERE username = $1",
        &user,
    );
    assert_eq!(
        functions.authenticate(&user, &password, &secret, step)["authenticated"],
        true
    );
    let row = account_state(&functions, &user);
    assert_eq!(row.get::<_, i32>("failed_attempts"), 0);
    assert_eq!(row.get::<_, Option<bool>>("locked"), None);
}

#[test]
fn a_failure_after_an_elapsed_lock_keeps_counting() {
    let functions = Functions::new();
    let user = unique("relock");
    let (password, secret) = functions.enrolled_account(&user);
    sql(&functions, "UPDATE users SET failed_attempts = 5, locked_until = now() - interval '1 second' WHERE username = $1", &user);
    sign_in(&functions, &user, &password, &wrong_code(&secret));
    let row = account_state(&functions, &user);
    assert_eq!(row.get::<_, i32>("failed_attempts"), 6);
    assert_eq!(row.get::<_, Option<bool>>("locked"), Some(false));
}

#[test]
fn a_success_resets_the_count_of_consecutive_failures() {
    let functions = Functions::new();
    let user = unique("reset");
    let (password, secret) = functions.enrolled_account(&user);
    let bad = wrong_code(&secret);
    for _ in 0..4 {
        sign_in(&functions, &user, &password, &bad);
    }
    assert_eq!(
        functions.authenticate(&user, &password, &secret, current_step())["authenticated"],
        true
    );
    for _ in 0..4 {
        sign_in(&functions, &user, &password, &bad);
    }
    let row = account_state(&functions, &user);
    assert_eq!(row.get::<_, i32>("failed_attempts"), 4);
    assert_eq!(row.get::<_, Option<bool>>("locked"), None);
}

#[test]
fn lockout_numbers_are_configurable() {
    let mut functions = Functions::new();
    functions.set("MAX_FAILED_ATTEMPTS", "2");
    functions.set("LOCKOUT_SECONDS", "3600");
    let user = unique("config-lock");
    let (password, secret) = functions.enrolled_account(&user);
    sign_in(&functions, &user, &password, &wrong_code(&secret));
    sign_in(&functions, &user, &password, &wrong_code(&secret));
    let locked_for: f64 = functions
        .db()
        .query_one("SELECT extract(epoch FROM locked_until - now())::float8 FROM users WHERE username = $1", &[&user])
        .unwrap()
        .get(0);
    assert!((3500.0..=3600.0).contains(&locked_for), "{locked_for}");
}

#[test]
fn generate_2fa_replaces_a_pending_secret_and_refuses_an_active_account_like_a_wrong_password() {
    let functions = Functions::new();
    let user = unique("reenroll");
    let (password, first) = functions.enrolled_account(&user);
    let again = functions.call(
        "generate-2fa",
        json!({"username": user, "password": password}),
    );
    let second = again["manual_entry_key"].as_str().unwrap().to_owned();
    assert_ne!(first, second);

    let step = current_step();
    assert_eq!(
        functions.authenticate(&user, &password, &first, step)["code"],
        "invalid_credentials"
    );
    assert_eq!(
        functions.authenticate(&user, &password, &second, step)["authenticated"],
        true
    );

    // The right password and a wrong one get one answer, byte for byte: no
    // password oracle without a code.
    let refused = functions.run(
        "generate-2fa",
        json!({"username": user, "password": password})
            .to_string()
            .as_bytes(),
    );
    let wrong = functions.run(
        "generate-2fa",
        json!({"username": user, "password": "guess"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(refused.json()["code"], "invalid_credentials");
    assert!(refused.json().get("manual_entry_key").is_none());
    assert_eq!(refused.stdout, wrong.stdout);
    assert_eq!(refused.status, wrong.status);
    // The active 2FA is unchanged.
    assert_eq!(
        functions.authenticate(&user, &password, &second, step + 1)["authenticated"],
        true
    );
}

#[test]
fn signing_in_before_enrolling_says_so_only_to_the_password_holder() {
    let functions = Functions::new();
    let user = unique("noenroll");
    let password = functions.create_account(&user);
    let right = sign_in(&functions, &user, &password, "123456").json();
    assert_eq!(right["code"], "two_factor_not_enrolled");
    let wrong = sign_in(&functions, &user, "guess", "123456").json();
    assert_eq!(wrong["code"], "invalid_credentials");
}

fn expire(functions: &Functions, user: &str) {
    sql(
        functions,
        "UPDATE users SET created_at = now() - interval '6 months 1 day' WHERE username = $1",
        user,
    );
}

/// An active account whose credentials are older than six months; returns
/// its password, secret and the next unused step.
fn expired_account(functions: &Functions, user: &str) -> (String, String, u64) {
    let (password, secret) = functions.enrolled_account(user);
    let step = current_step();
    assert_eq!(
        functions.authenticate(user, &password, &secret, step - 1)["authenticated"],
        true
    );
    expire(functions, user);
    (password, secret, step)
}

#[test]
fn expiry_is_decided_only_after_valid_credentials() {
    let functions = Functions::new();
    let user = unique("expiry");
    let (password, secret, step) = expired_account(&functions, &user);

    // Wrong credentials learn nothing and change nothing.
    assert_eq!(
        sign_in(&functions, &user, "wrong", &code_at(&secret, step * 30)).json()["code"],
        "invalid_credentials"
    );
    assert_eq!(
        sign_in(&functions, &user, &password, &wrong_code(&secret)).json()["code"],
        "invalid_credentials"
    );
    assert!(!account_state(&functions, &user).get::<_, bool>("expired"));

    let output = sign_in(&functions, &user, &password, &code_at(&secret, step * 30));
    let response = output.json();
    assert_eq!(output.log()["outcome"], "credentials_expired");
    let token = response["renewal_token"].as_str().unwrap();
    assert!(
        !output.stderr.contains(token),
        "the renewal token is never logged"
    );
    assert_eq!(response["authenticated"], false);
    assert_eq!(response["expired"], true);
    assert_eq!(response["code"], "credentials_expired");
    assert_eq!(response["next"], "generate-password");
    assert!(response["error"].as_str().is_some());
    assert!(response["renewal_token"]
        .as_str()
        .is_some_and(|t| t.len() > 50));
    assert!(account_state(&functions, &user).get::<_, bool>("expired"));

    // Five months and 29 days is not expired.
    let fresh_user = unique("not-expired");
    let (password, secret) = functions.enrolled_account(&fresh_user);
    sql(&functions, "UPDATE users SET created_at = now() - interval '6 months' + interval '1 day' WHERE username = $1", &fresh_user);
    assert_eq!(
        functions.authenticate(&fresh_user, &password, &secret, current_step())["authenticated"],
        true
    );
}

#[test]
fn an_expired_flag_set_elsewhere_counts_the_same() {
    let functions = Functions::new();
    let user = unique("flag");
    let (password, secret) = functions.enrolled_account(&user);
    sql(
        &functions,
        "UPDATE users SET expired = true WHERE username = $1",
        &user,
    );
    let response = functions.authenticate(&user, &password, &secret, current_step());
    assert_eq!(response["code"], "credentials_expired");
    // generate-2fa refuses it like a wrong password (sign in first).
    let refused = functions.call(
        "generate-2fa",
        json!({"username": user, "password": password}),
    );
    assert_eq!(refused["code"], "invalid_credentials");
}

#[test]
fn renewal_needs_this_accounts_fresh_unused_token() {
    let functions = Functions::new();
    let user = unique("renew");
    let (old_password, user_secret, step) = expired_account(&functions, &user);
    let other = unique("other");
    let (other_password, other_secret, other_step) = expired_account(&functions, &other);
    let refused = functions.call(
        "generate-2fa",
        json!({"username": user, "password": old_password}),
    );
    assert_eq!(
        refused["code"], "invalid_credentials",
        "generate-2fa waits for the renewal, and says nothing of the password"
    );

    let token = functions.authenticate(&user, &old_password, &user_secret, step)["renewal_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_token = functions.authenticate(&other, &other_password, &other_secret, other_step)
        ["renewal_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let renew = |token: &str| {
        functions.call(
            "generate-password",
            json!({"username": user, "renewal_token": token}),
        )
    };
    // Without a token the account is simply taken.
    assert_eq!(
        functions.call("generate-password", json!({"username": user}))["code"],
        "account_exists"
    );
    // A forged token, a tampered one, another account's.
    assert_eq!(renew("gAAAAABforged")["code"], "invalid_renewal_token");
    let mut tampered = token.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        renew(std::str::from_utf8(&tampered).unwrap())["code"],
        "invalid_renewal_token"
    );
    assert_eq!(renew(&other_token)["code"], "invalid_renewal_token");
    // A token for an unknown username.
    let unknown = functions.call(
        "generate-password",
        json!({"username": unique("ghost"), "renewal_token": token}),
    );
    assert_eq!(unknown["code"], "invalid_renewal_token");
    assert!(
        account_state(&functions, &user).get::<_, bool>("expired"),
        "nothing changed"
    );

    // The right token renews: a new password, staged beside the old
    // credentials, which stay in force (and expired) until it is confirmed.
    let before = account_state(&functions, &user);
    let response = renew(&token);
    assert_eq!(response["username"], user.as_str());
    let new_password = decode_qr(response["qr_code_base64"].as_str().unwrap());
    assert_ne!(new_password, old_password);
    let row = account_state(&functions, &user);
    assert!(row.get::<_, bool>("expired"));
    assert!(row.get::<_, bool>("active"), "never pending again");
    assert_eq!(
        row.get::<_, Option<String>>("mfa_secret"),
        before.get::<_, Option<String>>("mfa_secret")
    );
    assert!(common::password::verify(
        &old_password,
        &row.get::<_, String>("password_hash")
    ));

    // Once only.
    assert_eq!(renew(&token)["code"], "invalid_renewal_token");

    // Then as at creation: 2FA, first code, active.
    let enrollment = functions.call(
        "generate-2fa",
        json!({"username": user, "password": new_password}),
    );
    let new_secret = enrollment["manual_entry_key"].as_str().unwrap();
    assert_ne!(new_secret, user_secret);
    let response = functions.authenticate(&user, &new_password, new_secret, current_step());
    assert_eq!(
        without_session(&response),
        json!({"authenticated": true, "username": user})
    );
    assert_eq!(
        sign_in(&functions, &user, &old_password, "123456").json()["code"],
        "invalid_credentials"
    );
}

#[test]
fn a_renewal_token_lives_fifteen_minutes() {
    let functions = Functions::new();
    let user = unique("ttl");
    let (password, secret, step) = expired_account(&functions, &user);
    assert_eq!(
        functions.authenticate(&user, &password, &secret, step)["code"],
        "credentials_expired"
    );
    let hash: String = account_state(&functions, &user).get("password_hash");
    let now = common::totp::unix_now();
    // Tokens made by the Python peer with the same key and format, dated in the past.
    let token_at = |at: u64| {
        python(
            "renewal_token",
            json!({"key": functions.key, "username": user, "password_hash": hash, "at": at}),
        )["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let stale = token_at(now - 16 * 60);
    let response = functions.call(
        "generate-password",
        json!({"username": user, "renewal_token": stale}),
    );
    assert_eq!(response["code"], "invalid_renewal_token");
    let recent = token_at(now - 10 * 60);
    let response = functions.call(
        "generate-password",
        json!({"username": user, "renewal_token": recent}),
    );
    assert!(response["qr_code_base64"].is_string(), "{response}");
}

/// Runs `count` copies of one request at once.
fn concurrently(functions: &Functions, function: &str, body: &Value, count: usize) -> Vec<Value> {
    let body = body.to_string();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|_| scope.spawn(|| functions.run(function, body.as_bytes())))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let output = h.join().unwrap();
                assert_eq!(output.status, 0, "{output:?}");
                output.json()
            })
            .collect()
    })
}

#[test]
fn one_code_sent_concurrently_succeeds_once() {
    let functions = Functions::new();
    let user = unique("concurrent-replay");
    let (password, secret) = functions.enrolled_account(&user);
    let request = json!({"username": user, "password": password, "totp_code": code_at(&secret, current_step() * 30)});
    let responses = concurrently(&functions, "authenticate", &request, 6);
    let successes = responses
        .iter()
        .filter(|r| r["authenticated"] == true)
        .count();
    assert_eq!(successes, 1, "{responses:?}");
    assert!(responses
        .iter()
        .filter(|r| r["authenticated"] != true)
        .all(|r| r["code"] == "invalid_credentials"));
}

#[test]
fn concurrent_failures_are_counted_exactly_and_lock_at_five() {
    let functions = Functions::new();
    let user = unique("concurrent-lock");
    let (password, secret) = functions.enrolled_account(&user);
    let request = json!({"username": user, "password": password, "totp_code": wrong_code(&secret)});
    let responses = concurrently(&functions, "authenticate", &request, 12);
    assert!(responses.iter().all(|r| r["code"] == "invalid_credentials"));
    let row = account_state(&functions, &user);
    assert_eq!(
        row.get::<_, i32>("failed_attempts"),
        5,
        "attempts after the lock are not checked nor counted"
    );
    assert_eq!(row.get::<_, Option<bool>>("locked"), Some(true));
    assert_eq!(
        functions.authenticate(&user, &password, &secret, current_step())["code"],
        "invalid_credentials"
    );
}

#[test]
fn rotated_keys_still_decrypt_secrets_stored_under_the_old_one() {
    let functions = Functions::new();
    let user = unique("rotate");
    let (password, secret) = functions.enrolled_account(&user);
    let new_key = fernet_key();
    functions.write_secret("encryption-key", &format!("{new_key}\n{}\n", functions.key));
    assert_eq!(
        functions.authenticate(&user, &password, &secret, current_step())["authenticated"],
        true
    );

    // New secrets are encrypted with the first key.
    let user = unique("rotate-new");
    let (_, secret) = functions.enrolled_account(&user);
    let stored: String = account_state(&functions, &user).get("mfa_secret");
    let decrypted = python(
        "fernet_decrypt",
        json!({"keys": [new_key], "token": stored}),
    );
    assert_eq!(decrypted["plaintext"], secret.as_str());

    // A key that decrypts nothing is a server fault, not a wrong code.
    functions.write_secret("encryption-key", &fernet_key());
    let output = sign_in(
        &functions,
        &user,
        &functions_password(&functions, &user),
        "123456",
    );
    assert_eq!(output.status, 1);
    assert_eq!(output.json()["code"], "configuration_error");
}

/// Gives the account a known password (written as the Python version would)
/// and returns it.
fn functions_password(functions: &Functions, user: &str) -> String {
    let password = "Known-Password-For-Test-1";
    let hash = common::password::hash(password, 10).unwrap();
    functions
        .db()
        .execute(
            "UPDATE users SET password_hash = $2 WHERE username = $1",
            &[&user, &hash],
        )
        .unwrap();
    password.to_owned()
}
