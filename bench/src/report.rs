//! BENCHMARKS.md, section by section: each function here writes one.

use crate::measure::Series;
use crate::refusals::{self, Refusals};
use crate::rounds::Round;
use crate::{Concurrency, BCRYPT_COST, RUNS};
use std::fmt::Write as _;

/// Targets (README.md, Performance).
pub const MAX_OVERHEAD_FLOORS: f64 = 1.3;
pub const MAX_LIGHT_FLOORS: f64 = 0.5;
pub const MAX_PEAK_RSS_MIB: f64 = 8.0;
pub const MAX_BINARY_MB: f64 = 8.0;
pub const MIN_CONCURRENT_SHARE: f64 = 0.85;
pub const MAX_REFUSAL_SPREAD: f64 = 0.05;
pub const MAX_LOWER_COST_GAP: f64 = 0.25;

/// What the whole report needs besides the rounds.
pub struct Context<'a> {
    pub date: String,
    pub machine: String,
    pub postgres_version: String,
    pub hash_ms: f64,
    pub verify_ms: f64,
    pub refusals: &'a [Refusals],
    pub load: &'a Concurrency,
    pub sizes: &'a [(String, f64)],
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

/// Everything but the fault and image sections.
pub fn write(rounds: &[Round], context: &Context) -> String {
    let mut out = header(context);
    out.push_str(&functions(rounds));
    out.push_str(&misses(rounds));
    out.push_str(&phases(rounds));
    out.push_str(&refusal_section(context.refusals));
    out.push_str(&concurrency(context.load, rounds));
    out.push_str(&binaries(context.sizes));
    out
}

/// The main table and the phases, for `cofrap-bench quick`.
pub fn quick(rounds: &[Round], verify_ms: f64) -> String {
    format!(
        "bcrypt verify {verify_ms:.1} ms\n\n{}{}{}",
        functions(rounds),
        misses(rounds),
        phases(rounds)
    )
}

fn header(context: &Context) -> String {
    let mut w = String::from("# Benchmarks\n\n");
    let _ = writeln!(w, "Written by `make bench` on {}.\n", context.date);
    let _ = writeln!(w, "- Machine: {}", context.machine);
    let _ = writeln!(
        w,
        "- Database: {}, local, over TCP on loopback (password auth, SCRAM), directly \
         and through PgBouncer in transaction pooling",
        context.postgres_version
    );
    let _ = writeln!(
        w,
        "- Each function run as the watchdog runs it: a fresh process, the request on stdin, \
         the release build; {RUNS} runs per function, population and connection; the floor \
         (a process that connects as the functions do, with their one query) run between them."
    );
    let _ = writeln!(
        w,
        "- bcrypt at cost {BCRYPT_COST} (production's), in process: hash {:.1} ms, verify {:.1} ms \
         (medians).",
        context.hash_ms, context.verify_ms
    );
    let _ = writeln!(
        w,
        "- Targets: a bcrypt-bound function's overhead (a run minus an in-process bcrypt of the \
         same kind timed just before it) at most {MAX_OVERHEAD_FLOORS} × the floor; refresh and \
         sign-out at most {MAX_OVERHEAD_FLOORS} × the floor; jwks and the page at most \
         {MAX_LIGHT_FLOORS} × the floor; peak RSS at most {MAX_PEAK_RSS_MIB} MiB.\n"
    );
    w
}

/// The main table: every function of every round against its target.
fn functions(rounds: &[Round]) -> String {
    let mut w = String::from(
        "| connection | accounts | function | median ms | p95 ms | median CPU ms | peak RSS MiB \
         | measured | ratio to the floor | target |\n|---|---:|---|---:|---:|---:|---:|---|---:|---|\n",
    );
    for round in rounds {
        let floor = round.floor.median_wall();
        row(&mut w, round, "floor", &round.floor, "median", 1.0, None);
        for (name, series) in &round.bcrypt_bound {
            let overhead = series.median_overhead();
            let target = Some(MAX_OVERHEAD_FLOORS);
            row(
                &mut w,
                round,
                name,
                series,
                "overhead over bcrypt",
                overhead / floor,
                target,
            );
        }
        for (name, series) in &round.others {
            let limit = match *name {
                "jwks" | "frontend" => MAX_LIGHT_FLOORS,
                _ => MAX_OVERHEAD_FLOORS,
            };
            let ratio = series.median_wall() / floor;
            row(&mut w, round, name, series, "median", ratio, Some(limit));
        }
    }
    w
}

/// Every target missed: by how much, and the phases that hold the time
/// (a function's largest, bcrypt aside: the floor pays its own start,
/// connection and query too, so what a function adds is in its statements,
/// commit and work).
fn misses(rounds: &[Round]) -> String {
    let mut w = String::from(
        "\n## Targets missed\n\n| connection | accounts | function | measured ms | allowed ms \
         | missed by ms | its largest phases, bcrypt aside (median ms) |\n\
         |---|---:|---|---:|---:|---:|---|\n",
    );
    let mut missed = 0;
    for round in rounds {
        let floor = round.floor.median_wall();
        let bound = round
            .bcrypt_bound
            .iter()
            .map(|(name, series)| (*name, series, series.median_overhead(), MAX_OVERHEAD_FLOORS));
        let others = round.others.iter().map(|(name, series)| {
            let limit = match *name {
                "jwks" | "frontend" => MAX_LIGHT_FLOORS,
                _ => MAX_OVERHEAD_FLOORS,
            };
            (*name, series, series.median_wall(), limit)
        });
        for (name, series, measured, limit) in bound.chain(others) {
            let allowed = limit * floor;
            if measured <= allowed && series.peak_rss_mib() <= MAX_PEAK_RSS_MIB {
                continue;
            }
            missed += 1;
            let mut phases: Vec<(String, f64)> = series
                .median_phases()
                .into_iter()
                .filter(|(phase, _)| phase != "bcrypt")
                .collect();
            phases.sort_by(|a, b| b.1.total_cmp(&a.1));
            let largest: Vec<String> = phases
                .iter()
                .take(4)
                .map(|(phase, ms)| format!("{} {ms:.1}", phase_label(phase)))
                .collect();
            let _ = writeln!(
                w,
                "| {} | {} | {name} | {measured:.1} | {allowed:.1} | {:.1} | {} |",
                round.connection,
                round.population,
                measured - allowed,
                largest.join(", ")
            );
        }
    }
    if missed == 0 {
        return "\n## Targets missed\n\nNone.\n".to_owned();
    }
    w
}

/// A phase's name in the report.
fn phase_label(key: &str) -> &str {
    PHASES
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(key, |(_, label)| label)
}

fn row(
    w: &mut String,
    round: &Round,
    name: &str,
    series: &Series,
    measured: &str,
    ratio: f64,
    limit: Option<f64>,
) {
    let target = limit.map_or("(reference)".to_owned(), |limit| {
        let ok = ratio <= limit && series.peak_rss_mib() <= MAX_PEAK_RSS_MIB;
        format!("≤ {limit} × floor: {}", verdict(ok))
    });
    let _ = writeln!(
        w,
        "| {} | {} | {name} | {:.1} | {:.1} | {:.1} | {:.1} | {measured} | {ratio:.2} | {target} |",
        round.connection,
        round.population,
        series.median_wall(),
        series.p95_wall(),
        series.median_cpu(),
        series.peak_rss_mib(),
    );
}

/// The phases of a request, in the order a request goes through them, with
/// their names in the report.
pub const PHASES: [(&str, &str); 22] = [
    ("spawn_to_main", "process start to main"),
    ("read_request", "reading the request"),
    ("configuration", "configuration"),
    ("secrets", "key secrets (Fernet, signing)"),
    ("resolve", "name resolution"),
    ("connect", "connect (TCP, TLS, authentication)"),
    ("schema_check", "schema and role check"),
    ("transaction", "transaction start"),
    ("tx_open", "transaction settings (BEGIN)"),
    ("statements", "statements"),
    ("events", "events"),
    ("commit", "commit"),
    ("password_generation", "password generation"),
    ("bcrypt", "bcrypt"),
    ("totp", "TOTP"),
    ("qr_png", "QR and PNG"),
    ("fernet", "Fernet"),
    ("signing", "signing"),
    ("work", "other work"),
    ("write_answer", "writing the answer"),
    ("close", "logging"),
    ("exit", "closing and exit"),
];

/// Where a request's time goes: the median of each phase, per function, in
/// the last round (the most accounts) of each connection.
fn phases(rounds: &[Round]) -> String {
    let mut w = String::from("\n## Where a request's time goes\n\n");
    for connection in ["direct", "pooler"] {
        let Some(round) = rounds.iter().rev().find(|r| r.connection == connection) else {
            continue;
        };
        let series: Vec<(&str, &Series)> = std::iter::once(("floor", &round.floor))
            .chain(
                round
                    .bcrypt_bound
                    .iter()
                    .chain(&round.others)
                    .map(|(n, s)| (*n, s)),
            )
            .collect();
        let _ = writeln!(
            w,
            "{connection}, {} accounts: median ms of each phase, measured inside the process \
             (`COFRAP_PROFILE=1`), the spawn and the exit by the parent; the floor does not \
             profile itself.\n",
            round.population
        );
        let names: Vec<&str> = series.iter().map(|(n, _)| *n).collect();
        let _ = writeln!(w, "| phase | {} |", names.join(" | "));
        let _ = writeln!(w, "|---|{}", "---:|".repeat(names.len()));
        let medians: Vec<_> = series.iter().map(|(_, s)| s.median_phases()).collect();
        for (key, label) in PHASES {
            let cells: Vec<String> = medians
                .iter()
                .map(|m| m.get(key).map_or(String::new(), |ms| format!("{ms:.2}")))
                .collect();
            if cells.iter().any(|c| !c.is_empty()) {
                let _ = writeln!(w, "| {label} | {} |", cells.join(" | "));
            }
        }
        // Blank for the floor, which has no phases.
        let sums: Vec<String> = medians
            .iter()
            .map(|m| {
                if m.is_empty() {
                    String::new()
                } else {
                    format!("{:.1}", m.values().sum::<f64>())
                }
            })
            .collect();
        let totals: Vec<String> = series
            .iter()
            .map(|(_, s)| format!("{:.1}", s.median_wall()))
            .collect();
        let _ = writeln!(w, "| sum of the medians | {} |", sums.join(" | "));
        let _ = writeln!(w, "| measured median | {} |\n", totals.join(" | "));
    }
    w
}

fn refusal_section(by_cause: &[Refusals]) -> String {
    let mut w = String::from("\n## No enumeration by timing\n\n");
    let _ = writeln!(
        w,
        "authenticate gives one answer, byte for byte, for each cause below, after the same \
         bcrypt work (the tests check both). Median ms of {} runs one at a time, and of {} × {} \
         runs with {} at once on one account (one unknown name); the first six are judged within \
         {:.0} % of each other, the hash made at a lower cost within {:.0} % of the unknown user's.\n",
        refusals::RUNS,
        refusals::RUNS,
        refusals::CLIENTS,
        refusals::CLIENTS,
        MAX_REFUSAL_SPREAD * 100.0,
        MAX_LOWER_COST_GAP * 100.0
    );
    let header: Vec<String> = refusals::CAUSES.iter().map(|c| format!("{c} ms")).collect();
    let _ = writeln!(
        w,
        "| runs | {} | spread of the first six | lower cost's gap |",
        header.join(" | ")
    );
    let _ = writeln!(
        w,
        "|---|{}---:|---:|",
        "---:|".repeat(refusals::CAUSES.len())
    );
    for (runs, concurrent) in [("one at a time", false), ("4 at once, one account", true)] {
        let medians: Vec<f64> = by_cause
            .iter()
            .map(|r| {
                if concurrent {
                    &r.concurrent
                } else {
                    &r.sequential
                }
                .median_wall()
            })
            .collect();
        let cells: Vec<String> = medians.iter().map(|m| format!("{m:.1}")).collect();
        let spread = refusals::spread(&medians[..6]);
        let gap = (medians[6] / medians[0] - 1.0).abs();
        let _ = writeln!(
            w,
            "| {runs} | {} | {:.1} % ({}) | {:.1} % ({}) |",
            cells.join(" | "),
            spread * 100.0,
            verdict(spread <= MAX_REFUSAL_SPREAD),
            gap * 100.0,
            verdict(gap <= MAX_LOWER_COST_GAP)
        );
    }
    w
}

fn concurrency(load: &Concurrency, rounds: &[Round]) -> String {
    let per_second = load.successes as f64 / load.seconds;
    let share = per_second / load.ideal_per_second;
    format!(
        "\n## Concurrency\n\nauthenticate from {} concurrent clients for {:.0} s with {} accounts, \
         direct: {:.2} requests/s, {} errors. The bcrypt-bound ideal is cores / verify time = {:.2} \
         requests/s, so {:.0} % of it (target {:.0} %, no errors): {}.\n",
        load.clients,
        load.seconds,
        rounds.last().map_or(0, |r| r.population),
        per_second,
        load.errors,
        load.ideal_per_second,
        share * 100.0,
        MIN_CONCURRENT_SHARE * 100.0,
        verdict(share >= MIN_CONCURRENT_SHARE && load.errors == 0)
    )
}

fn binaries(sizes: &[(String, f64)]) -> String {
    let mut w =
        String::from("\n## Binaries\n\n| binary | stripped size MB | target |\n|---|---:|---|\n");
    for (name, mb) in sizes {
        let _ = writeln!(
            w,
            "| {name} | {mb:.2} | {} |",
            verdict(*mb <= MAX_BINARY_MB)
        );
    }
    let _ = writeln!(
        w,
        "\nRelease profile (Cargo.toml): `lto = true`, `codegen-units = 1`, `panic = \"abort\"`, \
         `strip = true`. How the targets stand: README.md, Performance; where the time goes: docs/DEVELOPMENT.md."
    );
    w
}
