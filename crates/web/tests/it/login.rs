//! Login: identical answers for unknown users and wrong passwords, and
//! throttling that holds across server processes.

use domain::Role;

use crate::harness::{PASSWORD, TestApp, problem};

#[tokio::test]
async fn unknown_user_and_wrong_password_get_identical_answers() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    let a = t.client().login("nobody", "Some-long-password-1").await;
    let b = t.client().login("alice", "Some-long-password-1").await;
    let c = t.client().login("!!", "x").await;
    let (sa, _, da) = problem(a).await;
    let (sb, _, db) = problem(b).await;
    let (sc, _, dc) = problem(c).await;
    assert_eq!(sa, 401);
    assert_eq!((sa, &da), (sb, &db));
    assert_eq!((sa, &da), (sc, &dc));
    assert_eq!(da["title"], "Invalid username or password");
}

#[tokio::test]
async fn login_returns_the_user_and_me_shows_it() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let me: serde_json::Value = c.get("/api/auth/me").await.json().await.unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["role"], "clinician");
    assert!(me["id"].as_str().unwrap().len() == 36);
    assert!(me.get("password_hash").is_none());
}

#[tokio::test]
async fn eleventh_attempt_after_ten_failures_is_429_with_retry_after() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    let c = t.client();
    for _ in 0..10 {
        assert_eq!(
            c.login("alice", "Wrong-password-guess-1").await.status(),
            401
        );
    }
    let res = c.login("alice", PASSWORD).await;
    assert_eq!(res.status(), 429, "even the right password waits");
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    // After the window the right password works again.
    t.clock.advance_ms(16 * 60_000);
    assert_eq!(c.login("alice", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn account_limit_holds_across_addresses_and_servers() {
    let t = TestApp::spawn().await;
    let sibling = t.spawn_sibling().await;
    t.create_user("alice", Role::Clinician).await;
    for i in 0..10 {
        let c = if i % 2 == 0 {
            t.client_from("127.0.0.3")
        } else {
            sibling.client_from("127.0.0.4")
        };
        assert_eq!(
            c.login("alice", "Wrong-password-guess-1").await.status(),
            401
        );
    }
    assert_eq!(
        sibling
            .client_from("127.0.0.5")
            .login("alice", PASSWORD)
            .await
            .status(),
        429
    );
    assert_eq!(
        t.client_from("127.0.0.6")
            .login("alice", PASSWORD)
            .await
            .status(),
        429
    );
}

#[tokio::test]
async fn address_limit_holds_across_accounts() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    let c = t.client_from("127.0.0.7");
    for i in 0..10 {
        assert_eq!(
            c.login(&format!("guess{i}"), "Wrong-password-guess-1")
                .await
                .status(),
            401
        );
    }
    assert_eq!(c.login("alice", PASSWORD).await.status(), 429);
    assert_eq!(
        t.client_from("127.0.0.8")
            .login("alice", PASSWORD)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn successful_login_clears_the_accounts_failures() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    for i in 0..9 {
        let c = t.client_from(&format!("127.0.1.{i}"));
        assert_eq!(
            c.login("alice", "Wrong-password-guess-1").await.status(),
            401
        );
    }
    assert_eq!(
        t.client_from("127.0.2.1")
            .login("alice", PASSWORD)
            .await
            .status(),
        200
    );
    for i in 0..9 {
        let c = t.client_from(&format!("127.0.3.{i}"));
        assert_eq!(
            c.login("alice", "Wrong-password-guess-1").await.status(),
            401
        );
    }
    assert_eq!(
        t.client_from("127.0.2.2")
            .login("alice", PASSWORD)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn login_events_are_recorded_without_the_password() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    t.client().login("alice", "Wrong-password-guess-1").await;
    t.client().login("alice", PASSWORD).await;
    let events = t.store.list_events(None, 10).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"login_failed") && kinds.contains(&"login_succeeded"),
        "{kinds:?}"
    );
    let dump = format!("{events:?}");
    assert!(!dump.contains(PASSWORD) && !dump.contains("Wrong-password-guess-1"));
}

#[tokio::test]
async fn admins_create_accounts_and_weak_passwords_are_refused_with_a_reason() {
    let t = TestApp::spawn().await;
    let admin = t.signed_in("root", Role::Admin).await;
    let weak = admin
        .post(
            "/api/admin/users",
            serde_json::json!({"username": "bob", "role": "clinician", "password": "bobbobbobbob"}),
        )
        .await;
    let (status, _, body) = problem(weak).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "password");
    let short = admin
        .post(
            "/api/admin/users",
            serde_json::json!({"username": "bob", "role": "clinician", "password": "Sh0rt!x"}),
        )
        .await;
    let (_, _, body) = problem(short).await;
    assert!(body["detail"].as_str().unwrap().contains("at least 12"));
    let ok = admin
        .post("/api/admin/users", serde_json::json!({"username": "bob", "role": "clinician", "password": "Velvet-otter-28-compass"}))
        .await;
    assert_eq!(ok.status(), 201);
    let dup = admin
        .post("/api/admin/users", serde_json::json!({"username": "BOB", "role": "clinician", "password": "Velvet-otter-28-compass"}))
        .await;
    assert_eq!(dup.status(), 409);
    let clinician = t.signed_in("alice", Role::Clinician).await;
    let res = clinician
        .post("/api/admin/users", serde_json::json!({"username": "eve", "role": "admin", "password": "Velvet-otter-28-compass"}))
        .await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn password_hashes_are_argon2id_and_peppered() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    let name = domain::Username::parse("alice").unwrap();
    let rec = t.store.user_by_username(&name).await.unwrap().unwrap();
    assert!(
        rec.password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
    );
    // The same hash under a different pepper (key file) does not verify.
    let other =
        crypto::PasswordHasher::new(crypto::Keyring::generate(0).password_pepper()).unwrap();
    assert!(!other.verify(&secrecy::SecretString::from(PASSWORD), &rec.password_hash));
    let ours = crypto::PasswordHasher::new(t.keys.password_pepper()).unwrap();
    assert!(ours.verify(&secrecy::SecretString::from(PASSWORD), &rec.password_hash));
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    // A client that is not a proxy cannot choose the address it is counted as.
    let direct = t.client_from("127.0.0.10");
    let proxy = t.client_from("127.0.0.9");
    for (c, forwarded) in [(&direct, "10.1.1.1"), (&proxy, "10.2.2.2")] {
        c.get("/api/auth/csrf").await;
        let token = c.csrf_cookie().unwrap();
        c.http
            .post(c.url("/api/auth/login"))
            .header("x-csrf-token", token)
            .header("x-forwarded-for", forwarded)
            .json(&serde_json::json!({"username": "alice", "password": "Wrong-password-guess-1"}))
            .send()
            .await
            .unwrap();
    }
    let events = t.store.list_events(None, 10).await.unwrap();
    let ips: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "login_failed")
        .filter_map(|e| e.ip.clone())
        .collect();
    assert!(ips.contains(&"127.0.0.10".to_owned()), "{ips:?}");
    assert!(ips.contains(&"10.2.2.2".to_owned()), "{ips:?}");
    assert!(!ips.contains(&"10.1.1.1".to_owned()), "{ips:?}");
}
