//! Database connections — pooled, kept for one-statement queries, and the
//! group commit's — skip the ping before each query, so they must still
//! find out about connections the database dropped; and when every pooled
//! connection is held, requests fail in time and all recover after.

use std::sync::Arc;
use std::time::Duration;

use app::Sha256Chain;
use domain::{Role, Timestamp};
use sqlx::Connection as _;
use store::{AccessEntry, ConnectOptions};

use crate::harness::{TestApp, TestDb, problem};

#[tokio::test]
#[ignore = "needs PostgreSQL (VELLUM_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres); CI runs it"]
async fn connections_postgresql_dropped_while_idle_are_replaced_before_use() {
    let admin_url = TestDb::postgres_admin_url();
    let db = TestDb::postgres(&admin_url).await;
    let store = store::open(ConnectOptions {
        url: db.url.clone(),
        max_connections: 3,
        chain: Arc::new(Sha256Chain),
    })
    .await
    .unwrap();
    // Several connections open and back in the pool.
    let (a, b, c) = tokio::join!(
        store.count_users(),
        store.count_users(),
        store.count_users()
    );
    assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (0, 0, 0));
    // And the connections kept for reads by key, and the group commit's.
    let (a, b) = tokio::join!(store.patient("none"), store.patient("none"));
    assert!(a.unwrap().is_none() && b.unwrap().is_none());
    let at = Timestamp::from_millis(1_800_000_000_000);
    store.record_access(at, &[access(0)]).await.unwrap();
    // The database ends every session on it, as a restart or a firewall
    // would, while the pool's connections sit idle.
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    let name = db.url.rsplit_once('/').unwrap().1.to_owned();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND backend_type = 'client backend' \
         AND pid <> pg_backend_pid()",
    )
    .bind(&name)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(!ended.is_empty(), "the store's connections were ended");
    admin.close().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Every query still succeeds: each idle connection was checked before
    // use and replaced.
    for n in 1..=6 {
        assert_eq!(store.count_users().await.unwrap(), 0);
        assert!(store.patient("none").await.unwrap().is_none());
        store.record_access(at, &[access(n)]).await.unwrap();
    }
    store.close().await;
}

fn access(n: usize) -> AccessEntry {
    AccessEntry {
        user_id: None,
        username: "alice".to_owned(),
        role: "clinician".to_owned(),
        action: "read".to_owned(),
        resource_type: "patient".to_owned(),
        resource_id: Some(format!("p{n}")),
        patient_id: None,
        outcome: "ok".to_owned(),
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (VELLUM_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres); CI runs it"]
async fn requests_get_503_in_time_while_every_pooled_connection_is_held_and_all_recover_after() {
    let (t, c) = signed_in_on_postgres().await;
    crate::clinical::create_patient(&c, "Okonkwo", &crate::clinical::nhs(7)).await;
    let front = t.serve_with_request_timeout(Duration::from_secs(2)).await;
    let search = format!("{front}/api/patients?q=okon");
    let found = |body: &serde_json::Value| body.to_string().contains("OKONKWO, Ann");

    // A slow statement holds the patients table: every search that gets a
    // pooled connection waits on it, holding the connection, and the rest
    // wait for one — more searches than the pool has connections.
    let mut lock = sqlx::PgConnection::connect(&t.db.url).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE patients IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    let waiting: Vec<_> = (0..8)
        .map(|_| {
            let (http, url) = (c.http.clone(), search.clone());
            // (Without the server's deadline these would wait for ever.)
            let within = Duration::from_secs(20);
            tokio::spawn(async move { http.get(url).timeout(within).send().await.unwrap() })
        })
        .collect();
    for res in waiting {
        let (status, _, body) = problem(res.await.unwrap()).await;
        assert_eq!(
            (status, body["type"].as_str()),
            (503, Some("/problems/timeout")),
            "{body}"
        );
    }
    // Meanwhile what needs no patient row is still answered.
    assert_eq!(c.me_status().await, 200);

    // The slow statement ends: the held connections come back, sound, and
    // every search is answered again.
    sqlx::raw_sql("ROLLBACK").execute(&mut lock).await.unwrap();
    for _ in 0..8 {
        let res = c.http.get(&search).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let body = res.json().await.unwrap();
        assert!(found(&body), "{body}");
    }
}

/// A server on a fresh PostgreSQL database (the request deadline 30
/// seconds), and a clinician signed in to it.
async fn signed_in_on_postgres() -> (TestApp, crate::harness::Client) {
    let t = TestApp::spawn_on(
        Arc::new(TestDb::postgres(&TestDb::postgres_admin_url()).await),
        Arc::new(crypto::Keyring::generate(0)),
        Arc::new(app::ManualClock::starting_now()),
        crate::harness::Options::default().config,
    )
    .await;
    let c = t.signed_in("clin", Role::Clinician).await;
    (t, c)
}

/// The same, with a patient; gives the patient's id.
async fn on_postgres() -> (TestApp, crate::harness::Client, String) {
    let (t, c) = signed_in_on_postgres().await;
    let p = crate::clinical::create_patient(&c, "Okafor", &crate::clinical::nhs(8)).await;
    let id = p["id"].as_str().unwrap().to_owned();
    (t, c, id)
}

/// Sends `request` while another session holds a lock as a stuck write
/// would (a server paused mid-transaction, a `psql` left open) — `lock`,
/// run in a transaction that stays open — and asserts that the write the
/// request needs is refused at the 10-second lock wait, well before the
/// 30-second deadline, and that PostgreSQL has no backend left waiting on
/// the lock for it (a request cut off at its deadline leaves its statement
/// waiting there). Releases the lock after.
async fn refused_at_the_lock_wait(
    t: &TestApp,
    lock: String,
    request: impl std::future::Future<Output = reqwest::Response>,
) {
    let mut stuck = sqlx::PgConnection::connect(&t.db.url).await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut stuck).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(lock))
        .execute(&mut stuck)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let res = request.await;
    let waited = started.elapsed();
    let (status, _, body) = problem(res).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (503, Some("/problems/unavailable")),
        "{body}"
    );
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(25)).contains(&waited),
        "{waited:?}"
    );
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(&mut stuck)
    .await
    .unwrap();
    assert_eq!(waiting, 0, "a backend still waits on the lock");
    sqlx::raw_sql("ROLLBACK").execute(&mut stuck).await.unwrap();
}

#[tokio::test]
#[ignore = "needs PostgreSQL (VELLUM_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres); CI runs it"]
async fn a_write_behind_a_stuck_lock_is_refused_at_the_lock_wait_and_leaves_no_backend_waiting() {
    let (t, c, _) = on_postgres().await;
    let new_patient = crate::clinical::patient_json("Adeyemi", "Ann", &crate::clinical::nhs(9));
    let lock = "LOCK TABLE patients IN EXCLUSIVE MODE".to_owned();
    refused_at_the_lock_wait(&t, lock, c.post("/api/patients", new_patient.clone())).await;
    // Nothing was written: once the lock ends the same patient is created.
    assert_eq!(c.post("/api/patients", new_patient).await.status(), 201);
}

#[tokio::test]
#[ignore = "needs PostgreSQL (VELLUM_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres); CI runs it"]
async fn a_read_whose_access_log_row_waits_on_a_stuck_lock_is_refused_and_reads_go_on_after() {
    let (t, c, id) = on_postgres().await;
    let read = format!("/api/patients/{id}");
    // The group commit's writer, which every record read waits for, gives
    // up on its batch at the lock wait rather than waiting with it.
    let lock = "LOCK TABLE access_log IN EXCLUSIVE MODE".to_owned();
    refused_at_the_lock_wait(&t, lock, c.get(&read)).await;
    assert_eq!(c.get(&read).await.status(), 200);
}

#[tokio::test]
#[ignore = "needs PostgreSQL (VELLUM_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres); CI runs it"]
async fn a_security_event_behind_a_stuck_security_log_lock_is_refused_at_the_lock_wait() {
    let (t, c, _) = on_postgres().await;
    // Signing out appends to the security log, under its advisory lock.
    let lock = format!("SELECT pg_advisory_xact_lock({})", store::SECURITY_LOG_LOCK);
    refused_at_the_lock_wait(
        &t,
        lock,
        c.send(reqwest::Method::POST, "/api/auth/logout", None),
    )
    .await;
    // Nothing was written: the session still works, and signing out now
    // ends it.
    assert_eq!(c.me_status().await, 200);
    assert_eq!(
        c.send(reqwest::Method::POST, "/api/auth/logout", None)
            .await
            .status(),
        204
    );
    assert_eq!(c.me_status().await, 401);
}
