//! Two-factor sign-in (seed 003): secrets sealed at rest, codes checked
//! within ±1 step and never twice, recovery codes, the enrolment policy,
//! key rotation while serving.

use app::{AppConfig, Clock as _};
use crypto::totp::{TotpSecret, step_of};
use domain::Role;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::harness::{Client, Options, PASSWORD, TestApp, problem};

/// Step now on the test's clock.
pub(crate) fn step(t: &TestApp) -> i64 {
    step_of(t.clock.now().millis() / 1000)
}

fn secret_of(uri: &str) -> TotpSecret {
    let q = uri.split_once('?').unwrap().1;
    let b32 = q
        .split('&')
        .find_map(|kv| kv.strip_prefix("secret="))
        .unwrap();
    assert_eq!(b32.len(), 32, "160-bit secret as 32 base32 characters");
    TotpSecret::from_base32(b32).unwrap()
}

/// Sets up and enables 2FA for a signed-in client; returns the secret and
/// the recovery codes. The code used is the current step's.
pub(crate) async fn enrol(t: &TestApp, c: &Client) -> (TotpSecret, Vec<String>) {
    let res = c
        .post("/api/account/totp/setup", json!({"password": PASSWORD}))
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert!(
        v["qr_svg"].as_str().unwrap().starts_with("<?xml")
            || v["qr_svg"].as_str().unwrap().contains("<svg")
    );
    let secret = secret_of(v["otpauth_uri"].as_str().unwrap());
    let res = c
        .post(
            "/api/account/totp/enable",
            json!({"code": secret.code_at_step(step(t))}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let codes: Vec<String> = v["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

/// Password, then the code: a full session.
pub(crate) async fn login_with_code(t: &TestApp, username: &str, code: &str) -> (Client, u16) {
    second_step(t, username, json!({"code": code})).await
}

/// Password, then `factor` (a code or a recovery code) as the second step;
/// the client and the second step's status.
async fn second_step(t: &TestApp, username: &str, factor: Value) -> (Client, u16) {
    let c = t.client();
    let res = c.login(username, PASSWORD).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], "totp_required");
    let res = c.post("/api/auth/login/totp", factor).await;
    let status = res.status().as_u16();
    (c, status)
}

/// Asserts that the recovery codes stored are `n`, none holding any of
/// `codes` as written: only their MACs are kept.
async fn assert_stored_only_as_macs(t: &TestApp, n: usize, codes: &[String]) {
    let stored = db_text(t, "SELECT code_hash FROM recovery_codes").await;
    assert_eq!(stored.len(), n);
    for h in stored.into_iter().flatten() {
        assert!(
            !codes.iter().any(|c| h.contains(c.as_str())),
            "stored only as a MAC"
        );
    }
}

async fn db_text(t: &TestApp, sql: &str) -> Vec<Option<String>> {
    if t.db.is_postgres() {
        let pool = sqlx::PgPool::connect(&t.db.url).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&pool)
            .await
            .unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(&t.db.url).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&pool)
            .await
            .unwrap()
    }
}

/// The kinds of the latest security events.
pub(crate) async fn event_kinds(t: &TestApp) -> Vec<String> {
    t.store
        .list_events(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.as_str().to_owned())
        .collect()
}

/// How many of the latest security events are of `kind`.
pub(crate) async fn count_events(t: &TestApp, kind: &str) -> usize {
    event_kinds(t).await.iter().filter(|k| *k == kind).count()
}

pub(crate) fn has_base32_run(text: &str) -> bool {
    let mut run = 0;
    for c in text.chars() {
        if c.is_ascii_uppercase() || ('2'..='7').contains(&c) {
            run += 1;
            if run >= 32 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

#[tokio::test]
async fn totp_secret_column_holds_only_a_sealed_value_that_opens_to_the_original() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (secret, _) = enrol(&t, &c).await;
    let rows = db_text(&t, "SELECT totp_secret FROM users WHERE username = 'alice'").await;
    let sealed = rows[0].clone().unwrap();
    assert!(sealed.starts_with("vlm1.k1."), "{sealed}");
    assert!(!has_base32_run(&sealed));
    assert!(!sealed.contains(secret.base32().expose_secret()));
    let id = db_text(&t, "SELECT id FROM users WHERE username = 'alice'").await[0]
        .clone()
        .unwrap();
    let opened = t
        .keys
        .open(&sealed, &format!("users.totp_secret:{id}"))
        .unwrap();
    assert_eq!(opened.as_slice(), secret.expose_bytes());
    // Copied to another user's row, it does not open.
    assert!(
        t.keys
            .open(&sealed, "users.totp_secret:someone-else")
            .is_err()
    );
}

#[tokio::test]
async fn no_table_holds_a_base32_secret_after_enrolment() {
    let t = TestApp::spawn().await;
    for name in ["alice", "bob"] {
        let c = t.signed_in(name, Role::Clinician).await;
        enrol(&t, &c).await;
    }
    let tables: Vec<Option<String>> = if t.db.is_postgres() {
        db_text(
            &t,
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
        )
        .await
    } else {
        db_text(&t, "SELECT name FROM sqlite_master WHERE type = 'table'").await
    };
    let mut scanned = 0;
    for table in tables.into_iter().flatten() {
        let rows = if t.db.is_postgres() {
            db_text(&t, &format!("SELECT CAST(t.* AS TEXT) FROM \"{table}\" t")).await
        } else {
            let cols = db_text(
                &t,
                &format!("SELECT name FROM pragma_table_info('{table}')"),
            )
            .await;
            let concat: Vec<String> = cols
                .into_iter()
                .flatten()
                .map(|c| format!("quote(\"{c}\")"))
                .collect();
            db_text(
                &t,
                &format!("SELECT {} FROM \"{table}\"", concat.join(" || '|' || ")),
            )
            .await
        };
        for row in rows.into_iter().flatten() {
            scanned += 1;
            assert!(!has_base32_run(&row), "{table} holds a base32 run: {row}");
        }
    }
    assert!(scanned > 5, "the scan read the tables ({scanned} rows)");
}

#[tokio::test]
async fn login_asks_for_a_code_and_the_partial_session_can_do_nothing_else() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (secret, _) = enrol(&t, &c).await;
    t.clock.advance_ms(30_000);

    let p = t.client();
    let v: Value = p.login("alice", PASSWORD).await.json().await.unwrap();
    assert_eq!(v["status"], "totp_required");
    assert!(v.get("user").is_none());
    assert_eq!(p.get("/api/auth/me").await.status(), 401);
    assert_eq!(p.get("/api/patients").await.status(), 401);
    assert_eq!(p.get("/api/account/tokens").await.status(), 401);
    let before = (p.session_cookie(), p.csrf_cookie());
    let res = p
        .post(
            "/api/auth/login/totp",
            json!({"code": secret.code_at_step(step(&t))}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_ne!(p.session_cookie(), before.0, "the session token rotates");
    assert_ne!(p.csrf_cookie(), before.1, "the CSRF token rotates");
    assert_eq!(p.get("/api/auth/me").await.status(), 200);
}

#[tokio::test]
async fn a_code_is_accepted_once_and_never_again_nor_any_earlier_one() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (secret, _) = enrol(&t, &c).await;
    // The code used to enable counts as used.
    let used = secret.code_at_step(step(&t));
    let (_, status) = login_with_code(&t, "alice", &used).await;
    assert_eq!(status, 401, "the enabling code cannot sign in");

    t.clock.advance_ms(30_000);
    let now = secret.code_at_step(step(&t));
    let (_, status) = login_with_code(&t, "alice", &now).await;
    assert_eq!(status, 200);
    let p = t.client();
    p.login("alice", PASSWORD).await;
    let res = p.post("/api/auth/login/totp", json!({"code": now})).await;
    let (status, title, _) = problem(res).await;
    assert_eq!(
        (status, title.as_str()),
        (401, "This code was already used")
    );
    let earlier = secret.code_at_step(step(&t) - 1);
    let (_, status) = login_with_code(&t, "alice", &earlier).await;
    assert_eq!(status, 401, "a step before the last accepted one");
    let events = event_kinds(&t).await;
    assert!(
        events.iter().any(|k| k == "totp_replay_refused"),
        "{events:?}"
    );
    assert!(events.iter().any(|k| k == "totp_enabled"));
}

#[tokio::test]
async fn a_code_sent_twice_at_once_in_one_sign_in_is_answered_as_signed_out_not_as_a_seen_code() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (secret, _) = enrol(&t, &c).await;
    t.clock.advance_ms(30_000);
    let code = secret.code_at_step(step(&t));
    let p = t.client();
    p.login("alice", PASSWORD).await;
    // The twin request has already found the partial session, as a
    // double-click's second request would, when the first completes it.
    let partial = t
        .app
        .session(&p.session_cookie().unwrap())
        .await
        .unwrap()
        .unwrap();
    let res = p.post("/api/auth/login/totp", json!({"code": code})).await;
    assert_eq!(res.status(), 200);
    let twin = t
        .app
        .totp_login(
            &partial,
            app::TotpCode::Code(code.clone().into()),
            &app::RequestMeta::default(),
        )
        .await;
    assert!(
        matches!(twin, Err(app::AppError::Unauthenticated)),
        "{:?}",
        twin.err()
    );
    // Recorded all the same, marked: a replay raced against its own
    // sign-out looks no different.
    let replays = t.store.list_events(None, 20).await.unwrap();
    let replays: Vec<_> = replays
        .iter()
        .filter(|e| e.kind.as_str() == "totp_replay_refused")
        .collect();
    assert_eq!(replays.len(), 1);
    assert!(
        replays[0].detail.contains("\"sign_in_ended\":true"),
        "{}",
        replays[0].detail
    );
    // The same code in another sign-in is a replay, answered as one.
    let p = t.client();
    p.login("alice", PASSWORD).await;
    let res = p.post("/api/auth/login/totp", json!({"code": code})).await;
    let (status, title, _) = problem(res).await;
    assert_eq!(
        (status, title.as_str()),
        (401, "This code was already used")
    );
    assert_eq!(count_events(&t, "totp_replay_refused").await, 2);
}

#[tokio::test]
async fn codes_more_than_one_step_away_are_refused() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (secret, _) = enrol(&t, &c).await;
    t.clock.advance_ms(5 * 30_000);
    let (_, status) = login_with_code(&t, "alice", &secret.code_at_step(step(&t) - 2)).await;
    assert_eq!(status, 401, "two steps ago");
    let (_, status) = login_with_code(&t, "alice", &secret.code_at_step(step(&t) + 2)).await;
    assert_eq!(status, 401, "two steps ahead");
    let (_, status) = login_with_code(&t, "alice", &secret.code_at_step(step(&t) + 1)).await;
    assert_eq!(status, 200, "one step ahead (a fast phone clock)");
}

#[tokio::test]
async fn wrong_codes_count_toward_the_login_limit() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (secret, _) = enrol(&t, &c).await;
    t.clock.advance_ms(30_000);
    let p = t.client();
    p.login("alice", PASSWORD).await;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let res = p
            .post("/api/auth/login/totp", json!({"code": "000000"}))
            .await;
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            assert!(res.headers().contains_key("retry-after"));
        }
    }
    assert!(statuses[..9].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses[10], 429, "{statuses:?}");
    // Even the right code waits out the limit.
    let res = p
        .post(
            "/api/auth/login/totp",
            json!({"code": secret.code_at_step(step(&t))}),
        )
        .await;
    assert_eq!(res.status(), 429);
}

#[tokio::test]
async fn recovery_codes_work_once_each() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (_, codes) = enrol(&t, &c).await;
    let p = t.client();
    p.login("alice", PASSWORD).await;
    let typed = codes[0].to_uppercase().replace('-', " ");
    let res = p
        .post("/api/auth/login/totp", json!({"recovery_code": typed}))
        .await;
    assert_eq!(res.status(), 200, "case and spacing do not matter");
    let q = t.client();
    q.login("alice", PASSWORD).await;
    let res = q
        .post("/api/auth/login/totp", json!({"recovery_code": codes[0]}))
        .await;
    assert_eq!(res.status(), 401, "a used recovery code is spent");
    let status: Value = p.get("/api/account/totp").await.json().await.unwrap();
    assert_eq!(status["recovery_codes_left"], 9);
    assert_stored_only_as_macs(&t, 10, &codes).await;
}

/// Password, then a recovery code: the second step's status.
async fn login_with_recovery_code(t: &TestApp, username: &str, code: &str) -> u16 {
    second_step(t, username, json!({"recovery_code": code}))
        .await
        .1
}

/// The recovery codes in an answer.
fn codes_in(v: &Value) -> Vec<String> {
    v["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn new_recovery_codes_replace_every_old_one_and_need_the_password_and_a_current_code() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (secret, old) = enrol(&t, &c).await;
    let status = login_with_recovery_code(&t, "alice", &old[0]).await;
    assert_eq!(status, 200, "one old code used");
    let url = "/api/account/totp/recovery-codes";
    // A code spent signing in is not accepted here.
    t.clock.advance_ms(30_000);
    let signed_in_with = secret.code_at_step(step(&t));
    let (other, status) = login_with_code(&t, "alice", &signed_in_with).await;
    assert_eq!(status, 200);
    let res = c
        .post(url, json!({"password": PASSWORD, "code": signed_in_with}))
        .await;
    assert_eq!(res.status(), 401, "a code spent signing in");
    t.clock.advance_ms(30_000);
    let code = secret.code_at_step(step(&t));

    let res = c
        .post(
            url,
            json!({"password": "wrong-password-here", "code": code}),
        )
        .await;
    assert_eq!(res.status(), 401, "the password is required");
    let wrong = secret.code_at_step(step(&t) - 10);
    let res = c
        .post(url, json!({"password": PASSWORD, "code": wrong}))
        .await;
    assert_eq!(res.status(), 401, "a current code is required");
    let left: Value = c.get("/api/account/totp").await.json().await.unwrap();
    assert_eq!(left["recovery_codes_left"], 9, "nothing changed");

    let res = c
        .post(url, json!({"password": PASSWORD, "code": code}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let new = codes_in(&res.json().await.unwrap());
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|n| !old.contains(n)), "{new:?}");
    let left: Value = c.get("/api/account/totp").await.json().await.unwrap();
    assert_eq!(left["recovery_codes_left"], 10);
    assert_eq!(count_events(&t, "recovery_codes_replaced").await, 1);
    assert_eq!(c.me_status().await, 200, "this session goes on");
    assert_eq!(
        other.me_status().await,
        401,
        "another session (perhaps started with a seen code) ended"
    );

    // The code that did it is spent.
    let res = c
        .post(url, json!({"password": PASSWORD, "code": code}))
        .await;
    assert_eq!(res.status(), 401, "the same code twice");
    assert_eq!(count_events(&t, "recovery_codes_replaced").await, 1);

    // Old codes, used or not, no longer sign in; a new one does, once.
    for gone in [&old[0], &old[1]] {
        let status = login_with_recovery_code(&t, "alice", gone).await;
        assert_eq!(status, 401, "an old recovery code still signs in");
    }
    let status = login_with_recovery_code(&t, "alice", &new[0]).await;
    assert_eq!(status, 200);
    let status = login_with_recovery_code(&t, "alice", &new[0]).await;
    assert_eq!(status, 401, "a new recovery code works once");
    assert_stored_only_as_macs(&t, 10, &new).await;
}

#[tokio::test]
async fn one_code_sent_twice_at_once_gives_new_recovery_codes_once() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (secret, _) = enrol(&t, &c).await;
    t.clock.advance_ms(30_000);
    let body = json!({"password": PASSWORD, "code": secret.code_at_step(step(&t))});
    let url = "/api/account/totp/recovery-codes";
    // Both may pass the code check before either commits: the step is
    // spent in the transaction that replaces the codes, so only one does.
    let (a, b) = tokio::join!(c.post(url, body.clone()), c.post(url, body));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401]);
    assert_eq!(count_events(&t, "recovery_codes_replaced").await, 1);
    let stored = db_text(&t, "SELECT code_hash FROM recovery_codes").await;
    assert_eq!(stored.len(), 10, "one set of codes, not two");
}

#[tokio::test]
async fn new_recovery_codes_need_two_factor_sign_in_on() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("pat", Role::Patient).await;
    let res = c
        .post(
            "/api/account/totp/recovery-codes",
            json!({"password": PASSWORD, "code": "123456"}),
        )
        .await;
    let (status, _, body) = problem(res).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("not on"),
        "{body}"
    );
}

#[tokio::test]
async fn enabling_and_disabling_end_other_sessions_and_are_logged() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let other = t.client();
    other.login("alice", PASSWORD).await;
    assert_eq!(other.me_status().await, 200);
    let (secret, _) = enrol(&t, &c).await;
    assert_eq!(
        other.me_status().await,
        401,
        "enabling ended the other session"
    );
    assert_eq!(c.me_status().await, 200, "but not this one");

    t.clock.advance_ms(30_000);
    let (second, status) = login_with_code(&t, "alice", &secret.code_at_step(step(&t))).await;
    assert_eq!(status, 200);
    t.clock.advance_ms(30_000);
    let res = c
        .post(
            "/api/account/totp/disable",
            json!({"password": "wrong-password-here", "code": secret.code_at_step(step(&t))}),
        )
        .await;
    assert_eq!(res.status(), 401, "the password is required");
    let res = c
        .post(
            "/api/account/totp/disable",
            json!({"password": PASSWORD, "code": secret.code_at_step(step(&t))}),
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        second.me_status().await,
        401,
        "disabling ended the other session"
    );
    let v: Value = t
        .client()
        .login("alice", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ok", "no code asked any more");
    let rows = db_text(&t, "SELECT totp_secret FROM users WHERE username = 'alice'").await;
    assert_eq!(rows[0], None);
    let kinds = event_kinds(&t).await;
    assert!(kinds.contains(&"totp_enabled".to_owned()));
    assert!(kinds.contains(&"totp_disabled".to_owned()));
}

#[tokio::test]
async fn policy_makes_clinicians_enrol_before_anything_else() {
    let t = TestApp::spawn_with(Options {
        config: AppConfig::default(),
    })
    .await;
    assert_eq!(
        t.app.config().require_totp_for,
        [Role::Clinician, Role::Admin],
        "the default policy"
    );
    t.create_user("alice", Role::Clinician).await;
    let c = t.client();
    let v: Value = c.login("alice", PASSWORD).await.json().await.unwrap();
    assert_eq!(v["status"], "totp_enrolment_required");
    assert_eq!(c.me_status().await, 401);
    assert_eq!(c.get("/api/patients").await.status(), 401);
    let res = c.post("/api/account/sessions/end-others", json!({})).await;
    assert_eq!(res.status(), 401, "only setup and enable are open");
    let before = c.session_cookie();
    let (_secret, _) = enrol(&t, &c).await;
    assert_ne!(
        c.session_cookie(),
        before,
        "enabling turned it into a new full session"
    );
    assert_eq!(c.me_status().await, 200);
    // A patient account is not required to enrol.
    t.create_user("pat", Role::Patient).await;
    let v: Value = t
        .client()
        .login("pat", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ok");
}

#[tokio::test]
async fn an_admin_resets_a_lost_second_factor() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    enrol(&t, &c).await;
    let admin = t.signed_in("root", Role::Admin).await;
    let res = c.post("/api/admin/users/alice/reset-totp", json!({})).await;
    assert_eq!(res.status(), 403, "only an admin");
    let res = admin
        .post("/api/admin/users/alice/reset-totp", json!({}))
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(c.me_status().await, 401, "the user's sessions ended");
    let v: Value = t
        .client()
        .login("alice", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "ok");
    let kinds = event_kinds(&t).await;
    assert!(kinds.contains(&"totp_reset".to_owned()));
}

#[tokio::test]
async fn rotate_rewrap_retire_while_serving_keeps_every_login_working() {
    let t = TestApp::spawn().await;
    let mut secrets = Vec::new();
    for i in 0..12 {
        let name = format!("user{i}");
        let c = t.signed_in(&name, Role::Clinician).await;
        secrets.push((name, enrol(&t, &c).await.0));
    }
    // Rotate: a new primary; everything still opens.
    let mut rotated = crypto::Keyring::from_text(&t.keys.to_text(None).unwrap(), None).unwrap();
    assert_eq!(rotated.rotate(1), "k2");
    t.app.reload_keyring(rotated).await.unwrap();
    t.clock.advance_ms(30_000);
    // Rewrap while logins go on.
    let app = t.app.clone();
    let rewrap = tokio::spawn(async move { app.rewrap(|_| {}).await.unwrap() });
    for (name, secret) in &secrets[..6] {
        let (_, status) = login_with_code(&t, name, &secret.code_at_step(step(&t))).await;
        assert_eq!(status, 200, "{name} during rewrap");
    }
    let report = rewrap.await.unwrap();
    assert_eq!(report.resealed + report.skipped, 12);
    let report = t.app.rewrap(|_| {}).await.unwrap();
    assert_eq!(
        report.already_primary, 12,
        "a second run finds nothing left"
    );
    let use_ = t.app.key_use().await.unwrap();
    assert_eq!(use_.by_key.get("k1"), None, "nothing left under k1");
    assert_eq!(use_.by_key.get("k2"), Some(&12));
    // Retire k1: every user still signs in.
    let mut retired =
        crypto::Keyring::from_text(&t.app.keyring().to_text(None).unwrap(), None).unwrap();
    retired.retire("k1").unwrap();
    t.app.reload_keyring(retired).await.unwrap();
    assert!(!t.app.keyring().has_key("k1"));
    t.clock.advance_ms(30_000);
    for (name, secret) in &secrets {
        let (_, status) = login_with_code(&t, name, &secret.code_at_step(step(&t))).await;
        assert_eq!(status, 200, "{name} after retiring k1");
    }
    // A keyring without a key that values need is refused.
    let stale = crypto::Keyring::generate(0);
    assert!(t.app.reload_keyring(stale).await.is_err());
    // A sealed value moved to another user's row does not open there.
    let rows = db_text(
        &t,
        "SELECT totp_secret FROM users WHERE username IN ('user0') ",
    )
    .await;
    let sealed = rows[0].clone().unwrap();
    let other_id = db_text(&t, "SELECT id FROM users WHERE username = 'user1'").await[0]
        .clone()
        .unwrap();
    assert!(
        t.app
            .keyring()
            .open(&sealed, &format!("users.totp_secret:{other_id}"))
            .is_err()
    );
}

#[tokio::test]
async fn the_whole_two_factor_flow_leaves_no_secret_in_the_logs() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("logcheck", Role::Clinician).await;
    let res = c
        .post("/api/account/totp/setup", json!({"password": PASSWORD}))
        .await;
    let v: Value = res.json().await.unwrap();
    let uri = v["otpauth_uri"].as_str().unwrap().to_owned();
    let secret = secret_of(&uri);
    let enable_code = secret.code_at_step(step(&t));
    let v: Value = c
        .post("/api/account/totp/enable", json!({"code": enable_code}))
        .await
        .json()
        .await
        .unwrap();
    let recovery: Vec<String> = v["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    t.clock.advance_ms(30_000);
    let code = secret.code_at_step(step(&t));
    let (p, status) = login_with_code(&t, "logcheck", &code).await;
    assert_eq!(status, 200);
    let session = p.session_cookie().unwrap();
    // Rotation and a rewrap.
    let mut rotated = crypto::Keyring::from_text(&t.keys.to_text(None).unwrap(), None).unwrap();
    rotated.rotate(1);
    t.app.reload_keyring(rotated).await.unwrap();
    t.app.rewrap(|_| {}).await.unwrap();
    t.clock.advance_ms(30_000);
    let disable_code = secret.code_at_step(step(&t));
    let res = p
        .send(
            Method::POST,
            "/api/account/totp/disable",
            Some(json!({"password": PASSWORD, "code": disable_code})),
        )
        .await;
    assert_eq!(res.status(), 204);
    tracing::info!(target: "vellum::test", "end of the two-factor flow for logcheck");
    let logs = crate::harness::logs();
    assert!(
        logs.contains("end of the two-factor flow"),
        "the capture works"
    );
    let b32 = secret.base32();
    for (what, value) in [
        ("secret", b32.expose_secret().to_owned()),
        ("otpauth URI", uri.clone()),
        ("password", PASSWORD.to_owned()),
        ("session token", session),
        ("enable code", format!("code={enable_code}")),
        ("login code", format!("\"{code}\"")),
    ] {
        assert!(!logs.contains(&value), "the logs contain the {what}");
    }
    for r in &recovery {
        assert!(
            !logs.contains(r.as_str()),
            "the logs contain a recovery code"
        );
    }
}

/// Seed 003: the database as an attacker who copied it would see it, dumped
/// by the database's own tool, holds no base32 TOTP secret.
#[tokio::test]
#[ignore = "needs the sqlite3 CLI (pg_dump on PostgreSQL); CI installs it: run with --include-ignored"]
async fn a_dump_of_the_whole_database_holds_no_totp_secret() {
    let t = TestApp::spawn().await;
    let mut secrets = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let c = t.signed_in(name, Role::Clinician).await;
        secrets.push(enrol(&t, &c).await.0);
    }
    let out = if t.db.is_postgres() {
        std::process::Command::new("pg_dump")
            .arg(&t.db.url)
            .output()
            .expect("pg_dump")
    } else {
        let path = t.db.url.strip_prefix("sqlite://").unwrap();
        std::process::Command::new("sqlite3")
            .args([path, ".dump"])
            .output()
            .expect("sqlite3")
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(dump.contains("vlm1.k1."), "the dump has the sealed values");
    assert!(
        !has_base32_run(&dump),
        "the dump holds a [A-Z2-7]{{32}} run"
    );
    for s in &secrets {
        assert!(!dump.contains(s.base32().expose_secret()));
    }
}

#[tokio::test]
async fn a_working_second_factor_is_never_replaced_by_a_new_enrolment() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (secret, _) = enrol(&t, &c).await;
    let res = c
        .post("/api/account/totp/setup", json!({"password": PASSWORD}))
        .await;
    let (status, _, body) = problem(res).await;
    assert_eq!(status, 409, "{body}");
    let res = c
        .post(
            "/api/account/totp/enable",
            json!({"code": secret.code_at_step(step(&t))}),
        )
        .await;
    assert_eq!(res.status(), 409);
    let rows = db_text(
        &t,
        "SELECT totp_pending FROM users WHERE username = 'alice'",
    )
    .await;
    assert_eq!(rows[0], None, "no new secret is waiting");
}

#[tokio::test]
async fn parallel_code_guesses_cannot_exceed_the_limit() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    enrol(&t, &c).await;
    let p = t.client();
    p.login("alice", PASSWORD).await;
    let guesses = (0..30).map(|i| {
        let p = &p;
        async move {
            p.post(
                "/api/auth/login/totp",
                json!({"code": format!("{:06}", 100_000 + i)}),
            )
            .await
            .status()
            .as_u16()
        }
    });
    let statuses = futures_join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(checked <= 10, "{checked} codes were checked: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
}

/// Runs the futures concurrently on this task.
async fn futures_join_all<F: std::future::Future<Output = u16>>(
    futures: impl Iterator<Item = F>,
) -> Vec<u16> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out = vec![0; set.len()];
    let mut pending: Vec<usize> = (0..set.len()).collect();
    std::future::poll_fn(|cx| {
        pending.retain(|&i| match set[i].as_mut().poll(cx) {
            std::task::Poll::Ready(v) => {
                out[i] = v;
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out
}

#[tokio::test]
async fn roles_that_require_two_factor_cannot_turn_it_off_and_admins_cannot_reset_their_own() {
    let t = TestApp::spawn_with(Options {
        config: AppConfig::default(),
    })
    .await;
    t.create_user("root", Role::Admin).await;
    let admin = t.client();
    admin.login("root", PASSWORD).await;
    let (secret, _) = enrol(&t, &admin).await;
    t.clock.advance_ms(30_000);
    let res = admin
        .post(
            "/api/account/totp/disable",
            json!({"password": PASSWORD, "code": secret.code_at_step(step(&t))}),
        )
        .await;
    assert_eq!(res.status(), 409, "an admin must keep two-factor sign-in");
    let res = admin
        .post("/api/admin/users/root/reset-totp", json!({}))
        .await;
    assert_eq!(res.status(), 409, "not one's own");
    // Nor through an API token.
    let v: Value = admin
        .post(
            "/api/account/tokens",
            json!({"name": "ops", "scope": "read-write"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let tok = v["token"].as_str().unwrap();
    t.create_user("bob", Role::Patient).await;
    let res = reqwest::Client::new()
        .post(format!("{}/api/admin/users/bob/reset-totp", t.base))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        403,
        "an API token cannot reset a second factor"
    );
}

/// Alice, her user, and a fixed time for sessions made straight in the
/// store.
async fn alice_at_a_fixed_time(t: &TestApp) -> (domain::Username, domain::User, domain::Timestamp) {
    let alice = domain::Username::parse("alice").unwrap();
    let user = t
        .store
        .user_by_username(&alice)
        .await
        .unwrap()
        .unwrap()
        .user;
    (
        alice,
        user,
        domain::Timestamp::from_millis(1_800_000_000_000),
    )
}

/// A session of `user`'s at `stage`, its token hash `hash`.
fn session_record(
    user: domain::UserId,
    hash: &str,
    stage: store::SessionStage,
    now: domain::Timestamp,
) -> store::SessionRecord {
    store::SessionRecord {
        token_hash: hash.to_owned(),
        user_id: Some(user),
        csrf_tag: "tag".to_owned(),
        created_at: now,
        last_seen_at: now,
        stage,
        issued_role: Some(domain::Role::Clinician),
    }
}

#[tokio::test]
async fn a_second_factor_is_spent_once_and_a_sign_in_that_finds_it_spent_writes_nothing() {
    use domain::{NewSecurityEvent, SecurityEventKind};
    use store::{SecondFactor, SessionStage};

    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    enrol(&t, &c).await;
    let (alice, user, now) = alice_at_a_fixed_time(&t).await;
    let record = |hash: &str, stage| session_record(user.id, hash, stage, now);
    // Partial sessions, each waiting for its second factor.
    for partial in ["p1", "p2", "p3", "p4"] {
        t.store
            .insert_session(&record(partial, SessionStage::Totp))
            .await
            .unwrap();
    }
    let event = [NewSecurityEvent::new(SecurityEventKind::LoginSucceeded)];
    let sign_in = |partial: &'static str, full: &'static str, factor| {
        let (store, record) = (t.store.clone(), record(full, SessionStage::Full));
        let (event, alice) = (event.clone(), alice.clone());
        async move {
            store
                .start_session(Some(partial), &record, &alice, Some(factor), now, &event)
                .await
                .unwrap()
        }
    };
    let next = step(&t) + 1;
    let events = event_kinds(&t).await.len();
    assert!(sign_in("p1", "f1", SecondFactor::Step(next)).await);
    // The same step again in another sign-in (a replay), a recovery code
    // never issued, the same step again in the sign-in it completed (one
    // code sent twice at once), and a new step in a partial session that
    // has ended: refused, and nothing of them written — no session, no
    // event, the partial session still waiting, the step not spent.
    assert!(!sign_in("p2", "f2", SecondFactor::Step(next)).await);
    assert!(!sign_in("p2", "f3", SecondFactor::RecoveryCode("no-such-code")).await);
    assert!(!sign_in("p1", "f7", SecondFactor::Step(next)).await);
    assert!(!sign_in("gone", "f4", SecondFactor::Step(next + 1)).await);
    for never in ["f2", "f3", "f4", "f7"] {
        assert!(t.store.session(never).await.unwrap().is_none(), "{never}");
    }
    assert!(t.store.session("p2").await.unwrap().is_some());
    assert!(
        t.store.session("p1").await.unwrap().is_none(),
        "p1 was replaced"
    );
    assert_eq!(event_kinds(&t).await.len(), events + 1);
    assert!(
        sign_in("p3", "f5", SecondFactor::Step(next + 1)).await,
        "the step the ended session tried was not spent"
    );
    // Two-factor sign-in turned off: that ends the user's sessions, and a
    // code's step is no longer spent, even in a partial session begun after.
    t.store
        .disable_totp(user.id, None, None, store::ChangedBy::Operator, now, &[])
        .await
        .unwrap();
    assert!(!sign_in("p4", "f6", SecondFactor::Step(next + 2)).await);
    t.store
        .insert_session(&record("p5", SessionStage::Totp))
        .await
        .unwrap();
    assert!(!sign_in("p5", "f8", SecondFactor::Step(next + 2)).await);
}

#[tokio::test]
async fn enabling_two_factor_upgrades_the_enrolling_session_in_the_same_transaction_or_not_at_all()
{
    use store::SessionStage;

    let t = TestApp::spawn().await;
    t.signed_in("alice", Role::Clinician).await;
    let (_, user, now) = alice_at_a_fixed_time(&t).await;
    let record = |hash: &str, stage| session_record(user.id, hash, stage, now);
    let enable = |enrolling: &'static str, full: &'static str| {
        let (store, full) = (t.store.clone(), record(full, SessionStage::Full));
        async move {
            store
                .enable_totp(
                    user.id,
                    "vlm1.sealed",
                    7,
                    &["mac".to_owned()],
                    Some(enrolling),
                    Some(&full),
                    now,
                    &[],
                )
                .await
        }
    };
    let stage_of = |hash: &'static str| {
        let store = t.store.clone();
        async move { store.session(hash).await.unwrap().map(|(s, _)| s.stage) }
    };
    t.store
        .insert_session(&record("e1", SessionStage::Enrol))
        .await
        .unwrap();
    enable("e1", "f1").await.unwrap();
    assert_eq!(stage_of("e1").await, None, "the enrolling session stayed");
    assert_eq!(stage_of("f1").await, Some(SessionStage::Full));
    // Off again; a new enrolling session whose upgrade cannot be stored
    // (its token hash is taken, by f1): two-factor is not left on without
    // it, and the enrolling session stays as it was.
    t.store
        .disable_totp(
            user.id,
            None,
            Some("f1"),
            store::ChangedBy::Holder,
            now,
            &[],
        )
        .await
        .unwrap();
    t.store
        .insert_session(&record("e2", SessionStage::Enrol))
        .await
        .unwrap();
    assert!(enable("e2", "f1").await.is_err());
    let state = t.store.totp_state(user.id).await.unwrap();
    assert!(
        state.secret.is_none(),
        "two-factor went on without its upgrade"
    );
    assert_eq!(stage_of("e2").await, Some(SessionStage::Enrol));
}
