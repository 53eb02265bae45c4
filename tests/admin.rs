//! The account events and cofrap-admin, through the binaries on a real
//! PostgreSQL: the functions' role may only append events; every kind of
//! state change and every refusal reason is an event, and no event holds a
//! password, hash, secret, code, token or username; every subcommand of the
//! tool, run as a process the way an operator runs it (its output, its exit
//! status, its events); the disabled account refused byte for byte like a
//! wrong password; erasure; the lost-phone flow; the unlock of a hard lock
//! forcing renewal; and the tool's bounded waits.

use cofrap_tests::*;
use postgres::error::SqlState;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The functions as a request through the edge reaches them: the client's
/// address in X-Forwarded-For (the rightmost entry, FORWARDED_FOR_HOPS=1),
/// after one the client forged, and a user agent.
const CLIENT: &str = "198.51.100.23";
const USER_AGENT: &str = "admin-test/1.0";

fn functions_behind_the_edge() -> Functions {
    let mut functions = Functions::new();
    functions.set("Http_X_Forwarded_For", &format!("6.6.6.6, {CLIENT}"));
    functions.set("Http_User_Agent", USER_AGENT);
    functions
}

/// Every event of these accounts, oldest first, as the administrator reads
/// them: (kind, outcome, reason, detail).
fn events_of(functions: &Functions, ids: &[i64]) -> Vec<(String, String, Option<String>, Value)> {
    functions
        .db()
        .query(
            "SELECT kind, outcome, reason, coalesce(detail, 'null'::jsonb)::text
               FROM account_events WHERE account_id = ANY($1) ORDER BY id",
            &[&ids],
        )
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.get(0),
                row.get(1),
                row.get(2),
                serde_json::from_str(&row.get::<_, String>(3)).unwrap(),
            )
        })
        .collect()
}

fn kinds_of(functions: &Functions, ids: &[i64]) -> BTreeSet<String> {
    events_of(functions, ids)
        .into_iter()
        .map(|(kind, ..)| kind)
        .collect()
}

fn reasons_of(functions: &Functions, ids: &[i64]) -> BTreeSet<String> {
    events_of(functions, ids)
        .into_iter()
        .filter_map(|(_, _, reason, _)| reason)
        .collect()
}

/// The stored secrets of an account, as the administrator reads them.
fn stored_secrets(functions: &Functions, id: i64) -> Vec<String> {
    let row = functions
        .db()
        .query_one(
            "SELECT password_hash, coalesce(mfa_secret, ''), username
               FROM users WHERE id = $1",
            &[&id],
        )
        .unwrap();
    vec![row.get(0), row.get(1), row.get(2)]
}

fn refresh_token(answer: &Value) -> String {
    answer["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh token in {answer}"))
        .to_owned()
}

#[test]
fn the_functions_role_may_only_append_events() {
    let functions = Functions::new();
    let mut db = functions.db_as_functions();
    db.execute(
        "INSERT INTO account_events (source, kind, outcome) VALUES ('test', 'test', 'ok')",
        &[],
    )
    .expect("the functions' role appends events");
    for statement in [
        "SELECT count(*) FROM account_events",
        "UPDATE account_events SET kind = 'rewritten' WHERE kind = 'test'",
        "DELETE FROM account_events WHERE kind = 'test'",
        "TRUNCATE account_events",
        // Nor what the server writes: the time, the id, the role; nor an
        // operator's name.
        "INSERT INTO account_events (source, kind, outcome, at)
              VALUES ('cofrap-admin', 'unlocked', 'ok', '2020-01-01')",
        "INSERT INTO account_events (id, source, kind, outcome) OVERRIDING SYSTEM VALUE
              VALUES (1000000000, 'test', 'test', 'ok')",
        "INSERT INTO account_events (source, kind, outcome, operator)
              VALUES ('cofrap-admin', 'unlocked', 'ok', 'root')",
        "INSERT INTO account_events (source, kind, outcome, recorded_by)
              VALUES ('cofrap-admin', 'unlocked', 'ok', 'postgres')",
        // Nor draw (and skip) event ids.
        "SELECT nextval(pg_get_serial_sequence('account_events', 'id'))",
        // The schema version is the migrations' to write.
        "INSERT INTO cofrap_schema_migrations (version) VALUES (999)",
        "UPDATE cofrap_schema_migrations SET version = 999",
    ] {
        let error = db.batch_execute(statement).unwrap_err();
        assert_eq!(
            error.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "the functions' role may {statement}"
        );
    }
    // What it did write says who wrote it.
    let role: String = functions
        .db()
        .query_one(
            "SELECT recorded_by::text FROM account_events WHERE kind = 'test'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(role, functions.role.user);
}

/// Drives one account through its whole life, every refusal on the way,
/// and two more for what one cannot show; then reads their events.
#[test]
fn every_state_change_and_refusal_is_an_event_and_none_holds_a_secret() {
    let mut functions = functions_behind_the_edge();
    functions.set("MAX_FAILED_ATTEMPTS", "2");
    functions.set("LOCKOUT_SECONDS", "100");
    functions.set("HARD_LOCK_ATTEMPTS", "4");
    functions.set("ENROLLMENT_WINDOW_SECONDS", "60");
    // Everything a secret could be, to look for in the events afterwards.
    let mut secrets: Vec<String> = Vec::new();
    let mut codes: Vec<String> = Vec::new();

    // Created with a request id, and the reply "lost": the retry reissues.
    let user = unique("events");
    let request_id = format!("{}-{}", unique("rid"), "x".repeat(22));
    let create = json!({"username": user, "request_id": request_id});
    functions.call("generate-password", create.clone());
    let password = decode_qr(
        functions.call("generate-password", create)["qr_code_base64"]
            .as_str()
            .unwrap(),
    );
    let id = account_id(&functions, &user);
    secrets.extend([password.clone(), request_id, user.clone()]);
    secrets.extend(stored_secrets(&functions, id));
    assert_eq!(
        functions.call("generate-password", json!({"username": user}))["code"],
        "account_exists"
    );
    let not_enrolled = sign_in(&functions, &user, &password, "000000");
    assert_eq!(not_enrolled.json()["code"], "two_factor_not_enrolled");
    let wrong = json!({"username": user, "password": "not-the-password-at-all-x"});
    assert_eq!(
        functions.call("generate-2fa", wrong)["code"],
        "invalid_credentials"
    );
    let enroll = json!({"username": user, "password": password});
    let first = functions.call("generate-2fa", enroll.clone());
    secrets.push(first["manual_entry_key"].as_str().unwrap().to_owned());
    let enrolled = functions.call("generate-2fa", enroll.clone());
    let secret = enrolled["manual_entry_key"].as_str().unwrap().to_owned();
    secrets.push(secret.clone());
    secrets.extend(stored_secrets(&functions, id));

    // Activated and signed in; the session refreshed, reused, signed out.
    let step = current_step();
    let bad = wrong_code(&secret);
    codes.push(bad.clone());
    let activated = functions.authenticate(&user, &password, &secret, step - 1);
    let first_token = refresh_token(&activated);
    secrets.push(activated["access_token"].as_str().unwrap().to_owned());
    let refreshed = functions.call("refresh", json!({"refresh_token": first_token}));
    let second_token = refresh_token(&refreshed);
    let reused = functions.call("refresh", json!({"refresh_token": first_token}));
    assert_eq!(reused["code"], "invalid_refresh_token");
    let after_reuse = functions.call("refresh", json!({"refresh_token": second_token}));
    assert_eq!(after_reuse["code"], "invalid_refresh_token");
    let signed_in = functions.authenticate(&user, &password, &secret, step);
    let third_token = refresh_token(&signed_in);
    functions.call("sign-out", json!({"refresh_token": third_token}));
    secrets.extend([first_token, second_token, third_token]);
    codes.extend([
        code_at(&secret, (step - 1) * 30),
        code_at(&secret, step * 30),
    ]);
    assert_eq!(
        functions.call("generate-2fa", enroll.clone())["code"],
        "invalid_credentials",
        "an active account's 2FA changes only by renewal"
    );

    // Wrong and replayed codes lock, the fourth failure for good.
    sign_in(&functions, &user, &password, &bad);
    sign_in(&functions, &user, &password, &code_at(&secret, step * 30));
    let locked = functions.authenticate(&user, &password, &secret, step + 1);
    assert_eq!(locked["code"], "invalid_credentials");
    sql(
        &functions,
        "UPDATE users SET locked_until = now() - interval '1 second' WHERE username = $1",
        &user,
    );
    sign_in(&functions, &user, &password, &bad);
    sign_in(&functions, &user, &password, &bad);
    let hard = functions.authenticate(&user, &password, &secret, step + 1);
    assert_eq!(hard["code"], "invalid_credentials");

    // The operator unlocks it: the next sign-in renews, all the way.
    assert_eq!(functions.admin(&["unlock", &user]).status, 0);
    let expired = functions.authenticate(&user, &password, &secret, step + 1);
    assert_eq!(expired["code"], "credentials_expired", "{expired}");
    codes.push(code_at(&secret, (step + 1) * 30));
    let token = expired["renewal_token"].as_str().unwrap().to_owned();
    let renewal = json!({"username": user, "renewal_token": token});
    let staged = functions.call("generate-password", renewal.clone());
    let new_password = decode_qr(staged["qr_code_base64"].as_str().unwrap());
    assert_eq!(
        functions.call("generate-password", renewal)["code"],
        "invalid_renewal_token"
    );
    let new_secret = functions.call(
        "generate-2fa",
        json!({"username": user, "password": new_password}),
    )["manual_entry_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let renewed = functions.authenticate(&user, &new_password, &new_secret, current_step());
    assert_eq!(renewed["authenticated"], true, "{renewed}");
    secrets.extend([token, new_password.clone(), new_secret.clone()]);
    secrets.extend(stored_secrets(&functions, id));
    codes.push(code_at(&new_secret, current_step() * 30));
    // A session whose credentials changed under it ends at its refresh.
    let last_token = refresh_token(&renewed);
    functions
        .db()
        .execute(
            "UPDATE sessions SET credentials_issued_at = credentials_issued_at - interval '1 s'
              WHERE user_id = $1 AND ended_at IS NULL",
            &[&id],
        )
        .unwrap();
    functions.call("refresh", json!({"refresh_token": last_token}));
    secrets.push(last_token);

    // Another: a session that timed out, then expired by the operator:
    // generate-2fa wants a sign-in first.
    let other = unique("events-b");
    let (other_password, other_secret) = functions.enrolled_account(&other);
    let other_id = account_id(&functions, &other);
    let other_token = refresh_token(&functions.authenticate(
        &other,
        &other_password,
        &other_secret,
        current_step(),
    ));
    functions
        .db()
        .execute(
            "UPDATE sessions SET expires_at = now() - interval '1 s' WHERE user_id = $1",
            &[&other_id],
        )
        .unwrap();
    functions.call("refresh", json!({"refresh_token": other_token}));
    assert_eq!(functions.admin(&["expire", &other]).status, 0);
    assert_eq!(
        functions.call(
            "generate-2fa",
            json!({"username": other, "password": other_password})
        )["code"],
        "invalid_credentials"
    );
    secrets.extend([other.clone(), other_password, other_secret, other_token]);
    secrets.extend(stored_secrets(&functions, other_id));

    // A third, abandoned in its enrollment window, taken afresh.
    let abandoned = unique("events-c");
    functions.create_account(&abandoned);
    let abandoned_id = account_id(&functions, &abandoned);
    secrets.extend(stored_secrets(&functions, abandoned_id));
    sql(
        &functions,
        "UPDATE users SET created_at = now() - interval '1 hour' WHERE username = $1",
        &abandoned,
    );
    let afresh = functions.create_account(&abandoned);
    secrets.push(afresh);
    secrets.extend(stored_secrets(&functions, abandoned_id));

    let ids = [id, other_id, abandoned_id];
    let kinds = kinds_of(&functions, &ids);
    for kind in [
        "created",
        "password_reissued",
        "taken_afresh",
        "two_factor_enrolled",
        "activated",
        "signed_in",
        "session_opened",
        "refreshed",
        "reuse_detected",
        "session_ended",
        "signed_out",
        "refused",
        "locked",
        "hard_locked",
        "unlocked",
        "renewal_started",
        "renewal_password_staged",
        "renewal_two_factor_staged",
        "renewal_completed",
        "expired",
    ] {
        assert!(kinds.contains(kind), "no {kind} event: {kinds:?}");
    }
    let reasons = reasons_of(&functions, &ids);
    for reason in [
        "account_exists",
        "two_factor_not_enrolled",
        "wrong_password",
        "already_enrolled",
        "wrong_code",
        "replayed_code",
        "locked",
        "hard_locked",
        "invalid_renewal_token",
        "expired_sign_in_first",
        "session_ended",
        "session_timed_out",
    ] {
        assert!(
            reasons.contains(reason),
            "no refusal for {reason}: {reasons:?}"
        );
    }
    let events = events_of(&functions, &[id]);
    let lock = events
        .iter()
        .find(|(kind, ..)| kind == "locked")
        .expect("no lock");
    assert_eq!(lock.1, "invalid_credentials");
    assert_eq!(lock.3["seconds"], 100.0, "the lock's seconds: {lock:?}");
    let hard_lock = events.iter().find(|(kind, ..)| kind == "hard_locked");
    assert_eq!(hard_lock.unwrap().3["failures"], 4);
    let renewal = events.iter().find(|(kind, ..)| kind == "renewal_started");
    assert_eq!(renewal.unwrap().1, "credentials_expired");

    // Where they came from: the trusted hop, never the forged entry; and
    // the operator's own actions by name.
    let mut db = functions.db();
    let sources = db
        .query(
            "SELECT DISTINCT source, host(client_address), user_agent, operator
               FROM account_events WHERE account_id = ANY($1)",
            &[&ids.to_vec()],
        )
        .unwrap();
    for row in &sources {
        let (source, address, agent, operator): (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = (row.get(0), row.get(1), row.get(2), row.get(3));
        if source == "cofrap-admin" {
            assert_eq!(operator.as_deref(), Some(OPERATOR));
            assert_eq!(address, None);
        } else {
            assert_eq!(address.as_deref(), Some(CLIENT), "{source}");
            assert_eq!(agent.as_deref(), Some(USER_AGENT), "{source}");
            assert_eq!(operator, None, "{source}");
        }
    }

    // No event holds a secret, in any column, not even in part (the first
    // 12 characters of each), nor a code outside the columns that hold
    // times and numbers.
    let rows = db
        .query(
            "SELECT concat_ws(' | ', account_id, source, kind, outcome, reason, detail::text,
                              host(client_address), user_agent, request_id, operator)
               FROM account_events WHERE account_id = ANY($1)",
            &[&ids.to_vec()],
        )
        .unwrap();
    assert!(rows.len() > 40, "{} events", rows.len());
    for row in &rows {
        let text: String = row.get(0);
        for secret in secrets.iter().filter(|s| s.len() >= 12) {
            let part: String = secret.chars().take(12).collect();
            assert!(!text.contains(&part), "an event holds a secret: {text}");
        }
        for code in &codes {
            assert!(
                !text.contains(code.as_str()),
                "an event holds a code: {text}"
            );
        }
        for name in [&user, &other, &abandoned] {
            assert!(
                !text.contains(name.as_str()),
                "an event holds a username: {text}"
            );
        }
    }
}

#[test]
fn a_disabled_account_is_refused_exactly_like_a_wrong_password_and_its_sessions_end() {
    let mut functions = Functions::new();
    // The functions' profile counts each request's bcrypt work.
    functions.set("COFRAP_PROFILE", "1");
    let work = |output: &Output| output.log()["profile"]["bcrypt_work"].clone();
    let user = unique("disabled");
    let (password, secret) = functions.enrolled_account(&user);
    let step = current_step();
    let token = refresh_token(&functions.authenticate(&user, &password, &secret, step - 1));
    let wrong_password = sign_in(&functions, &user, "not-the-password-at-all-x", "000000");
    let wrong_enrollment = functions.run(
        "generate-2fa",
        json!({"username": user, "password": "not-the-password-at-all-x"})
            .to_string()
            .as_bytes(),
    );

    let disabled = functions.admin(&["disable", &user]);
    assert_eq!(disabled.status, 0, "{disabled:?}");
    assert!(disabled.stdout.contains("disabled"), "{disabled:?}");
    assert_eq!(
        sessions_of(&functions, &user),
        [Some("disabled".to_owned())]
    );
    // The right password and code: the same bytes as a wrong password.
    let refused = sign_in(&functions, &user, &password, &code_at(&secret, step * 30));
    assert_eq!(refused.stdout, wrong_password.stdout);
    assert_eq!(refused.status, wrong_password.status);
    assert_eq!(
        work(&refused),
        work(&wrong_password),
        "the same bcrypt work"
    );
    assert!(work(&refused).as_u64().is_some_and(|work| work > 0));
    let refused_enrollment = functions.run(
        "generate-2fa",
        json!({"username": user, "password": password})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(refused_enrollment.stdout, wrong_enrollment.stdout);
    assert_eq!(work(&refused_enrollment), work(&wrong_enrollment));
    assert_eq!(
        functions.call("refresh", json!({"refresh_token": token}))["code"],
        "invalid_refresh_token"
    );
    let shown = functions.admin_json(&["show", &user]);
    assert!(shown["disabled_at"].is_string(), "{shown}");
    let again = functions.admin(&["disable", &user]);
    assert_eq!(again.status, 0);
    assert!(again.stdout.contains("nothing to do"), "{again:?}");

    assert_eq!(functions.admin(&["enable", &user]).status, 0);
    let back = functions.authenticate(&user, &password, &secret, step + 1);
    assert_eq!(back["authenticated"], true, "{back}");
    let id = account_id(&functions, &user);
    let reasons = reasons_of(&functions, &[id]);
    assert!(reasons.contains("disabled"), "{reasons:?}");
    let kinds = kinds_of(&functions, &[id]);
    assert!(
        kinds.contains("disabled") && kinds.contains("enabled"),
        "{kinds:?}"
    );
}

#[test]
fn a_lost_phone_is_replaced_with_the_password_and_nobody_signs_in_meanwhile() {
    let functions = Functions::new();
    let user = unique("lostphone");
    let (password, old_secret) = functions.enrolled_account(&user);
    let step = current_step();
    let token = refresh_token(&functions.authenticate(&user, &password, &old_secret, step - 1));

    let reset = functions.admin(&["reset-2fa", &user]);
    assert_eq!(reset.status, 0, "{reset:?}");
    assert_eq!(
        sessions_of(&functions, &user),
        [Some("two_factor_reset".to_owned())]
    );
    assert_eq!(
        functions.call("refresh", json!({"refresh_token": token}))["code"],
        "invalid_refresh_token"
    );
    // The lost phone's codes no longer sign in: the password holder is told
    // to enroll; a stranger is refused as ever.
    let with_old = functions.authenticate(&user, &password, &old_secret, step);
    assert_eq!(with_old["code"], "two_factor_not_enrolled", "{with_old}");
    let stranger = sign_in(&functions, &user, "not-the-password-at-all-x", "000000");
    assert_eq!(stranger.json()["code"], "invalid_credentials");

    // The owner enrolls again with the password, within the window.
    let enrollment = json!({"username": user, "password": password});
    let new_secret = functions.call("generate-2fa", enrollment.clone())["manual_entry_key"]
        .as_str()
        .expect("re-enrolled")
        .to_owned();
    // Until the first good code of the new one, nobody signs in.
    let old_again = functions.authenticate(&user, &password, &old_secret, step + 1);
    assert_eq!(old_again["code"], "invalid_credentials", "{old_again}");
    let shown = functions.admin_json(&["show", &user]);
    assert!(shown["two_factor_reset_at"].is_string(), "{shown}");
    let back = functions.authenticate(&user, &password, &new_secret, current_step());
    assert_eq!(back["authenticated"], true, "{back}");
    // The reset is over: generate-2fa is refused again, the account is active.
    let shown = functions.admin_json(&["show", &user]);
    assert_eq!(shown["two_factor_reset_at"], Value::Null, "{shown}");
    assert_eq!(shown["state"], "active");
    assert_eq!(
        functions.call("generate-2fa", enrollment.clone())["code"],
        "invalid_credentials"
    );

    // Past the enrollment window, a reset no longer lets anyone enroll.
    assert_eq!(functions.admin(&["reset-2fa", &user]).status, 0);
    sql(
        &functions,
        "UPDATE users SET two_factor_reset_at = now() - interval '1 day' WHERE username = $1",
        &user,
    );
    assert_eq!(
        functions.call("generate-2fa", enrollment)["code"],
        "invalid_credentials"
    );
    let kinds = kinds_of(&functions, &[account_id(&functions, &user)]);
    assert!(kinds.contains("two_factor_reset"), "{kinds:?}");

    // Not for a pending account (it enrolls as usual), nor an unknown one.
    let pending = unique("lostphone-pending");
    functions.create_account(&pending);
    let refused = functions.admin(&["reset-2fa", &pending]);
    assert_eq!(refused.status, 1, "{refused:?}");
    assert!(refused.stderr.contains("pending"), "{refused:?}");
}

#[test]
fn no_action_leaves_an_account_with_no_way_back() {
    // A hard lock means someone else holds the password; a reset 2FA means
    // the owner signs in with none. Together, or an expiry after a reset,
    // the owner could neither renew (it needs a sign-in) nor enroll (an
    // expired account does not): each such action is refused, saying what
    // is left, and changes nothing.
    let functions = Functions::new();
    let refused = |args: &[&str], why: &str| {
        let output = functions.admin(args);
        assert_eq!(output.status, 1, "{args:?}: {output:?}");
        assert!(output.stderr.contains(why), "{args:?}: {output:?}");
        assert!(output.stderr.contains("delete the account"), "{output:?}");
    };

    let hard = unique("noway-hard");
    let (password, secret) = functions.enrolled_account(&hard);
    functions.authenticate(&hard, &password, &secret, current_step());
    sql(
        &functions,
        "UPDATE users SET failed_attempts = 100, locked_until = 'infinity' WHERE username = $1",
        &hard,
    );
    refused(&["reset-2fa", &hard], "hard-locked");
    assert!(functions.admin_json(&["show", &hard])["two_factor_reset_at"].is_null());
    // Unlocked, it renews with its 2FA as ever.
    assert_eq!(functions.admin(&["unlock", &hard]).status, 0);
    assert_eq!(functions.admin_json(&["show", &hard])["state"], "expired");

    // An older database may hold both: unlock refuses that too.
    sql(
        &functions,
        "UPDATE users SET locked_until = 'infinity', mfa_secret = NULL,
                          two_factor_reset_at = now(), expired = false
          WHERE username = $1",
        &hard,
    );
    refused(&["unlock", &hard], "2FA was reset");
    assert_eq!(
        functions.admin_json(&["show", &hard])["locked_until"],
        "infinity"
    );

    let reset = unique("noway-reset");
    let (password, secret) = functions.enrolled_account(&reset);
    functions.authenticate(&reset, &password, &secret, current_step());
    assert_eq!(functions.admin(&["reset-2fa", &reset]).status, 0);
    refused(&["expire", &reset], "2FA reset");
    assert_eq!(functions.admin_json(&["show", &reset])["state"], "active");

    // Credentials that expire before the owner could be sure to enroll
    // again: no reset.
    let late = unique("noway-late");
    let (password, secret) = functions.enrolled_account(&late);
    functions.authenticate(&late, &password, &secret, current_step());
    sql(
        &functions,
        "UPDATE users SET created_at = now() - interval '6 months' + interval '3 days'
          WHERE username = $1",
        &late,
    );
    refused(&["reset-2fa", &late], "expire within 7 days");
    assert!(functions.admin_json(&["show", &late])["two_factor_reset_at"].is_null());
}

#[test]
fn erasure_removes_the_account_and_its_sessions_and_keeps_nameless_events() {
    let functions = Functions::new();
    let user = unique("erased");
    let (password, secret) = functions.enrolled_account(&user);
    functions.authenticate(&user, &password, &secret, current_step());
    let id = account_id(&functions, &user);

    let unconfirmed = functions.admin(&["delete", &user]);
    assert_eq!(unconfirmed.status, 2, "{unconfirmed:?}");
    assert!(unconfirmed.stderr.contains("--yes"), "{unconfirmed:?}");
    assert_eq!(
        count_accounts(&mut functions.db(), std::slice::from_ref(&user)),
        1
    );

    let erased = functions.admin(&["delete", &user, "--yes"]);
    assert_eq!(erased.status, 0, "{erased:?}");
    let mut db = functions.db();
    assert_eq!(count_accounts(&mut db, std::slice::from_ref(&user)), 0);
    let sessions: i64 = db
        .query_one("SELECT count(*) FROM sessions WHERE user_id = $1", &[&id])
        .unwrap()
        .get(0);
    assert_eq!(sessions, 0);
    // Its history is still there, under its id, with no name in it.
    let history = functions.admin_json(&["events", &format!("id:{id}")]);
    let kinds: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"deleted"), "newest first: {kinds:?}");
    assert!(kinds.contains(&"created") && kinds.contains(&"signed_in"));
    assert!(!history.to_string().contains(&user));
    let gone = functions.admin(&["show", &user]);
    assert_eq!(gone.status, 1);
    assert!(
        gone.stderr
            .contains(&format!("no account is named \"{user}\"")),
        "{gone:?}"
    );
    // The name is free again.
    functions.create_account(&user);
}

#[test]
fn erasure_leaves_the_name_in_no_statistics() {
    // A database of its own: few rows, so the planner's statistics hold
    // every name (a histogram of all of them).
    let scratch = ScratchDatabase::create();
    let migrated = scratch.migrate();
    assert!(migrated.status.success(), "{migrated:?}");
    let functions = Functions::on(scratch.server.clone(), &scratch.name);
    let user = unique("stats");
    for name in [user.clone(), unique("stats-a"), unique("stats-b")] {
        functions.create_account(&name);
    }
    let in_statistics = |db: &mut postgres::Client| -> bool {
        db.query_one(
            "SELECT count(*) > 0 FROM pg_stats
              WHERE tablename = 'users'
                AND (coalesce(most_common_vals::text, '') || coalesce(histogram_bounds::text, ''))
                    LIKE '%' || $1 || '%'",
            &[&user],
        )
        .unwrap()
        .get(0)
    };
    let mut db = scratch.connect();
    db.batch_execute("ANALYZE users").unwrap();
    assert!(in_statistics(&mut db), "the statistics held the name");
    let erased = functions.admin(&["delete", &user, "--yes"]);
    assert_eq!(erased.status, 0, "{erased:?}");
    assert!(
        !in_statistics(&mut db),
        "the erased name is still in pg_stats"
    );
}

#[test]
fn show_says_the_state_in_words_and_never_a_secret() {
    let functions = Functions::new();
    let show = |user: &str| {
        let output = functions.admin(&["show", user]);
        assert_eq!(output.status, 0, "{output:?}");
        output.stdout
    };
    let state = |user: &str| functions.admin_json(&["show", user]);

    let pending = unique("show-pending");
    functions.create_account(&pending);
    assert!(show(&pending).contains("state       pending"));

    let user = unique("show");
    let (password, secret) = functions.enrolled_account(&user);
    functions.authenticate(&user, &password, &secret, current_step());
    let text = show(&user);
    assert!(text.contains("state       active"), "{text}");
    assert!(text.contains("sessions    1 open"), "{text}");
    assert!(text.contains("2FA         enrolled"), "{text}");
    // Found as the functions find it: another case, the same account.
    assert_eq!(state(&user.to_uppercase())["username"], user.as_str());
    let id = account_id(&functions, &user);
    assert_eq!(state(&format!("id:{id}"))["id"], id);

    sql(
        &functions,
        "UPDATE users SET failed_attempts = 5, locked_until = now() + interval '1 hour'
          WHERE username = $1",
        &user,
    );
    assert!(show(&user).contains("locked until 20"), "{}", show(&user));
    assert_eq!(state(&user)["locked"], true);
    sql(
        &functions,
        "UPDATE users SET locked_until = 'infinity' WHERE username = $1",
        &user,
    );
    assert!(show(&user).contains("hard-locked"));
    assert_eq!(state(&user)["locked_until"], "infinity");
    sql(
        &functions,
        "UPDATE users SET created_at = now() - interval '7 months', locked_until = NULL
          WHERE username = $1",
        &user,
    );
    assert_eq!(state(&user)["state"], "expired");
    sql(
        &functions,
        "UPDATE users SET renewal_password_hash = password_hash WHERE username = $1",
        &user,
    );
    assert_eq!(state(&user)["state"], "renewing");
    sql(
        &functions,
        "UPDATE users SET disabled_at = now() WHERE username = $1",
        &user,
    );
    assert!(show(&user).contains("disabled since"));

    // Nothing secret, in either form.
    let everything = show(&user) + &state(&user).to_string();
    for secret in stored_secrets(&functions, id)
        .into_iter()
        .take(2)
        .chain([password, secret])
    {
        let part: String = secret.chars().take(12).collect();
        assert!(!everything.contains(&part), "show printed a secret");
    }
}

#[test]
fn events_are_listed_newest_first_by_account_or_address() {
    let functions = functions_behind_the_edge();
    let user = unique("history");
    let (password, secret) = functions.enrolled_account(&user);
    sign_in(&functions, &user, &password, &wrong_code(&secret));

    let text = functions.admin(&["events", &user]);
    assert_eq!(text.status, 0, "{text:?}");
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert!(lines[0].starts_with("Events of account"), "{text:?}");
    assert!(lines[1].starts_with("at "), "a header: {text:?}");
    assert!(lines[2].contains("refused") && lines[2].contains("wrong_code"));
    assert!(lines.last().unwrap().contains("created"), "oldest last");

    let json = functions.admin_json(&["events", &user]);
    let events = json.as_array().unwrap();
    assert_eq!(events.len(), 3, "created, enrolled, refused: {json}");
    assert_eq!(events[0]["reason"], "wrong_code");
    assert_eq!(events[0]["client_address"], CLIENT);
    assert_eq!(events[0]["user_agent"], USER_AGENT);
    assert_eq!(events[0]["source"], "authenticate");
    let limited = functions.admin_json(&["events", &user, "--limit", "1"]);
    assert_eq!(limited.as_array().unwrap().len(), 1);

    // By the client's address, or its network; and by period.
    let by_address = functions.admin_json(&["events", "--source", CLIENT, "--since", "10m"]);
    assert!(by_address
        .as_array()
        .unwrap()
        .iter()
        .any(|event| event["account_id"] == account_id(&functions, &user)));
    let by_network = functions.admin_json(&["events", "--source", "198.51.100.0/24"]);
    assert!(!by_network.as_array().unwrap().is_empty());
    let elsewhere = functions.admin_json(&["events", "--source", "192.0.2.1"]);
    assert!(!elsewhere
        .as_array()
        .unwrap()
        .iter()
        .any(|event| event["account_id"] == account_id(&functions, &user)));
    let future = functions.admin_json(&["events", &user, "--since", "2999-01-01"]);
    assert_eq!(future, json!([]));
}

#[test]
fn the_report_shows_where_refusals_come_from_and_the_locks() {
    let mut functions = Functions::new();
    functions.set("MAX_FAILED_ATTEMPTS", "2");
    // An address of the test's own, so that other tests' refusals do not
    // outnumber it in the shared database.
    let address = format!("203.0.113.{}", 1 + std::process::id() % 250);
    functions.set("Http_X_Forwarded_For", &address);
    let user = unique("report");
    let (password, secret) = functions.enrolled_account(&user);
    for _ in 0..2 {
        sign_in(&functions, &user, &password, &wrong_code(&secret));
    }
    let report = functions.admin_json(&["report", "--since", "1h"]);
    let id = account_id(&functions, &user);
    let ours = report["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["address"] == address.as_str())
        .unwrap_or_else(|| panic!("{address} is not among the addresses: {report}"));
    assert_eq!(ours["refusals"], 2, "{report}");
    assert_eq!(ours["accounts"], 1, "{report}");
    assert!(
        report["locks_and_reuse"]
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["account_id"] == id && event["kind"] == "locked"),
        "{report}"
    );
    let text = functions.admin(&["report"]);
    assert_eq!(text.status, 0, "{text:?}");
    for heading in [
        "Addresses with the most refusals:",
        "Accounts with the most refusals:",
        "Locks, hard locks and refresh-token reuse:",
    ] {
        assert!(text.stdout.contains(heading), "{text:?}");
    }
    let bad = functions.admin(&["report", "--since", "last tuesday"]);
    assert_eq!(bad.status, 2, "{bad:?}");
}

#[test]
fn expire_and_sign_out_end_the_sessions_and_say_when_there_is_nothing_to_do() {
    let functions = Functions::new();
    let user = unique("expire");
    let (password, secret) = functions.enrolled_account(&user);
    let step = current_step();
    functions.authenticate(&user, &password, &secret, step - 1);
    let ended = functions.admin(&["sign-out", &user]);
    assert_eq!(ended.status, 0, "{ended:?}");
    assert_eq!(
        sessions_of(&functions, &user),
        [Some("operator".to_owned())]
    );
    let nothing = functions.admin(&["sign-out", &user]);
    assert!(nothing.stdout.contains("nothing to do"), "{nothing:?}");

    functions.authenticate(&user, &password, &secret, step);
    assert_eq!(functions.admin(&["expire", &user]).status, 0);
    assert_eq!(
        sessions_of(&functions, &user)[1],
        Some("expired".to_owned())
    );
    let renewal = functions.authenticate(&user, &password, &secret, step + 1);
    assert_eq!(renewal["code"], "credentials_expired", "{renewal}");
    let kinds = kinds_of(&functions, &[account_id(&functions, &user)]);
    assert!(kinds.contains("sessions_ended") && kinds.contains("expired"));
}

#[test]
fn prune_deletes_events_past_the_retention_and_records_itself() {
    // A database of its own: pruning the shared one would take other
    // tests' events.
    let scratch = ScratchDatabase::create();
    let migrated = scratch.migrate();
    assert!(migrated.status.success(), "{migrated:?}");
    let functions = Functions::on(scratch.server.clone(), &scratch.name);
    let user = unique("prune");
    functions.create_account(&user);
    let id = account_id(&functions, &user);
    functions
        .db()
        .execute(
            "INSERT INTO account_events (at, account_id, source, kind, outcome)
             VALUES (now() - interval '40 days', $1, 'test', 'created', 'ok')",
            &[&id],
        )
        .unwrap();
    let pruned = functions.admin_json(&["prune", "--older-than", "30"]);
    assert_eq!(pruned["deleted"], 1, "{pruned}");
    let left = events_of(&functions, &[id]);
    assert_eq!(left.len(), 1, "the recent event stays: {left:?}");
    let record: (Option<i64>, String, String) = functions
        .db()
        .query_one(
            "SELECT account_id, detail::text, operator FROM account_events WHERE kind = 'pruned'",
            &[],
        )
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .unwrap();
    assert_eq!(record.0, None);
    assert_eq!(
        serde_json::from_str::<Value>(&record.1).unwrap(),
        json!({"older_than_days": 30, "deleted": 1})
    );
    assert_eq!(record.2, OPERATOR);
    // The retention is a setting too; and it must be given.
    let mut missing = functions.admin(&["prune"]);
    assert_eq!(missing.status, 2, "{missing:?}");
    assert!(missing.stderr.contains("--older-than"), "{missing:?}");
    missing = functions.admin(&["prune", "--older-than", "0"]);
    assert_eq!(missing.status, 2, "{missing:?}");
}

#[test]
fn bad_input_is_said_plainly_and_nothing_is_written_without_an_operator() {
    let functions = Functions::new();
    let user = unique("usage");
    functions.create_account(&user);
    let id = account_id(&functions, &user);
    let before = events_of(&functions, &[id]).len();

    // No operator: refused before connecting, nothing written.
    let output = std::process::Command::new(binary("cofrap-admin"))
        .env_clear()
        .args(["disable", &user])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--operator"));
    assert_eq!(events_of(&functions, &[id]).len(), before);
    let blank = functions.admin(&["--operator", " ", "disable", &user]);
    assert_eq!(blank.status, 2, "{blank:?}");
    assert_eq!(events_of(&functions, &[id]).len(), before);

    for (args, status, says) in [
        (
            vec!["show", "nobody-is-called-this"],
            1,
            "no account is named",
        ),
        (vec!["show", "a:b"], 2, "id:42"),
        (vec!["show", "id:x"], 2, "number"),
        (vec!["show", "id:999999999"], 1, "no account has the id"),
        (
            vec!["events", "--source", "example.com"],
            2,
            "not an IP address",
        ),
        (
            vec!["events", &user, "--since", "2026-02-30"],
            2,
            "not a valid date",
        ),
        (
            vec!["events", &user, "--since", "3000000d"],
            2,
            "too far back",
        ),
        (
            vec!["unlock", "nobody-is-called-this"],
            1,
            "no account is named",
        ),
        (vec!["frobnicate"], 2, "unrecognized subcommand"),
        (vec!["events"], 2, "required"),
    ] {
        let output = functions.admin(&args);
        assert_eq!(output.status, status, "{args:?}: {output:?}");
        assert!(output.stderr.contains(says), "{args:?}: {output:?}");
        assert!(!output.stderr.contains("panicked"), "{args:?}: {output:?}");
    }
    let help = functions.admin(&["--help"]);
    assert_eq!(help.status, 0);
    for command in [
        "show",
        "events",
        "unlock",
        "disable",
        "enable",
        "expire",
        "sign-out",
        "reset-2fa",
        "delete",
        "report",
        "prune",
        "rekey",
        "id:N",
    ] {
        assert!(help.stdout.contains(command), "--help lacks {command}");
    }
}

#[test]
fn every_wait_is_bounded_and_a_timed_out_action_changes_nothing() {
    let functions = Functions::new();
    let user = unique("bounded");
    functions.create_account(&user);
    let id = account_id(&functions, &user);
    // Another session holds the account's row.
    let mut holder = functions.db();
    let mut transaction = holder.transaction().unwrap();
    transaction
        .execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&id])
        .unwrap();
    let started = Instant::now();
    let output = functions.admin(&["--timeout", "2", "disable", &user]);
    let took = started.elapsed();
    transaction.rollback().unwrap();
    assert_eq!(output.status, 1, "{output:?}");
    assert!(output.stderr.contains("did not complete"), "{output:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let shown = functions.admin_json(&["show", &user]);
    assert_eq!(shown["disabled_at"], Value::Null, "half-done: {shown}");
    assert!(!kinds_of(&functions, &[id]).contains("disabled"));

    // A server that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let started = Instant::now();
    let output = std::process::Command::new(binary("cofrap-admin"))
        .env_clear()
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", &port)
        .env("PGSSLMODE", "disable")
        .args(["--timeout", "1", "show", &user])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("did not answer within 1 s"));
    drop(silent);
}
