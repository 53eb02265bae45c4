//! What can be checked of the deployment without a Docker engine or a
//! cluster: the Kubernetes manifests against the Kubernetes schemas (offline),
//! stack.yaml and the Dockerfile against the code and each other, the secrets
//! script against a stand-in kubectl, and the static binaries on an empty root
//! filesystem, the way a `scratch` image runs them.

use cofrap_tests::*;
use common::config::{REQUEST_DEADLINE_MS, SECRETS, SETTINGS};
use serde_json::json;
use serde_yaml_ng::Value as Yaml;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn functions_in_bins() -> BTreeSet<String> {
    std::fs::read_dir(repo_root().join("bins"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn stack() -> Yaml {
    serde_yaml_ng::from_str(&read("stack.yaml")).expect("stack.yaml is not YAML")
}

fn seconds(duration: &Yaml) -> u64 {
    let text = duration.as_str().expect("durations are strings like 10s");
    text.strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"))
}

/// Runs a function that declares no configuration with an empty environment:
/// it must answer all the same.
fn assert_reads_no_configuration(function: &str) {
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().unwrap().parent().unwrap().join(function);
    let output = Command::new(&binary)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    assert!(
        output.status.success(),
        "{function} needs configuration that stack.yaml does not give it"
    );
    assert!(!output.stdout.is_empty());
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas_offline() {
    let validator = std::env::var("COFRAP_TEST_PYTHON")
        .map(|python| PathBuf::from(python).with_file_name("kubernetes-validate"))
        .unwrap_or_else(|_| repo_root().join(".venv/bin/kubernetes-validate"));
    let manifests: Vec<PathBuf> = std::fs::read_dir(repo_root().join("k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    assert!(manifests.len() >= 2, "{manifests:?}");
    let output = Command::new(&validator)
        .arg("--strict")
        .args(&manifests)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (make test installs it)", validator.display()));
    let report = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    for kind in [
        "statefulset/postgres",
        "service/postgres",
        "job/cofrap-db-migrate",
    ] {
        assert!(
            report.contains(&format!("passed for resource {kind}")),
            "{report}"
        );
    }
}

#[test]
fn stack_yaml_deploys_exactly_the_binaries_with_what_their_code_reads() {
    let stack = stack();
    assert_eq!(stack["version"], Yaml::from(1.0));
    let functions = stack["functions"].as_mapping().expect("no functions");
    let names: BTreeSet<String> = functions
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, functions_in_bins());

    for (name, function) in functions {
        let name = name.as_str().unwrap();
        assert_eq!(function["lang"], "dockerfile", "{name}");
        let handler = function["handler"].as_str().unwrap();
        assert!(
            repo_root().join(handler).join("Dockerfile").exists(),
            "{name}: {handler}"
        );
        assert_eq!(function["build_args"]["FUNCTION"], name);
        let image = function["image"].as_str().unwrap();
        assert!(
            image.starts_with("${REGISTRY:-")
                && image.ends_with(&format!("/{name}:${{TAG:-latest}}")),
            "{image}"
        );

        // A function lists every secret and setting the code reads
        // (common::config), or, like the page, none: then it must run with
        // an empty environment.
        let environment = function["environment"].as_mapping().unwrap();
        let secrets: BTreeSet<&str> = function["secrets"]
            .as_sequence()
            .map(|list| list.iter().map(|s| s.as_str().unwrap()).collect())
            .unwrap_or_default();
        if secrets.is_empty() {
            for setting in SETTINGS {
                assert!(
                    !environment.contains_key(setting),
                    "{name} sets {setting} but has no secrets"
                );
            }
            assert_reads_no_configuration(name);
        } else {
            assert_eq!(secrets, SECRETS.into_iter().collect(), "{name}");
            for setting in SETTINGS {
                assert!(environment.contains_key(setting), "{name} lacks {setting}");
            }
            assert_eq!(environment["content_type"], "application/json");
        }
        for key in environment.keys().map(|k| k.as_str().unwrap()) {
            let upper = key.to_uppercase();
            assert!(
                !SECRETS.contains(&key)
                    && !upper.contains("PASSWORD")
                    && !upper.contains("KEY")
                    && !upper.contains("SECRET"),
                "{name}: a secret value in environment ({key})"
            );
        }
        assert_eq!(
            environment["combine_output"], "false",
            "logs must stay out of responses"
        );
        assert_eq!(
            environment["write_debug"], "false",
            "request bodies must stay out of logs"
        );
        assert!(seconds(&environment["write_timeout"]) > seconds(&environment["exec_timeout"]));
        // The function answers by its deadline, at least a second before
        // the watchdog would kill it.
        if let Some(deadline) = environment.get(REQUEST_DEADLINE_MS) {
            let deadline_ms: u64 = deadline.as_str().unwrap().parse().unwrap();
            assert!(
                deadline_ms + 1000 <= seconds(&environment["exec_timeout"]) * 1000,
                "{name}: {REQUEST_DEADLINE_MS} must stay a second below exec_timeout"
            );
        }
        assert!(seconds(&environment["read_timeout"]) > 0);
        assert!(
            environment["max_inflight"]
                .as_str()
                .unwrap()
                .parse::<u32>()
                .unwrap()
                > 0
        );

        assert_eq!(function["readonly_root_filesystem"], true, "{name}");
        for resources in ["requests", "limits"] {
            assert!(
                function[resources]["memory"].is_string() && function[resources]["cpu"].is_string(),
                "{name} {resources}"
            );
        }
        let labels = &function["labels"];
        assert!(
            labels["com.openfaas.scale.min"].is_string()
                && labels["com.openfaas.scale.max"].is_string()
        );
    }

    // The database host is the Service of k8s/postgres.yaml, in openfaas-fn.
    let manifest = read("k8s/postgres.yaml");
    assert!(
        manifest.contains("kind: Service\nmetadata:\n  name: postgres\n  namespace: openfaas-fn")
    );
    let host = &stack["functions"]["authenticate"]["environment"]["POSTGRES_HOST"];
    assert_eq!(host, "postgres.openfaas-fn.svc.cluster.local");
}

/// The workspace members' folders, relative to the repository root.
fn workspace_member_dirs() -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let root = repo_root();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            let manifest = PathBuf::from(package["manifest_path"].as_str().unwrap());
            let dir = manifest
                .parent()
                .unwrap()
                .strip_prefix(&root)
                .unwrap()
                .to_path_buf();
            dir.display().to_string()
        })
        .collect()
}

#[test]
fn faas_cli_gets_the_whole_workspace_in_each_build_context() {
    let stack = stack();
    let copied: BTreeSet<String> = stack["configuration"]["copy"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().trim_start_matches("./").to_owned())
        .collect();
    for member in workspace_member_dirs() {
        let top = member.split('/').next().unwrap().to_owned();
        assert!(
            copied.contains(&top),
            "configuration.copy lacks {top} (workspace member {member})"
        );
    }
    assert!(copied.contains("Cargo.toml") && copied.contains("Cargo.lock"));
    // The Dockerfile copies the same paths from the context.
    let dockerfile = read("dockerfiles/Dockerfile");
    for path in &copied {
        assert!(
            dockerfile.contains(&format!("COPY {path}"))
                || dockerfile.contains(&format!(" {path} ")),
            "Dockerfile does not copy {path}"
        );
    }
    let templates = &stack["configuration"]["templates"][0]["name"];
    assert_eq!(
        templates, "dockerfile",
        "faas-cli template pull stack fetches it"
    );
}

#[test]
fn the_dockerfile_builds_a_static_scratch_image_running_what_fprocess_names() {
    let dockerfile = read("dockerfiles/Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let arg = |name: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
            .unwrap_or_else(|| panic!("no ARG {name}"))
    };
    // Pinned base images.
    let watchdog = arg("WATCHDOG_IMAGE");
    assert!(
        watchdog.starts_with("ghcr.io/openfaas/classic-watchdog:0."),
        "{watchdog}"
    );
    let rust = arg("RUST_IMAGE");
    let rust_version = rust
        .strip_prefix("rust:")
        .and_then(|t| t.split('-').next())
        .unwrap();
    assert_eq!(
        rust_version.split('.').count(),
        3,
        "pin the Rust version: {rust}"
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("cargo build --release --locked")));
    assert!(lines
        .iter()
        .any(|l| l.contains("target-feature=+crt-static")));

    // The last stage: scratch, numeric non-root user, no shell-form healthcheck.
    let last_stage = &lines[lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap()..];
    assert_eq!(last_stage[0], "FROM scratch");
    let user = last_stage
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("no USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("USER must be numeric");
    assert!(uid > 0);
    assert!(!lines.iter().any(|l| l.starts_with("HEALTHCHECK")));
    assert!(last_stage.contains(&"CMD [\"/fwatchdog\"]"));

    // fprocess: an absolute path without spaces, where the build installs the binary.
    let fprocess = last_stage
        .iter()
        .find_map(|l| l.strip_prefix("ENV fprocess="))
        .expect("no fprocess")
        .trim_matches('"');
    assert!(
        fprocess.starts_with('/') && !fprocess.contains(' '),
        "{fprocess}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("\"/out{fprocess}\""))),
        "the build does not install the binary at {fprocess}"
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("COPY --from=build /out/ /")));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("install -d -m 1777 /out/tmp")),
        "the watchdog needs a writable /tmp"
    );

    for ignore in [".dockerignore", "dockerfiles/.dockerignore"] {
        let patterns: Vec<String> = read(ignore).lines().map(str::to_owned).collect();
        for excluded in ["target/", "build/"] {
            assert!(
                patterns.iter().any(|p| p == excluded),
                "{ignore} lacks {excluded}"
            );
        }
    }
}

/// A stand-in for kubectl (and kubeseal) that records its calls and keeps
/// what `create secret` is given.
fn fake_cluster() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("fake-kubectl-"));
    std::fs::create_dir_all(&dir).unwrap();
    let kubectl = r#"#!/bin/sh
echo "$*" >> "$FAKE/calls"
case "$1 $2" in
  "get secret") [ -e "$FAKE/existing-$3" ];;
  "create secret")
    for arg; do
      case "$arg" in
        --from-file=*) spec=${arg#--from-file=}; cp "${spec#*=}" "$FAKE/key-${spec%%=*}";;
      esac
    done
    case "$*" in *--dry-run=client*) echo "kind: Secret";; esac;;
esac
"#;
    std::fs::write(dir.join("kubectl"), kubectl).unwrap();
    std::fs::write(
        dir.join("kubeseal"),
        "#!/bin/sh\necho \"kind: SealedSecret\"\ncat >/dev/null\n",
    )
    .unwrap();
    for tool in ["kubectl", "kubeseal"] {
        Command::new("chmod")
            .arg("+x")
            .arg(dir.join(tool))
            .status()
            .unwrap();
    }
    dir
}

fn run_secrets_script(fake: &Path, args: &[&str]) -> String {
    let output = Command::new(repo_root().join("k8s-secrets/create-secrets.sh"))
        .args(args)
        .env(
            "PATH",
            format!("{}:{}", fake.display(), std::env::var("PATH").unwrap()),
        )
        .env("FAKE", fake)
        .env("SEALED_DIR", fake.join("sealed"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_secrets_script_creates_each_secret_keyed_by_its_name_with_strong_values() {
    let fake = fake_cluster();
    let printed = run_secrets_script(&fake, &[]);
    let calls = std::fs::read_to_string(fake.join("calls")).unwrap();
    let value = |name: &str| std::fs::read_to_string(fake.join(format!("key-{name}"))).unwrap();

    assert_eq!(value("db-credentials-username"), "cofrap");
    let password = value("db-credentials-password");
    assert_eq!(password.len(), 32);
    assert!(password
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let key = value("encryption-key");
    assert!(
        common::encryption::Keyring::parse(&key).is_ok(),
        "not a Fernet key"
    );
    for secret in SECRETS {
        assert!(
            calls.contains(&format!(
                "create secret generic {secret} --namespace openfaas-fn --from-file={secret}="
            )),
            "{calls}"
        );
    }
    // Values never on a command line, never printed.
    for secret_value in [&password, &key] {
        assert!(!calls.contains(secret_value.as_str()) && !printed.contains(secret_value.as_str()));
    }
    // A second run keeps what exists: a new encryption key would orphan every stored 2FA secret.
    for secret in SECRETS {
        std::fs::write(fake.join(format!("existing-{secret}")), "").unwrap();
    }
    std::fs::remove_file(fake.join("calls")).unwrap();
    let printed = run_secrets_script(&fake, &[]);
    let calls = std::fs::read_to_string(fake.join("calls")).unwrap();
    assert!(!calls.contains("create secret"), "{calls}");
    assert_eq!(printed.matches(": kept").count(), 3, "{printed}");

    // The GitOps way: sealed manifests, nothing created in the cluster.
    std::fs::remove_file(fake.join("calls")).unwrap();
    run_secrets_script(&fake, &["--seal"]);
    for secret in SECRETS {
        let sealed =
            std::fs::read_to_string(fake.join("sealed").join(format!("{secret}.yaml"))).unwrap();
        assert_eq!(sealed.trim(), "kind: SealedSecret");
    }
    let calls = std::fs::read_to_string(fake.join("calls")).unwrap();
    assert!(
        calls
            .lines()
            .all(|l| l.contains("--dry-run=client -o yaml")),
        "{calls}"
    );
    std::fs::remove_dir_all(&fake).unwrap();
}

/// True when the ELF file has no program interpreter: nothing to load at run time.
fn is_static_elf(bytes: &[u8]) -> bool {
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(bytes[4], 2, "64-bit ELF expected");
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    (0..phnum).all(|i| {
        let header = phoff + i * phentsize;
        u32::from_le_bytes(bytes[header..header + 4].try_into().unwrap()) != PT_INTERP
    })
}

fn static_binary(function: &str) -> PathBuf {
    let host =
        String::from_utf8(Command::new("rustc").arg("-vV").output().unwrap().stdout).unwrap();
    let host = host.lines().find_map(|l| l.strip_prefix("host: ")).unwrap();
    let path = repo_root()
        .join("target")
        .join(host)
        .join("release")
        .join(function);
    assert!(
        path.exists(),
        "{} is missing: make test builds it (make static)",
        path.display()
    );
    path
}

/// The absolute path of a tool on PATH (the functions run with an empty
/// environment, so the tool cannot be looked up through theirs).
fn which(tool: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join(tool))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{tool} is not on PATH"))
}

fn is_root() -> bool {
    let uid = Command::new("id").arg("-u").output().unwrap().stdout;
    String::from_utf8_lossy(&uid).trim() == "0"
}

/// A root filesystem with only what a container runtime gives even a
/// `scratch` image, the function binaries, and the secrets at their default path.
fn empty_root(functions: &Functions) -> PathBuf {
    let root = std::env::temp_dir().join(unique("cofrap-root-"));
    let mkdir = |path: &str, mode: &str| {
        std::fs::create_dir_all(root.join(path)).unwrap();
        Command::new("chmod")
            .arg(mode)
            .arg(root.join(path))
            .status()
            .unwrap();
    };
    mkdir("dev", "755");
    mkdir("etc", "755");
    mkdir("tmp", "1777");
    mkdir("usr/bin", "755");
    mkdir("var/openfaas/secrets", "755");
    if is_root() {
        for (name, major, minor) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
            ("tty", 5, 0),
        ] {
            let status = Command::new("mknod")
                .args(["-m", "666"])
                .arg(root.join("dev").join(name))
                .args(["c", &major.to_string(), &minor.to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "mknod {name}");
        }
    }
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/hostname"), "function\n").unwrap();
    std::fs::write(root.join("etc/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    for name in SECRETS {
        std::fs::copy(
            functions.secret_path(name),
            root.join("var/openfaas/secrets").join(name),
        )
        .unwrap();
        Command::new("chmod")
            .arg("444")
            .arg(root.join("var/openfaas/secrets").join(name))
            .status()
            .unwrap();
    }
    for function in functions_in_bins() {
        let target = root.join("usr/bin").join(&function);
        std::fs::copy(static_binary(&function), &target).unwrap();
        Command::new("chmod")
            .arg("555")
            .arg(&target)
            .status()
            .unwrap();
    }
    root
}

#[test]
fn static_binaries_answer_from_an_empty_root_as_an_unprivileged_user() {
    for function in functions_in_bins() {
        let bytes = std::fs::read(static_binary(&function)).unwrap();
        assert!(is_static_elf(&bytes), "{function} is dynamically linked");
    }
    let functions = Functions::new();
    let root = empty_root(&functions);
    // The functions inside know the database by address only: no resolver
    // libraries, no name service, just what the kernel offers.
    let server = &functions.server;
    let address = std::net::ToSocketAddrs::to_socket_addrs(&(server.host.as_str(), server.port))
        .unwrap()
        .find(|a| a.is_ipv4())
        .expect("the test database has no IPv4 address")
        .ip();

    let run = |function: &str, request: serde_json::Value| -> serde_json::Value {
        let mut command = if is_root() {
            let mut c = Command::new(which("chroot"));
            c.arg("--userspec=65534:65534").arg(&root);
            c
        } else {
            // Unprivileged: a user namespace to chroot in (no device nodes then).
            let mut c = Command::new(which("unshare"));
            c.args(["--user", "--map-root-user", "chroot"]).arg(&root);
            c
        };
        let output = run_with_input(
            command
                .arg(format!("/usr/bin/{function}"))
                .env_clear()
                .env("POSTGRES_HOST", address.to_string())
                .env("POSTGRES_PORT", server.port.to_string())
                .env("POSTGRES_DB", &functions.dbname)
                .env("BCRYPT_COST", "10")
                .env("POSTGRES_SSLMODE", "disable"),
            request.to_string().as_bytes(),
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{function}: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(&stdout).unwrap()
    };

    let user = unique("chroot");
    let created = run("generate-password", json!({"username": user}));
    let password = decode_qr(created["qr_code_base64"].as_str().expect("no QR code"));
    let enrolled = run(
        "generate-2fa",
        json!({"username": user, "password": password}),
    );
    let secret = enrolled["manual_entry_key"]
        .as_str()
        .expect("no key")
        .to_owned();
    let code = code_at(&secret, current_step() * 30);
    let signed_in = run(
        "authenticate",
        json!({"username": user, "password": password, "totp_code": code}),
    );
    assert_eq!(signed_in, json!({"authenticated": true, "username": user}));
    std::fs::remove_dir_all(&root).unwrap();
}
