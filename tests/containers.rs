//! The function images, built and run for real with podman, the way
//! Kubernetes runs them: what the image test (`tests/images.rs`) and the
//! image section of `make bench` share.
//!
//! Images are built by `make images` itself, offline: the Dockerfile
//! unchanged, its two registry stages replaced by folders (the static musl
//! binaries, and the classic watchdog binary at `../shared/tools/fwatchdog`
//! or `COFRAP_WATCHDOG`). Containers run with a read-only root filesystem,
//! a small writable `/tmp`, no capabilities, no new privileges, as user
//! 10001, on a bridge network with the watchdog's port published on
//! 127.0.0.1. They reach the test PostgreSQL through a Unix socket that this
//! module relays to its TCP port, so the database sees an ordinary local
//! client that authenticates with its password.

use crate::{repo_root, unique};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where images go: `localhost/cofrap-test/<function>:test`.
pub const REGISTRY: &str = "localhost/cofrap-test";
pub const TAG: &str = "test";

/// How long a container may take to answer its health check.
const START_PATIENCE: Duration = Duration::from_secs(30);

/// The classic watchdog binary the images are built with.
pub fn watchdog_binary() -> PathBuf {
    std::env::var_os("COFRAP_WATCHDOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/tools/fwatchdog"))
}

/// podman, configured as `make images` configures it: the files it writes
/// in target/podman/, unless CONTAINERS_CONF and CONTAINERS_STORAGE_CONF
/// name others (the Makefile exports them then).
pub fn podman() -> Command {
    let dir = repo_root().join("target/podman");
    let mut command = Command::new("podman");
    for (variable, file) in [
        ("CONTAINERS_CONF", "containers.conf"),
        ("CONTAINERS_STORAGE_CONF", "storage.conf"),
    ] {
        if std::env::var_os(variable).is_none() {
            command.env(variable, dir.join(file));
        }
    }
    command
}

/// Why containers cannot run on this machine at all, if they cannot: no
/// podman (make test installs it), or no container can start.
pub fn why_containers_cannot_run() -> Option<String> {
    if Command::new("podman").arg("--version").output().is_err() {
        return Some("podman is not installed (make test installs it)".into());
    }
    let output = Command::new("make")
        .args(["--no-print-directory", "-s", "podman-conf"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "make podman-conf failed");
    let info = podman().arg("info").output().unwrap();
    if !info.status.success() {
        return Some(format!(
            "podman cannot run here: {}",
            String::from_utf8_lossy(&info.stderr).trim()
        ));
    }
    None
}

/// Builds every function's image with `make images` (podman, offline);
/// returns the functions.
pub fn build_images() -> Vec<String> {
    let watchdog = watchdog_binary();
    assert!(
        watchdog.exists(),
        "{} is missing: the image test builds the images with this classic watchdog \
         (set COFRAP_WATCHDOG to another)",
        watchdog.display()
    );
    let output = Command::new("make")
        .args(["--no-print-directory", "-s", "images", "ENGINE=podman"])
        .arg(format!("WATCHDOG={}", watchdog.display()))
        .arg(format!("REGISTRY={REGISTRY}"))
        .arg(format!("TAG={TAG}"))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "make images failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut functions: Vec<String> = std::fs::read_dir(repo_root().join("bins"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    functions.sort();
    functions
}

pub fn image(function: &str) -> String {
    format!("{REGISTRY}/{function}:{TAG}")
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The environment stack.yaml gives `function` (settings and the watchdog's).
pub fn stack_environment(function: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("stack.yaml")).unwrap();
    let stack: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    stack["functions"][function]["environment"]
        .as_mapping()
        .into_iter()
        .flatten()
        .map(|(key, value)| {
            let value = match value {
                serde_yaml_ng::Value::String(s) => s.clone(),
                serde_yaml_ng::Value::Number(n) => n.to_string(),
                serde_yaml_ng::Value::Bool(b) => b.to_string(),
                other => panic!("{function}: unexpected value {other:?}"),
            };
            (key.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

/// Whether stack.yaml gives `function` any secret.
pub fn stack_lists_secrets(function: &str) -> bool {
    let text = std::fs::read_to_string(repo_root().join("stack.yaml")).unwrap();
    let stack: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    stack["functions"][function]["secrets"]
        .as_sequence()
        .is_some_and(|secrets| !secrets.is_empty())
}

/// A Unix socket, in a folder of its own, that relays every connection to
/// the test database's TCP port: what a container mounts to reach it.
pub struct DatabaseRelay {
    pub dir: PathBuf,
}

impl DatabaseRelay {
    /// Relays `dir/.s.PGSQL.<port>` to `host:port` (a Unix socket folder as
    /// `host` works too).
    pub fn start(host: &str, port: u16) -> DatabaseRelay {
        let dir = std::env::temp_dir().join(unique("cofrap-relay-"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.join(format!(".s.PGSQL.{port}"));
        let listener = UnixListener::bind(&socket).unwrap();
        // The container's user (10001) must be allowed to connect.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
        let host = host.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let host = host.clone();
                std::thread::spawn(move || relay(client, &host, port));
            }
        });
        DatabaseRelay { dir }
    }
}

/// Copies bytes both ways until either side closes.
fn relay(client: std::os::unix::net::UnixStream, host: &str, port: u16) {
    fn pump(mut from: impl std::io::Read, mut to: impl std::io::Write) {
        let _ = std::io::copy(&mut from, &mut to);
    }
    if host.starts_with('/') {
        let Ok(server) = std::os::unix::net::UnixStream::connect(
            Path::new(host).join(format!(".s.PGSQL.{port}")),
        ) else {
            return;
        };
        let (client_in, server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || pump(client_in, server_out));
        pump(server, client);
    } else {
        let Ok(server) = std::net::TcpStream::connect((host, port)) else {
            return;
        };
        let (client_in, server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            pump(client_in, &server_out);
            let _ = server_out.shutdown(std::net::Shutdown::Write);
        });
        pump(&server, &client);
        let _ = client.shutdown(std::net::Shutdown::Write);
    }
}

impl Drop for DatabaseRelay {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One running function container, removed when dropped.
pub struct Container {
    pub name: String,
    pub port: u16,
    /// How long from `podman run` to the first answer of its health check.
    pub started_in: Duration,
}

/// What a container gets besides the image: its environment, and folders
/// mounted read-only (host folder, container path).
#[derive(Default)]
pub struct RunOptions {
    pub environment: Vec<(String, String)>,
    pub mounts: Vec<(PathBuf, String)>,
}

impl Container {
    /// Runs `image` as Kubernetes would with readOnlyRootFilesystem, drop ALL
    /// capabilities, allowPrivilegeEscalation false, runAsUser 10001; waits
    /// until the watchdog answers its health check.
    pub fn run(image: &str, options: &RunOptions) -> Container {
        let name = unique("cofrap-test-");
        let port = free_port();
        let mut command = podman();
        command
            .args(["run", "--detach", "--name", &name, "--runtime", "runc"])
            .args(["--read-only", "--read-only-tmpfs=false"])
            .args(["--tmpfs", "/tmp:rw,size=16m,mode=1777"])
            .args(["--cap-drop=ALL", "--security-opt=no-new-privileges"])
            .args(["--ipc=none", "--user", "10001"])
            .arg("-p")
            .arg(format!("127.0.0.1:{port}:8080"));
        for (host, path) in &options.mounts {
            command
                .arg("--volume")
                .arg(format!("{}:{path}:ro", host.display()));
        }
        for (key, value) in &options.environment {
            command.arg("--env").arg(format!("{key}={value}"));
        }
        let started = Instant::now();
        let output = command.arg(image).output().unwrap();
        assert!(
            output.status.success(),
            "podman run {image}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut container = Container {
            name,
            port,
            started_in: Duration::ZERO,
        };
        let health = format!("{}/_/health", container.url());
        loop {
            if let Ok(response) = ureq::get(&health).call() {
                if response.status() == 200 {
                    break;
                }
            }
            assert!(
                started.elapsed() < START_PATIENCE,
                "{image} did not answer within {START_PATIENCE:?}: {}",
                container.logs()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        container.started_in = started.elapsed();
        container
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The container's log: the watchdog's lines and the function's stderr.
    pub fn logs(&self) -> String {
        let output = podman().args(["logs", &self.name]).output().unwrap();
        String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr)
    }

    /// The host process id of the container's first process (the watchdog).
    pub fn pid(&self) -> u32 {
        let output = podman()
            .args(["inspect", "--format", "{{.State.Pid}}", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no pid for {}", self.name))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rm", "--force", "--time", "0", &self.name])
            .output();
    }
}

/// An HTTP answer: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// Sends one request (POST with a body, or GET without) and reads the answer,
/// whatever its status.
pub fn request(url: &str, body: Option<&[u8]>) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let response = match body {
        Some(body) => agent.post(url).send(body),
        None => agent.get(url).call(),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{url}: {e}"));
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut body = String::new();
    response
        .body_mut()
        .as_reader()
        .read_to_string(&mut body)
        .unwrap();
    Answer {
        status: response.status().as_u16(),
        content_type,
        body,
    }
}

/// The uncompressed and gzip-compressed size of an image, in bytes: what
/// `podman image inspect` reports, and its `podman save` archive gzipped.
pub fn image_sizes(image: &str) -> (u64, u64) {
    let output = podman()
        .args(["image", "inspect", "--format", "{{.Size}}", image])
        .output()
        .unwrap();
    let size: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no size for {image}"));
    let archive = std::env::temp_dir().join(unique("cofrap-image-"));
    let saved = podman()
        .args(["save", "--quiet", "--format", "docker-archive", "--output"])
        .arg(&archive)
        .arg(image)
        .status()
        .unwrap();
    assert!(saved.success(), "podman save {image}");
    let gzip = Command::new("gzip")
        .args(["-c", "-6"])
        .arg(&archive)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&archive);
    (size, gzip.stdout.len() as u64)
}
