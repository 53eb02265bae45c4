//! The development server of `make run`: serves the functions on
//! http://127.0.0.1:8080 the way the OpenFaaS gateway and the classic
//! watchdog do, so that the whole system runs on one machine, without a
//! cluster. For development only: it is not hardened for production.
//!
//! - `GET` or `POST /function/<name>` runs `<name>`'s binary: a fresh process
//!   per request, the body on stdin, stdout as the response body.
//! - As the classic watchdog: 200 and the function's `content_type` when the
//!   process exits 0; 500 with `exit status N`, a newline and stdout when it
//!   does not (`text/plain; charset=utf-8`, as Go sniffs it); 408 `Killed process.` after `exec_timeout`; 429 beyond
//!   `max_inflight` requests at once; stderr kept out of the response and
//!   printed on the console; the `Http_*` environment (method, path, query,
//!   headers).
//! - As the gateway: 404 for a function it does not know, and
//!   `X-Forwarded-For` set to the client's `address:port` when the request
//!   has none (one it has is passed on as it is), so that the functions'
//!   account events get the client's address (`FORWARDED_FOR_HOPS`).
//! - As the edge in front of the gateway (k8s/edge/, the one source of
//!   truth): the response headers that the HTTPRoute's
//!   `ResponseHeaderModifier` filters set on each function's path
//!   (`Cache-Control: no-store`, the page's `Content-Security-Policy`...), and
//!   the request body limit of the Envoy Gateway policy (413 beyond it). The
//!   per-client rate limit is the edge's alone.
//!
//! The functions and their environment come from stack.yaml, after the
//! `${NAME:-default}` substitution faas-cli makes; any of those variables
//! set in this server's own environment (POSTGRES_HOST, POSTGRES_PORT,
//! BCRYPT_COST...) overrides stack.yaml's value, and SECRETS_DIR is passed
//! on, so that the functions reach a local database and local secrets.
//! `make run` (dev/run) sets POSTGRES_SSLMODE=verify-full for its database,
//! which has TLS; stack.yaml's own default, `disable`, is the in-cluster
//! single-pod database's, and applies only where the server is started
//! without the variable (docs/DECISIONS.md).
//!
//! Settings: BIND (default 127.0.0.1), PORT (8080), STACK (stack.yaml),
//! EDGE (k8s/edge when it exists; empty: no edge), BIN_DIR (the folder of this binary, where
//! cargo puts the functions too).

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_yaml_ng::Value as Yaml;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// One function, as stack.yaml describes it.
struct Function {
    binary: PathBuf,
    environment: Vec<(String, String)>,
    content_type: Option<String>,
    exec_timeout: Duration,
    max_inflight: usize,
    inflight: Arc<Semaphore>,
}

type Functions = BTreeMap<String, Function>;

/// faas-cli's substitution in stack files (drone/envsubst): `${NAME}` is the
/// variable's value, `${NAME:-default}` the default when it is unset or
/// empty, `${NAME-default}` the default when it is unset. Any other use of
/// `$` is refused rather than passed on as it is, since faas-cli would
/// substitute it.
fn substitute(text: &str, variable: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(inner) = after.strip_prefix('{') else {
            return Err(format!(
                "a `$` not followed by {{NAME}}: {:.30}",
                &rest[start..]
            ));
        };
        let end = inner
            .find('}')
            .ok_or_else(|| format!("an unclosed ${{: {:.30}", &rest[start..]))?;
        let expression = &inner[..end];
        let name_end = expression
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expression.len());
        let (name, operator) = expression.split_at(name_end);
        let value = variable(name);
        let replacement = if name.is_empty() {
            return Err(format!("${{{expression}}} names no variable"));
        } else if operator.is_empty() {
            value.unwrap_or_default()
        } else if let Some(default) = operator.strip_prefix(":-") {
            value
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        } else if let Some(default) = operator.strip_prefix('-') {
            value.unwrap_or_else(|| default.to_owned())
        } else {
            return Err(format!("${{{expression}}}: only ${{NAME}}, ${{NAME:-default}} and ${{NAME-default}} are supported"));
        };
        out.push_str(&replacement);
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads the functions of stack.yaml.
fn load(stack: &Path, bin_dir: &Path) -> Result<Functions, String> {
    let text = std::fs::read_to_string(stack).map_err(|e| format!("{}: {e}", stack.display()))?;
    let text = substitute(&text, |name| std::env::var(name).ok())
        .map_err(|e| format!("{}: {e}", stack.display()))?;
    let yaml: Yaml =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", stack.display()))?;
    let specs = yaml["functions"]
        .as_mapping()
        .ok_or_else(|| format!("{}: no functions", stack.display()))?;
    let mut functions = Functions::new();
    for (name, spec) in specs {
        let name = name
            .as_str()
            .ok_or("a function name is not a string")?
            .to_owned();
        let mut environment = Vec::new();
        for (key, value) in spec["environment"].as_mapping().into_iter().flatten() {
            let key = key
                .as_str()
                .ok_or("an environment key is not a string")?
                .to_owned();
            let value = std::env::var(&key).unwrap_or_else(|_| scalar(value));
            environment.push((key, value));
        }
        if let Ok(dir) = std::env::var("SECRETS_DIR") {
            environment.push(("SECRETS_DIR".to_owned(), dir));
        }
        let setting = |key: &str| {
            environment
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let exec_timeout = setting("exec_timeout")
            .map(|t| duration(&t).ok_or(format!("{name}: exec_timeout {t:?} is not a duration")))
            .transpose()?
            .unwrap_or(Duration::from_secs(10));
        let max_inflight = setting("max_inflight")
            .map(|n| n.parse().map_err(|_| format!("{name}: max_inflight {n:?}")))
            .transpose()?
            .unwrap_or(usize::MAX >> 4);
        let binary = bin_dir.join(&name);
        if !binary.exists() {
            return Err(format!(
                "{} is missing: build the functions first",
                binary.display()
            ));
        }
        functions.insert(
            name,
            Function {
                binary,
                content_type: setting("content_type"),
                environment,
                exec_timeout,
                max_inflight,
                inflight: Arc::new(Semaphore::new(max_inflight)),
            },
        );
    }
    Ok(functions)
}

/// The edge in front of the gateway, as k8s/edge/ describes it.
#[derive(Default)]
struct Edge {
    /// The HTTPRoute's rules: which paths each matches, and the response
    /// headers its `ResponseHeaderModifier` filters set.
    rules: Vec<EdgeRule>,
    /// The Envoy Gateway policy's `requestBuffer.limit`, in bytes.
    body_limit: Option<usize>,
}

struct EdgeRule {
    /// (exact, path): `Exact` or `PathPrefix` matches.
    paths: Vec<(bool, String)>,
    set: Vec<(header::HeaderName, HeaderValue)>,
}

impl Edge {
    /// Reads every HTTPRoute and BackendTrafficPolicy of the folder's YAML files.
    fn load(folder: &Path) -> Result<Edge, String> {
        let mut edge = Edge::default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
            .map_err(|e| format!("{}: {e}", folder.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            for document in serde_yaml_ng::Deserializer::from_str(&text) {
                let document = serde::Deserialize::deserialize(document)
                    .map_err(|e: serde_yaml_ng::Error| format!("{}: {e}", file.display()))?;
                edge.read(&document)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
            }
        }
        Ok(edge)
    }

    fn read(&mut self, document: &Yaml) -> Result<(), String> {
        match document["kind"].as_str() {
            Some("HTTPRoute") => {
                for rule in document["spec"]["rules"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                {
                    let mut paths = Vec::new();
                    for matched in rule["matches"].as_sequence().into_iter().flatten() {
                        let path = &matched["path"];
                        let value = path["value"].as_str().unwrap_or("/").to_owned();
                        match path["type"].as_str().unwrap_or("PathPrefix") {
                            "Exact" => paths.push((true, value)),
                            "PathPrefix" => paths.push((false, value)),
                            other => return Err(format!("path match {other} is not supported")),
                        }
                    }
                    let mut set = Vec::new();
                    for filter in rule["filters"].as_sequence().into_iter().flatten() {
                        if filter["type"] != "ResponseHeaderModifier" {
                            continue;
                        }
                        let modifier = &filter["responseHeaderModifier"];
                        if !modifier["add"].is_null() || !modifier["remove"].is_null() {
                            return Err("only `set` of ResponseHeaderModifier is supported".into());
                        }
                        for header in modifier["set"].as_sequence().into_iter().flatten() {
                            let name = header["name"].as_str().unwrap_or_default();
                            let value = header["value"].as_str().unwrap_or_default();
                            set.push((
                                header::HeaderName::try_from(name)
                                    .map_err(|e| format!("header {name:?}: {e}"))?,
                                HeaderValue::try_from(value)
                                    .map_err(|e| format!("header {name}: {e}"))?,
                            ));
                        }
                    }
                    self.rules.push(EdgeRule { paths, set });
                }
            }
            Some("BackendTrafficPolicy") => {
                let limit = &document["spec"]["requestBuffer"]["limit"];
                if !limit.is_null() {
                    let text = scalar(limit);
                    self.body_limit =
                        Some(quantity(&text).ok_or(format!("requestBuffer.limit {text:?}"))?);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The headers for a path: those of the rule with the most specific
    /// match, as the Gateway API orders them (an exact match first, then the
    /// longest prefix). A prefix matches whole path segments.
    fn headers_for(&self, path: &str) -> &[(header::HeaderName, HeaderValue)] {
        let mut best: Option<((bool, usize), &EdgeRule)> = None;
        for rule in &self.rules {
            for (exact, value) in &rule.paths {
                let prefix = value.trim_end_matches('/');
                let matches = if *exact {
                    path == value
                } else {
                    path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty()
                };
                let rank = (*exact, value.len());
                if matches && best.as_ref().is_none_or(|(b, _)| rank > *b) {
                    best = Some((rank, rule));
                }
            }
        }
        best.map(|(_, rule)| rule.set.as_slice()).unwrap_or(&[])
    }
}

/// A Kubernetes quantity of bytes: "1048576", "1Mi", "512Ki", "1M".
fn quantity(text: &str) -> Option<usize> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let number: usize = digits.parse().ok()?;
    let unit = match &text[digits.len()..] {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(unit)
}

fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => s.clone(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Go-style durations as stack.yaml writes them: "10s", "500ms", "2m".
fn duration(text: &str) -> Option<Duration> {
    let number = |s: &str| s.parse::<u64>().ok();
    if let Some(ms) = text.strip_suffix("ms") {
        return number(ms).map(Duration::from_millis);
    }
    if let Some(s) = text.strip_suffix('s') {
        return number(s).map(Duration::from_secs);
    }
    if let Some(m) = text.strip_suffix('m') {
        return number(m).map(|m| Duration::from_secs(m * 60));
    }
    None
}

/// `content-type` → `Content_Type`: Go's canonical header name, with the
/// dashes the watchdog replaces.
fn header_variable(name: &str) -> String {
    let canonical: Vec<String> = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                })
                .unwrap_or_default()
        })
        .collect();
    format!("Http_{}", canonical.join("_"))
}

/// The request's `X-Forwarded-For`, unless absent or empty (as Go's
/// `Header.Get(..) == ""` sees it).
fn forwarded_for(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
}

async fn read_all(mut pipe: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes).await;
    bytes
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// What the server serves: the functions, behind the edge.
struct Served {
    functions: Functions,
    edge: Edge,
}

/// Runs a function for one request, as the classic watchdog does, and adds
/// the edge's response headers.
async fn invoke(
    State(served): State<Arc<Served>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let name = uri
        .path()
        .strip_prefix("/function/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let mut response = run(
        &served.functions,
        &name,
        method.clone(),
        &uri,
        &headers,
        peer,
        body,
    )
    .await;
    for (header, value) in served.edge.headers_for(uri.path()) {
        response.headers_mut().insert(header.clone(), value.clone());
    }
    println!(
        "{method} {} {} {} ms",
        uri.path(),
        response.status().as_u16(),
        started.elapsed().as_millis()
    );
    response
}

async fn run(
    functions: &Functions,
    name: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    peer: SocketAddr,
    body: Bytes,
) -> Response {
    let Some(function) = functions.get(name) else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("Cannot find service: {name}.\n"),
        );
    };
    if ![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ]
    .contains(&method)
    {
        return plain(StatusCode::METHOD_NOT_ALLOWED, String::new());
    }
    let Ok(_permit) = function.inflight.clone().try_acquire_owned() else {
        return plain(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Concurrent request limit exceeded. Max concurrent requests: {}\n",
                function.max_inflight
            ),
        );
    };

    let started = Instant::now();
    let mut command = tokio::process::Command::new(&function.binary);
    command
        .env_clear()
        .envs(function.environment.iter().map(|(k, v)| (k, v)))
        .env("Http_Method", method.as_str())
        .env("Http_ContentLength", body.len().to_string())
        .env("Http_Content_Length", body.len().to_string())
        .env("Http_Path", uri.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(query) = uri.query().filter(|q| !q.is_empty()) {
        command.env("Http_Query", query);
    }
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        command.env("Http_Host", host);
    }
    // A header sent on several lines: the watchdog passes its first value
    // (`val[0]`), so the first one set here is kept.
    let mut seen = std::collections::HashSet::new();
    for (key, value) in headers {
        if let Ok(value) = value.to_str() {
            if seen.insert(key) {
                command.env(header_variable(key.as_str()), value);
            }
        }
    }
    // The gateway (and faas-netes behind it) sets X-Forwarded-For to the
    // peer's address only when the request has none: it never appends.
    if forwarded_for(headers).is_none() {
        command.env("Http_X_Forwarded_For", peer.to_string());
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    let (mut stdin, stdout, stderr) = (
        child.stdin.take().unwrap(),
        child.stdout.take().unwrap(),
        child.stderr.take().unwrap(),
    );
    let feed = async move {
        // A function may stop reading early (a body over its limit).
        let _ = stdin.write_all(&body).await;
    };
    let finished = tokio::time::timeout(function.exec_timeout, async {
        let ((), out, err, status) =
            tokio::join!(feed, read_all(stdout), read_all(stderr), child.wait());
        (out, err, status)
    })
    .await;
    let Ok((out, err, status)) = finished else {
        let _ = child.kill().await;
        eprintln!("[{name}] killed after {:?}", function.exec_timeout);
        return plain(StatusCode::REQUEST_TIMEOUT, "Killed process.\n".to_owned());
    };
    for line in String::from_utf8_lossy(&err).lines() {
        eprintln!("[{name}] {line}");
    }
    let status = match status {
        Ok(status) => status,
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    if !status.success() {
        let mut text = format!("exit status {}\n", status.code().unwrap_or(-1)).into_bytes();
        text.extend_from_slice(&out);
        // The watchdog sets no content type here: Go's server sniffs one
        // from the text, which is this (tests/images.rs compares them).
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )
            .into_response();
    }
    let mut response = (StatusCode::OK, out).into_response();
    if let Some(content_type) = function
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    if let Ok(seconds) = HeaderValue::from_str(&format!("{:.6}", started.elapsed().as_secs_f64())) {
        response.headers_mut().insert("X-Duration-Seconds", seconds);
    }
    response
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot listen for SIGTERM");
    tokio::select! {
        _ = interrupt => {},
        _ = terminate.recv() => {},
    }
    println!("\nStopping the development server.");
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> ExitCode {
    let bind = setting("BIND", "127.0.0.1");
    let port = setting("PORT", "8080");
    let stack = PathBuf::from(setting("STACK", "stack.yaml"));
    let bin_dir = std::env::var_os("BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .unwrap()
                .parent()
                .unwrap()
                .to_path_buf()
        });

    let functions = match load(&stack, &bin_dir) {
        Ok(functions) => functions,
        Err(e) => {
            eprintln!("cofrap-dev-server: {e}");
            return ExitCode::from(2);
        }
    };
    // EDGE names the folder; unset, k8s/edge if there is one (a stand-in
    // stack elsewhere has none); empty, no edge.
    let edge_folder = std::env::var("EDGE").unwrap_or_else(|_| {
        let default = Path::new("k8s/edge");
        if default.is_dir() {
            default.display().to_string()
        } else {
            String::new()
        }
    });
    let edge = if edge_folder.is_empty() {
        Edge::default()
    } else {
        match Edge::load(Path::new(&edge_folder)) {
            Ok(edge) => edge,
            Err(e) => {
                eprintln!("cofrap-dev-server: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let listener = match tokio::net::TcpListener::bind(format!("{bind}:{port}")).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cofrap-dev-server: cannot listen on {bind}:{port}: {e}");
            return ExitCode::from(2);
        }
    };
    let address = listener.local_addr().unwrap();
    println!("COFRAP development server: for development only, not for production.");
    if !address.ip().is_loopback() {
        println!("Warning: listening on {address}, reachable from other machines.");
    }
    if edge.rules.is_empty() {
        println!("Without the edge: no response headers of k8s/edge/, no body limit.");
    }
    let names: Vec<&str> = functions.keys().map(String::as_str).collect();
    println!("Functions: {}", names.join(", "));
    if functions.contains_key("frontend") {
        println!("Open http://{address}/function/frontend");
    } else {
        println!("Listening on http://{address}");
    }
    println!("Press Ctrl-C to stop.");

    // Bodies over the edge's limit are refused with 413, as Envoy does.
    let body_limit = edge
        .body_limit
        .map(DefaultBodyLimit::max)
        .unwrap_or_else(DefaultBodyLimit::disable);
    let app = Router::new()
        .route(
            "/",
            get(|| async { Redirect::temporary("/function/frontend") }),
        )
        .route("/function/{*path}", any(invoke))
        .layer(body_limit)
        .with_state(Arc::new(Served { functions, edge }));
    if let Err(e) = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    {
        eprintln!("cofrap-dev-server: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_become_the_watchdogs_variables() {
        assert_eq!(header_variable("content-type"), "Http_Content_Type");
        assert_eq!(header_variable("x-forwarded-for"), "Http_X_Forwarded_For");
        assert_eq!(header_variable("accept"), "Http_Accept");
    }

    #[test]
    fn stack_files_are_substituted_like_faas_cli_does() {
        let variables = |name: &str| match name {
            "SET" => Some("value".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let expand = |text: &str| substitute(text, variables);
        assert_eq!(expand("a ${SET} b").unwrap(), "a value b");
        assert_eq!(expand("${UNSET:-x:y}/${SET:-no}").unwrap(), "x:y/value");
        assert_eq!(
            expand("${EMPTY:-default}|${EMPTY-default}").unwrap(),
            "default|"
        );
        assert_eq!(expand("${UNSET}|${UNSET-d}").unwrap(), "|d");
        for refused in ["$SET", "${SET", "${SET:=x}", "${}"] {
            assert!(expand(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn the_edge_picks_the_most_specific_rule_by_whole_segments() {
        let route = "kind: HTTPRoute\nspec:\n  rules:\n  \
            - matches: [{path: {type: PathPrefix, value: /function}}]\n    \
              filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: A, value: wide}]}}]\n  \
            - matches: [{path: {type: PathPrefix, value: /function/page/}}]\n    \
              filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: A, value: page}]}}]\n  \
            - matches: [{path: {type: Exact, value: /function/page/x}}]\n    \
              filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: A, value: exact}]}}]\n";
        let mut edge = Edge::default();
        edge.read(&serde_yaml_ng::from_str(route).unwrap()).unwrap();
        let a = |path: &str| {
            edge.headers_for(path)
                .first()
                .map(|(_, v)| v.to_str().unwrap().to_owned())
        };
        assert_eq!(a("/function/page").as_deref(), Some("page"));
        assert_eq!(a("/function/page/y").as_deref(), Some("page"));
        assert_eq!(a("/function/page/x").as_deref(), Some("exact"));
        assert_eq!(a("/function/pages").as_deref(), Some("wide"));
        assert_eq!(a("/other"), None);
        assert_eq!(quantity("1Mi"), Some(1 << 20));
        assert_eq!(quantity("1M"), Some(1_000_000));
        assert_eq!(quantity("12"), Some(12));
        assert_eq!(quantity("1Xi"), None);
    }

    #[test]
    fn durations_read_like_go_writes_them() {
        assert_eq!(duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(duration("ten"), None);
    }
}
