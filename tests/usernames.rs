//! Names that read the same are one name: look-alike usernames through the
//! binaries, the keys the database holds, and `cofrap-admin rekey` on a
//! database that already holds look-alikes (from before the keys, or from
//! the Python version).

use cofrap_tests::*;
use serde_json::json;
use std::process::Command;

/// Digits no other test uses: a suffix that keeps a name in its script.
fn digits() -> String {
    unique("")
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .chars()
        .rev()
        .take(12)
        .collect()
}

/// generate-password for `username`: its answer's code, or "created".
fn create(functions: &Functions, username: &str) -> String {
    let answer = functions.call("generate-password", json!({ "username": username }));
    match answer["code"].as_str() {
        Some(code) => code.to_owned(),
        None => {
            assert!(answer["qr_code_base64"].is_string(), "{answer}");
            "created".to_owned()
        }
    }
}

#[test]
fn look_alike_pairs_are_one_account_or_refused() {
    let functions = Functions::new();
    let n = digits();
    for (first, second, why) in [
        ("alice", "аӏісе", "whole-script confusable (Cyrillic)"),
        ("scope", "ѕсоре", "whole-script confusable (Cyrillic)"),
        ("ΤΑΧΙ", "TAXI", "Greek capitals"),
        ("admin", "admın", "same-script confusable (dotless i)"),
        ("mary", "rnary", "same-script confusable (r n)"),
        ("strasse", "straße", "full case folding"),
        ("Ivan", "lvan", "a capital I and a small l"),
        ("lgor", "Igor", "a small l and a capital I"),
        ("bob0", "bobO", "zero and capital O"),
    ] {
        let (first, second) = (format!("{first}{n}"), format!("{second}{n}"));
        assert_eq!(create(&functions, &first), "created", "{first}");
        assert_eq!(
            create(&functions, &second),
            "account_exists",
            "{why}: {second}"
        );
    }
    // Different names stay different.
    assert_eq!(
        create(&functions, &format!("igor{n}")),
        "created",
        "its dot shows"
    );
    assert_eq!(create(&functions, &format!("bob{n}")), "created");
}

#[test]
fn a_look_alike_spelling_reaches_the_one_account() {
    let functions = Functions::new();
    let n = digits();
    let owner = format!("alice{n}");
    let password = functions.create_account(&owner);
    // The Cyrillic spelling is the same account: enrolls it, shown as first
    // written.
    let enrolled = functions.call(
        "generate-2fa",
        json!({"username": format!("аӏісе{n}"), "password": password}),
    );
    assert_eq!(enrolled["username"], owner.as_str());
    let secret = enrolled["manual_entry_key"].as_str().unwrap();
    let answer = functions.authenticate(&format!("ALICE{n}"), &password, secret, current_step());
    assert_eq!(
        without_session(&answer),
        json!({"authenticated": true, "username": owner})
    );
}

#[test]
fn mixed_scripts_stacked_marks_hidden_dots_and_reordered_digits_are_refused() {
    let functions = Functions::new();
    let n = digits();
    for refused in [
        format!("\u{430}lice{n}"), // one Cyrillic letter among Latin ones
        format!("alice\u{301}{}{n}", "\u{301}".repeat(19)), // 20 stacked accents
        format!("e\u{300}\u{301}\u{302}\u{303}\u{304}{n}"), // five different marks
        format!("adm\u{131}\u{307}n{n}"), // a dot above a dotless ı: admin
        format!("i\u{307}van{n}"), // a dot above an i: ivan
        format!("\u{5d0}\u{5d1} {n}"), // shown as the next one: `n בא`
        format!("{n} \u{5d0}\u{5d1}"),
    ] {
        let output = functions.run(
            "generate-password",
            json!({ "username": refused }).to_string().as_bytes(),
        );
        assert_eq!(output.status, 0);
        assert_eq!(output.json()["code"], "invalid_username", "{refused:?}");
    }
    // A Japanese name mixing kanji, kana and Latin (UTS #39's Highly
    // Restrictive) is fine, and so is Vietnamese with two marks on a letter.
    assert_eq!(create(&functions, &format!("山田タロウTaro{n}")), "created");
    assert_eq!(create(&functions, &format!("Nguyễn{n}")), "created");
}

#[test]
fn the_database_refuses_a_second_account_with_a_skeleton() {
    let functions = Functions::new();
    let n = digits();
    let name = format!("scope{n}");
    functions.create_account(&name);
    let mut db = functions.db_as_functions();
    let (skeleton, display): (String, String) = {
        let row = db
            .query_one(
                "SELECT username_skeleton, username_display_skeleton FROM users WHERE username = $1",
                &[&name],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let parsed = common::account::Username::parse(&name).unwrap();
    assert_eq!(skeleton, parsed.skeleton());
    assert_eq!(display, parsed.display_skeleton());
    for (column, value) in [
        ("username_skeleton", &skeleton),
        ("username_display_skeleton", &display),
    ] {
        let other = format!("other{}", digits());
        let duplicate = db.execute(
            &format!(
                "INSERT INTO users (username, username_key, {column}, password_hash)
                 VALUES ($1, $1, $2, 'x')"
            ),
            &[&other, value],
        );
        assert!(duplicate.is_err(), "{column} is unique");
    }
}

/// `make db-migrate` (the SQL, then this build's `cofrap-admin rekey`) on
/// `scratch`; its output.
fn migrate(scratch: &ScratchDatabase) -> String {
    let output = scratch.migrate();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn rekey_keys_old_rows_keeps_colliding_ones_usable_and_lists_them() {
    // A database whose rows have no skeletons (written before migration
    // 0005, or by the Python version since), look-alikes among them.
    let scratch = ScratchDatabase::create();
    migrate(&scratch);
    let mut db = scratch.connect();
    let known = "Known-Password-For-Test-1";
    let hash = common::password::hash(known, 10).unwrap();
    let python_insert = "INSERT INTO users (username, password_hash, created_at, expired)
                         VALUES ($1, $2, now(), false)";
    for name in ["alice", "аӏісе", "Ivan", "lvan", "сосо"] {
        db.execute(python_insert, &[&name, &hash]).unwrap();
    }
    let keyless: i64 = db
        .query_one(
            "SELECT count(*) FROM users WHERE username_skeleton IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(keyless, 5, "SQL cannot compute skeletons");

    let report = migrate(&scratch);
    assert!(
        report.contains("\"аӏісе\" ~ account") && report.contains("\"alice\""),
        "{report}"
    );
    assert!(report.contains("\"lvan\" ~ account"), "{report}");
    let keyed: Vec<(String, Option<String>, Option<String>)> = db
        .query(
            "SELECT username, username_skeleton, username_display_skeleton FROM users ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        keyed,
        vec![
            ("alice".into(), Some("alice".into()), Some("alice".into())),
            ("аӏісе".into(), None, None),
            ("Ivan".into(), Some("ivan".into()), Some("lvan".into())),
            ("lvan".into(), Some("lvan".into()), None),
            ("сосо".into(), Some("coco".into()), Some("coco".into())),
        ]
    );
    // Running it again changes nothing and lists them again.
    assert!(migrate(&scratch).contains("\"аӏісе\" ~ account"));

    // Nobody lost an account: each owner reaches their own by their own
    // spelling (generate-2fa enrolls the pending account it finds).
    let functions = Functions::on(scratch.server.clone(), &scratch.name);
    for name in ["alice", "аӏісе", "Ivan", "lvan", "сосо"] {
        let enrolled = functions.call("generate-2fa", json!({"username": name, "password": known}));
        assert_eq!(enrolled["username"], name, "{enrolled}");
    }
    // New look-alikes are refused, of the grandfathered ones too.
    for name in ["ALICE", "coco", "Сосо", "IVAN"] {
        assert_eq!(create(&functions, name), "account_exists", "{name}");
    }
}

#[test]
fn the_python_version_still_finds_its_accounts() {
    // The Python functions look accounts up by `username`, as written; ours
    // by skeleton, or, for the Python version's rows not yet rekeyed, by
    // the compared form its trigger fills.
    let scratch = ScratchDatabase::create();
    migrate(&scratch);
    let functions = Functions::on(scratch.server.clone(), &scratch.name);
    let password = functions.create_account("Zoë Smith");
    let mut db = scratch.connect();
    let by_python: i64 = db
        .query_one(
            "SELECT count(*) FROM users WHERE username = $1",
            &[&"Zoë Smith"],
        )
        .unwrap()
        .get(0);
    assert_eq!(by_python, 1, "stored as written");
    db.execute(
        "INSERT INTO users (username, password_hash, created_at, expired)
         VALUES ('Python Row', $1, now(), false)",
        &[&common::password::hash("Py-Password-1", 10).unwrap()],
    )
    .unwrap();
    for (name, password) in [
        ("python row", "Py-Password-1"),
        ("ZOË SMITH", password.as_str()),
    ] {
        let enrolled = functions.call(
            "generate-2fa",
            json!({"username": name, "password": password}),
        );
        assert!(
            enrolled["manual_entry_key"].is_string(),
            "{name}: {enrolled}"
        );
    }
}

#[test]
fn rekey_is_a_cofrap_admin_command_with_help() {
    let output = Command::new(binary("cofrap-admin"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("rekey"));
}
