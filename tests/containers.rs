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
//!
//! The push test (`tests/push.rs`) runs the same images pulled from a
//! registry, with podman (an image storage of its own) and with a Docker
//! engine it starts: an `Engine` says which. Docker's containers run on a
//! network of their own (`--network none`), reached through a relay that
//! enters it (see `Container::run_on`).

use crate::{repo_root, unique};
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where images go: `localhost/cofrap-test/<function>:test`.
pub const REGISTRY: &str = "localhost/cofrap-test";
pub const TAG: &str = "test";

/// How long a container may take to answer its health check.
const START_PATIENCE: Duration = Duration::from_secs(30);

/// How long one command of a container engine (a pull, a run...) may take.
const ENGINE_PATIENCE: Duration = Duration::from_secs(300);

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
    Engine::podman().command()
}

/// Which program runs containers, and how it is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Podman,
    Docker,
}

/// A container engine: podman or docker, with the environment that points
/// it at its configuration, its image storage or its daemon.
#[derive(Clone, Debug)]
pub struct Engine {
    pub kind: EngineKind,
    environment: Vec<(String, OsString)>,
}

impl Engine {
    /// podman as `make images` configures it (see `podman()`).
    pub fn podman() -> Engine {
        let dir = repo_root().join("target/podman");
        let environment = [
            ("CONTAINERS_CONF", "containers.conf"),
            ("CONTAINERS_STORAGE_CONF", "storage.conf"),
        ]
        .into_iter()
        .filter(|(variable, _)| std::env::var_os(variable).is_none())
        .map(|(variable, file)| (variable.to_owned(), dir.join(file).into_os_string()))
        .collect();
        Engine {
            kind: EngineKind::Podman,
            environment,
        }
    }

    /// podman as `make images` configures it, but with the image storage
    /// that `storage_conf` describes: images there come only from pulls.
    pub fn podman_with_storage(storage_conf: &Path) -> Engine {
        let mut engine = Engine::podman();
        engine
            .environment
            .retain(|(variable, _)| variable != "CONTAINERS_STORAGE_CONF");
        engine.environment.push((
            "CONTAINERS_STORAGE_CONF".to_owned(),
            storage_conf.as_os_str().to_owned(),
        ));
        engine
    }

    /// The docker client, talking to the daemon at `host` (`unix://...`),
    /// with its client configuration in `config_dir` (never ~/.docker).
    pub fn docker(host: &str, config_dir: &Path) -> Engine {
        Engine {
            kind: EngineKind::Docker,
            environment: vec![
                ("DOCKER_HOST".to_owned(), host.into()),
                (
                    "DOCKER_CONFIG".to_owned(),
                    config_dir.as_os_str().to_owned(),
                ),
            ],
        }
    }

    /// A command of this engine, ended if it takes longer than
    /// `ENGINE_PATIENCE` (a stuck pull or daemon must not hang the tests).
    pub fn command(&self) -> Command {
        let mut command = Command::new("timeout");
        command
            .arg("--kill-after=10s")
            .arg(format!("{}s", ENGINE_PATIENCE.as_secs()))
            .arg(match self.kind {
                EngineKind::Podman => "podman",
                EngineKind::Docker => "docker",
            })
            .envs(self.environment.iter().map(|(k, v)| (k, v)));
        command
    }
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

/// A value of stack.yaml as faas-cli deploys it when none of its variables
/// is set: `${NAME:-default}` is the default.
fn with_defaults(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("an unclosed ${") + start;
        let expression = &rest[start + 2..end];
        out.push_str(
            expression
                .split_once(":-")
                .map_or("", |(_, default)| default),
        );
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The environment stack.yaml gives `function` (settings and the watchdog's),
/// its variables at their defaults.
pub fn stack_environment(function: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("stack.yaml")).unwrap();
    let stack: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    stack["functions"][function]["environment"]
        .as_mapping()
        .into_iter()
        .flatten()
        .map(|(key, value)| {
            let value = match value {
                serde_yaml_ng::Value::String(s) => with_defaults(s),
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

/// Where the relay's socket is mounted in the containers.
pub const SOCKET_DIR: &str = "/run/postgresql";

/// What a container of `function` gets: stack.yaml's environment, pointed at
/// the relayed test database `dbname` if it reads one, and the test's secrets
/// where OpenFaaS mounts them if stack.yaml gives it any (the image and
/// push tests run every function so).
pub fn function_options(
    function: &str,
    functions: &crate::Functions,
    relay: &DatabaseRelay,
    dbname: &str,
) -> RunOptions {
    let mut environment = stack_environment(function);
    let reads_database = environment.iter().any(|(k, _)| k == "POSTGRES_HOST");
    let mut mounts = Vec::new();
    if stack_lists_secrets(function) {
        mounts.push((
            functions.secrets_dir().to_path_buf(),
            "/var/openfaas/secrets".to_owned(),
        ));
    }
    if reads_database {
        // The test's settings for the functions (BCRYPT_COST, and any other
        // the harness sets), then where the database is from inside.
        let overrides = functions
            .settings()
            .iter()
            .filter(|(k, _)| k != "SECRETS_DIR")
            .cloned()
            .chain([
                ("POSTGRES_HOST".to_owned(), SOCKET_DIR.to_owned()),
                ("POSTGRES_DB".to_owned(), dbname.to_owned()),
            ])
            .collect::<Vec<_>>();
        for (key, value) in overrides {
            environment.retain(|(k, _)| *k != key);
            environment.push((key, value));
        }
        mounts.push((relay.dir.clone(), SOCKET_DIR.to_owned()));
    }
    RunOptions {
        environment,
        mounts,
    }
}

/// The kernel's view of a container's first process: its user, its
/// capabilities, and how its root filesystem is mounted.
pub fn assert_confined(function: &str, container: &Container) {
    let pid = container.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(field("Uid"), ["10001"; 4], "{function}: user");
    assert_eq!(
        field("CapEff"),
        ["0000000000000000"],
        "{function}: capabilities"
    );
    assert_eq!(field("NoNewPrivs"), ["1"], "{function}: no_new_privs");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let options_of = |path: &str| {
        mounts
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .rfind(|fields| fields[4] == path)
            .map(|fields| fields[5].to_owned())
            .unwrap_or_else(|| panic!("{function}: {path} is not mounted"))
    };
    assert!(
        options_of("/").split(',').any(|o| o == "ro"),
        "{function}: the root filesystem is writable"
    );
    assert!(
        options_of("/tmp").split(',').any(|o| o == "rw"),
        "{function}: /tmp must stay writable (the watchdog's lock file)"
    );
}

/// One running function container, removed when dropped.
pub struct Container {
    pub name: String,
    pub port: u16,
    /// How long from `podman run` to the first answer of its health check.
    pub started_in: Duration,
    engine: Engine,
    /// Docker's containers: the relay into the container's network.
    relay: Option<Child>,
}

/// What a container gets besides the image: its environment, and folders
/// mounted read-only (host folder, container path).
#[derive(Default)]
pub struct RunOptions {
    pub environment: Vec<(String, String)>,
    pub mounts: Vec<(PathBuf, String)>,
}

impl Container {
    /// Runs `image` with podman as Kubernetes would with
    /// readOnlyRootFilesystem, drop ALL capabilities, allowPrivilegeEscalation
    /// false, runAsUser 10001; waits until the watchdog answers its health
    /// check.
    pub fn run(image: &str, options: &RunOptions) -> Container {
        Container::run_on(&Engine::podman(), image, options)
    }

    /// The same with `engine`. podman publishes the watchdog's port on
    /// 127.0.0.1 from a bridge network. The Docker engine of the push test
    /// has no bridge (`--bridge=none`), and on the host's network every
    /// classic watchdog would claim port 8081 for its metrics: its
    /// containers get a network of their own (`--network none`, as a pod
    /// has), and a relay (tests/netns_relay.py, run by `nsenter` in that
    /// network) carries a free port of 127.0.0.1 to the watchdog's 8080.
    pub fn run_on(engine: &Engine, image: &str, options: &RunOptions) -> Container {
        let name = unique("cofrap-test-");
        let mut command = engine.command();
        command
            .args(["run", "--detach", "--name", &name])
            .arg("--read-only")
            .args(["--tmpfs", "/tmp:rw,size=16m,mode=1777"])
            .args(["--cap-drop=ALL", "--security-opt=no-new-privileges"])
            .args(["--ipc=none", "--user", "10001"]);
        let mut port = 0;
        match engine.kind {
            EngineKind::Podman => {
                port = free_port();
                command
                    .args(["--runtime", "runc", "--read-only-tmpfs=false"])
                    .arg("-p")
                    .arg(format!("127.0.0.1:{port}:8080"));
            }
            EngineKind::Docker => {
                command.args(["--network", "none"]);
            }
        }
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
            "{:?} run {image}: {}",
            engine.kind,
            String::from_utf8_lossy(&output.stderr)
        );
        let mut container = Container {
            name,
            port,
            started_in: Duration::ZERO,
            engine: engine.clone(),
            relay: None,
        };
        if engine.kind == EngineKind::Docker {
            let (relay, port) = relay_into_network_of(container.pid());
            container.relay = Some(relay);
            container.port = port;
        }
        let health = format!("{}/_/health", container.url());
        loop {
            if answers_ok(&health) {
                break;
            }
            if let Some(relay) = &mut container.relay {
                if let Ok(Some(status)) = relay.try_wait() {
                    panic!("the relay to {image} ended: {status}");
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
        let output = self
            .engine
            .command()
            .args(["logs", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr)
    }

    /// The host process id of the container's first process (the watchdog).
    pub fn pid(&self) -> u32 {
        let output = self
            .engine
            .command()
            .args(["inspect", "--format", "{{.State.Pid}}", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no pid for {}", self.name))
    }
}

/// Starts a relay from a free port of 127.0.0.1 here to port 8080 in the
/// network namespace of process `pid`: the port is bound here, then handed
/// (as its standard input) to a relay that `nsenter` starts in that
/// namespace, where each connection it accepts is carried on to 8080.
/// Returns the relay and the port.
fn relay_into_network_of(pid: u32) -> (Child, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let relay = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("--")
        .arg("python3")
        .arg(repo_root().join("tests/netns_relay.py"))
        .arg("8080")
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .spawn()
        .expect("nsenter and python3 are needed to reach Docker's containers");
    (relay, port)
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(relay) = &mut self.relay {
            let _ = relay.kill();
            let _ = relay.wait();
        }
        let mut remove = self.engine.command();
        remove.args(["rm", "--force"]);
        if self.engine.kind == EngineKind::Podman {
            remove.args(["--time", "0"]);
        }
        let _ = remove.arg(&self.name).output();
    }
}

/// Whether a GET of `url` answers 200 within a few seconds: how the tests
/// wait for a server to be ready.
pub fn answers_ok(url: &str) -> bool {
    ureq::get(url)
        .config()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .call()
        .is_ok_and(|response| response.status() == 200)
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
