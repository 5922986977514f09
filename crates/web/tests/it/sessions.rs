//! Server-side sessions: rotation, expiry, revocation.

use domain::Role;
use reqwest::Method;

use crate::harness::{PASSWORD, TestApp};

const MINUTE: i64 = 60_000;

#[tokio::test]
async fn session_token_differs_before_and_after_login() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    let c = t.client();
    c.get("/api/auth/csrf").await;
    let before = c.session_cookie().expect("a pre-login session");
    assert_eq!(
        c.me_status().await,
        401,
        "a pre-login session is not signed in"
    );
    assert_eq!(c.login("alice", PASSWORD).await.status(), 200);
    let after = c.session_cookie().unwrap();
    assert_ne!(before, after);
    // The pre-login session is gone on the server.
    assert!(t.app.session(&before).await.unwrap().is_none());
}

#[tokio::test]
async fn stored_session_holds_only_a_hash_of_the_token() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let token = c.session_cookie().unwrap();
    assert_eq!(token.len(), 43, "256 bits, base64url");
    assert!(
        t.store.session(&token).await.unwrap().is_none(),
        "not stored as is"
    );
    assert!(
        t.store
            .session(&crypto::token_hash(&token))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn logout_really_revokes_the_session() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let token = c.session_cookie().unwrap();
    assert_eq!(
        c.send(Method::POST, "/api/auth/logout", None)
            .await
            .status(),
        204
    );
    assert_eq!(c.me_status().await, 401);
    // Replaying the old cookie opens nothing: the row is gone.
    let replay = t.client();
    replay.set_cookie("vellum-session", &token);
    assert_eq!(replay.me_status().await, 401);
}

#[tokio::test]
async fn idle_session_expires_after_fifteen_minutes() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    t.clock.advance_ms(14 * MINUTE);
    assert_eq!(c.me_status().await, 200);
    t.clock.advance_ms(14 * MINUTE);
    assert_eq!(c.me_status().await, 200, "use keeps it alive");
    t.clock.advance_ms(16 * MINUTE);
    assert_eq!(c.me_status().await, 401);
}

#[tokio::test]
async fn session_expires_after_twelve_hours_however_busy() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    for _ in 0..(12 * 60 / 10) {
        t.clock.advance_ms(10 * MINUTE);
        if c.me_status().await != 200 {
            panic!("ended before the absolute timeout");
        }
    }
    t.clock.advance_ms(10 * MINUTE);
    assert_eq!(c.me_status().await, 401);
}

#[tokio::test]
async fn password_change_ends_other_sessions_and_keeps_this_one() {
    let t = TestApp::spawn().await;
    let here = t.signed_in("alice", Role::Clinician).await;
    let elsewhere = t.client();
    assert_eq!(elsewhere.login("alice", PASSWORD).await.status(), 200);
    let res = here
        .post(
            "/api/account/password",
            serde_json::json!({"current_password": PASSWORD, "new_password": "Otter-violin-73-granite"}),
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(here.me_status().await, 200);
    assert_eq!(elsewhere.me_status().await, 401);
    assert_eq!(t.client().login("alice", PASSWORD).await.status(), 401);
    assert_eq!(
        t.client()
            .login("alice", "Otter-violin-73-granite")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn password_change_needs_the_current_password_and_a_strong_new_one() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let wrong = c
        .post(
            "/api/account/password",
            serde_json::json!({"current_password": "not-my-password-at-all", "new_password": "Otter-violin-73-granite"}),
        )
        .await;
    assert_eq!(wrong.status(), 422);
    let weak = c
        .post(
            "/api/account/password",
            serde_json::json!({"current_password": PASSWORD, "new_password": "password1234"}),
        )
        .await;
    assert_eq!(weak.status(), 422);
    let body: serde_json::Value = weak.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "password");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("too easy to guess")
    );
}

#[tokio::test]
async fn sign_out_everywhere_else_ends_the_other_sessions() {
    let t = TestApp::spawn().await;
    let here = t.signed_in("alice", Role::Clinician).await;
    let elsewhere = t.client();
    assert_eq!(elsewhere.login("alice", PASSWORD).await.status(), 200);
    let res = here
        .send(Method::POST, "/api/account/sessions/end-others", None)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(here.me_status().await, 200);
    assert_eq!(elsewhere.me_status().await, 401);
}

#[tokio::test]
async fn deactivating_a_user_ends_their_sessions() {
    let t = TestApp::spawn().await;
    let admin = t.signed_in("root", Role::Admin).await;
    let alice = t.signed_in("alice", Role::Clinician).await;
    let res = admin
        .send(Method::POST, "/api/admin/users/alice/deactivate", None)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(alice.me_status().await, 401);
    assert_eq!(t.client().login("alice", PASSWORD).await.status(), 401);
}

#[tokio::test]
async fn a_session_made_on_one_server_works_and_ends_on_another() {
    let t = TestApp::spawn().await;
    let sibling = t.spawn_sibling().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let on_b = sibling.client();
    on_b.set_cookie("vellum-session", &c.session_cookie().unwrap());
    on_b.set_cookie("vellum-csrf", &c.csrf_cookie().unwrap());
    assert_eq!(on_b.me_status().await, 200);
    assert_eq!(
        on_b.send(Method::POST, "/api/auth/logout", None)
            .await
            .status(),
        204
    );
    assert_eq!(c.me_status().await, 401);
}
