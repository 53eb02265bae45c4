//! The Images section of BENCHMARKS.md: the images as `make images` builds
//! them (podman, offline, with the classic watchdog of ../shared/tools),
//! their size, and the time from `podman run` to the first answer.

use crate::measure::median;
use crate::report::verdict;
use std::fmt::Write as _;
use std::time::Instant;

/// Runs per image for the start time.
const IMAGE_STARTS: usize = 5;
/// Goal for every image, uncompressed.
const MAX_IMAGE_MB: f64 = 12.0;

/// The images as `make images` builds them (podman, offline, with the classic
/// watchdog of ../shared/tools): their size, uncompressed and gzipped, and the
/// time from `podman run` to the first answer of the function (a request it
/// refuses before reading any configuration, so no database is involved).
pub fn section() -> String {
    use cofrap_tests::containers::{self, Container, RunOptions};
    let mut out = String::from("\n## Images\n\n");
    if let Some(reason) = containers::why_containers_cannot_run() {
        eprintln!("images not measured: {reason}");
        out.push_str(&format!("Not measured: {reason}.\n"));
        return out;
    }
    eprintln!("images: make images (podman, offline)");
    let functions = containers::build_images();
    let version = {
        let container = Container::run(&containers::image(&functions[0]), &RunOptions::default());
        watchdog_version(&container.logs())
    };
    let w = &mut out;
    let _ = writeln!(
        w,
        "Built by `make images` with podman from the unchanged Dockerfile, offline, with the classic \
         watchdog {} (stripped, as the official images' is). Start: median of {IMAGE_STARTS} runs, \
         from `podman run` (read-only root, no capabilities, user 10001) to the first answer of the \
         function through the watchdog.\n",
        version
    );
    let _ = writeln!(
        w,
        "| image | size MB | gzip MB | start to first answer ms | target ≤ {MAX_IMAGE_MB:.0} MB |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---|");
    for function in &functions {
        let image = containers::image(function);
        let (size, gzip) = containers::image_sizes(&image);
        let starts: Vec<f64> = (0..IMAGE_STARTS)
            .map(|_| {
                let started = Instant::now();
                let container = Container::run(&image, &RunOptions::default());
                let body: &[u8] = if function == "frontend" { b"" } else { b"{}" };
                let answer = containers::request(&container.url(), Some(body));
                // jwks runs here without its one secret (no database, no
                // keys mounted): its configuration_error is still the
                // function's first answer through the watchdog.
                let expected = if function == "jwks" { 500 } else { 200 };
                assert_eq!(answer.status, expected, "{function}: {answer:?}");
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        let mb = size as f64 / 1e6;
        let _ = writeln!(
            w,
            "| {function} | {mb:.2} | {:.2} | {:.0} | {} |",
            gzip as f64 / 1e6,
            median(starts),
            verdict(mb <= MAX_IMAGE_MB)
        );
    }
    out
}

/// The version the watchdog prints when it starts ("Version: 0.2.1 SHA: ...").
fn watchdog_version(logs: &str) -> String {
    logs.split("Version: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("of unknown version")
        .to_owned()
}
