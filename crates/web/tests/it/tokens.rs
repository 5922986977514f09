//! API tokens: bearer requests act as their user within their scope, carry
//! no ambient credential (so no CSRF token), and stop at expiry or revocation.

use domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::clinical::{nhs, patient_json};
use crate::harness::{Client, PASSWORD, TestApp, problem};

pub(crate) async fn token(c: &Client, scope: &str) -> (String, String) {
    let res = c
        .post(
            "/api/account/tokens",
            json!({"name": "lab system", "scope": scope}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    (
        v["token"].as_str().unwrap().to_owned(),
        v["id"].as_str().unwrap().to_owned(),
    )
}

pub(crate) fn bearer(
    t: &TestApp,
    method: Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    // A plain client with no cookies at all: the token is the only credential.
    reqwest::Client::new()
        .request(method, format!("{}{path}", t.base))
        .bearer_auth(token)
}

#[tokio::test]
async fn read_write_token_acts_as_its_user_without_a_csrf_token() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (tok, _) = token(&c, "read-write").await;
    assert!(tok.starts_with("vlm_") && tok.len() == 4 + 43, "{tok}");
    let me: Value = bearer(&t, Method::GET, "/api/auth/me", &tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "alice");
    let res = bearer(&t, Method::POST, "/api/patients", &tok)
        .json(&patient_json("Token", "Made", &nhs(40)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // Stored only as a hash.
    let rows = t
        .store
        .list_api_tokens(me["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_ne!(rows[0].token_hash, tok);
    assert_eq!(rows[0].token_hash, crypto::token_hash(&tok));
    assert!(rows[0].last_used_at.is_some(), "use updates last-used");
    let listed: Value = c.get("/api/account/tokens").await.json().await.unwrap();
    assert!(
        !listed.to_string().contains(&tok),
        "the list never shows the secret"
    );
}

#[tokio::test]
async fn read_only_token_cannot_change_anything() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (tok, _) = token(&c, "read").await;
    assert_eq!(
        bearer(&t, Method::GET, "/api/patients", &tok)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let res = bearer(&t, Method::POST, "/api/patients", &tok)
        .json(&patient_json("Read", "Only", &nhs(41)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn revoked_and_expired_tokens_open_nothing() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (tok, id) = token(&c, "read").await;
    assert_eq!(
        c.send(
            Method::POST,
            &format!("/api/account/tokens/{id}/revoke"),
            None
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        bearer(&t, Method::GET, "/api/auth/me", &tok)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let (tok2, _) = token(&c, "read").await;
    assert_eq!(
        bearer(&t, Method::GET, "/api/auth/me", &tok2)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    t.clock.advance_ms(91 * 86_400_000);
    assert_eq!(
        bearer(&t, Method::GET, "/api/auth/me", &tok2)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        bearer(&t, Method::GET, "/api/auth/me", "vlm_made-up")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn tokens_cannot_change_passwords_or_mint_tokens() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (tok, _) = token(&c, "read-write").await;
    let res = bearer(&t, Method::POST, "/api/account/tokens", &tok)
        .json(&json!({"name": "x", "scope": "read-write"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = bearer(&t, Method::POST, "/api/account/password", &tok)
        .json(&json!({"current_password": crate::harness::PASSWORD, "new_password": "Otter-violin-73-granite"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn a_bearer_request_that_also_carries_cookies_still_needs_the_csrf_token() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (tok, _) = token(&c, "read-write").await;
    // The browser's cookies ride along: this is not a cookie-free request,
    // so the CSRF guard applies.
    let res = c
        .http
        .post(c.url("/api/patients"))
        .bearer_auth(&tok)
        .json(&patient_json("Mixed", "Creds", &nhs(42)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn every_change_the_api_document_keeps_for_browser_sessions_refuses_an_api_token() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    let admin = t.signed_in("root", Role::Admin).await;
    let (tok, _) = token(&admin, "read-write").await;
    let doc: Value = t
        .client()
        .get("/api/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let mut tried = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let Some(security) = op["security"].as_array() else {
                continue;
            };
            if security.iter().any(|s| s.get("bearer").is_some()) {
                continue;
            }
            let url = path.replace("{username}", "alice").replace("{id}", "x");
            let method: Method = method.to_uppercase().parse().unwrap();
            let res = bearer(&t, method.clone(), &url, &tok)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let (status, _, body) = problem(res).await;
            assert_eq!(status, 403, "{method} {path}: {body}");
            assert_eq!(
                body["type"], "/problems/session-required",
                "{method} {path}"
            );
            tried += 1;
        }
    }
    assert!(
        tried >= 14,
        "only {tried} browser-only changes in the document"
    );
    // Nothing changed: alice signs in with her password.
    assert_eq!(t.client().login("alice", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn an_administrator_revokes_every_api_token_of_an_account_and_its_sessions_are_kept() {
    let t = TestApp::spawn().await;
    let admin = t.signed_in("root", Role::Admin).await;
    let bob = t.signed_in("bob", Role::Clinician).await;
    let (one, _) = token(&bob, "read").await;
    let (two, _) = token(&bob, "read-write").await;
    let (roots, _) = token(&admin, "read-write").await;
    let me = |token: String| {
        let req = bearer(&t, Method::GET, "/api/auth/me", &token).send();
        async move { req.await.unwrap().status().as_u16() }
    };
    let revoke = |who: &str| format!("/api/admin/users/{who}/revoke-tokens");

    // Not a clinician, not with an API token (a person at a browser must).
    assert_eq!(
        bob.send(Method::POST, &revoke("root"), None).await.status(),
        403
    );
    let res = bearer(&t, Method::POST, &revoke("bob"), &roots)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(me(one.clone()).await, 200, "nothing revoked yet");

    let res = admin.send(Method::POST, &revoke("bob"), None).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v, json!({"username": "bob", "revoked": 2}));
    assert_eq!(me(one).await, 401);
    assert_eq!(me(two).await, 401);
    assert_eq!(me(roots).await, 200, "another account's tokens are kept");
    assert_eq!(bob.me_status().await, 200, "bob's sessions are kept");
    let listed: Value = bob.get("/api/account/tokens").await.json().await.unwrap();
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| !t["revoked_at"].is_null()),
        "{listed}"
    );

    // Again: nothing left to revoke. An unknown account: 404.
    let res = admin.send(Method::POST, &revoke("bob"), None).await;
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["revoked"], 0);
    assert_eq!(
        admin
            .send(Method::POST, &revoke("nobody"), None)
            .await
            .status(),
        404
    );

    let events = t.store.list_events(None, 50).await.unwrap();
    let revoked: Vec<Value> = events
        .iter()
        .filter(|e| e.kind.as_str() == "api_token_revoked")
        .map(|e| serde_json::from_str(&e.detail).unwrap())
        .collect();
    assert_eq!(revoked.len(), 2, "one event per request: {revoked:?}");
    assert!(
        revoked
            .iter()
            .all(|d| d["all"] == true && d["actor"] == "root"),
        "{revoked:?}"
    );
}
