//! `make push` for real: the images built as `make images` builds them
//! (podman, offline), pushed by `make push` to a registry (Debian's
//! `docker-registry`, on a free port of 127.0.0.1, storing in a temporary
//! folder), then pulled back by the digests `make push` printed and run
//! through the classic watchdog inside them, once with podman (an image
//! storage of its own, so that every layer really comes from the registry)
//! and once with Docker (Debian's `docker.io`: a dockerd and a containerd of
//! the test's own). With each engine, every function's container is
//! confined as Kubernetes runs it, and a whole session goes through them:
//! an account created and its QR decoded, enrolled, signed in, the token's
//! key published by jwks, refreshed, signed out; the page served.
//!
//! Base images cannot be pulled here, so Docker builds nothing: it gets the
//! images from the registry, as a cluster's nodes do. The Docker daemons
//! live in a temporary folder (socket, data-root, exec-root, pidfile,
//! configuration, containerd's state) and never touch a system Docker; the
//! registry, the daemons and every container are stopped and removed when
//! the test ends, failed or not.
//!
//! Skipped, with a message, only where they cannot run at all: without root
//! (dockerd needs it), or where podman cannot run a container.

use cofrap_tests::containers::{
    self, assert_confined, function_options, Container, DatabaseRelay, Engine,
};
use cofrap_tests::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a daemon (the registry, containerd, dockerd) may take to start
/// answering, and to stop once asked to.
const DAEMON_PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn make_push_reaches_a_registry_and_podman_and_docker_run_the_pushed_images() {
    if !is_root() {
        eprintln!("SKIPPED: dockerd needs root (make test runs as root, as CI does)");
        return;
    }
    if let Some(reason) = containers::why_containers_cannot_run() {
        eprintln!("SKIPPED: containers cannot run on this machine: {reason}");
        return;
    }
    let registry = Registry::start();
    let tag = unique("t");
    let _built = BuiltImages {
        repository: format!("{}/cofrap", registry.address),
        tag: tag.clone(),
    };
    let pushed = make_push(&registry, &tag);

    // What make push printed is what the registry serves under the tag.
    for (function, reference) in &pushed {
        let digest = reference.split_once('@').unwrap().1;
        assert_eq!(
            registry.digest_of(function, &tag),
            digest,
            "{function}: make push printed another digest than the registry's"
        );
    }

    let functions = Functions::new();
    let relay = DatabaseRelay::start(&functions.server.host, functions.server.port);

    // podman, with an image storage of its own: nothing there but what it pulls.
    let podman_storage = Scratch::new("cofrap-podman-");
    let storage_conf = podman_storage.dir.join("storage.conf");
    std::fs::write(
        &storage_conf,
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/storage\"\nrunroot = \"{0}/run\"\n",
            podman_storage.dir.display()
        ),
    )
    .unwrap();
    let podman = Engine::podman_with_storage(&storage_conf);
    for (function, reference) in &pushed {
        pull(&podman, reference, &registry);
        let digest = inspect(&podman, "{{.Digest}}", reference);
        assert_eq!(
            Some(digest.as_str()),
            reference.split_once('@').map(|(_, d)| d),
            "{function}: podman pulled another image"
        );
    }
    run_every_image(&podman, &pushed, &functions, &relay);

    // Docker, on daemons of the test's own.
    let docker_daemon = DockerDaemon::start();
    let docker = docker_daemon.engine();
    for (function, reference) in &pushed {
        pull(&docker, reference, &registry);
        let digests = inspect(&docker, "{{json .RepoDigests}}", reference);
        let digests: Vec<String> = serde_json::from_str(&digests).unwrap();
        assert!(
            digests.contains(reference),
            "{function}: Docker pulled {digests:?}, not {reference}"
        );
    }
    run_every_image(&docker, &pushed, &functions, &relay);
}

/// Runs `make push` as an operator does, with podman and offline (the
/// classic watchdog binary instead of its image), to `registry` with `tag`;
/// returns each function's pinned reference (`<image>@sha256:...`) as
/// printed.
/// The images `make push` builds in make images' podman storage (shared
/// with the image test), removed when dropped: each run's are named after
/// its registry's port and its tag, and would otherwise pile up.
struct BuiltImages {
    repository: String,
    tag: String,
}

impl Drop for BuiltImages {
    fn drop(&mut self) {
        let images: Vec<String> = pushed_images()
            .iter()
            .map(|image| format!("{}/{image}:{}", self.repository, self.tag))
            .collect();
        let _ = Engine::podman()
            .command()
            .args(["rmi", "--ignore", "--force"])
            .args(images)
            .output();
    }
}

fn make_push(registry: &Registry, tag: &str) -> BTreeMap<String, String> {
    let repository = format!("{}/cofrap", registry.address);
    // Bounded: make push builds first (seconds here: make test has built
    // the static binaries already).
    let output = Command::new("timeout")
        .args(["--kill-after=10s", "900s", "make"])
        .args(["--no-print-directory", "push", "ENGINE=podman"])
        .arg(format!(
            "WATCHDOG={}",
            containers::watchdog_binary().display()
        ))
        .arg(format!("REGISTRY={repository}"))
        .arg(format!("TAG={tag}"))
        // The registry speaks plain HTTP: podman is told so, as an operator
        // tells it about such a registry, in a registries.conf.
        .env("CONTAINERS_REGISTRIES_CONF", &registry.registries_conf)
        .current_dir(repo_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "make push failed:\n{stdout}\n{}\nregistry log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        registry.log()
    );
    let listed: Vec<&str> = stdout
        .lines()
        .skip_while(|line| *line != "Pushed, by digest:")
        .skip(1)
        .collect();
    let mut pushed = BTreeMap::new();
    for line in &listed {
        let (image, digest) = line
            .split_once('@')
            .unwrap_or_else(|| panic!("not <image>@<digest>: {line:?}\n{stdout}"));
        let function = image
            .strip_prefix(&format!("{repository}/"))
            .unwrap_or_else(|| panic!("not in {repository}: {line:?}"));
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {line:?}"));
        assert!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "not a sha256 digest: {line:?}"
        );
        pushed.insert(function.to_owned(), line.to_string());
    }
    let expected = pushed_images();
    assert_eq!(
        pushed.keys().cloned().collect::<Vec<_>>(),
        expected,
        "make push must list every image's digest once:\n{stdout}"
    );
    assert_eq!(listed.len(), expected.len(), "{stdout}");
    pushed
}

/// The images make push pushes, sorted: every function's, and cofrap-admin's.
fn pushed_images() -> Vec<String> {
    let mut images: Vec<String> = std::fs::read_dir(repo_root().join("bins"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .chain(["cofrap-admin".to_owned()])
        .collect();
    images.sort();
    images
}

/// Pulls `reference` (by digest) with `engine`, quietly.
fn pull(engine: &Engine, reference: &str, registry: &Registry) {
    let output = engine
        .command()
        .args(["pull", "--quiet", reference])
        // podman reads that the registry speaks plain HTTP here; Docker
        // needs no telling for 127.0.0.1.
        .env("CONTAINERS_REGISTRIES_CONF", &registry.registries_conf)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{:?} pull {reference}: {}\nregistry log:\n{}",
        engine.kind,
        String::from_utf8_lossy(&output.stderr),
        registry.log()
    );
}

/// `<engine> image inspect --format <format> <reference>`, trimmed.
fn inspect(engine: &Engine, format: &str, reference: &str) -> String {
    let output = engine
        .command()
        .args(["image", "inspect", "--format", format, reference])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{:?} image inspect {reference}: {}",
        engine.kind,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Every pushed function's container started with `engine` from its pinned
/// reference and confined as Kubernetes runs it; then one person's whole
/// session through them, over HTTP, through the watchdogs.
fn run_every_image(
    engine: &Engine,
    pushed: &BTreeMap<String, String>,
    functions: &Functions,
    relay: &DatabaseRelay,
) {
    eprintln!("{:?}: running every pushed image", engine.kind);
    let started = Instant::now();
    // The functions' images (cofrap-admin's runs no watchdog: the image
    // test runs it).
    let running: BTreeMap<&str, Container> = pushed
        .iter()
        .filter(|(image, _)| image.as_str() != "cofrap-admin")
        .map(|(function, reference)| {
            let container = Container::run_on(
                engine,
                reference,
                &function_options(function, functions, relay, &functions.dbname),
            );
            assert_confined(function, &container);
            (function.as_str(), container)
        })
        .collect();
    let url = |function: &str| {
        running
            .get(function)
            .unwrap_or_else(|| panic!("no image for {function}"))
            .url()
    };
    run_a_whole_session("pushed", |function, request| {
        let answer = containers::request(&url(function), Some(request.to_string().as_bytes()));
        json_of(function, &answer)
    });

    let page = containers::request(&url("frontend"), None);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.content_type.starts_with("text/html"), "{page:?}");
    assert!(page.body.contains("Content-Security-Policy"));
    eprintln!(
        "{:?}: {} containers started and a whole session run in {:.1} s",
        engine.kind,
        running.len(),
        started.elapsed().as_secs_f64()
    );
}

fn json_of(function: &str, answer: &containers::Answer) -> Value {
    assert_eq!(answer.status, 200, "{function}: {answer:?}");
    assert_eq!(
        answer.content_type, "application/json",
        "{function}: {answer:?}"
    );
    serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{function}: {e}: {answer:?}"))
}

/// A temporary folder, removed when dropped with whatever the engines left
/// mounted below it (image layers, network namespaces) unmounted first.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(prefix: &str) -> Scratch {
        let dir = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut below: Vec<&str> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| Path::new(point).starts_with(&self.dir))
            .collect();
        // The deepest first.
        below.sort_by_key(|point| std::cmp::Reverse(point.len()));
        for point in below {
            let _ = Command::new("umount").args(["--lazy", point]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Asks a daemon to stop (SIGTERM), waits for it, and kills it if it takes
/// longer than `DAEMON_PATIENCE`.
fn stop(daemon: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let asked = Instant::now();
    while asked.elapsed() < DAEMON_PATIENCE {
        if let Ok(Some(_)) = daemon.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// Waits until `ready` answers true; fails, with the last lines of `logs`,
/// if one of `daemons` ends first or `DAEMON_PATIENCE` passes. Returns how
/// long it took.
fn wait_until_ready(
    daemons: &mut [(&str, &mut Child)],
    logs: &[PathBuf],
    mut ready: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    while !ready() {
        for (name, daemon) in daemons.iter_mut() {
            if let Ok(Some(status)) = daemon.try_wait() {
                panic!("{name} ended ({status}):\n{}", tails(logs));
            }
        }
        assert!(
            started.elapsed() < DAEMON_PATIENCE,
            "not ready within {DAEMON_PATIENCE:?}:\n{}",
            tails(logs)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// The last lines of each log, for a failure's message.
fn tails(logs: &[PathBuf]) -> String {
    logs.iter()
        .map(|log| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let last = &lines[lines.len().saturating_sub(30)..];
            format!("--- {} (last lines)\n{}", log.display(), last.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Debian's `docker-registry` (the CNCF Distribution registry), serving
/// plain HTTP on a free port of 127.0.0.1 and storing in a temporary folder.
struct Registry {
    /// `127.0.0.1:<port>`: the first part of an image's name.
    address: String,
    /// Tells podman that this registry speaks plain HTTP.
    registries_conf: PathBuf,
    process: Child,
    scratch: Scratch,
}

impl Registry {
    fn start() -> Registry {
        let scratch = Scratch::new("cofrap-registry-");
        let address = format!("127.0.0.1:{}", containers::free_port());
        let config = scratch.dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {address}\n  secret: {}\n",
                scratch.dir.join("storage").display(),
                unique("secret")
            ),
        )
        .unwrap();
        let registries_conf = scratch.dir.join("registries.conf");
        std::fs::write(
            &registries_conf,
            format!("[[registry]]\nlocation = \"{address}\"\ninsecure = true\n"),
        )
        .unwrap();
        let log = std::fs::File::create(scratch.dir.join("registry.log")).unwrap();
        let process = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry is missing: make test installs it (make docker-deps)");
        let mut registry = Registry {
            address,
            registries_conf,
            process,
            scratch,
        };
        let base = format!("http://{}/v2/", registry.address);
        wait_until_ready(
            &mut [("docker-registry", &mut registry.process)],
            &[registry.scratch.dir.join("registry.log")],
            || containers::answers_ok(&base),
        );
        registry
    }

    /// The digest of the manifest the registry serves for `<function>:<tag>`.
    fn digest_of(&self, function: &str, tag: &str) -> String {
        let url = format!(
            "http://{}/v2/cofrap/{function}/manifests/{tag}",
            self.address
        );
        let response = ureq::head(&url)
            .config()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .header(
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.oci.image.index.v1+json, \
                 application/vnd.docker.distribution.manifest.v2+json, \
                 application/vnd.docker.distribution.manifest.list.v2+json",
            )
            .call()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{url}: no Docker-Content-Digest"))
            .to_owned()
    }

    fn log(&self) -> String {
        tails(&[self.scratch.dir.join("registry.log")])
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        stop(&mut self.process);
    }
}

/// A Docker engine of the test's own: containerd and dockerd (Debian's
/// docker.io), everything of theirs in a temporary folder. dockerd runs as
/// it can here: the vfs storage driver, no iptables, no bridge (so no
/// change to the host's network), containers in a cgroup of their own.
/// Its own containerd, rather than letting dockerd find the system's
/// `/run/containerd/containerd.sock`.
struct DockerDaemon {
    containerd: Child,
    dockerd: Child,
    cgroup_parent: String,
    /// Folders of /run that the daemons create whatever they are told, and
    /// that did not exist before: removed again if left empty.
    created_in_run: Vec<PathBuf>,
    scratch: Scratch,
}

impl DockerDaemon {
    fn start() -> DockerDaemon {
        let scratch = Scratch::new("cofrap-docker-");
        let dir = scratch.dir.clone();
        // containerd's runc shims put their sockets in /run/containerd/s
        // whatever it is told; dockerd looks for plugins in /run/docker.
        let created_in_run = [
            "/run/containerd/s",
            "/run/containerd",
            "/run/docker/plugins",
            "/run/docker",
        ]
        .into_iter()
        .map(PathBuf::from)
        .filter(|path| !path.exists())
        .collect();
        let containerd_conf = dir.join("containerd.toml");
        std::fs::write(
            &containerd_conf,
            format!(
                "version = 2\nroot = \"{0}/containerd/root\"\nstate = \"{0}/containerd/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{0}/containerd.sock\"\n\
                 [ttrpc]\n  address = \"{0}/containerd.sock.ttrpc\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{0}/containerd/opt\"\n",
                dir.display()
            ),
        )
        .unwrap();
        let containerd = Command::new("containerd")
            .arg("--config")
            .arg(&containerd_conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("containerd.log")).unwrap())
            .spawn()
            .expect("containerd is missing: make test installs it (make docker-deps)");
        // dockerd's configuration file, so that it reads none of /etc/docker.
        // dockerd before 23.0 (Debian 12 has 20.10) also writes an identity
        // key, to /etc/docker/key.json unless told another path; later ones
        // have no such key.
        let version = Command::new("dockerd").arg("--version").output();
        let version = version.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let major: Option<u32> = version.as_deref().ok().and_then(|v| {
            v.strip_prefix("Docker version ")?
                .split('.')
                .next()?
                .parse()
                .ok()
        });
        let config = if major.is_some_and(|major| major < 23) {
            json!({"deprecated-key-path": dir.join("key.json")})
        } else {
            json!({})
        };
        std::fs::write(dir.join("daemon.json"), config.to_string()).unwrap();
        // A leading slash: under the root cgroup, not under the test's.
        let cgroup_parent = format!("/{}", unique("cofrap-test-docker-"));
        let dockerd = Command::new("dockerd")
            .arg(format!(
                "--config-file={}",
                dir.join("daemon.json").display()
            ))
            .arg(format!("--host=unix://{}/docker.sock", dir.display()))
            .arg(format!("--data-root={}/data", dir.display()))
            .arg(format!("--exec-root={}/exec", dir.display()))
            .arg(format!("--pidfile={}/docker.pid", dir.display()))
            .arg(format!("--containerd={}/containerd.sock", dir.display()))
            .arg(format!("--cgroup-parent={cgroup_parent}"))
            .args(["--storage-driver=vfs", "--iptables=false", "--bridge=none"])
            .args([
                "--ip-forward=false",
                "--ip-masq=false",
                "--shutdown-timeout=5",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dockerd.log")).unwrap())
            .spawn();
        let mut containerd = containerd;
        let dockerd = dockerd.unwrap_or_else(|e| {
            stop(&mut containerd);
            panic!("dockerd: {e} (make test installs it: make docker-deps)")
        });
        let mut daemon = DockerDaemon {
            containerd,
            dockerd,
            cgroup_parent,
            created_in_run,
            scratch,
        };
        let engine = daemon.engine();
        let mut version = String::new();
        let took = wait_until_ready(
            &mut [
                ("containerd", &mut daemon.containerd),
                ("dockerd", &mut daemon.dockerd),
            ],
            &[dir.join("containerd.log"), dir.join("dockerd.log")],
            || {
                let output = engine
                    .command()
                    .args(["version", "--format", "{{.Server.Version}}"])
                    .output()
                    .unwrap();
                version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
                output.status.success()
            },
        );
        eprintln!(
            "Docker engine {version} started in {:.1} s",
            took.as_secs_f64()
        );
        daemon
    }

    /// The docker client for this engine (its own client configuration too).
    fn engine(&self) -> Engine {
        Engine::docker(
            &format!("unix://{}/docker.sock", self.scratch.dir.display()),
            &self.scratch.dir.join("client"),
        )
    }
}

impl Drop for DockerDaemon {
    fn drop(&mut self) {
        // dockerd first (it stops any container left), then its containerd.
        stop(&mut self.dockerd);
        stop(&mut self.containerd);
        // The containers' cgroup parent, under each controller (cgroup v1)
        // or once (v2).
        let parent = self.cgroup_parent.trim_start_matches('/');
        for controller in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(controller.path().join(parent));
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(parent));
        for folder in &self.created_in_run {
            let _ = std::fs::remove_dir(folder);
        }
    }
}
