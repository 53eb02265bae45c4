//! The invocation's one log line on stderr, and what the code notes for it
//! along the way.
//!
//! Every invocation logs exactly one JSON line: the function, the outcome
//! code, the duration, the account's numeric id when the request named an
//! existing account (so that an operator sees a campaign against one account
//! without the log ever holding a username), and, for server faults, the
//! operator's detail. Nothing from the request is logged.
//!
//! The domain code notes what it learns ([`note_account_id`]) as it goes;
//! the runner ([`crate::function`]) writes the line once the answer is out.
//! Each invocation is a process of its own, so process-wide slots are
//! exactly one request's.
//!
//! **Profiling.** With `COFRAP_PROFILE=1` in its environment (the benchmark
//! and a few tests set it, never a deployment), the line also carries a
//! `profile`: the milliseconds spent in each phase of the request, from the
//! first line of `main` to the log line (reading the request, the
//! configuration, resolving, connecting, each transaction's opening, its
//! statements, its events and its commit, bcrypt, TOTP, QR and PNG,
//! Fernet, signing, writing the answer), the bcrypt work done, in units of
//! one check at cost 0 (a check at cost c counts 2^c), and two instants on
//! the system clock: when `main` began and when the profile was taken. With
//! `COFRAP_PROFILE_SPAWNED_AT` (Unix nanoseconds, set by whoever starts the
//! process just before it does), it also has the time from the spawn to
//! `main`; whoever waits for the process can count the time from the
//! profile to the exit. Without `COFRAP_PROFILE`, profiling costs one
//! relaxed atomic load per phase change.

use serde_json::{json, Map, Value};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The environment variable that turns profiling on.
pub const PROFILE_VARIABLE: &str = "COFRAP_PROFILE";

/// The id of the account this invocation concerns, once known; 0 for none
/// (identity ids start at 1).
static ACCOUNT_ID: AtomicI64 = AtomicI64::new(0);

/// Records which account this invocation concerns, for its log line. Called
/// as soon as an account is identified, so refusals are logged with it too.
pub fn note_account_id(id: i64) {
    ACCOUNT_ID.store(id, Ordering::Relaxed);
}

/// The account recorded by [`note_account_id`], if any.
pub fn account_id() -> Option<i64> {
    Some(ACCOUNT_ID.load(Ordering::Relaxed)).filter(|id| *id != 0)
}

/// Writes the invocation's one log line on stderr: function, outcome code,
/// duration, the account's numeric id when one was identified, for server
/// faults the operator's detail, and the profile when asked for.
pub fn write(function: &str, outcome: &str, started: Instant, detail: Option<&str>) {
    let mut line = json!({
        "function": function,
        "outcome": outcome,
        "duration_ms": started.elapsed().as_millis() as u64,
    });
    if let Some(id) = account_id() {
        line["account_id"] = Value::from(id);
    }
    if let Some(detail) = detail {
        line["detail"] = Value::from(detail);
    }
    if let Some(profile) = profile::report() {
        line["profile"] = profile;
    }
    // One write: stderr is unbuffered, and the line would otherwise go out
    // in dozens of pieces.
    let mut text = line.to_string();
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Where a request's time goes, gathered only when [`PROFILE_VARIABLE`] asks.
pub mod profile {
    use super::*;

    static ENABLED: AtomicBool = AtomicBool::new(false);
    static BCRYPT_WORK: AtomicU64 = AtomicU64::new(0);
    /// (phase name, when it began), in order.
    static MARKS: Mutex<Vec<(&'static str, Instant)>> = Mutex::new(Vec::new());
    /// When `main` began, Unix nanoseconds.
    static STARTED_UNIX_NS: AtomicU64 = AtomicU64::new(0);

    /// The variable holding the instant the process was spawned.
    pub const SPAWNED_AT_VARIABLE: &str = "COFRAP_PROFILE_SPAWNED_AT";

    /// Reads [`PROFILE_VARIABLE`] once, at the start of `main`, and opens
    /// the first phase.
    pub fn start(first_phase: &'static str, at: Instant) {
        if std::env::var_os(PROFILE_VARIABLE).is_some_and(|v| v == "1") {
            ENABLED.store(true, Ordering::Relaxed);
            STARTED_UNIX_NS.store(unix_ns(), Ordering::Relaxed);
            mark_at(first_phase, at);
        }
    }

    /// Runs `work` as phase `phase`, then returns to the phase it
    /// interrupted.
    pub fn during<T>(phase: &'static str, work: impl FnOnce() -> T) -> T {
        if !enabled() {
            return work();
        }
        let interrupted = MARKS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .map_or("work", |(name, _)| *name);
        mark(phase);
        let result = work();
        mark(interrupted);
        result
    }

    fn unix_ns() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Whether profiling is on.
    pub fn enabled() -> bool {
        ENABLED.load(Ordering::Relaxed)
    }

    /// The request enters `phase` now.
    pub fn mark(phase: &'static str) {
        if enabled() {
            mark_at(phase, Instant::now());
        }
    }

    fn mark_at(phase: &'static str, at: Instant) {
        MARKS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((phase, at));
    }

    /// One bcrypt operation (hash or check) at `cost` was done.
    pub fn count_bcrypt(cost: u32) {
        if enabled() {
            BCRYPT_WORK.fetch_add(1u64.checked_shl(cost).unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// The profile for the log line: milliseconds per phase (summed when a
    /// phase recurs), up to now, and the bcrypt work. `None` when off.
    pub fn report() -> Option<Value> {
        if !enabled() {
            return None;
        }
        let now = Instant::now();
        let marks = MARKS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut phases = Map::new();
        for (index, (phase, began)) in marks.iter().enumerate() {
            let ended = marks.get(index + 1).map_or(now, |(_, next)| *next);
            let ms = ended.saturating_duration_since(*began).as_secs_f64() * 1000.0;
            let total = phases.get(*phase).and_then(Value::as_f64).unwrap_or(0.0) + ms;
            phases.insert((*phase).to_owned(), json!(total));
        }
        let started_ns = STARTED_UNIX_NS.load(Ordering::Relaxed);
        let mut profile = json!({
            "phases_ms": phases,
            "bcrypt_work": BCRYPT_WORK.load(Ordering::Relaxed),
            "main_unix_ns": started_ns,
            "taken_unix_ns": unix_ns(),
        });
        let spawned = std::env::var(SPAWNED_AT_VARIABLE)
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(spawned) = spawned {
            profile["spawn_to_main_ms"] = json!(started_ns.saturating_sub(spawned) as f64 / 1e6);
        }
        Some(profile)
    }
}
