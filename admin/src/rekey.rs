//! `cofrap-admin rekey`: computes the look-alike keys (the two skeletons of
//! [`common::username`]) of the accounts that lack them, the last step of
//! every `make db-migrate` and of the schema Job.
//!
//! SQL cannot compute a skeleton (its tables live in the Rust crates), so
//! rows written before migration 0005, and rows the Python version inserts,
//! get theirs here. Until then the functions find them by their compared
//! form (`username_key`), as before 0005.
//!
//! Names that already collide stay usable: the first account (lowest id) of
//! each look keeps it, the others keep none, are found by their own spelling
//! and are listed on every run, for an operator to decide (rename one, or
//! leave them). New collisions are refused by the unique indexes. Names the
//! rules now refuse are listed too: they cannot be used through the
//! functions until renamed.
//!
//! One transaction, with the table locked against writers for its duration
//! (readers go on), so that nothing collides between the computation and
//! the update.

use common::account::Username;
use common::db::{Database, Transaction};
use common::Error;
use postgres::types::Type;
use std::fmt::Write as _;

/// Computes the missing keys; returns the report to print.
pub fn run(db: &mut Database) -> Result<String, Error> {
    db.transaction(rekey)
}

fn rekey(tx: &mut Transaction) -> Result<String, Error> {
    tx.batch_execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")?;
    let rows = tx.query_typed(
        "SELECT id::bigint, username::text FROM users
          WHERE username_skeleton IS NULL OR username_display_skeleton IS NULL
          ORDER BY id",
        &[],
    )?;
    let (mut ids, mut skeletons, mut display_skeletons) = (Vec::new(), Vec::new(), Vec::new());
    let mut report = String::new();
    for row in &rows {
        let (id, name): (i64, String) = (row.get(0), row.get(1));
        match Username::parse(&name) {
            Ok(username) => {
                ids.push(id);
                skeletons.push(username.skeleton().to_owned());
                display_skeletons.push(username.display_skeleton().to_owned());
            }
            Err(reason) => {
                let _ = writeln!(
                    report,
                    "not valid under the username rules, usable only once renamed: \
                     account {id} {name:?} ({reason})"
                );
            }
        }
    }
    // Each key goes to the first of its row and the rows that already hold
    // it; the others are left without (and listed below).
    let updated = tx.execute_typed(
        "WITH input AS (
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])
                        AS t(id, skeleton, display_skeleton)),
         chosen AS (
             SELECT id,
                    CASE WHEN row_number() OVER (PARTITION BY skeleton ORDER BY id) = 1
                          AND NOT EXISTS (SELECT 1 FROM users u
                                           WHERE u.username_skeleton = input.skeleton)
                         THEN skeleton END AS skeleton,
                    CASE WHEN row_number() OVER (PARTITION BY display_skeleton ORDER BY id) = 1
                          AND NOT EXISTS (SELECT 1 FROM users u
                                           WHERE u.username_display_skeleton
                                                 = input.display_skeleton)
                         THEN display_skeleton END AS display_skeleton
               FROM input)
         UPDATE users
            SET username_skeleton = coalesce(users.username_skeleton, chosen.skeleton),
                username_display_skeleton =
                    coalesce(users.username_display_skeleton, chosen.display_skeleton)
           FROM chosen
          WHERE users.id = chosen.id",
        &[
            (&ids, Type::INT8_ARRAY),
            (&skeletons, Type::TEXT_ARRAY),
            (&display_skeletons, Type::TEXT_ARRAY),
        ],
    )?;
    let collisions = tx.query_typed(
        "SELECT u.id::bigint, u.username::text, o.id::bigint, o.username::text
           FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(id, skeleton, display_skeleton)
           JOIN users u ON u.id = t.id
           JOIN users o ON o.id <> u.id
                       AND ((u.username_skeleton IS NULL AND o.username_skeleton = t.skeleton)
                         OR (u.username_display_skeleton IS NULL
                             AND o.username_display_skeleton = t.display_skeleton))
          ORDER BY u.id, o.id",
        &[
            (&ids, Type::INT8_ARRAY),
            (&skeletons, Type::TEXT_ARRAY),
            (&display_skeletons, Type::TEXT_ARRAY),
        ],
    )?;
    for row in &collisions {
        let (id, name, other, other_name): (i64, String, i64, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let _ = writeln!(
            report,
            "looks like another account, kept and usable by its own spelling: \
             account {id} {name:?} ~ account {other} {other_name:?}"
        );
    }
    let collided = collisions
        .iter()
        .map(|row| row.get::<_, i64>(0))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let _ = writeln!(
        report,
        "rekey: {} account(s) without look-alike keys, {updated} updated, \
         {collided} already looking like another, {} with a name the rules refuse",
        rows.len(),
        rows.len() - ids.len()
    );
    Ok(report)
}
