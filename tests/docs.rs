//! The docs keep their promises about themselves: every relative link and
//! every anchor in every tracked Markdown file resolves (GitHub's anchor
//! rules), every test SECURITY.md names exists, the configuration tables
//! list every setting and secret the code reads, and no page narrates the
//! project's history. Fast: files only, no database. (The docs' shell
//! examples are run against `make run` by tests/roles.rs.)

use cofrap_tests::markdown::{self, anchors, links, slug};
use cofrap_tests::repo_root;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Every tracked Markdown file, with its anchors.
fn anchors_by_file(files: &[PathBuf]) -> HashMap<PathBuf, HashSet<String>> {
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            (path.canonicalize().unwrap(), anchors(&text))
        })
        .collect()
}

/// Where a link leads, or why it leads nowhere.
fn resolve(
    from: &Path,
    target: &str,
    anchors: &HashMap<PathBuf, HashSet<String>>,
) -> Result<(), String> {
    let (path, fragment) = match target.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        from.to_path_buf()
    } else {
        let joined = from.parent().unwrap().join(path);
        joined
            .canonicalize()
            .map_err(|_| format!("{path} does not exist"))?
    };
    if !file.starts_with(repo_root().canonicalize().unwrap()) {
        return Err(format!("{path} is outside the repository"));
    }
    if let Some(fragment) = fragment {
        let Some(known) = anchors.get(&file) else {
            return Err(format!(
                "#{fragment}: {path} is not a tracked Markdown file"
            ));
        };
        if !known.contains(fragment) {
            return Err(format!("{} has no heading #{fragment}", file.display()));
        }
    }
    Ok(())
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let root = repo_root();
    let files = markdown::tracked_markdown(&root);
    assert!(
        files.iter().any(|f| f.ends_with("docs/API.md")),
        "{files:?}"
    );
    let anchors = anchors_by_file(&files);
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            if let Err(why) = resolve(&file.canonicalize().unwrap(), &target, &anchors) {
                broken.push(format!("{}:{line}: {target}: {why}", file.display()));
            }
        }
    }
    assert!(checked > 50, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// SECURITY.md names the test of each promise as `tests/<file>.rs`
/// `<function>`: each must exist, as a test function of that file.
#[test]
fn every_test_security_md_names_exists() {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("docs/SECURITY.md")).unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    for (index, _) in text.match_indices("`tests/") {
        let rest = &text[index + 1..];
        let file = &rest[..rest.find('`').unwrap()];
        let after = rest[file.len() + 1..].trim_start();
        let Some(function) = after.strip_prefix('`') else {
            continue;
        };
        let function = &function[..function.find('`').unwrap()];
        if !function
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        named += 1;
        let source = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|_| panic!("SECURITY.md names {file}, which does not exist"));
        let defined = source.contains(&format!("fn {function}()"));
        let is_test = source
            .split(&format!("fn {function}()"))
            .next()
            .is_some_and(|before| before.trim_end().ends_with("#[test]"));
        if !(defined && is_test) {
            missing.push(format!("{file} {function}"));
        }
    }
    assert!(named >= 20, "SECURITY.md names only {named} tests");
    assert!(missing.is_empty(), "no such test: {missing:?}");
}

/// OPERATIONS.md's tables list every setting and secret the functions read.
#[test]
fn the_configuration_tables_list_every_setting_and_secret() {
    let text = std::fs::read_to_string(repo_root().join("docs/OPERATIONS.md")).unwrap();
    for name in common::config::SETTINGS
        .into_iter()
        .chain(common::config::SECRETS)
        .chain([common::config::DB_CA_SECRET])
    {
        assert!(
            text.contains(&format!("\n| `{name}` |")),
            "docs/OPERATIONS.md's configuration lacks a row for {name}"
        );
    }
}

/// The docs describe what is, not how it came to be.
#[test]
fn no_page_narrates_history() {
    let root = repo_root();
    for file in markdown::tracked_markdown(&root) {
        if file.ends_with("BENCHMARKS.md") {
            continue; // written by make bench
        }
        let text = std::fs::read_to_string(&file).unwrap().to_lowercase();
        for words in [
            "this round",
            "the brief",
            "issue 1",
            "issue 2",
            "issue 3",
            "issue 4",
            "issue 5",
            "issue 6",
            "issue 7",
            "issue 8",
            "issue 9",
            "no longer",
            "the seed's",
        ] {
            assert!(!text.contains(words), "{} says {words:?}", file.display());
        }
    }
}

#[test]
fn slugs_follow_githubs_rules() {
    assert_eq!(
        slug("Sessions: refresh, sign-out, jwks"),
        "sessions-refresh-sign-out-jwks"
    );
    assert_eq!(slug("The client's address"), "the-clients-address");
    assert_eq!(slug("`make run` at verify-full"), "make-run-at-verify-full");
    assert_eq!(slug("Keys: Fernet & signing"), "keys-fernet--signing");
    assert_eq!(slug("[Link](x.md) text"), "link-text");
    let found = anchors("# A\n## A\n```\n# not a heading\n```\n### A\n<a id=\"here\"></a>\n");
    let expected: HashSet<String> = ["a", "a-1", "a-2", "here"].map(String::from).into();
    assert_eq!(found, expected);
}

#[test]
fn examples_take_the_text_block_right_after_them() {
    let text =
        "```sh\necho hi\n```\n\n```text\nhi\n```\n\n```sh\ntrue\n```\nprose\n\n```text\nno\n```\n";
    let found = markdown::examples(text);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].shown.as_deref(), Some("hi"));
    assert_eq!(found[1].shown, None);
    assert!(markdown::output_matches("a...c\nx", "abbbc\nx"));
    assert!(!markdown::output_matches("a...c", "abbbd"));
    assert!(!markdown::output_matches("a", "a\nb"));
    // Indented fences (in a list) lose their indentation.
    let fences = markdown::fences("- item\n\n  ```sh\n  ls\n  ```\n");
    assert_eq!(
        (fences[0].info.as_str(), fences[0].body.as_str()),
        ("sh", "ls")
    );
}

#[test]
fn links_are_found_outside_code_only() {
    let found = links("[a](b.md#c) `[d](e)`\n```\n[f](g)\n```\n[h]: i.md\n");
    assert_eq!(
        found,
        vec![(1, "b.md#c".to_owned()), (5, "i.md".to_owned())]
    );
}
