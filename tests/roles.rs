//! Least privilege in the database: the functions log in as a role that can
//! only select, insert and update the tables (the whole suite runs the
//! functions as that role, proving the grants suffice); here, that it can do
//! nothing else, and that the owner role and the upgrade of a database
//! created by a superuser are what `make db-roles` promises.

use cofrap_tests::*;

/// Runs `sql` as the functions' role; the SQLSTATE it fails with, if it does.
fn refused(db: &mut postgres::Client, sql: &str) -> Option<String> {
    db.batch_execute(sql).err().map(|e| {
        e.code()
            .map(|c| c.code().to_owned())
            .unwrap_or_else(|| e.to_string())
    })
}

const INSUFFICIENT_PRIVILEGE: &str = "42501";

#[test]
fn the_functions_role_can_select_insert_and_update_and_nothing_else() {
    let functions = Functions::new();
    let mut db = functions.db_as_functions();
    let user = unique("roles");
    // What the functions (and the Python version) do.
    db.batch_execute(&format!(
        "INSERT INTO users (username, password_hash) VALUES ('{user}', 'h');
         UPDATE users SET expired = false WHERE username = '{user}';
         SELECT count(*) FROM users;
         SELECT max(version) FROM cofrap_schema_migrations;"
    ))
    .unwrap();
    // The Python version's own statements work as this role too.
    db.execute(
        "INSERT INTO users (username, password_hash, created_at, expired) VALUES ($1, $2, NOW(), FALSE)
         ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash,
                                              created_at = NOW(), expired = FALSE",
        &[&user, &"h2"],
    )
    .unwrap();

    for (what, sql) in [
        (
            "delete",
            format!("DELETE FROM users WHERE username = '{user}'"),
        ),
        ("truncate", "TRUNCATE users".to_owned()),
        ("create a table", "CREATE TABLE intruder (x int)".to_owned()),
        (
            "create a temporary table",
            "CREATE TEMP TABLE intruder (x int)".to_owned(),
        ),
        (
            "alter a table",
            "ALTER TABLE users ADD COLUMN intruder int".to_owned(),
        ),
        ("drop a table", "DROP TABLE users".to_owned()),
        (
            "create a function",
            "CREATE FUNCTION intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'".to_owned(),
        ),
        (
            "run a program",
            "COPY (SELECT 1) TO PROGRAM 'true'".to_owned(),
        ),
        (
            "read a server file",
            "SELECT pg_read_file('/etc/hostname')".to_owned(),
        ),
        (
            "read the password hashes of roles",
            "SELECT rolpassword FROM pg_authid".to_owned(),
        ),
        ("create a role", "CREATE ROLE intruder".to_owned()),
        ("become the owner", format!("SET ROLE {OWNER_ROLE}")),
        ("create a database", "CREATE DATABASE intruder".to_owned()),
    ] {
        let error = refused(&mut db, &sql);
        assert!(error.is_some(), "the functions' role may {what}");
    }
    assert_eq!(
        refused(
            &mut db,
            &format!("DELETE FROM users WHERE username = '{user}'")
        )
        .as_deref(),
        Some(INSUFFICIENT_PRIVILEGE)
    );
    assert_eq!(
        refused(&mut db, "CREATE TABLE intruder (x int)").as_deref(),
        Some(INSUFFICIENT_PRIVILEGE)
    );

    // A table outside its grants (created by an administrator, not the
    // owner) cannot be read.
    let outside = unique("outside_");
    functions
        .db()
        .batch_execute(&format!(
            "CREATE TABLE {outside} (secret text); INSERT INTO {outside} VALUES ('x')"
        ))
        .unwrap();
    assert_eq!(
        refused(&mut db, &format!("SELECT * FROM {outside}")).as_deref(),
        Some(INSUFFICIENT_PRIVILEGE)
    );
    functions
        .db()
        .batch_execute(&format!("DROP TABLE {outside}"))
        .unwrap();

    let attributes = functions
        .db()
        .query_one(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication
               FROM pg_roles WHERE rolname = $1",
            &[&functions.role.user],
        )
        .unwrap();
    for column in 0..5 {
        assert!(!attributes.get::<_, bool>(column));
    }
}

#[test]
fn tables_a_later_migration_creates_are_granted_with_no_extra_step() {
    let scratch = ScratchDatabase::create();
    let migrated = scratch.migrate();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    // A migration runs as the owner (make db-migrate sets the role).
    let later = unique("later_");
    scratch
        .connect()
        .batch_execute(&format!(
            "SET ROLE {OWNER_ROLE}; CREATE TABLE {later} (id bigint GENERATED ALWAYS AS IDENTITY, v text)"
        ))
        .unwrap();
    let functions = Functions::on(scratch.server.clone(), &scratch.name);
    let mut db = functions.db_as_functions();
    db.batch_execute(&format!(
        "INSERT INTO {later} (v) VALUES ('a'); UPDATE {later} SET v = 'b'; SELECT * FROM {later}"
    ))
    .unwrap();
    assert_eq!(
        refused(&mut db, &format!("DELETE FROM {later}")).as_deref(),
        Some(INSUFFICIENT_PRIVILEGE)
    );
    assert_eq!(scratch.table_owner("users"), OWNER_ROLE);
}

#[test]
fn a_database_created_by_a_superuser_is_upgraded_in_place() {
    // As before issue 11: the schema applied by the superuser, who owns it.
    let scratch = ScratchDatabase::create();
    let mut admin = scratch.connect();
    let sql = std::fs::read_to_string(repo_root().join("migrations/0001_users.sql")).unwrap();
    admin.batch_execute(&sql).unwrap();
    admin
        .batch_execute("INSERT INTO users (username, password_hash) VALUES ('kept', 'h')")
        .unwrap();

    // make db-roles, then make db-migrate: the tables become the owner's, the
    // rows stay, and the functions work as their role.
    let migrated = scratch.migrate();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let owners: Vec<(String, String)> = admin
        .query(
            "SELECT tablename::text, tableowner::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(!owners.is_empty());
    for (table, owner) in &owners {
        assert_eq!(owner, OWNER_ROLE, "{table}");
    }
    let functions = Functions::on(scratch.server.clone(), &scratch.name);
    let (password, secret) = functions.enrolled_account("upgraded");
    assert_eq!(
        functions.authenticate("upgraded", &password, &secret, current_step())["authenticated"],
        true
    );
    let kept: i64 = functions
        .db_as_functions()
        .query_one("SELECT count(*) FROM users WHERE username = 'kept'", &[])
        .unwrap()
        .get(0);
    assert_eq!(kept, 1);
}

#[test]
fn a_superuser_is_refused_as_the_functions_role() {
    // The upgrade hazard: the old functions' user is the bootstrap superuser.
    let scratch = ScratchDatabase::create();
    let secrets = std::env::temp_dir().join(unique("cofrap-roles-"));
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(
        secrets.join("db-credentials-username"),
        &scratch.server.user,
    )
    .unwrap();
    std::fs::write(
        secrets.join("db-credentials-password"),
        "a-password-long-enough",
    )
    .unwrap();
    let output = std::process::Command::new("make")
        .args(["--no-print-directory", "-s", "db-roles"])
        .current_dir(repo_root())
        .env("DATABASE_URL", scratch.server.url(&scratch.name))
        .env("SECRETS_DIR", &secrets)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&secrets).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("is a superuser and cannot be the functions' role"),
        "{stderr}"
    );
    assert!(!stderr.contains("a-password-long-enough"), "{stderr}");
}

/// `make run`'s script (dev/run) in a folder of its own, stopped (SIGINT to
/// its process group, as Ctrl-C does) when dropped.
struct MakeRun {
    process: std::process::Child,
    local: std::path::PathBuf,
}

impl Drop for MakeRun {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-INT", "--"])
            .arg(format!("-{}", self.process.id()))
            .status();
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(30) {
            if let Ok(Some(_)) = self.process.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // Whatever happened above, no database is left running.
        if self.local.join("pgdata/postmaster.pid").exists() {
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg(
                    "pg_ctl=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/pg_ctl; \
                     if [ \"$(id -u)\" = 0 ]; then runuser -u postgres -- \"$pg_ctl\" \"$@\"; \
                     else \"$pg_ctl\" \"$@\"; fi",
                )
                .args(["sh", "stop", "--mode=immediate", "--pgdata"])
                .arg(self.local.join("pgdata"))
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.local);
    }
}

#[test]
fn make_run_creates_the_roles_and_serves_the_functions_as_theirs() {
    use cofrap_tests::containers::{free_port, request};
    use std::os::unix::process::CommandExt;
    let local = std::env::temp_dir().join(unique("cofrap-make-run-"));
    std::fs::create_dir_all(&local).unwrap();
    let (port, pg_port) = (free_port(), free_port());
    let exe = std::env::current_exe().unwrap();
    let mut command = std::process::Command::new(repo_root().join("dev/run"));
    command
        .env("LOCAL_DIR", &local)
        .env("PORT", port.to_string())
        .env("PG_PORT", pg_port.to_string())
        .env(
            "DEV_SERVER",
            exe.parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("cofrap-dev-server"),
        )
        // This build's cofrap-admin: a clean clone has no release build.
        .env(
            "ADMIN",
            exe.parent().unwrap().parent().unwrap().join("cofrap-admin"),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    for variable in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "DATABASE_URL",
    ] {
        command.env_remove(variable);
    }
    let mut run = MakeRun {
        process: command.spawn().unwrap(),
        local: local.clone(),
    };
    let base = format!("http://127.0.0.1:{port}/function");
    let started = std::time::Instant::now();
    while ureq::get(&format!("{base}/frontend")).call().is_err() {
        if let Ok(Some(status)) = run.process.try_wait() {
            panic!("make run stopped before serving the page: {status}");
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(90),
            "make run did not serve the page"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let user = unique("makerun");
    let created = request(
        &format!("{base}/generate-password"),
        Some(
            serde_json::json!({ "username": user })
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(created.status, 200, "{created:?}");
    assert!(created.body.contains("qr_code_base64"), "{created:?}");

    // The operators' tool on this database (make admin), and the account's
    // first event with the client's address: the development server passes
    // X-Forwarded-For as the OpenFaaS gateway does.
    let admin = |args: &str| {
        let output = std::process::Command::new("make")
            .args(["--no-print-directory", "-s", "admin"])
            .arg(format!("ARGS={args}"))
            .arg(format!("LOCAL_DIR={}", local.display()))
            .arg(format!("PG_PORT={pg_port}"))
            .arg(format!("ADMIN={}", binary("cofrap-admin").display()))
            .current_dir(repo_root())
            .env_remove("MAKEFLAGS")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "make admin ARGS={args}: {output:?}"
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let shown = admin(&format!("show {user}"));
    assert!(shown.contains("state       pending"), "{shown}");
    let events: serde_json::Value =
        serde_json::from_str(&admin(&format!("events {user} --json"))).unwrap();
    assert_eq!(events[0]["kind"], "created", "{events}");
    assert_eq!(events[0]["client_address"], "127.0.0.1", "{events}");

    // The functions' secrets hold their own role; the superuser's are apart.
    let read = |path: &str| std::fs::read_to_string(local.join(path)).unwrap();
    assert_eq!(read("secrets/db-credentials-username"), "cofrap_functions");
    assert!(!local.join("secrets/db-admin-password").exists());
    // Over the Unix socket: TCP takes TLS only, which this client lacks.
    let admin = Server {
        host: local.join("run").display().to_string(),
        port: pg_port,
        user: read("admin/db-admin-username"),
        password: read("admin/db-admin-password").trim().to_owned(),
        dbname: "cofrap_db".into(),
    };
    let mut db = admin.connect();
    let row = db
        .query_one(
            "SELECT tableowner::text, (SELECT count(*) FROM users WHERE username = $1)
               FROM pg_tables WHERE tablename = 'users'",
            &[&user],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), OWNER_ROLE);
    assert_eq!(row.get::<_, i64>(1), 1);
    // The database takes TCP over TLS only: the functions connected at
    // verify-full with make run's CA.
    let plain = postgres::Config::new()
        .host("127.0.0.1")
        .port(pg_port)
        .user(&admin.user)
        .password(&admin.password)
        .dbname("cofrap_db")
        .connect(postgres::NoTls);
    assert!(plain.is_err(), "make run's database took TCP without TLS");
    drop(db);

    // The docs' shell examples, as a reader runs them against make run:
    // in a checkout of their own whose .local is this run's and whose
    // target/release holds this build's binaries, with make run's default
    // ports replaced by this run's.
    let checkout = std::env::temp_dir().join(unique("cofrap-docs-examples-"));
    std::fs::create_dir_all(checkout.join("target")).unwrap();
    std::os::unix::fs::symlink(&local, checkout.join(".local")).unwrap();
    std::os::unix::fs::symlink(
        exe.parent().unwrap().parent().unwrap(),
        checkout.join("target/release"),
    )
    .unwrap();
    let root = repo_root();
    let files: Vec<String> = markdown::tracked_markdown(&root)
        .iter()
        .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let run_examples = std::panic::catch_unwind(|| {
        markdown::run_examples(
            &root,
            &files,
            &checkout,
            &[
                ("127.0.0.1:8080", format!("127.0.0.1:{port}")),
                ("POSTGRES_PORT=5544", format!("POSTGRES_PORT={pg_port}")),
            ],
            std::time::Duration::from_secs(120),
        )
    });
    let _ = std::fs::remove_dir_all(&checkout);
    let examples = run_examples.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert!(examples >= 7, "only {examples} examples in the docs");
    drop(run);
}
