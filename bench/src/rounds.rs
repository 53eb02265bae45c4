//! One round of measurements: every function, with a given number of
//! accounts in the table and a given way to the database (direct, or
//! through PgBouncer in transaction pooling), the floor run between them so
//! that both are measured in the same conditions.

use crate::measure::{timed, Environment, Series};
use crate::{expect, BCRYPT_COST, PASSWORD, RUNS};
use cofrap_tests::{code_at, current_step, unique, ScratchDatabase};
use common::account::Username;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The fixtures every round uses: one password hash, one secret (and its
/// Fernet token).
pub struct Fixtures {
    pub password_hash: String,
    pub secret: String,
    pub encrypted_secret: String,
}

/// What one round measured.
pub struct Round {
    pub population: i64,
    /// "direct" or "pooler".
    pub connection: &'static str,
    pub floor: Series,
    /// The bcrypt-bound functions, each run paired with an in-process bcrypt.
    pub bcrypt_bound: Vec<(&'static str, Series)>,
    /// The others, against the floor alone.
    pub others: Vec<(&'static str, Series)>,
}

/// The floor is quick and the reference of every ratio: a few runs first,
/// then one before each function run.
pub const FIRST_FLOOR_RUNS: usize = 10;

/// Active accounts `bench-<from>` to `bench-<to>`, with a known password and
/// 2FA, in one statement, their look-alike keys computed by `make
/// db-migrate` (`cofrap-admin rekey`) as on a real database; then the table
/// settled (statistics, visibility map, no checkpoint of a million fresh
/// rows running under the measurements).
pub fn fill(scratch: &ScratchDatabase, fixtures: &Fixtures, from: i64, to: i64) {
    let mut db = scratch.connect();
    db.execute(
        "INSERT INTO users (username, password_hash, mfa_secret, created_at, expired, activated_at)
         SELECT 'bench-' || g, $1, $2, now(), false, now()
           FROM generate_series($3::bigint, $4::bigint) g",
        &[
            &fixtures.password_hash,
            &fixtures.encrypted_secret,
            &from,
            &to,
        ],
    )
    .unwrap();
    let migrated = cofrap_tests::migrate(&scratch.server, &scratch.name);
    assert!(migrated.status.success(), "{migrated:?}");
    // Two statements: VACUUM refuses to run in the implicit transaction of
    // a multi-statement query.
    db.batch_execute("VACUUM ANALYZE users").unwrap();
    db.batch_execute("CHECKPOINT").unwrap();
}

/// Pending accounts with the known password, for generate-2fa, keyed as the
/// functions key them.
fn pending_accounts(db: &mut postgres::Client, fixtures: &Fixtures, count: usize) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|_| unique("pending-")).collect();
    for name in &names {
        let username = Username::parse(name).unwrap();
        db.execute(
            "INSERT INTO users (username, username_key, username_skeleton,
                                username_display_skeleton, password_hash)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &name,
                &username.key(),
                &username.skeleton(),
                &username.display_skeleton(),
                &fixtures.password_hash,
            ],
        )
        .unwrap();
    }
    names
}

/// Open sessions of account `bench-<account>`, stored directly: the refresh
/// tokens sign-out is given.
fn sessions(db: &mut postgres::Client, account: i64, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            let token = unique("refresh-token-");
            let hash = Sha256::digest(token.as_bytes()).to_vec();
            db.execute(
                "WITH s AS (INSERT INTO sessions (user_id, credentials_issued_at, expires_at)
                            SELECT id, created_at, now() + interval '1 hour'
                              FROM users WHERE username = 'bench-' || $1
                            RETURNING id)
                 INSERT INTO refresh_tokens (token_hash, session_id) SELECT $2, id FROM s",
                &[&account.to_string(), &hash],
            )
            .unwrap();
            token
        })
        .collect()
}

/// Measures every function once for `population` accounts through `env`;
/// `next_unused` is the first account no run has signed in with yet (a code
/// is accepted once per account and step).
pub fn round(
    env: &Environment,
    db: &mut postgres::Client,
    fixtures: &Fixtures,
    (population, connection): (i64, &'static str),
    next_unused: &mut i64,
) -> Round {
    eprintln!("round: {population} accounts, {connection}");
    let mut floor = Series::default();
    let mut floor_run = || {
        let (sample, response) = env.run("floor", &json!({ "username": "floor" }));
        expect(response["connected"] == true, "floor", &response);
        floor.samples.push(sample);
    };
    for _ in 0..FIRST_FLOOR_RUNS {
        floor_run();
    }
    let created: Vec<Value> = (0..RUNS)
        .map(|_| json!({ "username": unique("new-") }))
        .collect();
    let generate_password =
        measure_bcrypt_bound(env, "generate-password", created, fixtures, &mut floor_run);
    let enrolled: Vec<Value> = pending_accounts(db, fixtures, RUNS)
        .iter()
        .map(|user| json!({ "username": user, "password": PASSWORD }))
        .collect();
    let generate_2fa =
        measure_bcrypt_bound(env, "generate-2fa", enrolled, fixtures, &mut floor_run);
    let first = *next_unused;
    *next_unused += RUNS as i64;
    // Codes are computed when each run starts: a step may pass in between.
    let signed_in: Vec<Value> = (first..first + RUNS as i64)
        .map(|user| json!({ "username": format!("bench-{user}"), "password": PASSWORD }))
        .collect();
    let authenticate =
        measure_bcrypt_bound(env, "authenticate", signed_in, fixtures, &mut floor_run);
    let bcrypt_bound = vec![
        ("generate-password", generate_password),
        ("generate-2fa", generate_2fa),
        ("authenticate", authenticate),
    ];
    *next_unused += 1;
    let others = measure_others(env, db, fixtures, *next_unused - 1, &mut floor_run);
    Round {
        population,
        connection,
        floor,
        bcrypt_bound,
        others,
    }
}

/// Runs `name` once per request, each paired with an in-process bcrypt of
/// the kind it does, timed just before it, and a floor run before that.
/// authenticate's requests get their code then.
fn measure_bcrypt_bound(
    env: &Environment,
    name: &str,
    requests: Vec<Value>,
    fixtures: &Fixtures,
    floor_run: &mut impl FnMut(),
) -> Series {
    let mut series = Series::default();
    for mut request in requests {
        floor_run();
        series.bcrypt_ms.push(timed(|| {
            if name == "generate-password" {
                bcrypt::hash(PASSWORD, BCRYPT_COST).unwrap();
            } else {
                bcrypt::verify(PASSWORD, &fixtures.password_hash).unwrap();
            }
        }));
        if name == "authenticate" {
            request["totp_code"] = code_at(&fixtures.secret, current_step() * 30).into();
        }
        let (sample, response) = env.run(name, &request);
        let succeeded = response["qr_code_base64"].is_string()
            || response["manual_entry_key"].is_string()
            || response["authenticated"] == true;
        expect(succeeded, name, &response);
        series.samples.push(sample);
    }
    series
}

/// refresh (a chain of rotations from one sign-in), sign-out (sessions of
/// their own), jwks and the page: no bcrypt, against the floor alone.
fn measure_others(
    env: &Environment,
    db: &mut postgres::Client,
    fixtures: &Fixtures,
    account: i64,
    floor_run: &mut impl FnMut(),
) -> Vec<(&'static str, Series)> {
    let code = code_at(&fixtures.secret, current_step() * 30);
    let (_, signed_in) = env.run(
        "authenticate",
        &json!({ "username": format!("bench-{account}"), "password": PASSWORD, "totp_code": code }),
    );
    let mut refresh_token = signed_in["refresh_token"].clone();
    let mut sign_out_tokens = sessions(db, account, RUNS).into_iter();
    let mut out: Vec<(&'static str, Series)> = ["refresh", "sign-out", "jwks", "frontend"]
        .into_iter()
        .map(|name| (name, Series::default()))
        .collect();
    for (name, series) in &mut out {
        for _ in 0..RUNS {
            floor_run();
            let request = match *name {
                "refresh" => json!({ "refresh_token": refresh_token }),
                "sign-out" => json!({ "refresh_token": sign_out_tokens.next() }),
                _ => Value::Null,
            };
            let (sample, response) = env.run(name, &request);
            let succeeded = match *name {
                "refresh" => response["access_token"].is_string(),
                "sign-out" => response["signed_out"] == true,
                "jwks" => response["keys"].is_array(),
                _ => response["page"] == true,
            };
            expect(succeeded, name, &response);
            if *name == "refresh" {
                refresh_token = response["refresh_token"].clone();
            }
            series.samples.push(sample);
        }
    }
    out
}
