//! No lost letters: a server killed with SIGKILL in the middle of a stream
//! of letter POSTs keeps every letter it answered 201 for — intact, with
//! its access-log row — holds nothing half-written, and its security log
//! still verifies (SQLite, and PostgreSQL when it can be reached).

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::keys::Http;
use super::{create_user, free_port, serve_with, vellum};

fn body_of(title: &str) -> String {
    format!("Body of {title}: every word must survive the crash.")
}

/// Writes letters from four clients until the server dies; returns the
/// (id, title) of every letter answered 201.
async fn write_until_killed(
    port: u16,
    patient: &str,
    kill: impl FnOnce(),
) -> Vec<(String, String)> {
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (acked, patient) = (acked.clone(), patient.to_owned());
        let h = Http::new(port);
        assert_eq!(h.login("clin").await["status"], "ok");
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let title = format!("w{w}-n{n}");
                let send = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    h.try_post(
                        &format!("/api/patients/{patient}/letters"),
                        json!({"title": title, "body": body_of(&title), "status": "final"}),
                    ),
                )
                .await;
                match send {
                    Ok(Some((201, v))) => acked
                        .lock()
                        .unwrap()
                        .push((v["id"].as_str().unwrap().to_owned(), title)),
                    Ok(Some((status, v))) => panic!("letter POST answered {status}: {v}"),
                    _ => break, // the server is gone
                }
            }
        }));
    }
    // Let the stream run, then kill mid-stream.
    while acked.lock().unwrap().len() < 40 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    kill();
    for w in writers {
        w.await.unwrap();
    }
    acked.lock().unwrap().clone()
}

async fn letters_and_log(url: &str) -> (Vec<(String, String, String)>, Vec<String>) {
    let letters_sql = "SELECT id, title, body FROM letters WHERE title LIKE 'w%-n%' ORDER BY id";
    let log_sql =
        "SELECT resource_id FROM access_log WHERE action = 'create' AND resource_type = 'letter'";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let l = sqlx::query_as(letters_sql).fetch_all(&pool).await.unwrap();
        let a = sqlx::query_scalar(log_sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        (l, a)
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let l = sqlx::query_as(letters_sql).fetch_all(&pool).await.unwrap();
        let a = sqlx::query_scalar(log_sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        (l, a)
    }
}

async fn no_letter_lost_under_kill_9(home: &Path, url: &str) {
    std::fs::write(home.join("vellum.toml"), "[auth]\nrequire_totp_for = []\n").unwrap();
    let db = ["--database-url", url];
    create_user(home, &db, "clin", "clinician");
    let port = free_port();
    let (mut server, _) = serve_with(home, port, &db);
    let h = Http::new(port);
    h.login("clin").await;
    let (status, p) = h
        .post(
            "/api/patients",
            json!({"resourceType": "Patient",
                   "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}],
                   "name": [{"family": "Crash", "given": ["Test"]}],
                   "birthDate": "1970-01-01", "gender": "female"}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let patient = p["id"].as_str().unwrap().to_owned();

    let acked = write_until_killed(port, &patient, || {
        server.0.kill().unwrap(); // SIGKILL: no shutdown, no flush
        server.0.wait().unwrap();
    })
    .await;
    assert!(acked.len() >= 40);

    // Restart on the same database: it opens, and everything acknowledged is there.
    let port = free_port();
    let (server, _) = serve_with(home, port, &db);
    let (letters, logged) = letters_and_log(url).await;
    let by_id: std::collections::BTreeMap<&str, (&str, &str)> = letters
        .iter()
        .map(|(id, t, b)| (id.as_str(), (t.as_str(), b.as_str())))
        .collect();
    for (id, title) in &acked {
        let (t, b) = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("letter {title} ({id}) was answered 201 and is gone"));
        assert_eq!(*t, title.as_str());
        assert_eq!(*b, body_of(title), "letter {title} damaged");
        assert!(
            logged.contains(id),
            "letter {title} lost its access-log row"
        );
    }
    // Nothing half-written: every letter has its access-log row and every
    // row its letter; a letter not acknowledged may exist (committed just
    // before the kill) but only whole.
    for (id, t, b) in &letters {
        assert_eq!(b, &body_of(t), "a half-written letter {t}");
        assert!(logged.contains(id), "letter {t} without its access-log row");
    }
    for id in &logged {
        assert!(
            by_id.contains_key(id.as_str()),
            "an access-log row without its letter {id}"
        );
    }
    let h = Http::new(port);
    h.login("clin").await;
    assert_eq!(
        h.get_status(&format!("/api/patients/{patient}/letters"))
            .await,
        200
    );
    drop(server);
    let (code, out, err) = vellum(home, &[db[0], db[1], "audit", "verify"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("security log intact"), "{out}");
}

#[tokio::test]
async fn no_letter_answered_201_is_lost_when_the_server_is_killed_sqlite() {
    let home = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/vellum-data/vellum.db", home.path().display());
    no_letter_lost_under_kill_9(home.path(), &url).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (VELLUM_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres); CI runs it"]
async fn no_letter_answered_201_is_lost_when_the_server_is_killed_postgres() {
    let admin = std::env::var("VELLUM_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("vellum_test_kill_{}", std::process::id());
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    let home = tempfile::tempdir().unwrap();
    no_letter_lost_under_kill_9(home.path(), &url).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}
