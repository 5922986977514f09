//! Two `vellum serve` processes on one PostgreSQL database behave as one
//! service: sessions, logout, login limits, the CSRF alert, key rotation
//! and letters are shared through the database, not held in a process.

use serde_json::json;

use super::keys::{Http, enrol, run, totp_login};
use super::{PASSWORD, create_user, free_port, serve_with};

async fn fresh_postgres() -> (String, String, sqlx::PgPool) {
    let admin = std::env::var("VELLUM_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("vellum_test_cluster_{}", std::process::id());
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    let (base, _) = admin.rsplit_once('/').unwrap();
    (format!("{base}/{name}"), name, pool)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL (VELLUM_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres); CI runs it"]
async fn two_servers_on_one_postgres_share_sessions_limits_alerts_keys_and_letters() {
    let (url, name, admin) = fresh_postgres().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // The per-address login limit is raised so the per-account one is
    // what the limit check below exercises (all clients share 127.0.0.1).
    std::fs::write(
        h.join("vellum.toml"),
        format!("database_url = \"{url}\"\n[auth]\nmax_failures_per_ip = 1000\n"),
    )
    .unwrap();
    create_user(h, &[], "clin", "clinician");
    create_user(h, &[], "target", "patient");
    let (pa, pb) = (free_port(), free_port());
    let (a, _) = serve_with(h, pa, &[]);
    let (b, _) = serve_with(h, pb, &[]);

    // A session made on A works on B; logout on A ends it on B.
    let mut last = i64::MIN;
    let secret = enrol(pa, &mut last).await;
    let on_a = totp_login(pa, &secret, &mut last).await;
    let cookie = on_a.cookie_header();
    let on_b = Http::new(pb);
    on_b.set_cookies(&cookie);
    assert_eq!(
        on_b.get_status("/api/auth/me").await,
        200,
        "A's session on B"
    );
    let (status, _) = on_a.post("/api/auth/logout", json!({})).await;
    assert!(status == 200 || status == 204, "logout {status}");
    assert_eq!(
        on_b.get_status("/api/auth/me").await,
        401,
        "logged out on A, still in on B"
    );

    // A letter written on A is read on B at once.
    let on_a = totp_login(pa, &secret, &mut last).await;
    let (status, p) = on_a
        .post(
            "/api/patients",
            json!({"resourceType": "Patient",
                   "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}],
                   "name": [{"family": "Shared", "given": ["Ann"]}],
                   "birthDate": "1970-01-01", "gender": "female"}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let pid = p["id"].as_str().unwrap();
    let (status, l) = on_a
        .post(
            &format!("/api/patients/{pid}/letters"),
            json!({"title": "From A", "body": "x"}),
        )
        .await;
    assert_eq!(status, 201, "{l}");
    let on_b = Http::new(pb);
    on_b.set_cookies(&on_a.cookie_header());
    let (status, letters) = on_b.get_json(&format!("/api/patients/{pid}/letters")).await;
    assert_eq!(status, 200);
    assert!(letters.to_string().contains("From A"), "{letters}");

    // Login limits count across both: 6 failures on A and 4 on B reach the
    // limit of 10, and the right password is then refused on either.
    for (port, n) in [(pa, 6), (pb, 4)] {
        for _ in 0..n {
            let c = Http::new(port);
            c.get_status("/api/auth/csrf").await;
            let (status, _) = c
                .post(
                    "/api/auth/login",
                    json!({"username": "target", "password": "wrong-password-1"}),
                )
                .await;
            assert_eq!(status, 401);
        }
    }
    let c = Http::new(pa);
    c.get_status("/api/auth/csrf").await;
    let (status, _) = c
        .post(
            "/api/auth/login",
            json!({"username": "target", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 429, "the limit holds across servers");

    // CSRF failures from one address count across both: 6 on A + 5 on B
    // (more than the threshold of 10) raise exactly one alert.
    for (port, n) in [(pa, 6), (pb, 5)] {
        for _ in 0..n {
            let status = Http::new(port)
                .post_without_csrf("/api/patients", json!({}))
                .await;
            assert_eq!(status, 403);
        }
    }
    let alerts: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM alerts WHERE rule = 'csrf_failures_per_ip'")
            .fetch_one(&sqlx::PgPool::connect(&url).await.unwrap())
            .await
            .unwrap();
    assert_eq!(alerts, 1);

    // A key rotated and rewrapped through the CLI is picked up by both,
    // without a restart: sign-in keeps working on each, and a secret
    // sealed on B afterwards uses the new key.
    run(h, &["keys", "rotate"]);
    let out = run(h, &["keys", "rewrap"]);
    assert!(out.contains("under k2"), "{out}");
    totp_login(pa, &secret, &mut last).await;
    let on_b = totp_login(pb, &secret, &mut last).await;
    let (status, _) = on_b
        .post("/api/account/totp/setup", json!({"password": PASSWORD}))
        .await;
    assert_eq!(status, 409, "a working second factor is never replaced");
    create_user(h, &[], "second", "clinician");
    let c = Http::new(pb);
    assert_eq!(c.login("second").await["status"], "totp_enrolment_required");
    let (status, v) = c
        .post("/api/account/totp/setup", json!({"password": PASSWORD}))
        .await;
    assert_eq!(status, 200, "{v}");
    let pending: String =
        sqlx::query_scalar("SELECT totp_pending FROM users WHERE username = 'second'")
            .fetch_one(&sqlx::PgPool::connect(&url).await.unwrap())
            .await
            .unwrap();
    assert!(
        pending.starts_with("vlm1.k2."),
        "sealed under the new key: {}",
        &pending[..8]
    );

    drop((a, b));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
}
