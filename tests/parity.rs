//! Parity with the Python version, both ways, on one database, with Python's
//! own libraries (bcrypt, cryptography's Fernet, pyotp) as the peers; and the
//! migration of a table the Python version created.

use cofrap_tests::*;
use serde_json::json;

/// The table as the Python version created it (psycopg2 era: SERIAL id,
/// VARCHAR columns, TIMESTAMP without time zone, nullable defaults).
const PYTHON_TABLE: &str = "
    CREATE TABLE users (
        id SERIAL PRIMARY KEY,
        username VARCHAR(255) UNIQUE NOT NULL,
        password_hash VARCHAR(255) NOT NULL,
        mfa_secret TEXT,
        created_at TIMESTAMP DEFAULT NOW(),
        expired BOOLEAN DEFAULT FALSE
    )";

/// The Python generate-password's statement, verbatim.
const PYTHON_UPSERT: &str = "
    INSERT INTO users (username, password_hash, created_at, expired)
    VALUES ($1, $2, NOW(), FALSE)
    ON CONFLICT (username)
    DO UPDATE SET password_hash = EXCLUDED.password_hash, created_at = NOW(), expired = FALSE";

/// The Python generate-2fa's statement, verbatim.
const PYTHON_SET_SECRET: &str = "UPDATE users SET mfa_secret = $1 WHERE username = $2";

/// Writes an account the way the Python functions do; returns the password
/// and the base32 secret.
fn python_account(db: &mut postgres::Client, key: &str, user: &str, secret: &str) -> String {
    let password = "Py-Generated!Password#24x";
    let hash = python("bcrypt_hash", json!({"password": password, "rounds": 12}))["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    db.execute(PYTHON_UPSERT, &[&user, &hash]).unwrap();
    let token = python("fernet_encrypt", json!({"key": key, "plaintext": secret}))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    db.execute(PYTHON_SET_SECRET, &[&token, &user]).unwrap();
    password.to_owned()
}

fn pyotp_code(secret: &str, step: u64) -> String {
    python("totp_at", json!({"secret": secret, "at": step * 30}))["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn an_account_written_by_python_signs_in_here_and_becomes_active() {
    let functions = Functions::new();
    let user = unique("python");
    let secret = python("random_base32", json!({}))["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let password = python_account(&mut functions.db(), &functions.key, &user, &secret);

    let response = functions.call(
        "authenticate",
        json!({"username": user, "password": password, "totp_code": pyotp_code(&secret, current_step())}),
    );
    assert_eq!(
        without_session(&response),
        json!({"authenticated": true, "username": user})
    );
    let active: bool = functions
        .db()
        .query_one(
            "SELECT activated_at IS NOT NULL FROM users WHERE username = $1",
            &[&user],
        )
        .unwrap()
        .get(0);
    assert!(active);
}

#[test]
fn python_secrets_are_read_in_any_base32_form() {
    let functions = Functions::new();
    let canonical = python("random_base32", json!({}))["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let spaced: String = canonical
        .to_lowercase()
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ");
    for stored in [spaced, format!("{canonical}====")] {
        let user = unique("b32form");
        let password = python_account(&mut functions.db(), &functions.key, &user, &stored);
        let response = functions.call(
            "authenticate",
            json!({"username": user, "password": password, "totp_code": pyotp_code(&canonical, current_step())}),
        );
        assert_eq!(
            response["authenticated"], true,
            "stored as {stored:?}: {response}"
        );
    }
}

#[test]
fn what_is_stored_here_is_read_by_python() {
    let functions = Functions::new();
    let user = unique("Rust Made ");
    let user = user.trim();
    let password = functions.create_account(user);
    let response = functions.call(
        "generate-2fa",
        json!({"username": user, "password": password}),
    );
    let key = response["manual_entry_key"].as_str().unwrap();

    let row = functions
        .db()
        .query_one(
            "SELECT password_hash, mfa_secret FROM users WHERE username = $1",
            &[&user],
        )
        .unwrap();
    // bcrypt: Python's checkpw accepts our hash, and refuses a wrong password.
    let hash: String = row.get(0);
    assert_eq!(
        python("bcrypt_check", json!({"password": password, "hash": hash}))["ok"],
        true
    );
    assert_eq!(
        python("bcrypt_check", json!({"password": "wrong", "hash": hash}))["ok"],
        false
    );
    // Fernet: Python decrypts the stored secret to the manual entry key.
    let stored: String = row.get(1);
    let decrypted = python(
        "fernet_decrypt",
        json!({"keys": [functions.key], "token": stored}),
    );
    assert_eq!(decrypted["plaintext"], key);
    // The QR code's URI is pyotp's, character for character.
    let uri = decode_qr(response["qr_code_2fa_base64"].as_str().unwrap());
    let pyotp_uri = python(
        "provisioning_uri",
        json!({"secret": key, "name": user, "issuer": "COFRAP"}),
    );
    assert_eq!(pyotp_uri["uri"], uri.as_str());
    // pyotp's codes are accepted here...
    let step = current_step();
    let response = functions.call(
        "authenticate",
        json!({"username": user, "password": password, "totp_code": pyotp_code(key, step)}),
    );
    assert_eq!(response["authenticated"], true);
    // ...and ours by pyotp.
    let ours = code_at(key, (step + 1) * 30);
    assert_eq!(
        python(
            "totp_verify",
            json!({"secret": key, "code": ours, "at": (step + 1) * 30})
        )["ok"],
        true
    );
}

#[test]
fn the_migration_upgrades_a_python_table_in_place() {
    let scratch = ScratchDatabase::create();
    let mut db = scratch.connect();
    db.batch_execute(PYTHON_TABLE).unwrap();
    let key = fernet_key();
    let secret = python("random_base32", json!({}))["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let enrolled_password = python_account(&mut db, &key, "Enrolled User", &secret);
    db.execute(
        PYTHON_UPSERT,
        &[
            &"half-way",
            &"$2b$12$notarealhashnotarealhashnotarealhashnotarealhashnot",
        ],
    )
    .unwrap();
    db.execute(
        "UPDATE users SET created_at = NULL, expired = NULL WHERE username = 'half-way'",
        &[],
    )
    .unwrap();

    for run in 1..=2 {
        let output = scratch.migrate();
        assert!(
            output.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let rows = db
        .query(
            "SELECT username, activated_at IS NOT NULL, expired, failed_attempts, created_at IS NOT NULL
               FROM users ORDER BY username",
            &[],
        )
        .unwrap();
    let rows: Vec<(String, bool, bool, i32, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        rows,
        vec![
            // Went through the whole Python flow: active, so it cannot be taken.
            ("Enrolled User".to_owned(), true, false, 0, true),
            // Never got 2FA: pending.
            ("half-way".to_owned(), false, false, 0, true),
        ]
    );

    // The Python statements still work on the upgraded table.
    db.execute(PYTHON_UPSERT, &[&"python-after", &"$2b$12$x"])
        .unwrap();
    db.execute(PYTHON_SET_SECRET, &[&"token", &"python-after"])
        .unwrap();
    let pending: bool = db
        .query_one(
            "SELECT activated_at IS NULL FROM users WHERE username = 'python-after'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        pending,
        "rows written after the upgrade start pending, even with a secret"
    );

    // And ours work on it, for old and new accounts alike.
    let functions = Functions::on(scratch.server.clone(), &scratch.name);
    functions.write_secret("encryption-key", &key);
    let response = functions.call(
        "authenticate",
        json!({"username": "enrolled user", "password": enrolled_password,
               "totp_code": pyotp_code(&secret, current_step())}),
    );
    assert_eq!(
        without_session(&response),
        json!({"authenticated": true, "username": "Enrolled User"})
    );
    // Sessions on the Python table (its id is a 32-bit SERIAL).
    let refreshed = functions.call(
        "refresh",
        json!({"refresh_token": response["refresh_token"]}),
    );
    assert_eq!(refreshed["username"], "Enrolled User");
    assert_eq!(
        functions.call("generate-password", json!({"username": "ENROLLED USER"}))["code"],
        "account_exists"
    );
    let (password, secret) = functions.enrolled_account("new-user");
    assert_eq!(
        functions.authenticate("new-user", &password, &secret, current_step())["authenticated"],
        true
    );
}

#[test]
fn the_migration_adds_a_key_to_a_table_without_one() {
    let scratch = ScratchDatabase::create();
    let mut db = scratch.connect();
    db.batch_execute(
        "CREATE TABLE users (username TEXT UNIQUE NOT NULL, password_hash TEXT NOT NULL,
                             mfa_secret TEXT, created_at TIMESTAMP, expired BOOLEAN);
         INSERT INTO users VALUES ('keyless', 'h', NULL, NOW(), FALSE);",
    )
    .unwrap();
    let output = scratch.migrate();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let row = db
        .query_one(
            "SELECT u.id, (SELECT count(*) FROM pg_constraint
                            WHERE conrelid = 'users'::regclass AND contype = 'p')
               FROM users u",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, i64>(1), 1);
}

#[test]
fn the_migration_refuses_usernames_that_differ_only_by_case() {
    let scratch = ScratchDatabase::create();
    let mut db = scratch.connect();
    db.batch_execute(PYTHON_TABLE).unwrap();
    db.execute(PYTHON_UPSERT, &[&"Alice", &"h"]).unwrap();
    db.execute(PYTHON_UPSERT, &[&"alice", &"h"]).unwrap();
    let output = scratch.migrate();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("differ only by case") && message.contains("Alice, alice"),
        "{message}"
    );
    // Nothing was half-applied.
    let columns: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.columns
              WHERE table_name = 'users' AND column_name = 'activated_at'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(columns, 0);
}

#[test]
fn rows_the_python_version_inserts_collide_with_their_look_alikes() {
    // The Python version never writes username_key; the trigger of 0002
    // fills it, so the database still refuses a look-alike of its rows.
    let functions = Functions::new();
    let user = unique("PyLook");
    let secret = python("random_base32", json!({}))["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let password = python_account(&mut functions.db(), &functions.key, &user, &secret);
    let key: String = functions
        .db()
        .query_one(
            "SELECT username_key FROM users WHERE username = $1",
            &[&user],
        )
        .unwrap()
        .get(0);
    assert_eq!(key, user.to_lowercase());
    let fullwidth: String = user
        .chars()
        .map(|c| char::from_u32(c as u32 - 0x21 + 0xff01).unwrap())
        .collect();
    for look_alike in [user.to_lowercase(), fullwidth.clone()] {
        assert_eq!(
            functions.call("generate-password", json!({"username": look_alike}))["code"],
            "account_exists"
        );
    }
    // And the Python row signs in under any of its spellings.
    let response = functions.call(
        "authenticate",
        json!({"username": fullwidth, "password": password,
               "totp_code": pyotp_code(&secret, current_step())}),
    );
    assert_eq!(
        without_session(&response),
        json!({"authenticated": true, "username": user})
    );
}

#[test]
fn the_migration_refuses_usernames_that_now_look_alike() {
    let scratch = ScratchDatabase::create();
    let mut db = scratch.connect();
    db.batch_execute(PYTHON_TABLE).unwrap();
    db.execute(PYTHON_UPSERT, &[&"alice", &"h"]).unwrap();
    // Full-width "ａｌｉｃｅ": a different string, the same name to a person.
    db.execute(
        PYTHON_UPSERT,
        &[&"\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}", &"h"],
    )
    .unwrap();
    let output = scratch.migrate();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("now name one account") && message.contains("alice, ａｌｉｃｅ"),
        "{message}"
    );
    // 0001 was applied (its own transaction); 0002 was not, not even half.
    let versions: Vec<i32> = db
        .query(
            "SELECT version FROM cofrap_schema_migrations ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, vec![1]);
    let columns: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.columns
              WHERE table_name = 'users' AND column_name = 'username_key'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(columns, 0);
}
