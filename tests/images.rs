//! The images, built and run for real: every function's image built by
//! `make images` from the unchanged Dockerfile (podman, offline), run as
//! Kubernetes runs it (read-only root filesystem, no capabilities, user
//! 10001), and used over HTTP through the real classic watchdog inside: an
//! account created, its QR decoded, enrolled, signed in; a refusal; a server
//! fault. The same requests through the development server (`make run`) must
//! get the same status, content type and body: its watchdog semantics are
//! checked against the real watchdog's.
//!
//! Skipped, with a message, only on a machine where containers cannot run
//! at all.

use cofrap_tests::containers::{
    self, assert_confined, function_options as options, Answer, Container, DatabaseRelay,
};
use cofrap_tests::*;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The function containers, on the test database.
struct Deployment {
    containers: Vec<(String, Container)>,
}

impl Deployment {
    fn url(&self, function: &str) -> String {
        let container = &self
            .containers
            .iter()
            .find(|(name, _)| name == function)
            .unwrap_or_else(|| panic!("no container for {function}"))
            .1;
        container.url()
    }
}

/// The development server of `make run`, on database `dbname`.
struct DevServer {
    process: Child,
    url: String,
}

impl DevServer {
    fn start(functions: &Functions, dbname: &str) -> DevServer {
        let exe = std::env::current_exe().unwrap();
        let bin_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let port = containers::free_port();
        // The functions get the test's settings, as the containers do.
        let process = Command::new(bin_dir.join("cofrap-dev-server"))
            .current_dir(repo_root())
            .envs(functions.settings().iter().map(|(k, v)| (k, v)))
            .env("PORT", port.to_string())
            .env("BIND", "127.0.0.1")
            .env("POSTGRES_DB", dbname)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cofrap-dev-server is missing: build the workspace first");
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while ureq::get(&format!("{url}/function/frontend"))
            .call()
            .is_err()
        {
            assert!(started.elapsed() < Duration::from_secs(20), "no dev server");
            std::thread::sleep(Duration::from_millis(50));
        }
        DevServer { process, url }
    }

    fn url(&self, function: &str) -> String {
        format!("{}/function/{function}", self.url)
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn post(url: &str, body: &Value) -> Answer {
    containers::request(url, Some(body.to_string().as_bytes()))
}

fn json_of(answer: &Answer) -> Value {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.content_type, "application/json", "{answer:?}");
    serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

#[test]
fn every_image_runs_the_functions_through_the_real_watchdog_like_the_dev_server() {
    if let Some(reason) = containers::why_containers_cannot_run() {
        eprintln!("SKIPPED: containers cannot run on this machine: {reason}");
        return;
    }
    let functions_in_images = containers::build_images();
    let functions = Functions::new();
    let relay = DatabaseRelay::start(&functions.server.host, functions.server.port);

    // Every function's image starts and is confined as Kubernetes would run it.
    let deployment = Deployment {
        containers: functions_in_images
            .iter()
            .map(|function| {
                let container = Container::run(
                    &containers::image(function),
                    &options(function, &functions, &relay, &functions.dbname),
                );
                assert_confined(function, &container);
                (function.clone(), container)
            })
            .collect(),
    };
    for function in [
        "generate-password",
        "generate-2fa",
        "authenticate",
        "frontend",
    ] {
        assert!(
            functions_in_images.iter().any(|f| f == function),
            "no image for {function}"
        );
    }

    // The whole account flow, over HTTP, through the watchdogs.
    let user = unique("image");
    let created = json_of(&post(
        &deployment.url("generate-password"),
        &json!({"username": user}),
    ));
    let password = decode_qr(created["qr_code_base64"].as_str().expect("no QR code"));
    let enrolled = json_of(&post(
        &deployment.url("generate-2fa"),
        &json!({"username": user, "password": password}),
    ));
    let secret = enrolled["manual_entry_key"]
        .as_str()
        .expect("no key")
        .to_owned();
    let step = current_step();
    let signed_in = json_of(&post(
        &deployment.url("authenticate"),
        &json!({"username": user, "password": password, "totp_code": code_at(&secret, step * 30)}),
    ));
    assert_eq!(
        without_session(&signed_in),
        json!({"authenticated": true, "username": user})
    );
    let page = containers::request(&deployment.url("frontend"), None);
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"), "{page:?}");
    assert!(page.body.contains("Content-Security-Policy"));

    // The same requests through the development server get the same answers,
    // byte for byte. (Answers holding fresh secrets cannot be compared byte
    // for byte; these are the ones that are the same every time.)
    let dev = DevServer::start(&functions, &functions.dbname);
    let too_large = vec![b' '; 64 * 1024 + 1];
    let wrong_code = json!({"username": user, "password": password,
                            "totp_code": code_at(&secret, (step + 1000) * 30)})
    .to_string();
    let taken = json!({"username": user}).to_string();
    let cases: Vec<(&str, Option<&[u8]>)> = vec![
        ("frontend", None),
        ("generate-password", Some(b"")),
        ("generate-password", Some(b"{not json")),
        ("generate-password", Some(taken.as_bytes())),
        ("generate-password", Some(&too_large)),
        ("generate-2fa", Some(b"[]")),
        ("authenticate", Some(wrong_code.as_bytes())),
    ];
    for (function, body) in &cases {
        let through_watchdog = containers::request(&deployment.url(function), *body);
        let through_dev = containers::request(&dev.url(function), *body);
        assert_eq!(
            through_dev, through_watchdog,
            "{function}: the dev server differs from the watchdog"
        );
    }
    // A refusal is an answer: 200 and the function's JSON.
    let refusal = containers::request(&deployment.url("authenticate"), Some(wrong_code.as_bytes()));
    assert_eq!(json_of(&refusal)["code"], "invalid_credentials");

    // A server fault: 500, the watchdog's `exit status 1` line, then the
    // JSON error; the same through the dev server.
    let missing = unique("cofrap_missing_");
    let faulty = Container::run(
        &containers::image("generate-password"),
        &options("generate-password", &functions, &relay, &missing),
    );
    let fault_dev = DevServer::start(&functions, &missing);
    let request = json!({"username": unique("fault")}).to_string();
    let fault = containers::request(&faulty.url(), Some(request.as_bytes()));
    assert_eq!(fault.status, 500, "{fault:?}");
    let json_part = fault
        .body
        .strip_prefix("exit status 1\n")
        .unwrap_or_else(|| panic!("{fault:?}"));
    let error: Value = serde_json::from_str(json_part).unwrap();
    assert_eq!(error["code"], "database_unavailable", "{fault:?}");
    let fault_through_dev = containers::request(
        &fault_dev.url("generate-password"),
        Some(request.as_bytes()),
    );
    assert_eq!(
        fault_through_dev, fault,
        "a 500 through the dev server differs"
    );
    // The function's log line reached the container's log, not the answer.
    assert!(
        faulty
            .logs()
            .contains("\"outcome\":\"database_unavailable\""),
        "{}",
        faulty.logs()
    );

    // cofrap-admin's image, as its Jobs run it: the tool alone, as user
    // 10001, read-only, no capabilities, no network but the database's
    // socket, the administrator's secrets as files.
    let config = containers::podman()
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Config.User}} {{json .Config.Entrypoint}}",
        ])
        .arg(containers::image("cofrap-admin"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&config.stdout).trim(),
        "10001:10001 [\"/usr/bin/cofrap-admin\"]",
        "{config:?}"
    );
    let shown = run_admin_image(&functions, &relay, &["show", &user, "--json"]);
    assert!(shown.status.success(), "{shown:?}");
    let account: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(account["username"], user.as_str());
    assert_eq!(account["state"], "active");
    let disabled = run_admin_image(&functions, &relay, &["disable", &user]);
    assert!(disabled.status.success(), "{disabled:?}");
    let operator: String = functions
        .db()
        .query_one(
            "SELECT operator FROM account_events e JOIN users u ON u.id = e.account_id
              WHERE u.username = $1 AND e.kind = 'disabled'",
            &[&user],
        )
        .unwrap()
        .get(0);
    assert_eq!(operator, "image-test");
    // Nothing else is in it: no shell to run.
    let shell = containers::podman()
        .args([
            "run",
            "--rm",
            "--runtime",
            "runc",
            "--entrypoint",
            "/bin/sh",
        ])
        .arg(containers::image("cofrap-admin"))
        .args(["-c", "true"])
        .output()
        .unwrap();
    assert!(!shell.status.success(), "the image has a shell");
}

/// Runs cofrap-admin's image with `args`, confined as its Kubernetes Jobs
/// are, on the test database through the relay, with the administrator's
/// secret files mounted.
fn run_admin_image(
    functions: &Functions,
    relay: &DatabaseRelay,
    args: &[&str],
) -> std::process::Output {
    let secrets = std::env::temp_dir().join(unique("cofrap-admin-secrets-"));
    std::fs::create_dir_all(&secrets).unwrap();
    for (file, value) in [
        ("db-admin-username", &functions.server.user),
        ("db-admin-password", &functions.server.password),
    ] {
        std::fs::write(secrets.join(file), value).unwrap();
    }
    // The container's user reads them (the Jobs: through their fsGroup).
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&secrets)
        .status()
        .unwrap();
    let output = containers::podman()
        .args([
            "run",
            "--rm",
            "--runtime",
            "runc",
            "--read-only",
            "--network",
            "none",
        ])
        .args([
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "--user",
            "10001",
        ])
        .arg("--volume")
        .arg(format!("{}:/secrets:ro", secrets.display()))
        .arg("--volume")
        .arg(format!(
            "{}:{}:ro",
            relay.dir.display(),
            containers::SOCKET_DIR
        ))
        .args([
            "--env",
            "SECRETS_DIR=/secrets",
            "--env",
            "POSTGRES_SSLMODE=disable",
        ])
        .arg("--env")
        .arg(format!("POSTGRES_HOST={}", containers::SOCKET_DIR))
        .arg("--env")
        .arg(format!("POSTGRES_PORT={}", functions.server.port))
        .arg("--env")
        .arg(format!("POSTGRES_DB={}", functions.dbname))
        .args(["--env", "COFRAP_OPERATOR=image-test"])
        .arg(containers::image("cofrap-admin"))
        .args(args)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&secrets).unwrap();
    output
}
