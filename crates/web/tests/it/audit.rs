//! The security log is hash-chained; `verify` finds the first altered row.
//! The access log is sealed into it; a changed, removed or added row under a
//! seal is found.

use domain::Role;

use crate::harness::TestApp;

#[tokio::test]
async fn security_log_chain_verifies_and_detects_an_altered_row() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    c.send(reqwest::Method::POST, "/api/auth/logout", None)
        .await;
    t.client().login("alice", "Wrong-password-guess-1").await;
    let report = t.app.verify_security_log().await.unwrap();
    assert_eq!(report.first_broken, None);
    assert!(report.rows_checked >= 4);

    // An insider with database access edits row 2 (the append-only trigger
    // must be removed first).
    if t.db.is_postgres() {
        let pool = sqlx::PgPool::connect(&t.db.url).await.unwrap();
        sqlx::query("DROP TRIGGER security_events_no_change ON security_events")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE security_events SET username = 'mallory' WHERE seq = 2")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(&t.db.url).await.unwrap();
        sqlx::query("DROP TRIGGER security_events_no_update")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE security_events SET username = 'mallory' WHERE seq = 2")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let report = t.app.verify_security_log().await.unwrap();
    let (seq, reason) = report.first_broken.expect("the edit is found");
    assert_eq!(seq, 2);
    assert!(reason.contains("altered"), "{reason}");
    assert_eq!(report.rows_checked, 1);
}

#[tokio::test]
async fn security_log_refuses_updates_and_deletes() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    assert_changes_refused(&t, "security_events", "kind").await;
    assert_eq!(
        t.app.verify_security_log().await.unwrap().first_broken,
        None
    );
}

/// Runs each statement on `pool` (either backend); each one's error, if
/// it failed.
macro_rules! each_error {
    ($pool:expr, $statements:expr) => {{
        let pool = $pool;
        let mut errors = Vec::new();
        for sql in $statements {
            let sql = sqlx::AssertSqlSafe(sql.to_owned());
            errors.push(
                sqlx::query(sql)
                    .execute(&pool)
                    .await
                    .err()
                    .map(|e| e.to_string()),
            );
        }
        pool.close().await;
        errors
    }};
}

/// UPDATE and DELETE of `table`'s rows (and on PostgreSQL TRUNCATE, which
/// SQLite lacks) are refused by the database itself, by the append-only
/// rule and not for another reason.
async fn assert_changes_refused(t: &TestApp, table: &str, column: &str) {
    let mut statements = vec![
        format!("UPDATE {table} SET {column} = 'x'"),
        format!("DELETE FROM {table}"),
    ];
    let errors = if t.db.is_postgres() {
        statements.push(format!("TRUNCATE {table}"));
        each_error!(sqlx::PgPool::connect(&t.db.url).await.unwrap(), &statements)
    } else {
        each_error!(
            sqlx::SqlitePool::connect(&t.db.url).await.unwrap(),
            &statements
        )
    };
    for (sql, error) in statements.iter().zip(&errors) {
        let error = error.as_deref().unwrap_or("it succeeded");
        assert!(
            error.contains(&format!("{table} is append-only")),
            "{sql}: must be refused as append-only, got: {error}"
        );
    }
}

#[tokio::test]
async fn access_log_refuses_updates_and_deletes() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let p = crate::clinical::create_patient(&c, "Kept", &crate::clinical::nhs(77)).await;
    let id = p["id"].as_str().unwrap();
    c.get(&format!("/api/patients/{id}")).await;
    let before = t.store.access_log(id, 50, None).await.unwrap();
    assert!(before.len() >= 2, "created and read: {before:?}");
    assert_changes_refused(&t, "access_log", "outcome").await;
    assert_eq!(t.store.access_log(id, 50, None).await.unwrap(), before);
}

/// Runs `statements` on the test's database, the append-only triggers of
/// the access log removed first (what an insider with database access
/// would have to do).
async fn as_an_insider(t: &TestApp, statements: &[&str]) {
    let mut all: Vec<String> = if t.db.is_postgres() {
        vec!["DROP TRIGGER access_log_no_change ON access_log".into()]
    } else {
        vec![
            "DROP TRIGGER access_log_no_update".into(),
            "DROP TRIGGER access_log_no_delete".into(),
        ]
    };
    all.extend(statements.iter().map(|s| (*s).to_owned()));
    let errors = if t.db.is_postgres() {
        each_error!(sqlx::PgPool::connect(&t.db.url).await.unwrap(), &all)
    } else {
        each_error!(sqlx::SqlitePool::connect(&t.db.url).await.unwrap(), &all)
    };
    assert!(errors.iter().all(Option::is_none), "{errors:?}");
}

/// A clinician who registers a patient and reads the record `reads` times:
/// access-log rows.
async fn some_access(t: &TestApp, reads: usize) -> (crate::harness::Client, String) {
    let c = t.signed_in("alice", Role::Clinician).await;
    let p = crate::clinical::create_patient(&c, "Sealed", &crate::clinical::nhs(78)).await;
    let id = p["id"].as_str().unwrap().to_owned();
    for _ in 0..reads {
        assert_eq!(c.get(&format!("/api/patients/{id}")).await.status(), 200);
    }
    (c, id)
}

/// The one seal `seal_access_log` made now.
async fn seal_now(t: &TestApp) -> app::AccessSeal {
    let mut seals = t.app.seal_access_log().await.unwrap();
    assert_eq!(seals.len(), 1, "{seals:?}");
    seals.remove(0)
}

#[tokio::test]
async fn the_access_log_is_sealed_into_the_security_log_and_a_changed_row_under_a_seal_is_found() {
    let t = TestApp::spawn().await;
    let (c, id) = some_access(&t, 2).await;
    let first = seal_now(&t).await;
    assert_eq!(
        (first.after_id, first.rows),
        (0, 3),
        "created and read twice"
    );
    assert!(
        t.app.seal_access_log().await.unwrap().is_empty(),
        "nothing new"
    );
    // A newer row is counted, not yet sealed; the next seal goes on from
    // the first.
    c.get(&format!("/api/patients/{id}")).await;
    let report = t.app.verify_access_log().await.unwrap();
    assert_eq!(report.broken, []);
    assert_eq!(
        (report.seals, report.rows_sealed, report.rows_unsealed),
        (1, 3, 1)
    );
    let second = seal_now(&t).await;
    assert_eq!((second.after_id, second.rows), (first.up_to_id, 1));
    // A server's round (one of the servers sharing the database takes it)
    // finds nothing new; the seals are rows of the hash-chained log.
    assert!(t.app.seal_access_log_round().await.unwrap().is_empty());
    let report = t.app.verify_access_log().await.unwrap();
    assert_eq!(
        (report.seals, report.rows_sealed, report.rows_unsealed),
        (2, 4, 0)
    );
    assert_eq!(
        t.app.verify_security_log().await.unwrap().first_broken,
        None
    );
    let seals = t
        .store
        .list_events(None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "access_log_sealed")
        .count();
    assert_eq!(seals, 2);

    // An insider rewrites who read the record, under each seal: both are
    // named, the first not hiding the second.
    as_an_insider(
        &t,
        &[
            &format!(
                "UPDATE access_log SET username = 'mallory' WHERE id = {}",
                first.up_to_id
            ),
            &format!(
                "UPDATE access_log SET outcome = 'denied' WHERE id = {}",
                second.up_to_id
            ),
        ],
    )
    .await;
    let report = t.app.verify_access_log().await.unwrap();
    assert_eq!(report.broken.len(), 2, "{report:?}");
    for (seal, (_, reason)) in [&first, &second].iter().zip(&report.broken) {
        assert!(
            reason.contains(&format!("up to id {}", seal.up_to_id))
                && reason.contains("no longer match"),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn a_row_removed_from_a_sealed_range_of_the_access_log_is_found() {
    let t = TestApp::spawn().await;
    some_access(&t, 2).await;
    let seal = seal_now(&t).await;
    let middle = seal.up_to_id - 1;
    as_an_insider(
        &t,
        &[&format!("DELETE FROM access_log WHERE id = {middle}")],
    )
    .await;
    let report = t.app.verify_access_log().await.unwrap();
    let (_, reason) = report.broken.first().expect("the removal is found");
    assert!(reason.contains("3 rows sealed, 2 there now"), "{reason}");
}

#[tokio::test]
async fn seals_of_many_rows_and_seals_that_overlap_verify() {
    let t = TestApp::spawn().await;
    some_access(&t, 1).await;
    // Rows past one batch read, written as the database allows (appending).
    let many = "INSERT INTO access_log (at, user_id, username, role, action, resource_type, \
                resource_id, patient_id, outcome) \
                SELECT 1, NULL, 'alice', 'clinician', 'read', 'Patient', NULL, NULL, 'ok' \
                FROM access_log a, access_log b, (SELECT 1 UNION ALL SELECT 2 UNION ALL \
                SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL \
                SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9 UNION ALL SELECT 10) c, \
                (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL \
                SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL \
                SELECT 9 UNION ALL SELECT 10) d, (SELECT 1 UNION ALL SELECT 2 UNION ALL \
                SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL \
                SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9 UNION ALL SELECT 10) e";
    as_an_insider(&t, &[many]).await;
    let seal = seal_now(&t).await;
    assert_eq!(seal.rows, 2 + 2 * 2 * 1_000, "{seal:?}");
    // The same rows sealed again (an operator's seal beside a server's).
    t.store
        .append_events(
            domain::Timestamp(1),
            &[
                domain::NewSecurityEvent::new(domain::SecurityEventKind::AccessLogSealed)
                    .detail(serde_json::to_value(&seal).unwrap()),
            ],
        )
        .await
        .unwrap();
    let report = t.app.verify_access_log().await.unwrap();
    assert_eq!(report.broken, []);
    assert_eq!(
        (report.seals, report.rows_sealed, report.rows_unsealed),
        (2, seal.rows, 0)
    );
    // A seal that begins past the last one: the rows between were never
    // sealed.
    let skipping = app::AccessSeal {
        after_id: seal.up_to_id + 5,
        up_to_id: seal.up_to_id + 5,
        rows: 0,
        ..seal.clone()
    };
    t.store
        .append_events(
            domain::Timestamp(2),
            &[
                domain::NewSecurityEvent::new(domain::SecurityEventKind::AccessLogSealed)
                    .detail(serde_json::to_value(&skipping).unwrap()),
            ],
        )
        .await
        .unwrap();
    let report = t.app.verify_access_log().await.unwrap();
    let (_, reason) = report.broken.first().expect("the gap is found");
    assert!(reason.contains("were never sealed"), "{reason}");
}

#[tokio::test]
async fn a_seal_never_takes_a_range_a_row_still_being_written_will_land_in() {
    let t = TestApp::spawn().await;
    some_access(&t, 1).await;
    let row = "INSERT INTO access_log (at, username, role, action, resource_type, outcome) \
               VALUES (1, 'alice', 'clinician', 'read', 'Patient', 'ok')";
    // A transaction holds a row with an id given out but not committed;
    // on PostgreSQL a later row commits first, so the highest committed id
    // is above the one still to come.
    macro_rules! race {
        ($pool:expr, $later_commits_first:expr) => {{
            let pool = $pool;
            let mut slow = pool.begin().await.unwrap();
            sqlx::query(row).execute(&mut *slow).await.unwrap();
            if $later_commits_first {
                sqlx::query(row).execute(&pool).await.unwrap();
            }
            let store = t.store.clone();
            let settle = tokio::spawn(async move {
                let up_to = store.access_log_settled_up_to().await.unwrap();
                let seen = store.access_rows_after(0, 10_000).await.unwrap();
                (up_to, seen.into_iter().filter(|r| r.id <= up_to).count())
            });
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            slow.commit().await.unwrap();
            let (up_to, seen_then) = settle.await.unwrap();
            let now = t.store.access_rows_after(0, 10_000).await.unwrap();
            let seen_now = now.into_iter().filter(|r| r.id <= up_to).count();
            assert_eq!(
                seen_then, seen_now,
                "a row landed at or below {up_to} after it was read"
            );
            pool.close().await;
        }};
    }
    if t.db.is_postgres() {
        race!(sqlx::PgPool::connect(&t.db.url).await.unwrap(), true);
    } else {
        race!(sqlx::SqlitePool::connect(&t.db.url).await.unwrap(), false);
    }
}
