//! Security headers, no CORS, and problem+json for every kind of bad input.

use std::time::Duration;

use domain::Role;
use reqwest::Method;

use crate::harness::{Client, TestApp, logs, problem};

#[tokio::test]
async fn health_answers_ok_while_the_database_is_reachable_and_503_after() {
    let t = TestApp::spawn().await;
    let res = t.client().get("/api/health").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status": "ok"})
    );
    t.store.close().await;
    assert_eq!(t.client().get("/api/health").await.status(), 503);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let t = TestApp::spawn().await;
    for path in ["/api/health", "/", "/no/such/page"] {
        let res = t.client().get(path).await;
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(h.contains_key("referrer-policy"));
        assert!(
            !h.contains_key("strict-transport-security"),
            "no HSTS on plain HTTP"
        );
    }
}

#[tokio::test]
async fn no_cors_headers_are_ever_sent() {
    let t = TestApp::spawn().await;
    let c = t.client();
    let pre = c
        .http
        .request(Method::OPTIONS, c.url("/api/auth/login"))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(!pre.headers().contains_key("access-control-allow-origin"));
    let get = c
        .http
        .get(c.url("/api/health"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!get.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn bad_bodies_get_problem_documents_saying_what_was_wrong() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let token = c.csrf_cookie().unwrap();
    let send = |ct: &'static str, body: &'static str| {
        c.http
            .post(c.url("/api/account/password"))
            .header("x-csrf-token", token.clone())
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let (s, title, _) = problem(send("application/json", "{not json").await.unwrap()).await;
    assert_eq!((s, title.as_str()), (400, "Malformed JSON"));
    let (s, _, _) = problem(send("text/plain", "{}").await.unwrap()).await;
    assert_eq!(s, 415);
    let (s, _, body) = problem(
        send(
            "application/json",
            r#"{"current_password":"a","new_password":"b","admin":true}"#,
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    assert!(
        body["detail"].as_str().unwrap().contains("unknown field"),
        "{body}"
    );
    let (s, _, body) = problem(
        send("application/json", r#"{"current_password":"a"}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    assert!(
        body["detail"].as_str().unwrap().contains("new_password"),
        "{body}"
    );
    let big = "x".repeat(200 * 1024);
    let res = c
        .http
        .post(c.url("/api/account/password"))
        .header("x-csrf-token", token.clone())
        .header("content-type", "application/json")
        .body(format!(
            "{{\"current_password\":\"{big}\",\"new_password\":\"b\"}}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(c.me_status().await, 200);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problem_documents() {
    let t = TestApp::spawn().await;
    let (s, _, _) = problem(t.client().get("/api/nothing-here").await).await;
    assert_eq!(s, 404);
    let c = t.client();
    let (s, _, _) = problem(c.http.put(c.url("/api/health")).send().await.unwrap()).await;
    assert_eq!(
        s, 403,
        "an unsafe method meets the CSRF guard before routing"
    );
    let (s, _, _) = problem(
        c.http
            .delete(c.url("/api/auth/me"))
            .header("x-csrf-token", "x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn errors_never_leak_internal_detail() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    t.store.close().await;
    let res = c.get("/api/auth/me").await;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    assert!(status == 503 || status == 500, "{status}");
    for leak in ["sqlx", "SELECT", "pool", "panicked", "sessions"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

/// The database's write lock, held as a long or stuck write would hold it:
/// on SQLite a write transaction on a connection of its own, on PostgreSQL a
/// lock on `table` (reads go on; no row can be written there).
enum WritesLockedOut {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WritesLockedOut {
    async fn hold(t: &TestApp, table: &str) -> Self {
        use sqlx::Connection as _;
        if t.db.is_postgres() {
            let mut conn = sqlx::PgConnection::connect(&t.db.url).await.unwrap();
            let lock = format!("BEGIN; LOCK TABLE {table} IN EXCLUSIVE MODE");
            sqlx::raw_sql(sqlx::AssertSqlSafe(lock))
                .execute(&mut conn)
                .await
                .unwrap();
            Self::Postgres(conn)
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&t.db.url).await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            Self::Sqlite(conn)
        }
    }

    async fn release(self) {
        match self {
            Self::Sqlite(mut c) => sqlx::raw_sql("ROLLBACK").execute(&mut c).await.map(drop),
            Self::Postgres(mut c) => sqlx::raw_sql("ROLLBACK").execute(&mut c).await.map(drop),
        }
        .unwrap();
    }
}

/// Asserts that `res` is the answer to a request cut off at the deadline;
/// gives its problem document.
async fn assert_cut_off(res: reqwest::Response) -> serde_json::Value {
    let (status, _, body) = problem(res).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (503, Some("/problems/timeout")),
        "{body}"
    );
    body
}

/// A client for `t` signed in as a clinician, and the same client (cookies
/// and all) at an address of the same server whose deadline is two seconds.
async fn with_a_short_deadline(t: &TestApp) -> (Client, Client) {
    let c = t.signed_in("clin", Role::Clinician).await;
    let front = Client {
        base: t.serve_with_request_timeout(Duration::from_secs(2)).await,
        http: c.http.clone(),
        jar: c.jar.clone(),
    };
    (c, front)
}

#[tokio::test]
async fn requests_that_cannot_be_answered_in_time_get_503_and_the_server_recovers() {
    let t = TestApp::spawn().await;
    let (c, front) = with_a_short_deadline(&t).await;
    let patient = crate::clinical::create_patient(&c, "Nakamura", &crate::clinical::nhs(41)).await;
    let read = format!("/api/patients/{}", patient["id"].as_str().unwrap());
    let fhir_read = format!("/fhir/R4/Patient/{}", patient["id"].as_str().unwrap());
    assert_eq!(front.get(&read).await.status(), 200);

    // A record read is answered only once its access-log row is committed,
    // and now no row can be: the read is cut off at the deadline with 503
    // (without it, it would wait out the database's own timeouts).
    let lock = WritesLockedOut::hold(&t, "access_log").await;
    let res = front.get(&read).await;
    assert_eq!(res.headers()["retry-after"], "5");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let (status, title, body) = problem(res).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "/problems/timeout", "{body}");
    assert_eq!(title, "The server could not answer in time");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Try again shortly"),
        "{body}"
    );
    assert!(logs().contains("a request was not answered in time"));
    assert!(
        logs().contains(&format!("path=\"{read}\"")),
        "the cut-off names its path"
    );
    // Through FHIR, the same as an OperationOutcome of FHIR's `timeout`.
    let res = front.get(&fhir_read).await;
    assert_eq!(res.status(), 503);
    let outcome: serde_json::Value = res.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "timeout", "{outcome}");

    // The lock ends: the same read is answered again, with its row.
    lock.release().await;
    let res = front.get(&read).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["id"],
        patient["id"]
    );
}

#[tokio::test]
async fn a_change_cut_off_at_the_deadline_is_saved_whole_or_not_at_all() {
    let t = TestApp::spawn().await;
    let (c, front) = with_a_short_deadline(&t).await;
    // An API token and its security event are written together; the write
    // waits on the lock past the deadline and is cut off there.
    let lock = WritesLockedOut::hold(&t, "api_tokens").await;
    let res = front
        .post(
            "/api/account/tokens",
            serde_json::json!({"name": "cut token", "scope": "read"}),
        )
        .await;
    let body = assert_cut_off(res).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("check whether it was"),
        "{body}"
    );
    assert!(
        logs().contains("path=\"/api/account/tokens\""),
        "the cut-off is logged"
    );
    // The lock ends. The next token is written after the cut one ended
    // (writes to the security log go one at a time), and only it is there:
    // the cut one left neither a token without its event nor an event
    // without its token.
    lock.release().await;
    let res = c
        .post(
            "/api/account/tokens",
            serde_json::json!({"name": "next token", "scope": "read"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let listed = c.get("/api/account/tokens").await.text().await.unwrap();
    assert!(listed.contains("next token"), "{listed}");
    assert!(!listed.contains("cut token"), "{listed}");
    assert_eq!(crate::totp::count_events(&t, "api_token_created").await, 1);
}

#[tokio::test]
async fn a_sign_in_cut_off_before_its_session_starts_spends_neither_its_code_nor_its_recovery_code()
{
    use serde_json::json;
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (secret, recovery) = crate::totp::enrol(&t, &c).await;
    t.clock.advance_ms(30_000);
    let code = secret.code_at_step(crate::totp::step(&t));
    // Two sign-ins' passwords, at an address of the server whose deadline
    // is two seconds: each session now waits for its second factor.
    let short = t.serve_with_request_timeout(Duration::from_secs(2)).await;
    let front = || {
        let p = t.client();
        Client {
            base: short.clone(),
            http: p.http.clone(),
            jar: p.jar.clone(),
        }
    };
    let (by_code, by_recovery) = (front(), front());
    for f in [&by_code, &by_recovery] {
        let res = f.login("alice", crate::harness::PASSWORD).await;
        assert_eq!(res.status(), 200);
    }
    // Each second step, alone, while no session can be started: cut off at
    // the deadline; and then, the lock gone, the same code or recovery code
    // signs in — it would be refused had it been spent without its session.
    for (f, second) in [
        (&by_code, json!({"code": code})),
        (&by_recovery, json!({"recovery_code": recovery[0]})),
    ] {
        let lock = WritesLockedOut::hold(&t, "sessions").await;
        let res = f.post("/api/auth/login/totp", second.clone()).await;
        assert_cut_off(res).await;
        lock.release().await;
        let res = f.post("/api/auth/login/totp", second).await;
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
    // The recovery code's use is recorded once, with its session.
    assert_eq!(crate::totp::count_events(&t, "recovery_code_used").await, 1);
}

#[tokio::test]
async fn turning_two_factor_off_cut_off_at_the_deadline_spends_no_code_and_leaves_it_on() {
    use serde_json::json;
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (secret, _) = crate::totp::enrol(&t, &c).await;
    t.clock.advance_ms(30_000);
    let off = json!({
        "password": crate::harness::PASSWORD,
        "code": secret.code_at_step(crate::totp::step(&t)),
    });
    let front = Client {
        base: t.serve_with_request_timeout(Duration::from_secs(2)).await,
        http: c.http.clone(),
        jar: c.jar.clone(),
    };
    // Recovery codes cannot be deleted meanwhile: cut off at the deadline.
    let lock = WritesLockedOut::hold(&t, "recovery_codes").await;
    let res = front.post("/api/account/totp/disable", off.clone()).await;
    assert_cut_off(res).await;
    lock.release().await;
    // Still on, and the same code turns it off now: it was not spent.
    let status: serde_json::Value = front.get("/api/account/totp").await.json().await.unwrap();
    assert_eq!(status["enabled"], true, "{status}");
    let res = front.post("/api/account/totp/disable", off).await;
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn a_browser_asking_for_a_page_gets_a_page_when_the_server_fails_and_the_api_gets_json() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("clin", Role::Clinician).await;
    t.store.close().await;
    let page = c
        .http
        .get(c.url("/patients"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.headers().contains_key("content-security-policy"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<h1>Service unavailable</h1>"), "{html}");
    assert!(
        html.contains("The database is busy or cannot be reached"),
        "{html}"
    );
    // The API answers the same failure as a problem document, whatever the
    // client accepts.
    let api = c
        .http
        .get(c.url("/api/patients"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let (status, title, _) = problem(api).await;
    assert_eq!((status, title.as_str()), (503, "Service unavailable"));
}
