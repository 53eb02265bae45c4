//! The request's deadline: every function answers with its JSON before the
//! watchdog's `exec_timeout` kills it, whatever the database does.
//!
//! One deadline per request, counted from the process's start
//! (`REQUEST_DEADLINE_MS`). Three things enforce it, from the gentlest:
//!
//! 1. the database itself: `statement_timeout` and `lock_timeout` are set
//!    from the remaining budget when connecting (see [`crate::db`]), so a
//!    lock wait or a slow statement ends with an error, a rollback and a
//!    normal answer a little before the deadline;
//! 2. every blocking step outside the database is bounded by what remains:
//!    name resolution (on a thread we stop waiting for), TCP connect;
//! 3. a guard thread, for what nothing else bounds (a server that accepted
//!    the connection and went silent, a frozen TLS handshake): at the
//!    deadline it prints `database_timeout`, logs the phase the request was
//!    in, and exits the process with status 1. The exit closes the
//!    connection; the server rolls back whatever transaction was open, and a
//!    commit it receives later is refused by the database (migration 0003).
//!
//! The guard and the main thread race to answer; [`claim_answer`] makes sure
//! exactly one of them writes stdout.

use crate::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The steps of a request, as the log names them when the deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Configuration,
    Resolve,
    Connect,
    SchemaCheck,
    Work,
    Transaction,
    Commit,
}

impl Phase {
    const ALL: [Phase; 7] = [
        Phase::Configuration,
        Phase::Resolve,
        Phase::Connect,
        Phase::SchemaCheck,
        Phase::Work,
        Phase::Transaction,
        Phase::Commit,
    ];

    /// Its key in the profile (see [`crate::log`]).
    pub fn key(self) -> &'static str {
        match self {
            Phase::Configuration => "configuration",
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::SchemaCheck => "schema_check",
            Phase::Work => "work",
            Phase::Transaction => "transaction",
            Phase::Commit => "commit",
        }
    }

    /// As written in the log's `detail`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Configuration => "reading the configuration",
            Phase::Resolve => "resolving the database host name",
            Phase::Connect => "connecting (TCP, TLS, authentication)",
            Phase::SchemaCheck => "checking the schema",
            Phase::Work => "the function's work and statements",
            Phase::Transaction => "a transaction's statements",
            Phase::Commit => "committing",
        }
    }
}

/// The phase the request is in: written by the main thread, read by the
/// guard when the deadline passes.
static PHASE: AtomicUsize = AtomicUsize::new(0);

/// The exit status of the answer, once someone (the main thread, the guard,
/// the panic hook) has started writing it. Held while writing.
static ANSWERED: Mutex<Option<u8>> = Mutex::new(None);

/// Records that the request has entered `phase`.
pub fn enter(phase: Phase) {
    let index = Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0);
    PHASE.store(index, Ordering::Relaxed);
    crate::log::profile::mark(phase.key());
}

/// The phase the request is in.
pub fn current() -> Phase {
    Phase::ALL[PHASE.load(Ordering::Relaxed) % Phase::ALL.len()]
}

/// Takes the right to write the answer, which will exit with `status`.
/// `None` when another thread already has it (the guard, which then exits
/// the process): the caller must not write. Hold the returned guard while
/// writing.
pub fn claim_answer(status: u8) -> Option<MutexGuard<'static, Option<u8>>> {
    let mut answered = ANSWERED.lock().unwrap_or_else(|e| e.into_inner());
    if answered.is_some() {
        return None;
    }
    *answered = Some(status);
    Some(answered)
}

/// The error for a request whose deadline passed during the current phase;
/// `cause` says how we know. Made here, where the phase is known, so that
/// the log names it.
pub fn timeout(cause: String) -> Error {
    Error::DatabaseTimeout(format!("{cause}, while {}", current().name()))
}

/// The instant by which the request must have been answered.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// `budget` from `started`.
    pub fn new(started: Instant, budget: Duration) -> Deadline {
        Deadline {
            at: started + budget,
            budget,
        }
    }

    /// The whole budget, as configured.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// What is left; zero once passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// The time kept back at the end of the budget: the database stops
    /// statements and refuses commits this long before the deadline, so that
    /// its answer (a result or a clean error) still reaches us in time. An
    /// eighth of the budget, 250 ms to 1 s.
    pub fn margin(&self) -> Duration {
        (self.budget / 8).clamp(Duration::from_millis(250), Duration::from_secs(1))
    }

    /// What the database may use: the remaining time less the margin.
    pub fn database_budget(&self) -> Duration {
        self.remaining().saturating_sub(self.margin())
    }

    /// An error when the deadline has passed, naming the current phase.
    pub fn check(&self) -> Result<(), Error> {
        if self.remaining().is_zero() {
            return Err(timeout("the deadline passed".into()));
        }
        Ok(())
    }

    /// Starts the guard thread. At the deadline: if the answer is written
    /// already (the process is only closing its connection), it exits with
    /// that answer's status; otherwise `answer` writes the timeout answer and
    /// the guard exits with status 1.
    pub fn start_guard(&self, answer: impl FnOnce() + Send + 'static) {
        let at = self.at;
        // Detached: the process exits without joining it.
        let spawned = std::thread::Builder::new()
            .name("deadline".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                let mut answered = ANSWERED.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(status) = *answered {
                    std::process::exit(i32::from(status));
                }
                *answered = Some(1);
                answer();
                std::process::exit(1);
            });
        // Without a guard the server-side timeouts still bound most faults;
        // failing to start a thread is no reason to refuse the request.
        drop(spawned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_an_eighth_within_bounds() {
        let now = Instant::now();
        let margin = |ms| Deadline::new(now, Duration::from_millis(ms)).margin();
        assert_eq!(margin(8000), Duration::from_secs(1));
        assert_eq!(margin(60_000), Duration::from_secs(1));
        assert_eq!(margin(4000), Duration::from_millis(500));
        assert_eq!(margin(1000), Duration::from_millis(250));
    }

    #[test]
    fn a_passed_deadline_names_the_phase() {
        let deadline = Deadline::new(
            Instant::now() - Duration::from_secs(2),
            Duration::from_secs(1),
        );
        enter(Phase::Commit);
        let error = deadline.check().unwrap_err();
        assert_eq!(error.code(), "database_timeout");
        assert!(error.log_detail().unwrap().contains("committing"));
        assert!(deadline.remaining().is_zero());
        assert!(deadline.database_budget().is_zero());
    }
}
