//! The project's Markdown as the tests read it: its fenced code blocks, its
//! headings' anchors (GitHub's rules), its links, and its runnable examples.
//!
//! Why: the docs promise that every link resolves and that every shell
//! example runs as written; tests/docs.rs checks the links, tests/roles.rs
//! runs the examples against `make run`. The marking convention (written in
//! docs/DEVELOPMENT.md, "Examples in the docs"): a ```sh block is a runnable
//! example, run against `make run`; a ```text block right after it is its
//! expected output, where `...` stands for any text within a line; commands
//! that are not run (a cluster's, another database's) are ```console blocks.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A fenced code block: its info string (```sh → "sh"), its text (without
/// the list indentation it may carry) and the line of its opening fence.
#[derive(Debug, Clone)]
pub struct Fence {
    pub info: String,
    pub body: String,
    pub line: usize,
}

/// One line of Markdown, and whether it lies inside a fenced block.
struct Line<'a> {
    number: usize,
    text: &'a str,
    fenced: bool,
}

/// Splits `markdown` into its lines, marking those inside fences (the fence
/// lines themselves included), and collects the fences.
fn scan(markdown: &str) -> (Vec<Line<'_>>, Vec<Fence>) {
    let mut lines = Vec::new();
    let mut fences = Vec::new();
    // The open fence: its marker (``` or ~~~, and how many), its
    // indentation, its info string, its first line, its body.
    let mut open: Option<(String, usize, String, usize, Vec<String>)> = None;
    for (index, text) in markdown.lines().enumerate() {
        let number = index + 1;
        let trimmed = text.trim_start();
        let indent = text.len() - trimmed.len();
        let marker: String = trimmed
            .chars()
            .take_while(|c| *c == '`' || *c == '~')
            .collect();
        let is_marker =
            marker.len() >= 3 && marker.chars().all(|c| c == marker.as_bytes()[0] as char);
        match open.take() {
            None if is_marker => {
                let info = trimmed[marker.len()..].trim().to_owned();
                open = Some((marker, indent, info, number, Vec::new()));
                lines.push(Line {
                    number,
                    text,
                    fenced: true,
                });
            }
            None => lines.push(Line {
                number,
                text,
                fenced: false,
            }),
            Some((opening, indent0, info, line, mut body)) => {
                lines.push(Line {
                    number,
                    text,
                    fenced: true,
                });
                if is_marker
                    && marker.starts_with(&opening)
                    && trimmed[marker.len()..].trim().is_empty()
                {
                    fences.push(Fence {
                        info,
                        body: body.join("\n"),
                        line,
                    });
                } else {
                    // Content lines lose up to the fence's own indentation.
                    let strip = indent.min(indent0);
                    body.push(text[strip..].to_owned());
                    open = Some((opening, indent0, info, line, body));
                }
            }
        }
    }
    (lines, fences)
}

/// The fenced code blocks of `markdown`, in order.
pub fn fences(markdown: &str) -> Vec<Fence> {
    scan(markdown).1
}

/// Removes inline code spans, so that `[x](y)` written as code is not a link.
fn without_code_spans(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for c in text.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// The anchor GitHub gives a heading's text: lower case, markup and
/// punctuation removed (letters, digits, `-`, `_` and spaces stay), spaces
/// turned into hyphens. Duplicates are numbered by [`anchors`].
pub fn slug(heading: &str) -> String {
    // Links keep their text only: [text](target) → text.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(start) = rest.find('[') {
        text.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find("](").and_then(|close| {
            after[close + 2..]
                .find(')')
                .map(|end| (close, close + 2 + end + 1))
        }) {
            Some((close, end)) => {
                text.push_str(&after[..close]);
                rest = &after[end..];
            }
            None => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor of `markdown`: its headings' (`#` to `######`, outside
/// fences), numbered -1, -2... when a slug repeats, as GitHub does, and
/// the `id` or `name` of any `<a>` tag.
pub fn anchors(markdown: &str) -> HashSet<String> {
    let (lines, _) = scan(markdown);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = HashSet::new();
    for line in lines.iter().filter(|l| !l.fenced) {
        let trimmed = line.text.trim_start();
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && trimmed[hashes..].starts_with(' ') {
            let base = slug(trimmed[hashes..].trim().trim_end_matches('#'));
            let count = seen.entry(base.clone()).or_insert(0);
            let anchor = if *count == 0 {
                base.clone()
            } else {
                format!("{base}-{count}")
            };
            *count += 1;
            anchors.insert(anchor);
        }
        for attribute in ["<a id=\"", "<a name=\""] {
            let mut rest = line.text;
            while let Some(start) = rest.find(attribute) {
                let after = &rest[start + attribute.len()..];
                let end = after.find('"').unwrap_or(after.len());
                anchors.insert(after[..end].to_owned());
                rest = &after[end..];
            }
        }
    }
    anchors
}

/// Every link target of `markdown` outside fences and code spans, with its
/// line: inline links and images `[text](target "title")`, and reference
/// definitions `[name]: target`.
pub fn links(markdown: &str) -> Vec<(usize, String)> {
    let (lines, _) = scan(markdown);
    let mut links = Vec::new();
    for line in lines.iter().filter(|l| !l.fenced) {
        let text = without_code_spans(line.text);
        let mut rest = text.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].split_whitespace().next().unwrap_or_default();
            links.push((line.number, target.trim_matches(['<', '>']).to_owned()));
            rest = &after[end..];
        }
        let trimmed = text.trim_start();
        if let Some(close) = trimmed.strip_prefix('[').and_then(|t| t.find("]: ")) {
            let target = trimmed[close + 4..]
                .split_whitespace()
                .next()
                .unwrap_or_default();
            links.push((line.number, target.to_owned()));
        }
    }
    links
}

/// The project's tracked Markdown files (`git ls-files`), as paths under
/// `root`.
pub fn tracked_markdown(root: &Path) -> Vec<PathBuf> {
    let output = std::process::Command::new("git")
        .args(["ls-files", "-z", "--", "*.md"])
        .current_dir(root)
        .output()
        .expect("git is missing");
    assert!(output.status.success(), "git ls-files: {output:?}");
    output
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| root.join(String::from_utf8_lossy(p).as_ref()))
        .collect()
}

/// A runnable example: a ```sh block, and the ```text block that follows
/// it (nothing but blank lines between), if any: its expected output.
#[derive(Debug, Clone)]
pub struct Example {
    pub line: usize,
    pub script: String,
    pub shown: Option<String>,
}

/// The runnable examples of `markdown`, in order.
pub fn examples(markdown: &str) -> Vec<Example> {
    let (lines, fences) = scan(markdown);
    let mut examples = Vec::new();
    for (index, fence) in fences.iter().enumerate() {
        if fence.info != "sh" {
            continue;
        }
        let shown = fences.get(index + 1).filter(|next| {
            next.info == "text" && {
                // Between the two fences: only blank lines. The first
                // fence's closing line is the last fenced line before the
                // second's opening.
                let between = lines
                    .iter()
                    .filter(|l| l.number > fence.line && l.number < next.line);
                between
                    .skip_while(|l| l.fenced)
                    .all(|l| l.text.trim().is_empty())
            }
        });
        examples.push(Example {
            line: fence.line,
            script: fence.body.clone(),
            shown: shown.map(|s| s.body.clone()),
        });
    }
    examples
}

/// Whether `actual` output is what the docs show: the same number of lines,
/// each equal to the shown one, where `...` in a shown line stands for any
/// text (within that line).
pub fn output_matches(shown: &str, actual: &str) -> bool {
    let shown: Vec<&str> = shown.lines().collect();
    let actual: Vec<&str> = actual.lines().collect();
    shown.len() == actual.len()
        && shown
            .iter()
            .zip(&actual)
            .all(|(pattern, line)| line_matches(pattern, line))
}

fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || line.len() < first.len() + last.len() || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Runs the runnable examples of each file of `files` (paths under `root`),
/// in order, as a reader would against `make run`: each file's examples in
/// one bash session (so that a variable set by one block serves the next),
/// with `-e` and `pipefail`, in `workdir`, each `from` of `substitutions`
/// replaced by its `to` (the test's ports for make run's defaults), within
/// `timeout` per file. Panics, naming the file and the example's line, when
/// a command fails or an output differs from the one shown.
pub fn run_examples(
    root: &Path,
    files: &[&str],
    workdir: &Path,
    substitutions: &[(&str, String)],
    timeout: std::time::Duration,
) -> usize {
    use std::io::Read;
    let mut count = 0;
    for file in files {
        let markdown = std::fs::read_to_string(root.join(file)).unwrap();
        let examples = examples(&markdown);
        let mut script = String::new();
        for (index, example) in examples.iter().enumerate() {
            let mut body = example.script.clone();
            for (from, to) in substitutions {
                body = body.replace(from, to);
            }
            script.push_str(&format!("echo '{}{index}'\n{body}\n", MARKER));
        }
        count += examples.len();
        let mut child = std::process::Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", &script])
            .current_dir(workdir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("bash is missing");
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let mut stderr = child.stderr.take().unwrap();
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let (stdout, stderr) = (reader.join().unwrap(), errors.join().unwrap());
        // Each example's output: what follows its marker.
        let mut outputs: Vec<String> = Vec::new();
        for piece in stdout.split(MARKER).skip(1) {
            let (_, output) = piece.split_once('\n').unwrap_or((piece, ""));
            outputs.push(output.to_owned());
        }
        let reached = outputs.len();
        // The line of the last example that started (0: none did).
        let last = reached.checked_sub(1).map_or(0, |i| examples[i].line);
        match status {
            None => panic!(
                "{file}: the example of line {last} did not finish within {timeout:?}\n{stderr}"
            ),
            Some(status) if !status.success() => panic!(
                "{file}: the example of line {last} failed ({status})\nits output: {:?}\nstderr: {stderr}",
                outputs.last()
            ),
            Some(_) => {}
        }
        assert_eq!(reached, examples.len(), "{file}: not every example ran");
        for (example, output) in examples.iter().zip(&outputs) {
            if let Some(shown) = &example.shown {
                assert!(
                    output_matches(shown, output),
                    "{file}: the example of line {} printed\n{output}\nwhere the docs show\n{shown}",
                    example.line
                );
            }
        }
    }
    count
}

/// Printed before each example's output, to tell the outputs apart.
const MARKER: &str = "::cofrap-docs-example::";
