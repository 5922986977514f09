//! First run: a single-use setup link valid for one hour.

use secrecy::ExposeSecret;

use crate::harness::{PASSWORD, TestApp};

#[tokio::test]
async fn setup_link_creates_the_first_administrator_once() {
    let t = TestApp::spawn().await;
    let link = t.app.issue_setup_link().await.unwrap().unwrap();
    let token = link.token.expose_secret().to_owned();
    assert_eq!(token.len(), 43, "256 random bits");
    let c = t.client();
    c.get("/api/auth/csrf").await;
    let body = serde_json::json!({"token": token, "username": "root", "password": PASSWORD});
    assert_eq!(c.post("/api/setup", body.clone()).await.status(), 201);
    let again = serde_json::json!({"token": token, "username": "root2", "password": PASSWORD});
    assert_eq!(
        c.post("/api/setup", again).await.status(),
        404,
        "single use"
    );
    assert_eq!(c.login("root", PASSWORD).await.status(), 200);
    let me: serde_json::Value = c.get("/api/auth/me").await.json().await.unwrap();
    assert_eq!(me["role"], "admin");
    assert!(
        t.app.issue_setup_link().await.unwrap().is_none(),
        "no link once accounts exist"
    );
}

#[tokio::test]
async fn setup_link_expires_after_an_hour() {
    let t = TestApp::spawn().await;
    let link = t.app.issue_setup_link().await.unwrap().unwrap();
    let token = link.token.expose_secret().to_owned();
    t.clock.advance_ms(61 * 60_000);
    let c = t.client();
    assert_eq!(c.get(&format!("/setup/{token}")).await.status(), 404);
    c.get("/api/auth/csrf").await;
    let body = serde_json::json!({"token": token, "username": "root", "password": PASSWORD});
    assert_eq!(c.post("/api/setup", body).await.status(), 404);
    assert_eq!(t.store.count_users().await.unwrap(), 0);
}

#[tokio::test]
async fn setup_refuses_a_weak_password_and_keeps_the_link_usable() {
    let t = TestApp::spawn().await;
    let link = t.app.issue_setup_link().await.unwrap().unwrap();
    let token = link.token.expose_secret().to_owned();
    let c = t.client();
    c.get("/api/auth/csrf").await;
    let weak = serde_json::json!({"token": token, "username": "root", "password": "adminadmin12"});
    assert_eq!(c.post("/api/setup", weak).await.status(), 422);
    let good = serde_json::json!({"token": token, "username": "root", "password": PASSWORD});
    assert_eq!(c.post("/api/setup", good).await.status(), 201);
}
