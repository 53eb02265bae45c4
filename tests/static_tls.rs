//! TLS from the images' binaries: the fully static musl build of
//! `make static`, whose cryptography (ring: C and assembly compiled by
//! musl-gcc) is not the one the other tests run. Against a cluster of the
//! test's own that refuses TCP without TLS, with an RSA certificate chain
//! made by openssl (managed databases' CAs are mostly RSA; tests/tls.rs uses
//! ECDSA): verify-full and require connect, a certificate from another CA is
//! refused with its cause.

use cofrap_tests::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The static binary of `function` (make test builds it with make static).
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

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is missing (make test installs it)");
    assert!(output.status.success(), "openssl {args:?}: {output:?}");
}

/// `ca.pem` and `other-ca.pem`, and `server.pem` / `server.key` for
/// `localhost` signed by the first: RSA 2048, as [`tls_settings`] reads them.
fn rsa_certificates() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("cofrap-rsa-"));
    std::fs::create_dir_all(&dir).unwrap();
    for ca in ["ca", "other-ca"] {
        let (key, pem, subject) = (
            format!("{ca}.key"),
            format!("{ca}.pem"),
            format!("/CN=COFRAP test {ca}"),
        );
        openssl(
            &dir,
            &[
                "req", "-x509", "-days", "2", "-subj", &subject, "-newkey", "rsa:2048", "-nodes",
                "-keyout", &key, "-out", &pem,
            ],
        );
    }
    openssl(
        &dir,
        &[
            "req",
            "-subj",
            "/CN=localhost",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = DNS:localhost\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    std::fs::set_permissions(
        dir.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
    dir
}

/// Runs the static `function` as the watchdog does, with the settings and
/// secrets of `functions`.
fn run_static(functions: &Functions, function: &str, request: &serde_json::Value) -> Output {
    let output = run_with_input(
        Command::new(static_binary(function))
            .env_clear()
            .envs(functions.settings().iter().map(|(k, v)| (k, v))),
        request.to_string().as_bytes(),
    );
    Output {
        status: output.status.code().expect("killed by a signal"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

#[test]
fn the_static_binaries_connect_over_tls_to_an_rsa_certificate_and_refuse_another_ca() {
    let certs = rsa_certificates();
    let cluster = Cluster::start(&tls_settings(&certs));
    std::fs::write(
        cluster.dir.join("data/pg_hba.conf"),
        "local all all scram-sha-256\n\
         hostnossl all all 0.0.0.0/0 reject\n\
         hostssl all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    let mut admin = cluster.server.clone();
    admin.host = cluster.dir.join("run").display().to_string();
    admin
        .connect_to("postgres")
        .batch_execute("SELECT pg_reload_conf()")
        .unwrap();

    let mut functions = cluster.functions();
    functions.set("POSTGRES_HOST", "localhost");
    let ca = std::fs::read_to_string(certs.join("ca.pem")).unwrap();
    functions.write_secret("db-ca-certificate", &ca);
    for mode in ["verify-full", "require"] {
        functions.set("POSTGRES_SSLMODE", mode);
        let output = run_static(
            &functions,
            "generate-password",
            &json!({ "username": unique("rsa") }),
        );
        assert_eq!(output.status, 0, "{mode}: {output:?}");
        assert!(
            output.json()["qr_code_base64"].is_string(),
            "{mode}: {output:?}"
        );
    }

    // Without TLS the server refuses: the successes above were over TLS.
    functions.set("POSTGRES_SSLMODE", "disable");
    let output = run_static(
        &functions,
        "generate-password",
        &json!({ "username": unique("rsa") }),
    );
    assert_eq!(output.json()["code"], "database_unavailable", "{output:?}");

    // A CA that did not sign the server's certificate.
    functions.set("POSTGRES_SSLMODE", "verify-full");
    let other = std::fs::read_to_string(certs.join("other-ca.pem")).unwrap();
    functions.write_secret("db-ca-certificate", &other);
    let output = run_static(
        &functions,
        "generate-password",
        &json!({ "username": unique("rsa") }),
    );
    assert_eq!(output.json()["code"], "database_unavailable", "{output:?}");
    let detail = output.log()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(detail.contains("UnknownIssuer"), "{detail}");
    let _ = std::fs::remove_dir_all(&certs);
}
