//! What can be checked of the deployment without a cluster: the Kubernetes
//! manifests against the Kubernetes schemas (offline) and their hardening,
//! workload by workload; the CloudNativePG and Gateway API resources against
//! their projects' real CRDs, the connection budget they add up to, and the
//! edge's headers and limits; stack.yaml and the Dockerfile against the code
//! and each other, for either database; the secrets scripts against a
//! stand-in kubectl; and the static binaries on an empty root filesystem, the
//! way a `scratch` image runs them. (The images themselves are built and run
//! in tests/images.rs.)

use cofrap_tests::*;
use common::config::{
    DB_CA_SECRET, JWT_SIGNING_KEYS_SECRET, REQUEST_DEADLINE_MS, SECRETS, SETTINGS,
};
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

/// stack.yaml as written, its `${NAME:-default}` left as they are.
fn stack() -> Yaml {
    serde_yaml_ng::from_str(&read("stack.yaml")).expect("stack.yaml is not YAML")
}

/// stack.yaml as faas-cli reads it with these environment variables (and no
/// others): `${NAME:-default}` is the variable's value when it is set and
/// not empty, else the default; `${NAME}` its value or nothing.
fn stack_for(variables: &[(&str, &str)]) -> Yaml {
    let text = read("stack.yaml");
    let mut expanded = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        expanded.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("an unclosed ${") + start;
        let expression = &rest[start + 2..end];
        let (name, default) = expression.split_once(":-").unwrap_or((expression, ""));
        let value = variables
            .iter()
            .find(|(n, v)| *n == name && !v.is_empty())
            .map_or(default, |(_, v)| v);
        expanded.push_str(value);
        rest = &rest[end + 1..];
    }
    expanded.push_str(rest);
    assert!(!expanded.contains('$'), "a $ faas-cli would substitute");
    serde_yaml_ng::from_str(&expanded).expect("stack.yaml is not YAML once substituted")
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
        "networkpolicy/postgres",
        "job/cofrap-db-migrate",
        "job/cofrap-admin",
        "cronjob/cofrap-events-prune",
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
        if secrets == BTreeSet::from([JWT_SIGNING_KEYS_SECRET]) {
            // jwks: the signing keys and nothing else (no database).
            for setting in SETTINGS {
                assert!(
                    !environment.contains_key(setting),
                    "{name} sets {setting} but reads only the signing keys"
                );
            }
            assert_eq!(environment["content_type"], "application/json");
        } else if secrets.is_empty() {
            for setting in SETTINGS {
                assert!(
                    !environment.contains_key(setting),
                    "{name} sets {setting} but has no secrets"
                );
            }
            assert_reads_no_configuration(name);
        } else {
            assert_eq!(secrets, secrets_read_by(name), "{name}");
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

    // The database host is the Service of k8s/postgres.yaml, in openfaas-fn
    // (by default: with no variable set).
    let manifest = read("k8s/postgres.yaml");
    assert!(
        manifest.contains("kind: Service\nmetadata:\n  name: postgres\n  namespace: openfaas-fn")
    );
    let host = &stack_for(&[])["functions"]["authenticate"]["environment"]["POSTGRES_HOST"];
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
    // The newest classic watchdog release (docs/OPERATIONS.md says which
    // version the image test ran).
    let watchdog = arg("WATCHDOG_IMAGE");
    assert_eq!(watchdog, "ghcr.io/openfaas/classic-watchdog:0.3.9");
    let rust = arg("RUST_IMAGE");
    let rust_version = rust
        .strip_prefix("docker.io/library/rust:")
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
    // A secret that exists in the stand-in cluster is a file existing-<name>
    // holding its value; a secret of several keys also has one file
    // existing-<name>.<key> per key, which `-o jsonpath={.data.<key>}` reads.
    let kubectl = r#"#!/bin/sh
echo "$*" >> "$FAKE/calls"
case "$1 $2" in
  "get secret")
    [ -e "$FAKE/existing-$3" ] || exit 1
    case "$*" in *jsonpath=*)
      key=$(printf '%s\n' "$*" | sed -n 's/.*jsonpath={\.data\.\(.*\)}.*/\1/p' | sed 's/\\\././g')
      if [ -e "$FAKE/existing-$3.$key" ]; then base64 < "$FAKE/existing-$3.$key"
      else base64 < "$FAKE/existing-$3"; fi;;
    esac;;
  "delete secret") rm "$FAKE/existing-$3";;
  "apply -f") cat > /dev/null;;
  "create secret")
    for arg; do
      case "$arg" in
        --from-file=*) spec=${arg#--from-file=}; cp "${spec#*=}" "$FAKE/key-${spec%%=*}";;
      esac
    done
    case "$*" in
      *--dry-run=client*) echo "kind: Secret";;
      *) cp "$FAKE/key-$4" "$FAKE/existing-$4";;
    esac;;
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

/// The secrets a database function reads, by what it does (least privilege:
/// refresh and sign-out never hold the key to every stored TOTP secret, and
/// only the functions that sign hold the signing keys). Each function's own
/// tests run it with these and nothing else where it matters
/// (tests/sessions.rs: refresh and sign-out without the Fernet keys).
fn secrets_read_by(function: &str) -> BTreeSet<&'static str> {
    // The CA certificate is read at verify-full only, which one switch of
    // stack.yaml turns on (DATABASE=cnpg): every database function has it.
    let database = ["db-credentials-username", "db-credentials-password"];
    let extra: &[&'static str] = match function {
        "generate-password" | "generate-2fa" => &["encryption-key"],
        "authenticate" => &["encryption-key", JWT_SIGNING_KEYS_SECRET],
        "refresh" => &[JWT_SIGNING_KEYS_SECRET],
        "sign-out" => &[],
        other => panic!("{other}: which secrets does it read?"),
    };
    let mut secrets: BTreeSet<&str> = database.into_iter().chain(extra.iter().copied()).collect();
    assert!(secrets.iter().all(|s| SECRETS.contains(s)), "{secrets:?}");
    secrets.insert(DB_CA_SECRET);
    secrets
}

/// The secrets the script creates: the functions' (common::config) and the
/// database administrator's, which only the schema Job and the database read.
fn script_secrets() -> Vec<&'static str> {
    SECRETS
        .into_iter()
        .chain(["db-admin-username", "db-admin-password"])
        .collect()
}

#[test]
fn the_secrets_script_creates_each_secret_keyed_by_its_name_with_strong_values() {
    let fake = fake_cluster();
    let printed = run_secrets_script(&fake, &[]);
    let calls = std::fs::read_to_string(fake.join("calls")).unwrap();
    let value = |name: &str| std::fs::read_to_string(fake.join(format!("key-{name}"))).unwrap();

    assert_eq!(value("db-credentials-username"), "cofrap_functions");
    assert_eq!(value("db-admin-username"), "postgres");
    let password = value("db-credentials-password");
    let admin_password = value("db-admin-password");
    for password in [&password, &admin_password] {
        assert_eq!(password.len(), 32);
        assert!(password
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
    assert_ne!(password, admin_password);
    let key = value("encryption-key");
    assert!(
        common::encryption::Keyring::parse(&key).is_ok(),
        "not a Fernet key"
    );
    let signing_key = value("jwt-signing-keys");
    assert!(
        common::jwt::SigningKeys::parse(&signing_key).is_ok(),
        "not an Ed25519 key"
    );
    for secret in script_secrets() {
        assert!(
            calls.contains(&format!(
                "create secret generic {secret} --namespace openfaas-fn --from-file={secret}="
            )),
            "{calls}"
        );
    }
    // Values never on a command line, never printed.
    for secret_value in [&password, &admin_password, &key, &signing_key] {
        assert!(!calls.contains(secret_value.as_str()) && !printed.contains(secret_value.as_str()));
    }
    // A second run keeps what exists: a new encryption key would orphan every stored 2FA secret.
    for secret in script_secrets() {
        std::fs::write(fake.join(format!("existing-{secret}")), "").unwrap();
    }
    std::fs::remove_file(fake.join("calls")).unwrap();
    let printed = run_secrets_script(&fake, &[]);
    let calls = std::fs::read_to_string(fake.join("calls")).unwrap();
    assert!(!calls.contains("create secret"), "{calls}");
    assert_eq!(
        printed.matches(": kept").count(),
        script_secrets().len(),
        "{printed}"
    );

    // The GitOps way: sealed manifests, nothing created in the cluster.
    std::fs::remove_file(fake.join("calls")).unwrap();
    run_secrets_script(&fake, &["--seal"]);
    for secret in script_secrets() {
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

#[test]
fn the_secrets_script_upgrades_an_installation_from_before_the_roles() {
    // Before the roles: the functions' secrets held the bootstrap superuser.
    let fake = fake_cluster();
    let existing = |name: &str| fake.join(format!("existing-{name}"));
    std::fs::write(existing("db-credentials-username"), "cofrap").unwrap();
    std::fs::write(existing("db-credentials-password"), "old-superuser-secret").unwrap();
    std::fs::write(existing("encryption-key"), "the-kept-key").unwrap();
    let printed = run_secrets_script(&fake, &["--upgrade"]);
    let value = |name: &str| std::fs::read_to_string(existing(name)).unwrap();

    assert_eq!(value("db-admin-username"), "cofrap");
    assert_eq!(value("db-admin-password"), "old-superuser-secret");
    assert_eq!(value("db-credentials-username"), "cofrap_functions");
    let password = value("db-credentials-password");
    assert_eq!(password.len(), 32);
    assert_eq!(value("encryption-key"), "the-kept-key");
    let calls = std::fs::read_to_string(fake.join("calls")).unwrap();
    for secret_value in ["old-superuser-secret", password.as_str()] {
        assert!(!calls.contains(secret_value) && !printed.contains(secret_value));
    }
    assert!(
        printed.contains("moved from db-credentials-* to db-admin-*"),
        "{printed}"
    );

    // Twice is harmless: nothing moves again, nothing is replaced.
    let printed = run_secrets_script(&fake, &["--upgrade"]);
    assert!(printed.contains("nothing to upgrade"), "{printed}");
    assert_eq!(value("db-admin-password"), "old-superuser-secret");
    assert_eq!(value("db-credentials-password"), password);
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

/// The fully static musl build of `make static`: the images' binaries.
fn static_binary(function: &str) -> PathBuf {
    let path = repo_root()
        .join("target/x86_64-unknown-linux-musl/release")
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

    run_a_whole_session("chroot", run);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Every document of every manifest in k8s/.
fn manifests() -> Vec<(String, Yaml)> {
    let mut documents = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("k8s")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for document in text.split("\n---\n") {
            let value: Yaml = serde_yaml_ng::from_str(document)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = format!(
                "{}/{}",
                value["kind"].as_str().unwrap(),
                value["metadata"]["name"].as_str().unwrap()
            );
            documents.push((name, value));
        }
    }
    documents
}

/// The pod template of a workload, if the document is one.
fn pod_template(manifest: &Yaml) -> Option<&Yaml> {
    match manifest["kind"].as_str().unwrap() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicaSet" => {
            Some(&manifest["spec"]["template"])
        }
        "CronJob" => Some(&manifest["spec"]["jobTemplate"]["spec"]["template"]),
        "Pod" => Some(manifest),
        _ => None,
    }
}

/// Whether `labels` satisfies a NetworkPolicy's `matchLabels`.
fn selected_by(selector: &Yaml, labels: &Yaml) -> bool {
    selector["matchLabels"]
        .as_mapping()
        .is_some_and(|wanted| wanted.iter().all(|(k, v)| &labels[k] == v))
}

#[test]
fn every_workload_is_hardened() {
    let manifests = manifests();
    let workloads: Vec<(&String, &Yaml)> = manifests
        .iter()
        .filter_map(|(name, manifest)| pod_template(manifest).map(|pod| (name, pod)))
        .collect();
    assert!(workloads.len() >= 2, "{workloads:?}");
    for (name, pod) in &workloads {
        let spec = &pod["spec"];
        assert_eq!(
            spec["automountServiceAccountToken"], false,
            "{name}: a service-account token is mounted, and none is used"
        );
        let pod_security = &spec["securityContext"];
        let containers: Vec<&Yaml> = ["initContainers", "containers"]
            .iter()
            .flat_map(|list| spec[*list].as_sequence().into_iter().flatten())
            .collect();
        assert!(!containers.is_empty(), "{name}");
        for container in containers {
            let which = format!("{name} {}", container["name"].as_str().unwrap());
            let security = &container["securityContext"];
            // Either level may say it; the container's wins.
            let either = |key: &str| {
                if security[key].is_null() {
                    &pod_security[key]
                } else {
                    &security[key]
                }
            };
            assert_eq!(*either("runAsNonRoot"), true, "{which}: runAsNonRoot");
            assert_eq!(
                either("seccompProfile")["type"],
                "RuntimeDefault",
                "{which}: seccomp"
            );
            assert_eq!(
                security["allowPrivilegeEscalation"], false,
                "{which}: allowPrivilegeEscalation"
            );
            assert_eq!(
                security["readOnlyRootFilesystem"], true,
                "{which}: readOnlyRootFilesystem"
            );
            let dropped: Vec<&str> = security["capabilities"]["drop"]
                .as_sequence()
                .map(|list| list.iter().filter_map(|c| c.as_str()).collect())
                .unwrap_or_default();
            assert_eq!(dropped, ["ALL"], "{which}: capabilities");
            assert!(
                security["capabilities"]["add"].is_null(),
                "{which}: adds capabilities"
            );
            // Secrets reach containers as files, never as environment variables.
            for variable in container["env"].as_sequence().into_iter().flatten() {
                let key = variable["name"].as_str().unwrap();
                assert!(
                    variable["valueFrom"]["secretKeyRef"].is_null(),
                    "{which}: {key} comes from a secret"
                );
                assert!(
                    !key.contains("PASSWORD") || key.ends_with("_FILE"),
                    "{which}: a password in the environment ({key})"
                );
            }
        }
    }

    // Only the schema Job and the functions that read the database reach
    // PostgreSQL: its pods are selected by a NetworkPolicy whose only rule
    // admits pods with the client label.
    let postgres_labels = &manifests
        .iter()
        .find(|(name, _)| name == "StatefulSet/postgres")
        .map(|(_, m)| &m["spec"]["template"]["metadata"]["labels"])
        .expect("no StatefulSet/postgres");
    let policy = manifests
        .iter()
        .map(|(_, m)| m)
        .find(|m| {
            m["kind"] == "NetworkPolicy" && selected_by(&m["spec"]["podSelector"], postgres_labels)
        })
        .expect("no NetworkPolicy selects the database's pods");
    assert_eq!(policy["spec"]["policyTypes"][0], "Ingress");
    let rules = policy["spec"]["ingress"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1, "one rule: the database's clients");
    let sources = rules[0]["from"].as_sequence().unwrap();
    assert_eq!(sources.len(), 1);
    let clients = &sources[0]["podSelector"];
    assert!(
        sources[0]["namespaceSelector"].is_null() && sources[0]["ipBlock"].is_null(),
        "clients from this namespace only"
    );
    assert_eq!(rules[0]["ports"][0]["port"], 5432);
    for (name, pod) in &workloads {
        let labels = &pod["metadata"]["labels"];
        let admitted = selected_by(clients, labels);
        assert_eq!(
            admitted,
            name.starts_with("Job/") || name.starts_with("CronJob/"),
            "{name}: only the schema Job and cofrap-admin's Jobs among the manifests reach \
             the database"
        );
    }
    // Functions: those with the database's secrets carry the client label
    // (faas-netes puts stack.yaml's labels on the pods), the others do not.
    let stack = stack();
    for (name, function) in stack["functions"].as_mapping().unwrap() {
        let reads_database = function["secrets"]
            .as_sequence()
            .is_some_and(|s| s.iter().any(|s| s == "db-credentials-password"));
        assert_eq!(
            selected_by(clients, &function["labels"]),
            reads_database,
            "{name:?}: the database's NetworkPolicy label"
        );
    }
}

/// The schema Job's script, run here against the test server as the cluster
/// would run it: its folders mapped to local ones, the administrator's
/// password only in the secret file.
#[test]
fn the_schema_jobs_script_applies_the_roles_then_the_migrations_as_the_owner() {
    let job: Yaml = serde_yaml_ng::from_str(&read("k8s/db-migrate-job.yaml")).unwrap();
    let container = &job["spec"]["template"]["spec"]["initContainers"][0];
    let command = container["command"].as_sequence().unwrap();
    assert_eq!(command[0], "sh");
    let owner_role = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "OWNER_ROLE")
        .and_then(|v| v["value"].as_str())
        .expect("no OWNER_ROLE");
    assert_eq!(owner_role, OWNER_ROLE);

    // A new database, as `make db` finds it: no roles applied, no schema.
    let server = Server::from_env();
    let name = unique("cofrap_job");
    server
        .connect()
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let scratch = ScratchDatabase {
        server: server.clone(),
        name,
    };
    let secrets = std::env::temp_dir().join(unique("cofrap-job-secrets-"));
    std::fs::create_dir_all(&secrets).unwrap();
    let role = FunctionRole::from_test_secrets();
    for (file, value) in [
        ("db-admin-username", server.user.as_str()),
        ("db-admin-password", server.password.as_str()),
        ("db-credentials-username", role.user.as_str()),
        ("db-credentials-password", role.password.as_str()),
    ] {
        std::fs::write(secrets.join(file), value).unwrap();
    }
    let pgpass = std::env::temp_dir().join(unique("cofrap-job-pgpass-"));
    let script = command[2]
        .as_str()
        .unwrap()
        .replace("/tmp/pgpass", &pgpass.display().to_string())
        .replace("/secrets/", &format!("{}/", secrets.display()))
        .replace("=/secrets", &format!("={}", secrets.display()))
        .replace(
            "/migrations/",
            &format!("{}/", repo_root().join("migrations").display()),
        );
    let output = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env_remove("PGPASSWORD")
        .env_remove("PGUSER")
        .env_remove("DATABASE_URL")
        .env("PGHOST", &server.host)
        .env("PGPORT", server.port.to_string())
        .env("PGDATABASE", &scratch.name)
        .env("PGOPTIONS", "--client-min-messages=warning")
        .env("OWNER_ROLE", owner_role)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&pgpass);
    let log = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("applying roles.psql"), "{log}");
    assert!(!log.contains(&server.password) && !log.contains(&role.password));

    // Then its container: cofrap-admin rekey, from cofrap-admin's image
    // (here, this build's binary), with the container's arguments and
    // settings, where the database is and the secrets are mapped to the
    // test's. A row the Python version wrote since gets its look-alike keys.
    scratch
        .connect()
        .execute(
            "INSERT INTO users (username, password_hash) VALUES ('python-row', 'x')",
            &[],
        )
        .unwrap();
    let rekey = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(rekey["name"], "rekey");
    let image = rekey["image"].as_str().unwrap();
    assert_eq!(
        image, "ghcr.io/cofrap/cofrap-admin:latest",
        "make db replaces it"
    );
    let args: Vec<&str> = rekey["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "rekey");
    let mut rekey_command = Command::new(binary("cofrap-admin"));
    rekey_command.env_clear().args(&args);
    for variable in rekey["env"].as_sequence().unwrap() {
        let name = variable["name"].as_str().unwrap();
        let value = match (name, variable["value"].as_str()) {
            ("POSTGRES_HOST", _) => server.host.clone(),
            ("POSTGRES_SSLMODE", _) => "disable".to_owned(),
            ("POSTGRES_DB", _) => scratch.name.clone(),
            ("SECRETS_DIR", Some("/secrets")) => secrets.display().to_string(),
            (other, value) => panic!("{other} = {value:?}: unexpected"),
        };
        rekey_command.env(name, value);
    }
    let rekeyed = rekey_command
        .env("POSTGRES_PORT", server.port.to_string())
        .output()
        .unwrap();
    std::fs::remove_dir_all(&secrets).unwrap();
    assert!(rekeyed.status.success(), "{rekeyed:?}");
    let keyed: bool = scratch
        .connect()
        .query_one(
            "SELECT username_skeleton IS NOT NULL FROM users WHERE username = 'python-row'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(keyed, "rekey did not run: {rekeyed:?}");

    assert_eq!(scratch.table_owner("users"), OWNER_ROLE);
    let functions = Functions::on(scratch.server.clone(), &scratch.name);
    let (password, secret) = functions.enrolled_account("job");
    assert_eq!(
        functions.authenticate("job", &password, &secret, current_step())["authenticated"],
        true
    );
}

/// Every document of the YAML files of a folder under k8s/, by `Kind/name`.
fn documents_in(folder: &str) -> Vec<(String, Yaml)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut documents = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for document in text.split("\n---\n") {
            let value: Yaml = serde_yaml_ng::from_str(document)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = format!(
                "{}/{}",
                value["kind"].as_str().unwrap(),
                value["metadata"]["name"].as_str().unwrap()
            );
            documents.push((name, value));
        }
    }
    documents
}

fn document<'a>(documents: &'a [(String, Yaml)], name: &str) -> &'a Yaml {
    documents
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, d)| d)
        .unwrap_or_else(|| panic!("no {name}"))
}

fn yaml_files(folder: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn venv_tool(name: &str) -> PathBuf {
    std::env::var("COFRAP_TEST_PYTHON")
        .map(|python| PathBuf::from(python).with_file_name(name))
        .unwrap_or_else(|_| repo_root().join(".venv/bin").join(name))
}

#[test]
fn cloudnative_pg_and_gateway_api_resources_validate_against_their_crds() {
    let crds = repo_root().join("../shared/crds");
    let files: Vec<PathBuf> = yaml_files("k8s/cnpg")
        .into_iter()
        .chain(yaml_files("k8s/edge"))
        .collect();
    let output = Command::new(venv_tool("python"))
        .arg(repo_root().join("tests/crd_validate.py"))
        .arg(crds.join("cloudnative-pg-1.30.0"))
        .arg(crds.join("gateway-api-v1.6.1"))
        .arg("--")
        .args(&files)
        .output()
        .expect("the test virtual environment is missing: make test creates it");
    let report = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    // "passed Kind/name (N CEL rules)": the rules evaluated, counted apart.
    let mut rules = std::collections::BTreeMap::new();
    let lines: BTreeSet<&str> = report
        .lines()
        .map(|line| match line.split_once(" (") {
            Some((passed, count)) => {
                let count: u32 = count.trim_end_matches(" CEL rules)").parse().unwrap();
                rules.insert(passed.to_owned(), count);
                passed
            }
            None => line,
        })
        .collect();
    let expected = BTreeSet::from([
        "passed Cluster/cofrap-db",
        "passed Pooler/cofrap-db-pooler",
        "passed ScheduledBackup/cofrap-db-daily",
        "passed Gateway/cofrap-edge",
        "passed HTTPRoute/cofrap",
        // Kubernetes' own kinds: kubernetes-validate, below.
        "builtin NetworkPolicy/cofrap-db",
        "builtin NetworkPolicy/cofrap-db-pooler",
        // No CRD of theirs here: documented in docs/OPERATIONS.md, checked by hand.
        "no-crd ObjectStore/cofrap-backups",
        "no-crd BackendTrafficPolicy/cofrap-edge",
    ]);
    assert_eq!(lines, expected, "{report}");
    // The CRDs' CEL rules ran on these (the route's filters, the Cluster's
    // synchronous replication...), not only their schemas.
    for kind in [
        "Cluster/cofrap-db",
        "HTTPRoute/cofrap",
        "Gateway/cofrap-edge",
    ] {
        assert!(rules[&format!("passed {kind}")] > 0, "{report}");
    }

    let output = Command::new(venv_tool("kubernetes-validate"))
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    for policy in ["cofrap-db", "cofrap-db-pooler"] {
        assert!(
            report.contains(&format!("passed for resource networkpolicy/{policy} ")),
            "{report}"
        );
    }
}

/// The values `make -n <target>` gives the variables a command line sets
/// (`NAME=value`), for the database switch.
fn make_dry_run(arguments: &[&str]) -> String {
    let output = Command::new("make")
        .arg("-n")
        .arg("--no-print-directory")
        .args(arguments)
        .current_dir(repo_root())
        .env_remove("DATABASE")
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "make -n {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn assignment<'a>(commands: &'a str, name: &str) -> &'a str {
    commands
        .split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} is not set in {commands}"))
}

#[test]
fn one_switch_deploys_the_functions_on_either_database() {
    let cnpg = documents_in("k8s/cnpg");
    let cluster = document(&cnpg, "Cluster/cofrap-db");
    let pooler = document(&cnpg, "Pooler/cofrap-db-pooler");
    let namespace = cluster["metadata"]["namespace"].as_str().unwrap();
    let pooler_host = format!(
        "{}.{namespace}.svc.cluster.local",
        pooler["metadata"]["name"].as_str().unwrap()
    );
    let primary_host = format!(
        "{}-rw.{namespace}.svc.cluster.local",
        cluster["metadata"]["name"].as_str().unwrap()
    );

    for (database, host, sslmode, migrate_host) in [
        (
            "postgres",
            "postgres.openfaas-fn.svc.cluster.local",
            "disable",
            "postgres.openfaas-fn.svc.cluster.local",
        ),
        ("cnpg", &pooler_host, "verify-full", &primary_host),
    ] {
        // What `make deploy` hands faas-cli, and what faas-cli then deploys.
        let switch = format!("DATABASE={database}");
        let deploy = make_dry_run(&["deploy", &switch]);
        assert!(deploy.contains("faas-cli deploy -f stack.yaml"), "{deploy}");
        let variables = [
            ("POSTGRES_HOST", assignment(&deploy, "POSTGRES_HOST")),
            ("POSTGRES_SSLMODE", assignment(&deploy, "POSTGRES_SSLMODE")),
        ];
        let stack = stack_for(&variables);
        for (name, function) in stack["functions"].as_mapping().unwrap() {
            let environment = &function["environment"];
            if environment.get("POSTGRES_HOST").is_none() {
                continue;
            }
            assert_eq!(environment["POSTGRES_HOST"], host, "{name:?} on {database}");
            assert_eq!(environment["POSTGRES_SSLMODE"], sslmode, "{name:?}");
            assert!(
                function["secrets"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|s| s == DB_CA_SECRET),
                "{name:?}: no {DB_CA_SECRET}"
            );
        }
        // Where the schema Job connects: the primary itself.
        let schema = make_dry_run(&["db-schema", &switch]);
        assert_eq!(assignment(&schema, "--from-literal=PGHOST"), migrate_host);
        assert_eq!(assignment(&schema, "--from-literal=PGSSLMODE"), sslmode);
        let db = make_dry_run(&["db", &switch]);
        assert!(db.contains(&format!("db-{database} db-schema")), "{db}");
    }
    // Without the switch: the single-pod database.
    assert_eq!(
        assignment(&make_dry_run(&["deploy"]), "POSTGRES_HOST"),
        "postgres.openfaas-fn.svc.cluster.local"
    );
    // A database of one's own: its host, at verify-full.
    let own = make_dry_run(&["deploy", "DB_HOST=db.example.com", "DB_SSLMODE=verify-full"]);
    assert_eq!(assignment(&own, "POSTGRES_HOST"), "db.example.com");
    assert_eq!(assignment(&own, "POSTGRES_SSLMODE"), "verify-full");
    // Anything else is refused before anything is deployed.
    let refused = Command::new("make")
        .args(["deploy", "DATABASE=mysql"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("choose postgres"));

    // The functions' host is a name the server's certificate holds.
    let names: Vec<&str> = cluster["spec"]["certificates"]["serverAltDNSNames"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(names.contains(&pooler_host.as_str()), "{names:?}");
    // The schema Job reads where to connect from the ConfigMap `make db`
    // writes, and the CA from the secret it fills.
    let job: Yaml = serde_yaml_ng::from_str(&read("k8s/db-migrate-job.yaml")).unwrap();
    let env = job["spec"]["template"]["spec"]["initContainers"][0]["env"]
        .as_sequence()
        .unwrap();
    for variable in ["PGHOST", "PGSSLMODE"] {
        let entry = env.iter().find(|v| v["name"] == variable).unwrap();
        assert_eq!(
            entry["valueFrom"]["configMapKeyRef"]["name"], "cofrap-database",
            "{variable}"
        );
    }
    // cofrap-admin (the schema Job's rekey, its Jobs, the pruning CronJob)
    // reads the same ConfigMap, under the functions' names of the settings.
    for manifest in [
        "k8s/db-migrate-job.yaml",
        "k8s/admin-job.yaml",
        "k8s/events-prune-cronjob.yaml",
    ] {
        let workload: Yaml = serde_yaml_ng::from_str(&read(manifest)).unwrap();
        let pod = pod_template(&workload).unwrap();
        let container = &pod["spec"]["containers"][0];
        assert!(
            container["image"]
                .as_str()
                .unwrap()
                .starts_with("ghcr.io/cofrap/cofrap-admin:"),
            "{manifest}"
        );
        let env = container["env"].as_sequence().unwrap();
        for (variable, key) in [
            ("POSTGRES_HOST", "PGHOST"),
            ("POSTGRES_SSLMODE", "PGSSLMODE"),
        ] {
            let entry = env.iter().find(|v| v["name"] == variable).unwrap();
            let reference = &entry["valueFrom"]["configMapKeyRef"];
            assert_eq!(
                reference["name"], "cofrap-database",
                "{manifest}: {variable}"
            );
            assert_eq!(reference["key"], key, "{manifest}: {variable}");
        }
    }
    let root_cert = env.iter().find(|v| v["name"] == "PGSSLROOTCERT").unwrap();
    assert_eq!(root_cert["value"], format!("/secrets/{DB_CA_SECRET}"));
}

#[test]
fn the_cloudnative_pg_cluster_is_highly_available_encrypted_and_closed() {
    let cnpg = documents_in("k8s/cnpg");
    let cluster = document(&cnpg, "Cluster/cofrap-db");
    let spec = &cluster["spec"];
    assert_eq!(spec["instances"], 3);
    // A quorum of one standby: writes go on with one standby down.
    let synchronous = &spec["postgresql"]["synchronous"];
    assert_eq!(synchronous["method"], "any");
    assert_eq!(synchronous["number"], 1);
    assert_eq!(synchronous["dataDurability"], "required");
    assert_eq!(synchronous["failoverQuorum"], true);
    assert_eq!(spec["enablePDB"], true);
    assert_eq!(spec["affinity"]["enablePodAntiAffinity"], true);
    assert_eq!(spec["affinity"]["podAntiAffinityType"], "required");
    assert!(spec["resources"]["requests"]["memory"].is_string());
    assert!(spec["resources"]["limits"]["memory"].is_string());
    // The tables' owner is the Makefile's OWNER_ROLE; the superuser's
    // password comes from the project's db-admin-* secrets, through the
    // secret the script makes.
    assert_eq!(spec["bootstrap"]["initdb"]["owner"], OWNER_ROLE);
    assert_eq!(spec["bootstrap"]["initdb"]["database"], "cofrap_db");
    let script = read("k8s-secrets/database-secrets.sh");
    assert!(script.contains("CLUSTER=${CLUSTER:-cofrap-db}"));
    assert_eq!(spec["superuserSecret"]["name"], "cofrap-db-superuser");
    // TLS or nothing.
    assert_eq!(
        spec["postgresql"]["pg_hba"][0],
        "hostnossl all all all reject"
    );
    // The operator's hardened defaults are kept: nothing overrides them.
    for weaker in ["podSecurityContext", "securityContext", "postgresUID"] {
        assert!(spec[weaker].is_null(), "{weaker}");
    }
    assert_eq!(spec["seccompProfile"]["type"], "RuntimeDefault");

    let pooler = document(&cnpg, "Pooler/cofrap-db-pooler");
    assert_eq!(pooler["spec"]["cluster"]["name"], "cofrap-db");
    assert_eq!(pooler["spec"]["type"], "rw");
    assert_eq!(pooler["spec"]["pgbouncer"]["poolMode"], "transaction");
    assert_eq!(
        pooler["spec"]["pgbouncer"]["parameters"]["client_tls_sslmode"],
        "require"
    );
    let pooler_pod = &pooler["spec"]["template"]["spec"];
    assert!(pooler_pod["containers"][0]["securityContext"].is_null());
    assert!(pooler_pod["securityContext"].is_null());

    // Backups: the WAL archiver and the scheduled backups use the plugin and
    // the object store of backup.yaml, whose credentials are references.
    let store = document(&cnpg, "ObjectStore/cofrap-backups");
    let plugin = &spec["plugins"][0];
    assert_eq!(plugin["isWALArchiver"], true);
    assert_eq!(plugin["parameters"]["barmanObjectName"], "cofrap-backups");
    let backup = document(&cnpg, "ScheduledBackup/cofrap-db-daily");
    assert_eq!(backup["spec"]["method"], "plugin");
    assert_eq!(
        backup["spec"]["pluginConfiguration"]["name"],
        plugin["name"]
    );
    assert_eq!(backup["spec"]["cluster"]["name"], "cofrap-db");
    let credentials = &store["spec"]["configuration"]["s3Credentials"];
    for key in ["accessKeyId", "secretAccessKey"] {
        let reference = credentials[key].as_mapping().unwrap();
        let fields: BTreeSet<&str> = reference.keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(
            fields,
            BTreeSet::from(["key", "name"]),
            "{key}: a reference only"
        );
    }
    // Placeholders, and `make db` refuses them before touching the cluster.
    assert!(read("k8s/cnpg/backup.yaml").contains("REPLACE-ME"));
    let refused = Command::new("make")
        .args(["--no-print-directory", "db-cnpg", "DATABASE=cnpg"])
        .current_dir(repo_root())
        .env("PATH", "/nonexistent:/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("REPLACE-ME"));

    // The network: the instances admit one another, the Pooler, the schema
    // Job and the operator; the Pooler admits the database's clients only.
    let instances = document(&cnpg, "NetworkPolicy/cofrap-db");
    assert_eq!(
        instances["spec"]["podSelector"]["matchLabels"]["cnpg.io/podRole"],
        "instance"
    );
    let sources: Vec<&Yaml> = instances["spec"]["ingress"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["from"].as_sequence().unwrap())
        .collect();
    assert_eq!(sources.len(), 3, "{sources:?}");
    assert_eq!(
        sources[0]["podSelector"]["matchLabels"]["cnpg.io/cluster"],
        "cofrap-db"
    );
    // The schema Job and cofrap-admin's Jobs: the database's administrators.
    for manifest in [
        "k8s/db-migrate-job.yaml",
        "k8s/admin-job.yaml",
        "k8s/events-prune-cronjob.yaml",
    ] {
        let workload: Yaml = serde_yaml_ng::from_str(&read(manifest)).unwrap();
        assert!(
            selected_by(
                &sources[1]["podSelector"],
                &pod_template(&workload).unwrap()["metadata"]["labels"]
            ),
            "{manifest}"
        );
    }
    assert!(!sources[2]["namespaceSelector"].is_null());
    let pooler_policy = document(&cnpg, "NetworkPolicy/cofrap-db-pooler");
    let rules = pooler_policy["spec"]["ingress"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0]["from"],
        serde_yaml_ng::from_str::<Yaml>(
            "[{podSelector: {matchLabels: {cofrap/database: client}}}]"
        )
        .unwrap()
    );
}

fn number(value: &Yaml) -> u64 {
    match value {
        Yaml::Number(n) => n.as_u64().unwrap(),
        Yaml::String(s) => s.parse().unwrap_or_else(|_| panic!("{s} is not a number")),
        other => panic!("{other:?} is not a number"),
    }
}

/// The connection budget of docs/OPERATIONS.md, from the shipped numbers.
#[test]
fn the_connection_budget_adds_up() {
    let stack = stack_for(&[]);
    // Each request of a database function holds one connection for its life.
    let mut clients = 0;
    for (_, function) in stack["functions"].as_mapping().unwrap() {
        if function["environment"].get("POSTGRES_HOST").is_some() {
            clients += number(&function["labels"]["com.openfaas.scale.max"])
                * number(&function["environment"]["max_inflight"]);
        }
    }
    assert_eq!(
        clients, 100,
        "the arithmetic of docs/OPERATIONS.md: 5 x 5 x 4"
    );

    let cnpg = documents_in("k8s/cnpg");
    let pooler = &document(&cnpg, "Pooler/cofrap-db-pooler")["spec"];
    let pgbouncer = &pooler["pgbouncer"]["parameters"];
    let poolers = number(&pooler["instances"]);
    assert!(
        poolers >= 2,
        "one PgBouncer pod down must not stop the functions"
    );
    // One pod takes every client when the other is down.
    assert!(number(&pgbouncer["max_client_conn"]) >= clients);
    // The most one pod opens to the database.
    let per_pod = number(&pgbouncer["max_db_connections"]);
    assert!(
        number(&pgbouncer["default_pool_size"]) + number(&pgbouncer["reserve_pool_size"])
            <= per_pod
    );
    let parameters = &document(&cnpg, "Cluster/cofrap-db")["spec"]["postgresql"]["parameters"];
    let ordinary = number(&parameters["max_connections"])
        - number(&parameters["superuser_reserved_connections"])
        - number(&parameters["reserved_connections"]);
    // Besides the pools: each PgBouncer pod's auth_query connection, the
    // schema Job, and ten for administrators and monitoring.
    let others = poolers + 1 + 10;
    assert!(
        poolers * per_pod + others <= ordinary,
        "{poolers} x {per_pod} + {others} > {ordinary}"
    );
    // A request queued in PgBouncer is refused while the function can still
    // answer: before the share of the deadline the database gets (the
    // deadline less its margin, an eighth capped at 1 s).
    let deadline_ms =
        number(&stack["functions"]["authenticate"]["environment"][REQUEST_DEADLINE_MS]);
    let database_share_ms = deadline_ms - (deadline_ms / 8).clamp(250, 1000);
    assert!(number(&pgbouncer["query_wait_timeout"]) * 1000 < database_share_ms);

    // docs/OPERATIONS.md states the same numbers.
    let operations = read("docs/OPERATIONS.md");
    for fact in [
        "5 × 5 × 4 = 100".to_owned(),
        format!(
            "| `max_client_conn` | {} per pod |",
            number(&pgbouncer["max_client_conn"])
        ),
        format!("| Pooler `instances` | {poolers} |"),
        format!("| `max_db_connections` | {per_pod} per pod |"),
        format!("{poolers} × {per_pod} = {}", poolers * per_pod),
        format!(
            "`max_connections` {}",
            number(&parameters["max_connections"])
        ),
        format!(
            "| `query_wait_timeout` | {} s |",
            number(&pgbouncer["query_wait_timeout"])
        ),
        format!("{} s |", database_share_ms / 1000),
    ] {
        assert!(
            operations.contains(&fact),
            "docs/OPERATIONS.md lacks {fact:?}"
        );
    }
}

#[test]
fn the_edge_routes_every_function_with_its_headers_and_limits() {
    let edge = documents_in("k8s/edge");
    let route = document(&edge, "HTTPRoute/cofrap");
    let gateway = document(&edge, "Gateway/cofrap-edge");
    // The route hangs on the Gateway's listener, for its host name, in the
    // namespace of the OpenFaaS gateway's Service.
    let listener = &gateway["spec"]["listeners"][0];
    assert_eq!(listener["protocol"], "HTTPS");
    assert_eq!(route["spec"]["parentRefs"][0]["name"], "cofrap-edge");
    assert_eq!(
        route["spec"]["parentRefs"][0]["sectionName"],
        listener["name"]
    );
    assert_eq!(route["spec"]["hostnames"][0], listener["hostname"]);
    assert_eq!(route["metadata"]["namespace"], "openfaas");

    // Every function of stack.yaml is routed, and nothing else.
    let mut routed = BTreeSet::new();
    for rule in route["spec"]["rules"].as_sequence().unwrap() {
        assert_eq!(rule["backendRefs"][0]["name"], "gateway");
        assert_eq!(rule["backendRefs"][0]["port"], 8080);
        let set: Vec<(&str, &str)> = rule["filters"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|f| f["type"] == "ResponseHeaderModifier")
            .flat_map(|f| f["responseHeaderModifier"]["set"].as_sequence().unwrap())
            .map(|h| (h["name"].as_str().unwrap(), h["value"].as_str().unwrap()))
            .collect();
        let mut functions = Vec::new();
        for matched in rule["matches"].as_sequence().unwrap() {
            assert_eq!(matched["path"]["type"], "PathPrefix");
            let path = matched["path"]["value"].as_str().unwrap();
            let function = path.strip_prefix("/function/").expect(path);
            functions.push(function.to_owned());
            routed.insert(function.to_owned());
        }
        let mut expected = vec![
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ];
        if functions == ["frontend"] {
            expected.push(("Content-Security-Policy", "frame-ancestors 'none'"));
        }
        assert_eq!(set, expected, "{functions:?}");
    }
    assert_eq!(routed, functions_in_bins());

    // Envoy Gateway: 1 MiB bodies, and 60 requests a minute per client
    // address (IPv4 and IPv6) on each function that checks a password.
    let policy = document(&edge, "BackendTrafficPolicy/cofrap-edge");
    assert_eq!(policy["spec"]["targetRefs"][0]["kind"], "HTTPRoute");
    assert_eq!(policy["spec"]["targetRefs"][0]["name"], "cofrap");
    assert_eq!(policy["spec"]["requestBuffer"]["limit"], "1Mi");
    let mut limited = BTreeSet::new();
    for rule in policy["spec"]["rateLimit"]["global"]["rules"]
        .as_sequence()
        .unwrap()
    {
        let selector = &rule["clientSelectors"][0];
        assert_eq!(selector["sourceCIDR"]["type"], "Distinct");
        assert_eq!(rule["limit"]["requests"], 60);
        assert_eq!(rule["limit"]["unit"], "Minute");
        limited.insert((
            selector["path"]["value"].as_str().unwrap().to_owned(),
            selector["sourceCIDR"]["value"].as_str().unwrap().to_owned(),
        ));
    }
    let mut expected = BTreeSet::new();
    for function in ["authenticate", "generate-2fa", "generate-password"] {
        for addresses in ["0.0.0.0/0", "::/0"] {
            expected.insert((format!("/function/{function}"), addresses.to_owned()));
        }
    }
    assert_eq!(limited, expected);
}

#[test]
fn the_database_secrets_script_copies_only_what_each_database_needs() {
    let fake = fake_cluster();
    let run = |mode: &str| {
        Command::new(repo_root().join("k8s-secrets/database-secrets.sh"))
            .arg(mode)
            .env(
                "PATH",
                format!("{}:{}", fake.display(), std::env::var("PATH").unwrap()),
            )
            .env("FAKE", &fake)
            .output()
            .unwrap()
    };
    let key = |name: &str| std::fs::read_to_string(fake.join(format!("key-{name}"))).ok();
    let calls = || std::fs::read_to_string(fake.join("calls")).unwrap_or_default();

    // The operator's CA secret holds its certificate and its private key.
    let certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let private_key =
        "-----BEGIN EC PRIVATE KEY-----\nnever-copied\n-----END EC PRIVATE KEY-----\n";
    std::fs::write(fake.join("existing-cofrap-db-ca"), "").unwrap();
    std::fs::write(fake.join("existing-cofrap-db-ca.ca.crt"), certificate).unwrap();
    std::fs::write(fake.join("existing-cofrap-db-ca.ca.key"), private_key).unwrap();
    let copied = run("ca");
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    assert_eq!(key(DB_CA_SECRET).as_deref(), Some(certificate));
    assert!(calls().contains("jsonpath={.data.ca\\.crt}"), "{}", calls());
    assert!(!calls().contains("ca\\.key"), "the CA's key was read");
    // A secret without a certificate is refused, not copied.
    std::fs::write(fake.join("existing-cofrap-db-ca.ca.crt"), private_key).unwrap();
    assert!(!run("ca").status.success());

    // The superuser's password from db-admin-*, as basic-auth for postgres.
    std::fs::write(fake.join("existing-db-admin-username"), "postgres\n").unwrap();
    std::fs::write(fake.join("existing-db-admin-password"), "the-admin-secret").unwrap();
    let made = run("superuser");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert_eq!(key("username").as_deref(), Some("postgres"));
    assert_eq!(key("password").as_deref(), Some("the-admin-secret"));
    assert!(calls()
        .contains("create secret generic cofrap-db-superuser --type=kubernetes.io/basic-auth"));
    assert!(!calls().contains("the-admin-secret"));
    assert!(!String::from_utf8_lossy(&made.stdout).contains("the-admin-secret"));
    std::fs::write(fake.join("existing-db-admin-username"), "admin").unwrap();
    let refused = run("superuser");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("must be postgres"));

    // The single-pod database: an empty CA secret when there is none.
    let _ = std::fs::remove_file(fake.join("existing-db-ca-certificate"));
    assert!(run("postgres").status.success());
    assert_eq!(
        std::fs::read_to_string(fake.join("existing-db-ca-certificate")).unwrap(),
        ""
    );
    std::fs::write(fake.join("existing-db-ca-certificate"), certificate).unwrap();
    let kept = run("postgres");
    assert!(String::from_utf8_lossy(&kept.stdout).contains("kept"));
    assert_eq!(
        std::fs::read_to_string(fake.join("existing-db-ca-certificate")).unwrap(),
        certificate
    );
    std::fs::remove_dir_all(&fake).unwrap();
}

#[test]
fn cofrap_admins_image_is_static_scratch_and_runs_the_tool_only() {
    let dockerfile = read("dockerfiles/admin.Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // The same pinned Rust image and static build as the functions'.
    let functions = read("dockerfiles/Dockerfile");
    let rust_image = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("ARG RUST_IMAGE="))
            .map(str::to_owned)
            .expect("no RUST_IMAGE")
    };
    assert_eq!(rust_image(&dockerfile), rust_image(&functions));
    assert!(lines
        .iter()
        .any(|l| l.contains("target-feature=+crt-static")));
    assert!(lines.iter().any(|l| l.contains("--package cofrap-admin")));
    let last_stage = &lines[lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap()..];
    assert_eq!(
        last_stage,
        [
            "FROM scratch",
            "COPY --from=build /out/ /",
            "USER 10001:10001",
            "ENTRYPOINT [\"/usr/bin/cofrap-admin\"]",
            "CMD [\"--help\"]",
        ]
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("/out/usr/bin/cofrap-admin")));
}

/// A stand-in kubectl that keeps every manifest it is given on stdin
/// (`applied-<n>.yaml`), answers for a Job that succeeded, and prints a
/// pod's log.
fn fake_kubectl_keeping_manifests() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("fake-kubectl-"));
    std::fs::create_dir_all(&dir).unwrap();
    let kubectl = r#"#!/bin/sh
echo "$*" >> "$FAKE/calls"
case "$*" in
  *" -f -"*) n=$(ls "$FAKE" | grep -c '^applied-'); cat > "$FAKE/applied-$n.yaml";;
  *"get job"*) printf 1;;
  *"get pods"*) printf 0;;
  *" logs "*) echo "what cofrap-admin printed";;
esac
"#;
    std::fs::write(dir.join("kubectl"), kubectl).unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(dir.join("kubectl"))
        .status()
        .unwrap();
    dir
}

fn applied(fake: &Path) -> Vec<Yaml> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fake)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("applied-")
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
        .collect()
}

#[test]
fn make_db_runs_cofrap_admin_of_the_registry_and_admin_job_passes_arguments_as_they_are() {
    let run = |fake: &Path, args: &[&str]| {
        let output = Command::new("make")
            .args(["--no-print-directory", "-s"])
            .args(args)
            .current_dir(repo_root())
            .env(
                "PATH",
                format!("{}:{}", fake.display(), std::env::var("PATH").unwrap()),
            )
            .env("FAKE", fake)
            .env_remove("MAKEFLAGS")
            .env("COFRAP_OPERATOR", "jo o'hara")
            .output()
            .unwrap();
        assert!(output.status.success(), "make {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };

    // The schema Job and the pruning CronJob get the image make push pushed.
    let fake = fake_kubectl_keeping_manifests();
    run(
        &fake,
        &[
            "db-schema",
            "REGISTRY=registry.example.com/team",
            "TAG=1.2.3",
        ],
    );
    let manifests = applied(&fake);
    let image = "registry.example.com/team/cofrap-admin:1.2.3";
    let job = manifests
        .iter()
        .find(|m| m["kind"] == "Job")
        .expect("no Job applied");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        image
    );
    let cron = manifests
        .iter()
        .find(|m| m["kind"] == "CronJob")
        .expect("no CronJob applied");
    let pod = pod_template(cron).unwrap();
    assert_eq!(pod["spec"]["containers"][0]["image"], image);
    let retention = pod["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "EVENT_RETENTION_DAYS")
        .expect("no retention setting");
    assert_eq!(retention["value"], "180");
    std::fs::remove_dir_all(&fake).unwrap();

    // One command, as a Job: every argument reaches the tool as it was
    // given (quotes and backslashes included), with the operator's name.
    let fake = fake_kubectl_keeping_manifests();
    let printed = run(
        &fake,
        &[
            "admin-job",
            r#"ARGS=show 'we"ird\name'"#,
            "REGISTRY=registry.example.com/team",
            "TAG=1.2.3",
        ],
    );
    assert_eq!(printed, "what cofrap-admin printed\n");
    let manifests = applied(&fake);
    assert_eq!(manifests.len(), 1);
    let job = &manifests[0];
    let name = job["metadata"]["name"].as_str().unwrap();
    assert!(
        name.starts_with("cofrap-admin-") && name.len() > 20,
        "{name}"
    );
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], image);
    assert_eq!(
        container["args"],
        serde_yaml_ng::from_str::<Yaml>(r#"["show", "we\"ird\\name"]"#).unwrap()
    );
    let operator = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "COFRAP_OPERATOR")
        .unwrap();
    assert_eq!(operator["value"], "jo o'hara");
    assert_eq!(job["spec"]["backoffLimit"], 0, "an action is never retried");
    let calls = std::fs::read_to_string(fake.join("calls")).unwrap();
    assert!(
        calls.contains(&format!("delete job {name}")),
        "the Job is removed: {calls}"
    );
    // And what kubectl was given is still a valid Job.
    let validated = Command::new(venv_tool("kubernetes-validate"))
        .arg("--strict")
        .arg(fake.join("applied-0.yaml"))
        .output()
        .unwrap();
    assert!(validated.status.success(), "{validated:?}");
    std::fs::remove_dir_all(&fake).unwrap();
}
