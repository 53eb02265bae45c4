//! TLS to PostgreSQL (`POSTGRES_SSLMODE`, the `db-ca-certificate` secret),
//! on a cluster of the test's own with a self-signed CA made by the openssl
//! command (Debian's; `make test` installs it where it is missing).
//!
//! The cluster refuses any TCP connection without TLS (pg_hba `hostnossl
//! ... reject`), so a function that answers at all did use TLS. verify-full
//! connects; a wrong CA, a wrong host name and a server without TLS are each
//! refused with `database_unavailable` and a log detail naming the cause.

use cofrap_tests::*;
use serde_json::json;

/// The cluster's superuser over its Unix socket (TCP requires TLS).
fn admin(cluster: &Cluster) -> postgres::Client {
    let mut server = cluster.server.clone();
    server.host = cluster.dir.join("run").display().to_string();
    server.connect_to("postgres")
}

/// Asserts `database_unavailable` with a log detail containing `cause`.
fn assert_refused(output: &Output, cause: &str) {
    assert_eq!(output.status, 1, "{output:?}");
    assert_eq!(output.json()["code"], "database_unavailable", "{output:?}");
    let detail = output.log()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.to_lowercase().contains(&cause.to_lowercase()),
        "the detail should name {cause:?}: {detail}"
    );
}

#[test]
fn verify_full_connects_and_every_impostor_is_refused_with_its_cause() {
    let certs = tls_certificates();
    let cluster = Cluster::start(&tls_settings(&certs));
    // TCP only with TLS from now on.
    let hba = cluster.dir.join("data/pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all scram-sha-256\n\
         hostnossl all all 0.0.0.0/0 reject\n\
         hostssl all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    admin(&cluster)
        .batch_execute("SELECT pg_reload_conf()")
        .unwrap();

    let ca = std::fs::read_to_string(certs.join("ca.pem")).unwrap();
    let mut functions = cluster.functions();
    functions.set("POSTGRES_HOST", "localhost");
    functions.set("POSTGRES_SSLMODE", "verify-full");
    functions.write_secret("db-ca-certificate", &ca);

    // verify-full: the whole lifecycle's first steps over TLS.
    let user = unique("tls");
    let password = functions.create_account(&user);
    functions.call(
        "generate-2fa",
        json!({"username": user, "password": password}),
    );
    let request = json!({ "username": unique("tls") }).to_string();

    // Without TLS, the server refuses (so the success above was over TLS).
    functions.set("POSTGRES_SSLMODE", "disable");
    assert_refused(
        &functions.run("generate-password", request.as_bytes()),
        "no encryption",
    );

    // require: encrypted, the certificate not checked.
    functions.set("POSTGRES_SSLMODE", "require");
    functions.create_account(&unique("tls"));

    // A CA that did not sign the server's certificate.
    functions.set("POSTGRES_SSLMODE", "verify-full");
    let other = std::fs::read_to_string(certs.join("other-ca.pem")).unwrap();
    functions.write_secret("db-ca-certificate", &other);
    assert_refused(
        &functions.run("generate-password", request.as_bytes()),
        "UnknownIssuer",
    );

    // The right CA, but a name the certificate is not for.
    functions.write_secret("db-ca-certificate", &ca);
    functions.set("POSTGRES_HOST", "127.0.0.1");
    assert_refused(
        &functions.run("generate-password", request.as_bytes()),
        "not valid for name",
    );

    // verify-full is the default, and needs the CA.
    functions.set("POSTGRES_HOST", "localhost");
    functions.unset("POSTGRES_SSLMODE");
    functions.remove_secret("db-ca-certificate");
    let output = functions.run("generate-password", request.as_bytes());
    assert_eq!(output.status, 1, "{output:?}");
    let response = output.json();
    assert_eq!(response["code"], "configuration_error");
    assert!(
        response["error"]
            .as_str()
            .unwrap()
            .contains("db-ca-certificate"),
        "{response}"
    );
    functions.write_secret("db-ca-certificate", "not a certificate");
    let output = functions.run("generate-password", request.as_bytes());
    assert_eq!(output.json()["code"], "configuration_error", "{output:?}");

    // A server without TLS: refused by verify-full and require alike.
    functions.write_secret("db-ca-certificate", &ca);
    std::fs::write(
        &hba,
        "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    let mut admin = admin(&cluster);
    admin.batch_execute("ALTER SYSTEM SET ssl = off").unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    for mode in ["verify-full", "require"] {
        functions.set("POSTGRES_SSLMODE", mode);
        assert_refused(
            &functions.run("generate-password", request.as_bytes()),
            "server does not support TLS",
        );
    }
    functions.set("POSTGRES_SSLMODE", "disable");
    functions.create_account(&unique("plain"));
    let _ = std::fs::remove_dir_all(&certs);
}
