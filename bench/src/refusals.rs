//! authenticate's refusals, timed side by side: one answer, byte for byte,
//! for every cause (the tests check that, and count their bcrypt work); here
//! their time, one request at a time and [`CLIENTS`] at once on one account
//! (where a row lock held through bcrypt would queue them).

use crate::measure::{Environment, Series};
use crate::rounds::Fixtures;
use crate::{expect, PASSWORD};
use cofrap_tests::{code_at, current_step, unique};
use serde_json::{json, Value};

/// The causes compared, in the report's order. The last is judged apart:
/// an account whose hash was made at a lower cost (10, under a
/// `BCRYPT_COST` of 12) is topped up with dummy work to one check at 12.
pub const CAUSES: [&str; 7] = [
    "unknown user",
    "wrong password",
    "wrong code",
    "locked",
    "hard-locked",
    "disabled",
    "hash of cost 10",
];

/// Runs per cause, one at a time; and rounds of [`CLIENTS`] at once.
pub const RUNS: usize = 10;
pub const CLIENTS: usize = 4;

/// One cause's times.
pub struct Refusals {
    pub sequential: Series,
    pub concurrent: Series,
}

/// The request for `cause` against `user`.
fn request(fixtures: &Fixtures, cause: &str, user: &str) -> Value {
    let right_code = code_at(&fixtures.secret, current_step() * 30);
    let wrong_code = if right_code == "000000" {
        "111111"
    } else {
        "000000"
    };
    match cause {
        "wrong password" => {
            json!({ "username": user, "password": "not-the-password", "totp_code": right_code })
        }
        "wrong code" | "hash of cost 10" => {
            json!({ "username": user, "password": PASSWORD, "totp_code": wrong_code })
        }
        _ => json!({ "username": user, "password": PASSWORD, "totp_code": right_code }),
    }
}

/// An account in the state `cause` needs (a new name for an unknown user).
fn account(db: &mut postgres::Client, cause: &str, user: String) -> String {
    let change = match cause {
        "unknown user" => return unique("nobody-"),
        "locked" => "locked_until = now() + interval '1 hour'",
        "hard-locked" => "locked_until = 'infinity'",
        "disabled" => "disabled_at = now()",
        "hash of cost 10" => "password_hash = $2",
        _ => return user,
    };
    let low = bcrypt::hash(PASSWORD, 10).unwrap();
    let statement = format!("UPDATE users SET {change} WHERE username = $1");
    if change.contains("$2") {
        db.execute(&statement, &[&user, &low]).unwrap();
    } else {
        db.execute(&statement, &[&user]).unwrap();
    }
    user
}

/// Every cause, timed; `next_account` gives an unused account each call.
/// The environment sets thresholds high enough that wrong codes never lock.
pub fn measure(
    env: &Environment,
    db: &mut postgres::Client,
    fixtures: &Fixtures,
    next_account: &mut impl FnMut() -> String,
) -> Vec<Refusals> {
    let mut by_cause = Vec::new();
    for cause in CAUSES {
        let mut sequential = Series::default();
        for _ in 0..RUNS {
            let user = account(db, cause, next_account());
            sequential
                .samples
                .push(refused(env, &request(fixtures, cause, &user)));
        }
        let mut concurrent = Series::default();
        let user = account(db, cause, next_account());
        for _ in 0..RUNS {
            let body = request(fixtures, cause, &user);
            std::thread::scope(|scope| {
                let runs: Vec<_> = (0..CLIENTS)
                    .map(|_| scope.spawn(|| refused(env, &body)))
                    .collect();
                for run in runs {
                    concurrent.samples.push(run.join().unwrap());
                }
            });
        }
        by_cause.push(Refusals {
            sequential,
            concurrent,
        });
    }
    by_cause
}

/// One refused sign-in.
fn refused(env: &Environment, body: &Value) -> crate::measure::Sample {
    let (sample, response) = env.run("authenticate", body);
    expect(
        response["code"] == "invalid_credentials",
        "authenticate refusal",
        &response,
    );
    sample
}

/// How far apart the slowest and the quickest of some medians are, as a
/// share of the quickest.
pub fn spread(medians: &[f64]) -> f64 {
    let low = medians.iter().copied().fold(f64::INFINITY, f64::min);
    let high = medians.iter().copied().fold(0.0, f64::max);
    high / low - 1.0
}
