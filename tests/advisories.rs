//! The RustSec advisory check of `make lint` (`make audit`: cargo-audit on
//! Cargo.lock, offline, against the snapshot in `ADVISORY_DB`), driven
//! through the Makefile as CI drives it.
//!
//! The check passes on the checked-in Cargo.lock, fails on a lock that holds
//! a version with an advisory (the rustls-webpki line that rustls's former
//! RustCrypto provider pulled in), and every exception of `.cargo/audit.toml`
//! has its reason and is still needed: an exception no crate needs any more
//! would silently hide the next crate the advisory hits.

use cofrap_tests::*;
use std::path::Path;
use std::process::Command;

/// `make audit LOCKFILE=<lockfile>`: exit status and everything it printed.
fn make_audit(lockfile: &Path) -> (bool, String) {
    let output = Command::new("make")
        .args(["--no-print-directory", "-s", "audit"])
        .arg(format!("LOCKFILE={}", lockfile.display()))
        .current_dir(repo_root())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

/// The advisory ids `.cargo/audit.toml` ignores, each with the line above it.
fn exceptions() -> Vec<(String, String)> {
    let config = std::fs::read_to_string(repo_root().join(".cargo/audit.toml")).unwrap();
    let lines: Vec<&str> = config.lines().map(str::trim).collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        for piece in line.split('"').filter(|p| p.starts_with("RUSTSEC-")) {
            let above = if i > 0 { lines[i - 1] } else { "" };
            found.push((piece.to_owned(), above.to_owned()));
        }
    }
    found
}

#[test]
fn the_checked_in_lock_passes_and_a_lock_with_an_advisory_fails() {
    let (passed, printed) = make_audit(&repo_root().join("Cargo.lock"));
    assert!(passed, "make audit fails on Cargo.lock:\n{printed}");

    // The same lock plus rustls-webpki 0.102.8: RUSTSEC-2026-0104 (a panic
    // while parsing a certificate revocation list), among others.
    let dir = std::env::temp_dir().join(unique("cofrap-audit-"));
    std::fs::create_dir_all(&dir).unwrap();
    let lockfile = dir.join("Cargo.lock");
    let mut lock = std::fs::read_to_string(repo_root().join("Cargo.lock")).unwrap();
    lock.push_str(
        "\n[[package]]\nname = \"rustls-webpki\"\nversion = \"0.102.8\"\n\
         source = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
    );
    std::fs::write(&lockfile, lock).unwrap();
    let (passed, printed) = make_audit(&lockfile);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !passed,
        "make audit passed a lock with rustls-webpki 0.102.8"
    );
    assert!(printed.contains("RUSTSEC-2026-0104"), "{printed}");
}

#[test]
fn every_exception_has_its_reason_and_is_still_needed() {
    let exceptions = exceptions();
    if exceptions.is_empty() {
        return;
    }
    // The lock's advisories with no exception: cargo-audit run outside the
    // repository, where it reads no .cargo/audit.toml.
    let db = repo_root().join("../shared/advisory-db");
    let db = std::env::var("ADVISORY_DB").map_or(db, Into::into);
    let output = Command::new("cargo")
        .args(["audit", "--no-fetch", "--no-yanked", "--json", "--db"])
        .arg(&db)
        .arg("--file")
        .arg(repo_root().join("Cargo.lock"))
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("\"database\""), "no report: {output:?}");
    for (id, above) in exceptions {
        assert!(
            above.starts_with('#') && above.len() > 20,
            "{id} in .cargo/audit.toml: say why it does not apply, in a comment above it"
        );
        assert!(
            report.contains(&format!("\"{id}\"")),
            "{id} in .cargo/audit.toml matches no crate of Cargo.lock any more: remove it"
        );
    }
}
