//! Sessions through the binaries on a real PostgreSQL: the access token
//! verified by an independent implementation (Python's PyJWT with
//! cryptography) against the jwks function's output, refresh rotation, reuse
//! detection, sign-out, the absolute lifetime, and every way an account's
//! change (renewal, expiry, lock — ours or the Python version's) ends its
//! sessions.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cofrap_tests::*;
use serde_json::{json, Value};
use std::process::Command;

/// An active account, signed in once: its name, password, secret, and the
/// sign-in's answer.
fn signed_in(functions: &Functions) -> (String, String, String, Value) {
    let user = unique("session");
    let (password, secret) = functions.enrolled_account(&user);
    let answer = functions.authenticate(&user, &password, &secret, current_step());
    assert_eq!(answer["authenticated"], true, "{answer}");
    (user, password, secret, answer)
}

fn token(answer: &Value, name: &str) -> String {
    answer[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {answer}"))
        .to_owned()
}

fn refresh(functions: &Functions, refresh_token: &str) -> Output {
    functions.run(
        "refresh",
        json!({ "refresh_token": refresh_token })
            .to_string()
            .as_bytes(),
    )
}

fn jwks(functions: &Functions) -> Value {
    functions.call("jwks", json!({}))
}

/// PyJWT's verdict on an access token, as an application with the default
/// issuer and audience would reach it.
fn verify(functions: &Functions, access_token: &str, audience: &str) -> Value {
    python(
        "jwt_verify",
        json!({
            "token": access_token,
            "jwks": jwks(functions),
            "audience": audience,
            "issuer": "cofrap",
        }),
    )
}

const REFUSAL: &str = "{\"error\":\"The session has ended or the refresh token is not valid. Sign in again.\",\"code\":\"invalid_refresh_token\",\"field\":\"refresh_token\"}\n";

fn assert_refused(output: &Output) {
    assert_eq!(output.status, 0, "{output:?}");
    assert_eq!(output.stdout, REFUSAL);
}

#[test]
fn sign_in_gives_an_access_token_that_pyjwt_verifies_against_the_jwks() {
    let functions = Functions::new();
    let (user, _, _, answer) = signed_in(&functions);

    // The answer: OAuth 2.0 style fields beside the sign-in's own.
    let keys: Vec<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "authenticated",
            "username",
            "access_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "refresh_expires_in"
        ]
    );
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 600);
    let session_left = answer["refresh_expires_in"].as_i64().unwrap();
    assert!((43_190..=43_200).contains(&session_left), "{answer}");

    let access = token(&answer, "access_token");
    let verdict = verify(&functions, &access, "cofrap");
    assert_eq!(verdict["ok"], true, "{verdict}");
    let claims = &verdict["claims"];
    assert_eq!(claims["sub"], account_id(&functions, &user).to_string());
    assert_eq!(claims["preferred_username"], user);
    assert_eq!(claims["iss"], "cofrap");
    assert_eq!(claims["aud"], "cofrap");
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert!(claims["jti"].as_str().unwrap().len() >= 22);

    // The header names the signing key by its thumbprint, published by jwks.
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(access.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], jwks(&functions)["keys"][0]["kid"]);

    // Only the refresh token's SHA-256 is stored; nothing secret is logged.
    let refresh_token = token(&answer, "refresh_token");
    let stored: i64 = functions
        .db()
        .query_one(
            "SELECT count(*) FROM refresh_tokens WHERE token_hash = sha256($1::text::bytea)",
            &[&refresh_token],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
    let output = refresh(&functions, &refresh_token);
    assert!(!output.stderr.contains(&refresh_token));
    assert!(!output
        .stderr
        .contains(&token(&output.json(), "access_token")));
}

#[test]
fn pyjwt_refuses_expired_wrong_audience_forged_and_tampered_tokens() {
    let functions = Functions::new();
    let (_, _, _, answer) = signed_in(&functions);
    let access = token(&answer, "access_token");
    let error = |verdict: Value| {
        assert_eq!(verdict["ok"], false, "{verdict}");
        verdict["error"].as_str().unwrap().to_owned()
    };

    assert_eq!(
        error(verify(&functions, &access, "another-app")),
        "InvalidAudienceError"
    );

    // Signed by a key that is not published, under our key's name.
    let claims = verify(&functions, &access, "cofrap")["claims"].clone();
    let kid = jwks(&functions)["keys"][0]["kid"].clone();
    let forged = python(
        "jwt_sign_with_new_key",
        json!({"claims": claims, "kid": kid}),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        error(verify(&functions, &forged, "cofrap")),
        "InvalidSignatureError"
    );

    // Another subject in the claims, the signature kept.
    let parts: Vec<&str> = access.split('.').collect();
    let mut tampered_claims = claims.clone();
    tampered_claims["sub"] = json!("1");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(tampered_claims.to_string()),
        parts[2]
    );
    assert_eq!(
        error(verify(&functions, &tampered, "cofrap")),
        "InvalidSignatureError"
    );
    // "alg": "none" with no signature.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string()),
        parts[1]
    );
    assert!(!error(verify(&functions, &unsigned, "cofrap")).is_empty());
}

#[test]
fn an_access_token_expires_on_its_own() {
    let mut functions = Functions::new();
    functions.set("ACCESS_TOKEN_SECONDS", "1");
    let (_, _, _, answer) = signed_in(&functions);
    assert_eq!(answer["expires_in"], 1);
    // The only sleep of the suite: a real token running out for real.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(
        verify(&functions, &token(&answer, "access_token"), "cofrap")["error"],
        "ExpiredSignatureError"
    );
}

#[test]
fn issuer_and_audience_are_settings() {
    let mut functions = Functions::new();
    functions.set("TOKEN_AUDIENCE", "payroll");
    let (_, _, _, answer) = signed_in(&functions);
    let access = token(&answer, "access_token");
    assert_eq!(verify(&functions, &access, "payroll")["ok"], true);
    assert_eq!(
        verify(&functions, &access, "cofrap")["error"],
        "InvalidAudienceError"
    );
    functions.set("TOKEN_ISSUER", "https://sso.cofrap.example");
    let (_, _, _, answer) = signed_in(&functions);
    let access = token(&answer, "access_token");
    assert_eq!(
        verify(&functions, &access, "payroll")["error"],
        "InvalidIssuerError"
    );
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(access.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], "https://sso.cofrap.example");
}

#[test]
fn refresh_rotates_and_a_reused_token_ends_the_whole_family() {
    let functions = Functions::new();
    let (user, _, _, answer) = signed_in(&functions);
    let first = token(&answer, "refresh_token");

    let output = refresh(&functions, &first);
    let rotated = output.json();
    assert_eq!(
        rotated
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        [
            "username",
            "access_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "refresh_expires_in"
        ]
    );
    assert_eq!(rotated["username"], user);
    let second = token(&rotated, "refresh_token");
    assert_ne!(second, first);
    let verdict = verify(&functions, &token(&rotated, "access_token"), "cofrap");
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(
        verdict["claims"]["sub"],
        account_id(&functions, &user).to_string()
    );
    assert!(rotated["refresh_expires_in"].as_i64().unwrap() <= 43_200);

    // Each refresh is logged with the account's id, never the token.
    let id = account_id(&functions, &user);
    assert_eq!(output.log()["account_id"], id);
    assert!(!output.stderr.contains(&first) && !output.stderr.contains(&second));

    // The first token again: someone else holds a copy. The family ends, the
    // legitimate holder's newer token with it; the log names the account.
    let replayed = refresh(&functions, &first);
    assert_refused(&replayed);
    assert_eq!(replayed.log()["account_id"], id);
    assert_refused(&refresh(&functions, &second));
    assert_eq!(sessions_of(&functions, &user), [Some("reused".to_owned())]);
}

#[test]
fn one_refresh_token_sent_twice_at_once_is_exchanged_once() {
    let functions = Functions::new();
    let (_, _, _, answer) = signed_in(&functions);
    let first = token(&answer, "refresh_token");
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| refresh(&functions, &first)))
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    let exchanged = outputs
        .iter()
        .filter(|output| output.json()["refresh_token"].is_string())
        .count();
    assert_eq!(exchanged, 1, "{outputs:?}");
    // The second was a reuse: the winner's new token is dead too.
    let winner = outputs
        .iter()
        .find_map(|output| output.json()["refresh_token"].as_str().map(str::to_owned))
        .unwrap();
    assert_refused(&refresh(&functions, &winner));
}

#[test]
fn every_refused_refresh_token_gets_the_same_answer() {
    let functions = Functions::new();
    let (user, _, _, answer) = signed_in(&functions);
    let rotated_away = token(&answer, "refresh_token");
    let current = token(&refresh(&functions, &rotated_away).json(), "refresh_token");

    // Unknown, malformed, empty.
    for bogus in [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "not a token",
        "",
    ] {
        assert_refused(&refresh(&functions, bogus));
    }
    // Past the session's absolute end.
    functions
        .db()
        .execute(
            "UPDATE sessions SET expires_at = now() - interval '1 second'
              WHERE user_id = (SELECT id FROM users WHERE username = $1)",
            &[&user],
        )
        .unwrap();
    assert_refused(&refresh(&functions, &current));
    // Reused (already rotated), in an ended family.
    assert_refused(&refresh(&functions, &rotated_away));
    // Signed out.
    let (_, _, _, other) = signed_in(&functions);
    let other_token = token(&other, "refresh_token");
    functions.call("sign-out", json!({ "refresh_token": other_token }));
    assert_refused(&refresh(&functions, &other_token));
}

#[test]
fn the_session_lifetime_is_absolute_and_access_tokens_never_outlive_it() {
    let mut functions = Functions::new();
    functions.set("SESSION_SECONDS", "60");
    let (_, _, _, answer) = signed_in(&functions);
    assert!(answer["refresh_expires_in"].as_i64().unwrap() <= 60);
    assert!(
        answer["expires_in"].as_i64().unwrap() <= 60,
        "capped by the session: {answer}"
    );
    let rotated = refresh(&functions, &token(&answer, "refresh_token")).json();
    assert!(rotated["refresh_expires_in"].as_i64().unwrap() <= 60);
    let claims = verify(&functions, &token(&rotated, "access_token"), "cofrap");
    let claims = &claims["claims"];
    assert!(claims["exp"].as_i64().unwrap() - claims["auth_time"].as_i64().unwrap() <= 60);
}

#[test]
fn sign_out_ends_its_family_only_and_never_says_whether_the_token_was_valid() {
    let functions = Functions::new();
    let (user, password, secret, answer) = signed_in(&functions);
    let rotated = refresh(&functions, &token(&answer, "refresh_token")).json();
    let elsewhere = functions.authenticate(&user, &password, &secret, current_step() + 1);
    assert_eq!(elsewhere["authenticated"], true, "{elsewhere}");

    let output = functions.run(
        "sign-out",
        json!({"refresh_token": token(&rotated, "refresh_token")})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(output.status, 0);
    assert_eq!(output.stdout, "{\"signed_out\":true}\n");
    assert_eq!(output.log()["account_id"], account_id(&functions, &user));
    assert_refused(&refresh(&functions, &token(&rotated, "refresh_token")));
    assert_eq!(
        sessions_of(&functions, &user),
        [Some("signed_out".to_owned()), None]
    );
    // The other device's session goes on.
    let other = refresh(&functions, &token(&elsewhere, "refresh_token")).json();
    assert!(other["access_token"].is_string(), "{other}");

    // Unknown or already ended: the same answer.
    for token in ["unknown-token", &token(&rotated, "refresh_token")] {
        let again = functions.run(
            "sign-out",
            json!({ "refresh_token": token }).to_string().as_bytes(),
        );
        assert_eq!(again.stdout, "{\"signed_out\":true}\n");
    }
    assert_eq!(
        functions.run("sign-out", b"{}").json()["code"],
        "missing_field"
    );
}

#[test]
fn renewal_ends_every_session_of_the_account() {
    let functions = Functions::new();
    let (user, password, secret, answer) = signed_in(&functions);
    let step = current_step();
    let elsewhere = functions.authenticate(&user, &password, &secret, step + 1);

    // Six months pass: the credentials expire (by age: nobody touched the row,
    // so the trigger has nothing to see; refresh finds it from the row).
    let mut db = functions.db();
    db.batch_execute("SET session_replication_role = replica")
        .unwrap();
    // (last_totp_step cleared: the next sign-in may use this step's code.)
    db.execute(
        "UPDATE users SET created_at = created_at - interval '7 months', last_totp_step = NULL
          WHERE username = $1",
        &[&user],
    )
    .unwrap();
    db.execute(
        "UPDATE sessions SET credentials_issued_at = credentials_issued_at - interval '7 months'
          WHERE user_id = (SELECT id FROM users WHERE username = $1)",
        &[&user],
    )
    .unwrap();
    assert_refused(&refresh(&functions, &token(&answer, "refresh_token")));
    assert_eq!(
        sessions_of(&functions, &user),
        [Some("expired".to_owned()), None]
    );

    // Signing in now starts the renewal (expired flag set): the other
    // session ends at once; the renewal itself issues new credentials.
    let expired = functions.authenticate(&user, &password, &secret, current_step());
    assert_eq!(expired["code"], "credentials_expired");
    assert!(expired.get("access_token").is_none());
    assert_eq!(
        sessions_of(&functions, &user),
        [Some("expired".to_owned()), Some("expired".to_owned())]
    );
    assert_refused(&refresh(&functions, &token(&elsewhere, "refresh_token")));
    let renewed = functions.call(
        "generate-password",
        json!({"username": user, "renewal_token": expired["renewal_token"]}),
    );
    let new_password = decode_qr(renewed["qr_code_base64"].as_str().unwrap());
    let enrolled = functions.call(
        "generate-2fa",
        json!({"username": user, "password": new_password}),
    );
    let new_secret = enrolled["manual_entry_key"].as_str().unwrap();
    let fresh = functions.authenticate(&user, &new_password, new_secret, current_step());
    assert!(
        refresh(&functions, &token(&fresh, "refresh_token")).json()["access_token"].is_string()
    );
}

#[test]
fn credentials_renewed_behind_our_back_end_the_session_at_refresh() {
    // The trigger off for this connection only: what refresh alone decides.
    let functions = Functions::new();
    let (user, _, _, answer) = signed_in(&functions);
    let mut db = functions.db();
    db.batch_execute("SET session_replication_role = replica")
        .unwrap();
    db.execute(
        "UPDATE users SET created_at = now() + interval '1 second' WHERE username = $1",
        &[&user],
    )
    .unwrap();
    assert_refused(&refresh(&functions, &token(&answer, "refresh_token")));
    assert_eq!(sessions_of(&functions, &user), [Some("renewed".to_owned())]);
}

#[test]
fn the_python_versions_renewal_ends_sessions_too() {
    let functions = Functions::new();
    let (user, _, _, answer) = signed_in(&functions);
    // The Python generate-password's upsert, verbatim.
    functions
        .db()
        .execute(
            "INSERT INTO users (username, password_hash, created_at, expired)
             VALUES ($1, $2, NOW(), FALSE)
             ON CONFLICT (username)
             DO UPDATE SET password_hash = EXCLUDED.password_hash, created_at = NOW(), expired = FALSE",
            &[&user, &"$2b$12$python-written-hash-python-written-hash-python-wri"],
        )
        .unwrap();
    assert_eq!(sessions_of(&functions, &user), [Some("renewed".to_owned())]);
    assert_refused(&refresh(&functions, &token(&answer, "refresh_token")));
}

#[test]
fn a_lock_ends_every_session_even_once_a_success_has_cleared_it() {
    let mut functions = Functions::new();
    functions.set("MAX_FAILED_ATTEMPTS", "2");
    let (user, password, secret, answer) = signed_in(&functions);
    let step = current_step();
    let wrong = (0..)
        .map(|n| format!("{:06}", n * 7919 % 1_000_000))
        .find(|c| (step - 2..=step + 2).all(|s| code_at(&secret, s * 30) != *c))
        .unwrap();
    for _ in 0..2 {
        let refused = functions.call(
            "authenticate",
            json!({"username": user, "password": password, "totp_code": wrong}),
        );
        assert_eq!(refused["code"], "invalid_credentials");
    }
    assert_eq!(sessions_of(&functions, &user), [Some("locked".to_owned())]);

    // The lock elapses and the owner signs in again: the old session stays
    // ended, the new one works.
    functions
        .db()
        .execute(
            "UPDATE users SET locked_until = now() - interval '1 second' WHERE username = $1",
            &[&user],
        )
        .unwrap();
    let again = functions.authenticate(&user, &password, &secret, step + 1);
    assert_eq!(again["authenticated"], true, "{again}");
    assert_refused(&refresh(&functions, &token(&answer, "refresh_token")));
    assert!(
        refresh(&functions, &token(&again, "refresh_token")).json()["access_token"].is_string()
    );
}

#[test]
fn refresh_checks_the_lock_itself() {
    // The trigger that ends sessions at a lock is one guard; refresh's own
    // look at the account is the other. Locked here with the triggers off
    // (as a bulk load or a restore would), only refresh can notice.
    let functions = Functions::new();
    let (user, _, _, answer) = signed_in(&functions);
    let mut db = functions.db();
    db.batch_execute("SET session_replication_role = replica")
        .unwrap();
    db.execute(
        "UPDATE users SET locked_until = now() + interval '5 minutes' WHERE username = $1",
        &[&user],
    )
    .unwrap();
    assert_eq!(sessions_of(&functions, &user), [None], "no trigger ran");
    assert_refused(&refresh(&functions, &token(&answer, "refresh_token")));
    assert_eq!(sessions_of(&functions, &user), [Some("locked".to_owned())]);
}

#[test]
fn jwks_publishes_every_key_the_first_signs_and_needs_nothing_else() {
    let functions = Functions::new();
    let (_, _, _, answer) = signed_in(&functions);
    let old_token = token(&answer, "access_token");
    let old_kid = jwks(&functions)["keys"][0]["kid"].clone();

    // Rotation: a new key on the first line, the old one kept below it.
    let old_key = std::fs::read_to_string(functions.secret_path("jwt-signing-keys")).unwrap();
    functions.write_secret("jwt-signing-keys", &format!("{}\n{old_key}", signing_key()));
    let published = jwks(&functions);
    let keys = published["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1]["kid"], old_kid);
    for key in keys {
        assert_eq!(
            key.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["kty", "crv", "x", "kid", "use", "alg"]
        );
    }
    assert_eq!(
        verify(&functions, &old_token, "cofrap")["ok"],
        true,
        "tokens of the old key still verify"
    );
    let (_, _, _, answer) = signed_in(&functions);
    let new_header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token(&answer, "access_token").split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(new_header["kid"], keys[0]["kid"]);

    // Only the secrets directory: no database, no setting.
    let binary = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("jwks");
    let output = run_with_input(
        Command::new(&binary)
            .env_clear()
            .env("SECRETS_DIR", functions.secrets_dir()),
        b"",
    );
    assert!(output.status.success());
    let alone: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(alone, published);

    functions.remove_secret("jwt-signing-keys");
    let output = functions.run("jwks", b"");
    assert_eq!(output.status, 1);
    assert_eq!(output.json()["code"], "configuration_error");
    assert!(output.json()["error"]
        .as_str()
        .unwrap()
        .contains("jwt-signing-keys"));
}

#[test]
fn refresh_and_sign_out_run_without_the_fernet_keys() {
    // Least privilege (stack.yaml): neither holds the key to the stored
    // TOTP secrets, and sign-out not even the signing keys.
    let functions = Functions::new();
    let (_, _, _, answer) = signed_in(&functions);
    functions.remove_secret("encryption-key");
    let rotated = refresh(&functions, &token(&answer, "refresh_token"));
    assert!(rotated.json()["access_token"].is_string(), "{rotated:?}");
    functions.remove_secret("jwt-signing-keys");
    let output = functions.run(
        "sign-out",
        json!({"refresh_token": token(&rotated.json(), "refresh_token")})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(output.stdout, "{\"signed_out\":true}\n", "{output:?}");
}
