//! `/admin/safety`: the clinical safety case report, for administrators only.

use domain::Role;

use crate::harness::TestApp;

#[tokio::test]
async fn the_safety_page_shows_the_hazard_log_to_administrators_only() {
    let t = TestApp::spawn().await;
    let admin = t.signed_in("root", Role::Admin).await;
    let res = admin.get("/admin/safety").await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Clinical safety case summary"));
    assert!(html.contains("Missing CSRF protection on clinical operations"));
    assert!(html.contains("TOTP secrets not encrypted at rest"));
    assert!(html.contains("letter_post_without_csrf_header_is_403_and_writes_nothing"));
    let home = admin.get("/").await.text().await.unwrap();
    assert!(
        home.contains("href=\"/admin/safety\""),
        "linked from the admin's pages"
    );

    for (name, role) in [("alice", Role::Clinician), ("pat", Role::Patient)] {
        let c = t.signed_in(name, role).await;
        let res = c.get("/admin/safety").await;
        assert_eq!(res.status(), 403, "{name}");
        assert!(
            !res.text()
                .await
                .unwrap()
                .contains("Missing CSRF protection")
        );
    }
    let res = t.client().get("/admin/safety").await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"].to_str().unwrap(),
        "/login?next=%2Fadmin%2Fsafety"
    );
}
