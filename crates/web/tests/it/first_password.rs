//! A password chosen by someone else is temporary (safety file, H017): an
//! account an administrator creates signs in to a session that can do
//! nothing but choose its holder's own password — after the second factor
//! where one is required — and only then is signed in.

use app::{Actor, AppConfig, FirstPassword, RequestMeta};
use domain::Role;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::harness::{Client, Options, PASSWORD, TestApp, problem};

/// The password an administrator gives a new colleague.
const GIVEN: &str = "Handed-over-plum-41-lantern";
/// The one the colleague chooses.
const OWN: &str = "Quiet-heron-73-marmalade";

/// An administrator creates `username` through the API with `GIVEN`.
async fn created_by_an_admin(t: &TestApp, username: &str, role: Role) {
    let admin = t.signed_in("root", Role::Admin).await;
    let res = admin
        .post(
            "/api/admin/users",
            json!({"username": username, "role": role.as_str(), "password": GIVEN}),
        )
        .await;
    assert_eq!(res.status(), 201);
}

async fn status_of(res: reqwest::Response) -> Value {
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["status"].clone()
}

async fn event_kinds(t: &TestApp) -> Vec<String> {
    t.store
        .list_events(None, 50)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.as_str().to_owned())
        .collect()
}

#[tokio::test]
async fn an_account_an_administrator_creates_must_choose_its_own_password_before_anything_else() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    created_by_an_admin(&t, "bob", Role::Clinician).await;

    let bob = t.client();
    assert_eq!(
        status_of(bob.login("bob", GIVEN).await).await,
        "password_change_required"
    );
    let partial = bob.session_cookie().unwrap();
    // The session can reach nothing but the password change.
    let (status, _, body) = problem(bob.get("/api/auth/me").await).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Choose your own password"),
        "{body}"
    );
    assert_eq!(bob.get("/api/patients?q=smi").await.status(), 401);
    let res = bob
        .post("/api/account/tokens", json!({"name": "mine"}))
        .await;
    assert_eq!(res.status(), 401);

    // The given password is checked, and the new one must differ from it.
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let (status, _, body) =
        problem(bob.post("/api/account/password", change(OWN, OWN)).await).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "current_password", "{body}");
    // A wrong guess counts toward the sign-in limits, like a failed sign-in.
    let failures = event_kinds(&t).await;
    assert!(failures.iter().any(|k| k == "login_failed"), "{failures:?}");
    let (status, _, body) = problem(
        bob.post("/api/account/password", change(GIVEN, GIVEN))
            .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "new_password", "{body}");
    assert_eq!(bob.me_status().await, 401);

    // Choosing one's own signs in: a new session, the partial one ended.
    let res = bob.post("/api/account/password", change(GIVEN, OWN)).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["user"]["username"], "bob");
    let full = bob.session_cookie().unwrap();
    assert_ne!(full, partial, "a new session token");
    assert_eq!(bob.me_status().await, 200);
    let stale = t.client();
    stale.set_cookie("vellum-session", &partial);
    assert_eq!(stale.me_status().await, 401);

    // The given password no longer works; the own one signs in at once.
    assert_eq!(t.client().login("bob", GIVEN).await.status(), 401);
    assert_eq!(status_of(t.client().login("bob", OWN).await).await, "ok");
    // The operator's account (the harness's) was never asked.
    assert_eq!(
        status_of(t.client().login("alice", PASSWORD).await).await,
        "ok"
    );

    let name = domain::Username::parse("bob").unwrap();
    let rec = t.store.user_by_username(&name).await.unwrap().unwrap();
    assert!(!rec.must_change_password);
    let kinds = event_kinds(&t).await;
    assert!(kinds.iter().any(|k| k == "password_changed"), "{kinds:?}");
    let created = t
        .store
        .list_events(None, 50)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind.as_str() == "user_created" && e.username.as_deref() == Some("bob"))
        .unwrap();
    let detail: Value = serde_json::from_str(&created.detail).unwrap();
    assert_eq!(detail["must_change_password"], true, "{detail}");
}

#[tokio::test]
async fn with_two_factor_required_the_second_factor_comes_before_the_new_password() {
    let t = TestApp::spawn_with(Options {
        config: AppConfig::default(),
    })
    .await;
    assert!(t.app.config().require_totp_for.contains(&Role::Clinician));
    // The operator's administrator enrols too (the default policy).
    t.create_user("root", Role::Admin).await;
    let admin = t.client();
    assert_eq!(
        status_of(admin.login("root", PASSWORD).await).await,
        "totp_enrolment_required"
    );
    enrol(&t, &admin, PASSWORD, "ok").await;
    let res = admin
        .post(
            "/api/admin/users",
            json!({"username": "bob", "role": "clinician", "password": GIVEN}),
        )
        .await;
    assert_eq!(res.status(), 201);

    let bob = t.client();
    assert_eq!(
        status_of(bob.login("bob", GIVEN).await).await,
        "totp_enrolment_required"
    );
    // Enrolling does not yet sign in: the password comes next.
    let secret = enrol(&t, &bob, GIVEN, "password_change_required").await;
    assert_eq!(bob.me_status().await, 401);
    // Left there, the next sign-in comes back to it after the code.
    let bob = t.client();
    assert_eq!(
        status_of(bob.login("bob", GIVEN).await).await,
        "totp_required"
    );
    let code = secret.code_at_step(crate::totp::step(&t) + 1);
    assert_eq!(
        status_of(
            bob.post("/api/auth/login/totp", json!({"code": code}))
                .await
        )
        .await,
        "password_change_required"
    );
    assert_eq!(bob.me_status().await, 401);
    let signed_in = t.store.list_events(None, 1).await.unwrap().remove(0);
    assert_eq!(signed_in.kind, "login_succeeded");
    assert!(
        signed_in.detail.contains("\"stage\":\"password\""),
        "the log says the sign-in is not complete: {}",
        signed_in.detail
    );
    let res = bob
        .post(
            "/api/account/password",
            json!({"current_password": GIVEN, "new_password": OWN}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(bob.me_status().await, 200);
}

/// Sets up two-factor sign-in for `c` with `password`; asserts the status
/// enabling answers; gives the secret.
async fn enrol(t: &TestApp, c: &Client, password: &str, then: &str) -> crypto::totp::TotpSecret {
    let res = c
        .post("/api/account/totp/setup", json!({"password": password}))
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let uri = v["otpauth_uri"].as_str().unwrap();
    let b32 = uri
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("secret="))
        .unwrap();
    let secret = crypto::totp::TotpSecret::from_base32(b32).unwrap();
    let code = secret.code_at_step(crate::totp::step(t));
    let res = c
        .post("/api/account/totp/enable", json!({"code": code}))
        .await;
    assert_eq!(status_of(res).await, then);
    secret
}

#[tokio::test]
async fn the_operator_says_when_a_password_it_sets_is_temporary() {
    let t = TestApp::spawn().await;
    t.app
        .create_user_with(
            Actor::Operator,
            "carol",
            Role::Clinician,
            SecretString::from(GIVEN),
            FirstPassword::Temporary,
            &RequestMeta::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        status_of(t.client().login("carol", GIVEN).await).await,
        "password_change_required"
    );
    // An administrator's is temporary whatever the call says.
    t.create_user("root", Role::Admin).await;
    let root = domain::Username::parse("root").unwrap();
    let admin = t.store.user_by_username(&root).await.unwrap().unwrap().user;
    t.app
        .create_user_with(
            Actor::User(&admin),
            "dave",
            Role::Clinician,
            SecretString::from(GIVEN),
            FirstPassword::AsGiven,
            &RequestMeta::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        status_of(t.client().login("dave", GIVEN).await).await,
        "password_change_required"
    );
}

#[tokio::test]
async fn two_changes_sent_at_once_from_one_first_sign_in_leave_one_password_and_one_session() {
    let t = TestApp::spawn().await;
    created_by_an_admin(&t, "bob", Role::Clinician).await;
    let bob = t.client();
    assert_eq!(
        status_of(bob.login("bob", GIVEN).await).await,
        "password_change_required"
    );
    let (second, third) = ("Second-choice-58-walrus", "Third-choice-29-pelican");
    let change = |new: &'static str| {
        bob.post(
            "/api/account/password",
            json!({"current_password": GIVEN, "new_password": new}),
        )
    };
    let (a, b) = tokio::join!(change(second), change(third));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    // One change; the other is refused, whichever way it met the first:
    // its partial session ended under it (401), or it went out with the
    // old CSRF token beside the new session's cookie (403), or after the
    // change was whole (422: the given password is no longer current).
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!([401, 403, 422].contains(&statuses[1]), "{statuses:?}");
    let kept = if a.status() == 200 { second } else { third };
    let lost = if kept == second { third } else { second };
    assert_eq!(status_of(t.client().login("bob", kept).await).await, "ok");
    assert_eq!(t.client().login("bob", lost).await.status(), 401);
}

#[tokio::test]
async fn a_first_sign_in_that_has_ended_is_never_turned_into_a_full_session() {
    use store::{SessionRecord, SessionStage};

    let t = TestApp::spawn().await;
    created_by_an_admin(&t, "bob", Role::Clinician).await;
    let name = domain::Username::parse("bob").unwrap();
    let bob = t.store.user_by_username(&name).await.unwrap().unwrap();
    let now = domain::Timestamp(1);
    let record = |hash: &str, stage| SessionRecord {
        token_hash: hash.to_owned(),
        user_id: Some(bob.user.id),
        csrf_tag: "tag".to_owned(),
        created_at: now,
        last_seen_at: now,
        stage,
        issued_role: Some(Role::Clinician),
    };
    t.store
        .insert_session(&record("p1", SessionStage::Password))
        .await
        .unwrap();
    let set = |keep: &'static str, full: &'static str, hash: &'static str| {
        let (store, record) = (t.store.clone(), record(full, SessionStage::Full));
        async move {
            store
                .set_password(bob.user.id, hash, Some(keep), Some(&record), now, &[])
                .await
        }
    };
    let hash_now = || async {
        t.store
            .user_by_username(&name)
            .await
            .unwrap()
            .unwrap()
            .password_hash
    };
    // A partial session that has ended (signed out, ended by an
    // administrator): nothing written, no session.
    let gone = set("gone", "f1", "h1").await;
    assert!(
        matches!(gone, Err(store::StoreError::SessionEnded)),
        "{gone:?}"
    );
    assert!(t.store.session("f1").await.unwrap().is_none());
    assert_eq!(hash_now().await, bob.password_hash);
    // The real one: replaced, the password the holder's own.
    set("p1", "f2", "h2").await.unwrap();
    assert!(t.store.session("p1").await.unwrap().is_none());
    assert!(t.store.session("f2").await.unwrap().is_some());
    assert_eq!(hash_now().await, "h2");
    let rec = t.store.user_by_username(&name).await.unwrap().unwrap();
    assert!(!rec.must_change_password);
    // The same partial session again (a second change sent with it): refused.
    let again = set("p1", "f3", "h3").await;
    assert!(
        matches!(again, Err(store::StoreError::SessionEnded)),
        "{again:?}"
    );
    assert!(t.store.session("f3").await.unwrap().is_none());
    assert_eq!(hash_now().await, "h2");
}

#[tokio::test]
async fn an_administrator_resets_a_forgotten_password_to_a_temporary_one_and_the_accounts_sessions_end()
 {
    let t = TestApp::spawn().await;
    let alice = t.signed_in("alice", Role::Clinician).await;
    let admin = t.signed_in("root", Role::Admin).await;
    let reset = |who: &str, password: &str| {
        let (path, body) = (
            format!("/api/admin/users/{who}/reset-password"),
            json!({"password": password}),
        );
        let admin = &admin;
        async move { admin.post(&path, body).await }
    };
    let res = reset("alice", GIVEN).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["username"], "alice");
    // Her sessions have ended; the old password no longer works; the new
    // one is temporary.
    assert_eq!(alice.me_status().await, 401);
    assert_eq!(t.client().login("alice", PASSWORD).await.status(), 401);
    let alice = t.client();
    assert_eq!(
        status_of(alice.login("alice", GIVEN).await).await,
        "password_change_required"
    );
    let res = alice
        .post(
            "/api/account/password",
            json!({"current_password": GIVEN, "new_password": OWN}),
        )
        .await;
    assert_eq!(status_of(res).await, "ok");
    let event = t
        .store
        .list_events(None, 50)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "password_reset")
        .unwrap();
    assert_eq!(event.username.as_deref(), Some("alice"));
    assert!(
        event.detail.contains("\"actor\":\"root\""),
        "{}",
        event.detail
    );
    assert!(!event.detail.contains(GIVEN));

    // Refused: a weak password, no such account, one's own, a non-admin.
    let (status, _, body) = problem(reset("alice", "alicealice12").await).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(reset("nobody", GIVEN).await.status(), 404);
    assert_eq!(reset("root", GIVEN).await.status(), 409);
    let res = alice
        .post(
            "/api/admin/users/root/reset-password",
            json!({"password": GIVEN}),
        )
        .await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn an_administrators_api_token_changes_no_account() {
    use reqwest::Method;

    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    let admin = t.signed_in("root", Role::Admin).await;
    let (token, _) = crate::tokens::token(&admin, "read-write").await;
    let tries = [
        (
            "/api/admin/users",
            json!({"username": "eve", "role": "admin", "password": GIVEN}),
        ),
        ("/api/admin/users/alice/deactivate", json!({})),
        (
            "/api/admin/users/alice/reset-password",
            json!({"password": GIVEN}),
        ),
        ("/api/admin/users/alice/reset-totp", json!({})),
        (
            "/api/admin/users/alice/link-patient",
            json!({"patient_id": "00000000-0000-4000-8000-000000000000"}),
        ),
    ];
    for (path, body) in tries {
        let res = crate::tokens::bearer(&t, Method::POST, path, &token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, _, problem) = problem(res).await;
        assert_eq!(status, 403, "{path}: {problem}");
        assert_eq!(problem["type"], "/problems/session-required", "{path}");
    }
    // Nothing changed: alice signs in with her password, eve does not exist.
    assert_eq!(
        status_of(t.client().login("alice", PASSWORD).await).await,
        "ok"
    );
    assert_eq!(t.client().login("eve", GIVEN).await.status(), 401);
    // Reading the security log with a token is still allowed.
    let res = crate::tokens::bearer(&t, Method::GET, "/api/admin/security-events", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
