//! frontend: the page people use, served as a classic-watchdog function
//! (`content_type: text/html`), so that it deploys through stack.yaml like
//! the others and calls them on the same origin (`/function/<name>`).
//!
//! It reads no configuration, no secret and no database: it prints the page.
//! The page's CSS and JavaScript are embedded in the binary and allowed by a
//! Content-Security-Policy that names their SHA-256 hashes: nothing else may
//! run, nothing may be loaded from elsewhere, and the page works offline.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Instant;

const PAGE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// The page, its policy filled in with the hashes of what it embeds.
fn page() -> String {
    let hash = |text: &str| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text));
    // img-src data: for the QR codes; connect-src 'self' for the functions.
    let policy = format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
         img-src data:; connect-src 'self'; form-action 'none'; base-uri 'none'",
        hash(SCRIPT),
        hash(STYLE)
    );
    PAGE.replace("{{CSP}}", &policy)
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT)
}

fn main() -> ExitCode {
    let started = Instant::now();
    // The watchdog writes the request body (empty for a GET) to stdin;
    // reading it lets the watchdog finish writing.
    let _ = std::io::stdin()
        .take(common::protocol::MAX_REQUEST_BYTES as u64)
        .read_to_end(&mut Vec::new());
    let written = std::io::stdout().lock().write_all(page().as_bytes());
    let outcome = if written.is_ok() {
        "ok"
    } else {
        "internal_error"
    };
    common::log::write("frontend", outcome, started, None);
    ExitCode::from(u8::from(written.is_err()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_embedded_script_and_style() {
        let page = page();
        assert!(!page.contains("{{"));
        let hash =
            |text: &str| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text));
        assert!(page.contains(&format!("script-src 'sha256-{}'", hash(SCRIPT))));
        assert!(page.contains(&format!("style-src 'sha256-{}'", hash(STYLE))));
        assert!(page.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
        assert!(!page.contains("unsafe-inline"));
    }

    #[test]
    fn nothing_is_loaded_from_elsewhere() {
        for text in [PAGE, STYLE, SCRIPT] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("src=\"/") && !text.contains("@import"));
        }
    }

    #[test]
    fn tokens_are_kept_in_memory_only() {
        for text in [PAGE, SCRIPT] {
            for storage in [
                "localStorage",
                "sessionStorage",
                "document.cookie",
                "indexedDB",
            ] {
                assert!(!text.contains(storage), "{storage}");
            }
        }
    }

    #[test]
    fn every_field_has_a_label() {
        for id in PAGE
            .split("<input id=\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap())
        {
            assert!(
                PAGE.contains(&format!("<label for=\"{id}\">")),
                "{id} has no label"
            );
        }
    }

    #[test]
    fn every_error_code_has_a_message() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("### Error codes").unwrap();
        let end = start + readme[start..].find("\n## ").unwrap();
        let table = &readme[start..end];
        let codes: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .map(|l| l.split('`').next().unwrap())
            .collect();
        assert!(codes.len() > 20);
        for code in codes {
            assert!(
                SCRIPT.contains(&format!("  {code}: ")),
                "no message for {code}"
            );
        }
    }
}
