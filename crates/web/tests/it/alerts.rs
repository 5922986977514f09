//! Seed 000: more than 10 CSRF failures from one IP within an hour raise
//! exactly one alert — stored, logged at ERROR, and sent to the webhook.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::AppConfig;
use axum::routing::post;
use domain::Role;
use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::harness::{Options, TestApp, logs};

/// A local webhook receiver that records every JSON body it gets.
async fn receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let router = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, got)
}

async fn fail_csrf(c: &crate::harness::Client, times: usize) {
    for _ in 0..times {
        let res = c
            .send_with(Method::POST, "/api/auth/logout", None, HeaderMap::new())
            .await;
        assert_eq!(res.status(), 403);
    }
}

#[tokio::test]
async fn eleven_csrf_failures_from_one_ip_raise_exactly_one_alert_and_one_webhook() {
    let (hook, received) = receiver().await;
    let t = TestApp::spawn_with(Options {
        config: AppConfig {
            alert_webhook_url: Some(hook),
            ..Options::default().config
        },
    })
    .await;
    let c = t.signed_in("alice", Role::Clinician).await;
    fail_csrf(&c, 10).await;
    assert!(
        t.store.list_alerts(10).await.unwrap().is_empty(),
        "10 failures are not yet more than 10"
    );
    fail_csrf(&c, 1).await;
    let alerts = t.store.list_alerts(10).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule, "csrf_failures_per_ip");
    assert_eq!(alerts[0].subject, "127.0.0.1");
    // More failures within the hour raise no second alert.
    fail_csrf(&c, 5).await;
    assert_eq!(t.store.list_alerts(10).await.unwrap().len(), 1);

    for _ in 0..100 {
        if !received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "the webhook is called once: {got:?}");
    assert_eq!(got[0]["rule"], "csrf_failures_per_ip");
    assert_eq!(got[0]["subject"], "127.0.0.1");
    assert!(
        logs().lines().any(
            |l| l.contains("ERROR") && l.contains("alert=\"csrf_failures_per_ip\"")
                || l.contains("ERROR") && l.contains("alert=csrf_failures_per_ip")
        ),
        "the alert is logged at ERROR with alert=csrf_failures_per_ip"
    );
}

#[tokio::test]
async fn five_and_six_failures_from_two_ips_raise_no_alert() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    let a = t.client_from("127.0.0.1");
    let b = t.client_from("127.0.0.2");
    fail_csrf(&a, 5).await;
    fail_csrf(&b, 6).await;
    assert!(t.store.list_alerts(10).await.unwrap().is_empty());
    let events = t.store.list_events(None, 50).await.unwrap();
    let from_b = events
        .iter()
        .filter(|e| e.kind == "csrf_failure" && e.ip.as_deref() == Some("127.0.0.2"))
        .count();
    assert_eq!(from_b, 6, "each failure is logged with its own address");
}

#[tokio::test]
async fn a_new_alert_is_raised_after_the_quiet_hour() {
    let t = TestApp::spawn().await;
    let c = t.client();
    fail_csrf(&c, 11).await;
    assert_eq!(t.store.list_alerts(10).await.unwrap().len(), 1);
    t.clock.advance_ms(61 * 60_000);
    fail_csrf(&c, 11).await;
    assert_eq!(t.store.list_alerts(10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn failures_across_two_servers_on_one_database_raise_one_alert() {
    let t = TestApp::spawn().await;
    let sibling = t.spawn_sibling().await;
    let a = t.client();
    let b = sibling.client();
    fail_csrf(&a, 6).await;
    fail_csrf(&b, 5).await;
    assert_eq!(t.store.list_alerts(10).await.unwrap().len(), 1);
    fail_csrf(&a, 3).await;
    fail_csrf(&b, 3).await;
    assert_eq!(sibling.store.list_alerts(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn admins_read_alerts_and_security_events_others_may_not() {
    let t = TestApp::spawn().await;
    let admin = t.signed_in("root", Role::Admin).await;
    let clinician = t.signed_in("alice", Role::Clinician).await;
    fail_csrf(&clinician, 11).await;
    let res = admin.get("/api/admin/alerts").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    let res = admin.get("/api/admin/security-events?limit=5").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 5);
    for path in ["/api/admin/alerts", "/api/admin/security-events"] {
        assert_eq!(clinician.get(path).await.status(), 403, "{path}");
        assert_eq!(t.client().get(path).await.status(), 401, "{path}");
    }
}
