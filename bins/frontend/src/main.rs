//! frontend: the page people use, served as a classic-watchdog function
//! (`content_type: text/html`), so that it deploys through stack.yaml like
//! the others and calls them on the same origin (`/function/<name>`).
//!
//! It reads no configuration, no secret and no database: it prints the page,
//! in the language the browser prefers (its Accept-Language header, which the
//! watchdog passes as `Http_Accept_Language`). The page's CSS and JavaScript
//! are embedded in the binary and allowed by a Content-Security-Policy that
//! names their SHA-256 hashes: nothing else may run, nothing may be loaded
//! from elsewhere, and the page works offline. Its texts, in every language,
//! are embedded as a JSON data block that the script reads (data is not run,
//! so it needs no hash): the script is the same whatever the language.

use base64::Engine as _;
use common::function::{self, Body};
use sha2::{Digest, Sha256};
use std::process::ExitCode;

const PAGE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");
const TEXTS: &str = include_str!("page-texts.json");

/// The page's languages, as page-texts.json names them. The first one is
/// served to a browser that accepts none of them.
const LANGUAGES: [&str; 2] = ["en", "fr"];

/// The language to serve for an Accept-Language header (RFC 9110, 12.5.4):
/// of the page's languages, the one with the highest weight, the first
/// listed on a tie; a region (`fr-CA`) counts as its language, `q=0` or an
/// unreadable weight excludes an entry, and `*` accepts anything, so it
/// leaves the default.
fn language(accept_language: &str) -> &'static str {
    let mut best: Option<(&'static str, f32)> = None;
    for entry in accept_language.split(',') {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or_default().trim();
        let weight = parts
            .map(str::trim)
            .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok());
        let Some(weight) = weight.filter(|w| *w > 0.0 && *w <= 1.0) else {
            continue;
        };
        let primary = tag.split('-').next().unwrap_or_default();
        let Some(&name) = LANGUAGES.iter().find(|l| l.eq_ignore_ascii_case(primary)) else {
            continue;
        };
        if best.is_none_or(|(_, w)| weight > w) {
            best = Some((name, weight));
        }
    }
    best.map_or(LANGUAGES[0], |(name, _)| name)
}

/// The page in `language`, its policy filled in with the hashes of what it
/// embeds.
fn page(language: &str) -> String {
    let hash = |text: &str| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text));
    // img-src data: for the QR codes; connect-src 'self' for the functions.
    let policy = format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
         img-src data:; connect-src 'self'; form-action 'none'; base-uri 'none'",
        hash(SCRIPT),
        hash(STYLE)
    );
    PAGE.replace("{{LANG}}", language)
        .replace("{{CSP}}", &policy)
        .replace("{{STYLE}}", STYLE)
        .replace("{{TEXTS}}", TEXTS)
        .replace("{{SCRIPT}}", SCRIPT)
}

fn main() -> ExitCode {
    function::main_without_database("frontend", || {
        let accept_language = std::env::var("Http_Accept_Language").unwrap_or_default();
        Ok(Body::Page(page(language(&accept_language))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};
    use std::collections::BTreeSet;

    /// One language's dictionaries: `page` (the page's texts) and `codes`
    /// (a message per error code).
    fn dictionary(language: &str, part: &str) -> Map<String, Value> {
        let texts: Value = serde_json::from_str(TEXTS).expect("page-texts.json is JSON");
        texts[language][part]
            .as_object()
            .unwrap_or_else(|| panic!("no {part} for {language}"))
            .clone()
    }

    fn keys(map: &Map<String, Value>) -> BTreeSet<&str> {
        map.keys().map(String::as_str).collect()
    }

    /// The words that follow each `prefix` in `text`, up to the next quote.
    fn quoted_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.split(prefix)
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap())
            .collect()
    }

    #[test]
    fn the_policy_allows_exactly_the_embedded_script_and_style() {
        for language in LANGUAGES {
            let page = page(language);
            assert!(!page.contains("{{"));
            let hash =
                |text: &str| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text));
            assert!(page.contains(&format!("script-src 'sha256-{}'", hash(SCRIPT))));
            assert!(page.contains(&format!("style-src 'sha256-{}'", hash(STYLE))));
            assert!(page.contains(&format!("<script>{SCRIPT}</script>")));
            assert!(page.contains(&format!("<style>{STYLE}</style>")));
            assert!(!page.contains("unsafe-inline"));
            assert!(page.contains(&format!("<html lang=\"{language}\">")));
            // The texts are data, not a script: no hash, and nothing in them
            // may end the element early.
            assert!(page.contains(&format!(
                "<script type=\"application/json\" id=\"texts\">{TEXTS}</script>"
            )));
            assert!(!TEXTS.contains("</") && !TEXTS.contains("<!--"));
        }
    }

    #[test]
    fn nothing_is_loaded_from_elsewhere() {
        for text in [PAGE, STYLE, SCRIPT, TEXTS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("src=\"/") && !text.contains("@import"));
        }
    }

    /// Tokens and passwords stay in memory: the one use of storage is the
    /// chosen language, under one key, and only ever one of the languages.
    #[test]
    fn tokens_are_kept_in_memory_only() {
        let language_choice = [
            "localStorage.getItem(CHOICE)",
            "if (LANGUAGES.includes(chosen)) localStorage.setItem(CHOICE, chosen);",
        ];
        for allowed in language_choice {
            assert_eq!(SCRIPT.matches(allowed).count(), 1, "{allowed}");
        }
        assert!(SCRIPT.contains("const CHOICE = \"cofrap-language\";"));
        assert!(SCRIPT.contains("const LANGUAGES = Object.keys(TEXTS);"));
        let rest = language_choice
            .iter()
            .fold(SCRIPT.to_owned(), |text, allowed| text.replace(allowed, ""));
        for text in [PAGE, &rest] {
            for storage in [
                "localStorage",
                "sessionStorage",
                "document.cookie",
                "indexedDB",
                "caches",
            ] {
                assert!(!text.contains(storage), "{storage}");
            }
        }
    }

    #[test]
    fn every_field_has_a_label() {
        for id in quoted_after(PAGE, "<input id=\"") {
            assert!(
                PAGE.contains(&format!("<label for=\"{id}\" data-text=\"")),
                "{id} has no label"
            );
        }
    }

    /// The codes of the error table of docs/API.md.
    fn documented_codes() -> Vec<&'static str> {
        let api = include_str!("../../../docs/API.md");
        let start = api.find("\n## Error codes\n").unwrap();
        let end = start + 1 + api[start + 1..].find("\n## ").unwrap();
        api[start..end]
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .map(|l| l.split('`').next().unwrap())
            .collect()
    }

    #[test]
    fn every_error_code_has_a_message_in_every_language() {
        let codes = documented_codes();
        assert!(codes.len() > 20);
        // The page's own codes, for what happens before a function answers.
        let own = quoted_after(SCRIPT, "code: \"");
        assert!(own.len() >= 3, "{own:?}");
        for language in LANGUAGES {
            let messages = dictionary(language, "codes");
            for code in codes.iter().chain(&own) {
                assert!(
                    messages.get(*code).is_some_and(|m| m.is_string()),
                    "no {language} message for {code}"
                );
            }
        }
    }

    #[test]
    fn both_languages_have_every_text_the_other_has() {
        let texts: Value = serde_json::from_str(TEXTS).unwrap();
        let languages: Vec<&str> = texts
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            languages, LANGUAGES,
            "the server's languages are the page's"
        );
        for part in ["page", "codes"] {
            let (english, french) = (dictionary("en", part), dictionary("fr", part));
            assert_eq!(keys(&english), keys(&french), "{part}");
            for (key, text) in &english {
                // The same {names} to fill in, and no text left empty.
                let names = |text: &str| -> BTreeSet<String> {
                    text.split('{')
                        .skip(1)
                        .map(|rest| rest.split('}').next().unwrap().to_owned())
                        .collect()
                };
                let (en, fr) = (text.as_str().unwrap(), french[key].as_str().unwrap());
                assert!(!en.trim().is_empty() && !fr.trim().is_empty(), "{key}");
                assert_eq!(names(en), names(fr), "{key}");
            }
        }
        for language in LANGUAGES {
            assert!(
                texts[language]["name"].is_string(),
                "{language} has no name"
            );
        }
    }

    #[test]
    fn every_text_the_page_uses_exists_and_every_text_is_used() {
        let texts = dictionary("en", "page");
        let used: Vec<&str> = [
            quoted_after(PAGE, "data-text=\""),
            quoted_after(PAGE, "data-alt=\""),
            quoted_after(SCRIPT, " t(\""),
        ]
        .concat();
        for key in &used {
            assert!(texts.contains_key(*key), "no text {key}");
        }
        // Some keys travel as arguments (showPassword, signedIn): each
        // text appears in the page or the script by its name.
        for key in texts.keys() {
            assert!(
                used.contains(&key.as_str()) || SCRIPT.contains(&format!("\"{key}\"")),
                "{key} is never used"
            );
        }
    }

    /// French typography: a narrow no-break space (U+202F) before : ? ! ;
    /// and inside « », the typographic apostrophe, the ellipsis character.
    #[test]
    fn the_french_texts_follow_french_typography() {
        const NARROW: char = '\u{202F}';
        let mut texts: Vec<(String, String)> = Vec::new();
        for part in ["page", "codes"] {
            for (key, text) in dictionary("fr", part) {
                texts.push((key, text.as_str().unwrap().to_owned()));
            }
        }
        assert!(texts.len() > 60);
        for (key, text) in &texts {
            let chars: Vec<char> = text.chars().collect();
            for (i, &c) in chars.iter().enumerate() {
                let before = i.checked_sub(1).map(|j| chars[j]);
                let after = chars.get(i + 1).copied();
                match c {
                    ':' | '?' | '!' | ';' | '»' => {
                        assert_eq!(before, Some(NARROW), "{key}: no narrow space before {c}");
                        assert!(i >= 2 && !chars[i - 2].is_whitespace(), "{key}: {c}");
                    }
                    '«' => assert_eq!(after, Some(NARROW), "{key}: no narrow space after «"),
                    '\'' | '"' => panic!("{key}: {c} instead of ’ or « »"),
                    NARROW
                        if !matches!(after, Some(':' | '?' | '!' | ';' | '»'))
                            && before != Some('«') =>
                    {
                        panic!("{key}: a narrow space out of place")
                    }
                    _ => {}
                }
            }
            assert!(!text.contains("..."), "{key}: ... instead of …");
            assert!(!text.contains("  "), "{key}: two spaces");
        }
    }

    #[test]
    fn the_language_is_the_preferred_one_the_page_has() {
        for (accept, expected) in [
            ("fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", "fr"),
            ("en-US,en;q=0.9,fr;q=0.8", "en"),
            ("de-DE,de;q=0.9,fr;q=0.5,en;q=0.3", "fr"),
            ("en;q=0.4, fr-CA;q=0.6", "fr"),
            ("FR", "fr"),
            ("fr;q=0, en", "en"),
            ("fr, en", "fr"),
            ("en, fr", "en"),
            ("de", "en"),
            ("*", "en"),
            ("", "en"),
            // Unreadable entries are skipped, never a failure.
            ("fr;q=abc, en;q=0.1", "en"),
            ("fr;q=2", "en"),
            (";;,,q=1;fr,-", "en"),
            ("fr-", "fr"),
        ] {
            assert_eq!(language(accept), expected, "{accept:?}");
        }
    }
}
