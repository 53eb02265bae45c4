//! Running a function once as the watchdog does, and what one run costs:
//! wall time, CPU time, peak memory, and where its time went, phase by
//! phase, from the function's own profile (`COFRAP_PROFILE`, see
//! `common::log`) plus the spawn and the exit, which only the parent sees.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// One process run.
#[derive(Clone)]
pub struct Sample {
    pub wall_ms: f64,
    pub cpu_ms: f64,
    pub peak_rss_kib: i64,
    /// Milliseconds per phase, `spawn_to_main` and `exit` included, when the
    /// function profiled itself.
    pub phases: BTreeMap<String, f64>,
}

/// A series of runs, with the paired bcrypt times when there are some.
#[derive(Default)]
pub struct Series {
    pub samples: Vec<Sample>,
    pub bcrypt_ms: Vec<f64>,
}

impl Series {
    pub fn median_wall(&self) -> f64 {
        median(self.samples.iter().map(|s| s.wall_ms).collect())
    }

    pub fn p95_wall(&self) -> f64 {
        let mut walls: Vec<f64> = self.samples.iter().map(|s| s.wall_ms).collect();
        walls.sort_by(f64::total_cmp);
        walls[((walls.len() as f64 * 0.95).ceil() as usize).max(1) - 1]
    }

    pub fn median_cpu(&self) -> f64 {
        median(self.samples.iter().map(|s| s.cpu_ms).collect())
    }

    pub fn peak_rss_mib(&self) -> f64 {
        let peak = self.samples.iter().map(|s| s.peak_rss_kib).max();
        peak.unwrap_or(0) as f64 / 1024.0
    }

    /// Median of (run − its paired bcrypt operation).
    pub fn median_overhead(&self) -> f64 {
        let overheads = self.samples.iter().zip(&self.bcrypt_ms);
        median(overheads.map(|(s, b)| s.wall_ms - b).collect())
    }

    /// The median of each phase over the runs (a run without the phase
    /// counts 0 for it).
    pub fn median_phases(&self) -> BTreeMap<String, f64> {
        let names: std::collections::BTreeSet<&String> =
            self.samples.iter().flat_map(|s| s.phases.keys()).collect();
        names
            .into_iter()
            .map(|name| {
                let values = self.samples.iter();
                let values = values.map(|s| s.phases.get(name).copied().unwrap_or(0.0));
                (name.clone(), median(values.collect()))
            })
            .collect()
    }
}

pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Where the function binaries are: beside this one (target/release/).
pub fn binary(name: &str) -> PathBuf {
    std::env::current_exe().unwrap().with_file_name(name)
}

/// Milliseconds of `work`.
pub fn timed(work: impl FnOnce()) -> f64 {
    let started = Instant::now();
    work();
    started.elapsed().as_secs_f64() * 1000.0
}

fn unix_ns() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_nanos() as f64)
}

/// The functions' environment, as stack.yaml sets it.
#[derive(Clone)]
pub struct Environment {
    pub variables: Vec<(String, String)>,
}

impl Environment {
    /// Sets (or replaces) one variable.
    pub fn set(&mut self, name: &str, value: &str) {
        self.variables.retain(|(k, _)| k != name);
        self.variables.push((name.to_owned(), value.to_owned()));
    }

    /// Runs `program` once on `request`, as the watchdog does, profiled.
    // The child is reaped by wait4 (wait_with_usage), not by Child::wait.
    #[allow(clippy::zombie_processes)]
    pub fn run(&self, program: &str, request: &Value) -> (Sample, Value) {
        let spawned = unix_ns();
        let started = Instant::now();
        let mut child = Command::new(binary(program))
            .env_clear()
            .envs(self.variables.iter().map(|(k, v)| (k, v)))
            .env("COFRAP_PROFILE", "1")
            .env("COFRAP_PROFILE_SPAWNED_AT", format!("{spawned:.0}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let body = if request.is_null() {
            String::new()
        } else {
            request.to_string()
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let (mut stdout, mut stderr) = (String::new(), String::new());
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let (status, usage) = wait_with_usage(&child);
        let exited = unix_ns();
        let sample = Sample {
            wall_ms: started.elapsed().as_secs_f64() * 1000.0,
            cpu_ms: millis(usage.ru_utime) + millis(usage.ru_stime),
            peak_rss_kib: usage.ru_maxrss,
            phases: phases(&stderr, exited),
        };
        let response = serde_json::from_str(&stdout).unwrap_or_else(|_| {
            if stdout.to_ascii_lowercase().starts_with("<!doctype html>") {
                json!({"page": true})
            } else {
                json!({"error": "not JSON", "stdout": stdout})
            }
        });
        if status != 0 {
            return (
                sample,
                json!({"error": "exit status", "status": status, "response": response}),
            );
        }
        (sample, response)
    }
}

/// The phases of a run from its log line's profile, with the spawn (from
/// the profile) and the exit (`exited` less the profile's instant).
fn phases(log: &str, exited: f64) -> BTreeMap<String, f64> {
    let Ok(line) = serde_json::from_str::<Value>(log.trim()) else {
        return BTreeMap::new();
    };
    let profile = &line["profile"];
    let mut phases: BTreeMap<String, f64> = profile["phases_ms"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, ms)| (name.clone(), ms.as_f64().unwrap_or(0.0)))
        .collect();
    if let Some(ms) = profile["spawn_to_main_ms"].as_f64() {
        phases.insert("spawn_to_main".into(), ms);
    }
    if let Some(taken) = profile["taken_unix_ns"].as_f64() {
        phases.insert("exit".into(), (exited - taken) / 1e6);
    }
    phases
}

/// Waits for `child` and returns its exit status and resource usage.
#[allow(unsafe_code)]
fn wait_with_usage(child: &std::process::Child) -> (i32, libc::rusage) {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data, for which all-zero bytes are valid;
    // wait4 only writes through the two pointers, which point to live locals;
    // `pid` is our own child, not yet reaped (std reaps only in wait()).
    let (reaped, usage) = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let reaped = libc::wait4(pid, &mut status, 0, &mut usage);
        (reaped, usage)
    };
    assert_eq!(reaped, pid, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage)
}

fn millis(time: libc::timeval) -> f64 {
    time.tv_sec as f64 * 1000.0 + time.tv_usec as f64 / 1000.0
}
