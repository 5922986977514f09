//! Seed 000: every state-changing request needs a valid CSRF token.

use domain::Role;
use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::harness::{TestApp, problem};

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.parse().unwrap());
    }
    h
}

#[tokio::test]
async fn logout_without_csrf_header_is_403_csrf_token_required_and_session_survives() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let res = c
        .send_with(Method::POST, "/api/auth/logout", None, HeaderMap::new())
        .await;
    let (status, title, _) = problem(res).await;
    assert_eq!((status, title.as_str()), (403, "CSRF token required"));
    assert_eq!(c.me_status().await, 200, "the refused logout did not run");
}

#[tokio::test]
async fn invalid_csrf_token_is_403_csrf_token_invalid_and_nothing_changes() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let res = c
        .send_with(
            Method::POST,
            "/api/auth/logout",
            None,
            headers(&[("x-csrf-token", "forged-forged-forged-forged")]),
        )
        .await;
    let (status, title, _) = problem(res).await;
    assert_eq!((status, title.as_str()), (403, "CSRF token invalid"));
    assert_eq!(c.me_status().await, 200);
}

#[tokio::test]
async fn csrf_token_of_another_session_is_invalid_here() {
    let t = TestApp::spawn().await;
    let victim = t.signed_in("alice", Role::Clinician).await;
    let other = t.client();
    assert_eq!(
        other
            .login("alice", crate::harness::PASSWORD)
            .await
            .status(),
        200
    );
    let foreign = other.csrf_cookie().unwrap();
    // Both header and cookie carry the other session's token: the pair
    // matches, but the session does not.
    victim.set_cookie("vellum-csrf", &foreign);
    let res = victim
        .send_with(
            Method::POST,
            "/api/auth/logout",
            None,
            headers(&[("x-csrf-token", &foreign)]),
        )
        .await;
    let (status, title, _) = problem(res).await;
    assert_eq!((status, title.as_str()), (403, "CSRF token invalid"));
    assert_eq!(victim.me_status().await, 200);
}

#[tokio::test]
async fn double_submit_header_that_differs_from_cookie_is_rejected() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let real = c.csrf_cookie().unwrap();
    // The header carries the session's real token, the cookie something else.
    c.set_cookie("vellum-csrf", "not-the-same-token-at-all");
    let res = c
        .send_with(
            Method::POST,
            "/api/auth/logout",
            None,
            headers(&[("x-csrf-token", &real)]),
        )
        .await;
    let (status, title, _) = problem(res).await;
    assert_eq!((status, title.as_str()), (403, "CSRF token invalid"));
    // And the cookie's value without the session's MAC is refused as well.
    c.set_cookie("vellum-csrf", &real);
    assert_eq!(c.me_status().await, 200);
}

#[tokio::test]
async fn stale_csrf_token_from_before_login_is_refused_after_login() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    let c = t.client();
    c.get("/api/auth/csrf").await;
    let before = c.csrf_cookie().unwrap();
    let before_session = c.session_cookie().unwrap();
    assert_eq!(
        c.login("alice", crate::harness::PASSWORD).await.status(),
        200
    );
    assert_ne!(
        c.csrf_cookie().unwrap(),
        before,
        "login rotates the CSRF token"
    );
    assert_ne!(
        c.session_cookie().unwrap(),
        before_session,
        "login rotates the session"
    );
    let res = c
        .send_with(
            Method::POST,
            "/api/auth/logout",
            None,
            headers(&[("x-csrf-token", &before)]),
        )
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(c.me_status().await, 200);
}

#[tokio::test]
async fn forged_cross_site_form_post_with_victims_cookies_is_rejected() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    // What a malicious page's auto-submitting form sends: the victim's
    // cookies ride along, but the attacker cannot read or send the token.
    for extra in [
        vec![
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![("origin", "http://evil.example")],
        vec![("sec-fetch-site", "cross-site")],
        vec![],
    ] {
        let mut h = headers(&extra);
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let res = c
            .http
            .post(c.url("/api/account/password"))
            .headers(h)
            .body("current_password=x&new_password=Attacker-chosen-password-1")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "forged form with {extra:?}");
    }
    // The password did not change: the old one still signs in.
    let again = t.client();
    assert_eq!(
        again
            .login("alice", crate::harness::PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(c.me_status().await, 200);
}

#[tokio::test]
async fn foreign_origin_is_refused_even_with_a_valid_token() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let token = c.csrf_cookie().unwrap();
    for h in [
        headers(&[("x-csrf-token", &token), ("origin", "http://evil.example")]),
        headers(&[("x-csrf-token", &token), ("sec-fetch-site", "cross-site")]),
        headers(&[("x-csrf-token", &token), ("origin", "null")]),
    ] {
        let res = c.send_with(Method::POST, "/api/auth/logout", None, h).await;
        assert_eq!(res.status(), 403);
    }
    assert_eq!(c.me_status().await, 200);
    // The same request from our own origin works.
    let ok = c
        .send_with(
            Method::POST,
            "/api/auth/logout",
            None,
            headers(&[
                ("x-csrf-token", &token),
                ("origin", &t.base),
                ("sec-fetch-site", "same-origin"),
            ]),
        )
        .await;
    assert_eq!(ok.status(), 204);
    assert_eq!(c.me_status().await, 401);
}

#[tokio::test]
async fn login_itself_needs_a_csrf_token() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    let c = t.client();
    let res = c
        .send_with(
            Method::POST,
            "/api/auth/login",
            Some(serde_json::json!({"username": "alice", "password": crate::harness::PASSWORD})),
            HeaderMap::new(),
        )
        .await;
    let (status, title, _) = problem(res).await;
    assert_eq!((status, title.as_str()), (403, "CSRF token required"));
    assert!(c.session_cookie().is_none(), "no session was started");
}

#[tokio::test]
async fn every_registered_unsafe_route_answers_403_without_a_token() {
    let t = TestApp::spawn().await;
    let admin = t.signed_in("root", Role::Admin).await;
    let users_before = t.store.count_users().await.unwrap();
    let unsafe_routes: Vec<_> = web::route_table()
        .into_iter()
        .filter(|r| r.is_unsafe())
        .collect();
    assert!(
        unsafe_routes.len() >= 6,
        "the route table lists the unsafe routes"
    );
    for route in &unsafe_routes {
        let path = route
            .path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "root" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let res = admin
            .send_with(
                method,
                &path,
                Some(serde_json::json!({"username": "mallory", "role": "admin", "password": "Mallory-owns-this-now-42"})),
                HeaderMap::new(),
            )
            .await;
        // The FHIR API says the same as an OperationOutcome.
        let (status, title) = if route.path.starts_with("/fhir/") {
            let status = res.status().as_u16();
            let oo: serde_json::Value = res.json().await.unwrap();
            let title = oo["issue"][0]["details"]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            (status, title)
        } else {
            let (status, title, _) = problem(res).await;
            (status, title)
        };
        assert_eq!(
            (status, title.as_str()),
            (403, "CSRF token required"),
            "{} {}",
            route.method,
            route.path
        );
    }
    // The guard stands before the routes: an address that names no route,
    // and a method a route does not take, are refused the same way.
    for (method, path) in [
        (Method::POST, "/api/no/such/route"),
        (Method::DELETE, "/api/auth/me"),
    ] {
        let res = admin
            .send_with(method.clone(), path, None, HeaderMap::new())
            .await;
        let (status, title, _) = problem(res).await;
        assert_eq!(
            (status, title.as_str()),
            (403, "CSRF token required"),
            "{method} {path}"
        );
    }
    assert_eq!(
        t.store.count_users().await.unwrap(),
        users_before,
        "no account was created"
    );
    assert_eq!(
        admin.me_status().await,
        200,
        "no request ended or changed the session"
    );
}

#[tokio::test]
async fn html_form_with_csrf_token_field_is_accepted() {
    let t = TestApp::spawn().await;
    let link = t.app.issue_setup_link().await.unwrap().unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&link.token).to_owned();
    let c = t.client();
    let page = c.get(&format!("/setup/{token}")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = c.csrf_cookie().unwrap();
    assert!(
        html.contains(&format!("name=\"csrf_token\" value=\"{csrf}\"")),
        "the form carries the token"
    );
    // Without the field the form post is refused…
    let refused = c
        .http
        .post(c.url(&format!("/setup/{token}")))
        .form(&[("username", "root"), ("password", crate::harness::PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(t.store.count_users().await.unwrap(), 0);
    // …with it, the first administrator is created.
    let ok = c
        .http
        .post(c.url(&format!("/setup/{token}")))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "root"),
            ("password", crate::harness::PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(t.store.count_users().await.unwrap(), 1);
}

#[tokio::test]
async fn csrf_failures_are_security_events_with_ip_user_agent_and_referer() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    c.send_with(
        Method::POST,
        "/api/auth/logout",
        None,
        headers(&[
            ("user-agent", "forger/1.0"),
            ("referer", "http://evil.example/page"),
        ]),
    )
    .await;
    let events = t.store.list_events(None, 10).await.unwrap();
    let e = events
        .iter()
        .find(|e| e.kind == "csrf_failure")
        .expect("a csrf_failure event");
    assert_eq!(e.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(e.user_agent.as_deref(), Some("forger/1.0"));
    assert_eq!(e.referer.as_deref(), Some("http://evil.example/page"));
    assert_eq!(e.method.as_deref(), Some("POST"));
    assert_eq!(e.path.as_deref(), Some("/api/auth/logout"));
    assert_eq!(e.username.as_deref(), Some("alice"));
}
