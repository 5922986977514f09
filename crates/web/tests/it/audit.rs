//! The security log is hash-chained; `verify` finds the first altered row.

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
