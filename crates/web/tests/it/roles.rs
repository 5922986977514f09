//! The role matrix, cell by cell, through the API.

use domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::clinical::{create_patient, nhs, patient_json};
use crate::harness::{Client, TestApp};

struct World {
    t: TestApp,
    clinician: Client,
    admin: Client,
    patient: Client,
    own: String,
    other: String,
    own_final: String,
    own_draft: String,
    other_final: String,
}

async fn world() -> World {
    let t = TestApp::spawn().await;
    let clinician = t.signed_in("clin", Role::Clinician).await;
    let admin = t.signed_in("root", Role::Admin).await;
    let own = create_patient(&clinician, "Own", &nhs(20)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = create_patient(&clinician, "Other", &nhs(21)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let letter = |pid: String, status: &'static str| {
        let c = &clinician;
        async move {
            let v: Value = c
                .post(
                    &format!("/api/patients/{pid}/letters"),
                    json!({"title": "L", "body": "b", "status": status}),
                )
                .await
                .json()
                .await
                .unwrap();
            v["id"].as_str().unwrap().to_owned()
        }
    };
    let own_final = letter(own.clone(), "final").await;
    let own_draft = letter(own.clone(), "draft").await;
    let other_final = letter(other.clone(), "final").await;
    t.create_user("pat", Role::Patient).await;
    let res = admin
        .post(
            "/api/admin/users/pat/link-patient",
            json!({"patient_id": own}),
        )
        .await;
    assert_eq!(res.status(), 200, "admin links the patient account");
    let patient = t.client();
    assert_eq!(
        patient
            .login("pat", crate::harness::PASSWORD)
            .await
            .status(),
        200
    );
    World {
        t,
        clinician,
        admin,
        patient,
        own,
        other,
        own_final,
        own_draft,
        other_final,
    }
}

async fn status(c: &Client, method: Method, path: &str, body: Option<Value>) -> u16 {
    if method == Method::GET {
        c.get(path).await.status().as_u16()
    } else {
        c.send(method, path, body).await.status().as_u16()
    }
}

/// What, method, path, body, then the status for clinician, admin, patient.
type Cell = (&'static str, Method, String, Option<Value>, u16, u16, u16);

#[tokio::test]
async fn role_matrix_cell_by_cell() {
    let w = world().await;
    let own = &w.own;
    let other = &w.other;
    let new_patient = patient_json("New", "Person", &nhs(30));
    let letter = json!({"title": "t", "body": "b"});
    // (what, method, path, body, clinician, admin, patient)
    let cells: Vec<Cell> = vec![
        (
            "search patients",
            Method::GET,
            "/api/patients?q=own".into(),
            None,
            200,
            403,
            403,
        ),
        (
            "list patients",
            Method::GET,
            "/api/patients".into(),
            None,
            200,
            403,
            403,
        ),
        (
            "read own demographics",
            Method::GET,
            format!("/api/patients/{own}"),
            None,
            200,
            403,
            200,
        ),
        (
            "read other demographics",
            Method::GET,
            format!("/api/patients/{other}"),
            None,
            200,
            403,
            404,
        ),
        (
            "read history",
            Method::GET,
            format!("/api/patients/{own}/history"),
            None,
            200,
            403,
            200,
        ),
        (
            "create patient",
            Method::POST,
            "/api/patients".into(),
            Some(new_patient),
            201,
            403,
            403,
        ),
        (
            "write letter",
            Method::POST,
            format!("/api/patients/{own}/letters"),
            Some(letter.clone()),
            201,
            403,
            403,
        ),
        (
            "amend letter",
            Method::POST,
            format!("/api/patients/{own}/letters/{}/amend", w.own_final),
            Some(letter.clone()),
            201,
            403,
            403,
        ),
        (
            "list own letters",
            Method::GET,
            format!("/api/patients/{own}/letters"),
            None,
            200,
            403,
            200,
        ),
        (
            "list other letters",
            Method::GET,
            format!("/api/patients/{other}/letters"),
            None,
            200,
            403,
            404,
        ),
        (
            "read own final letter",
            Method::GET,
            format!("/api/patients/{own}/letters/{}", w.own_final),
            None,
            200,
            403,
            200,
        ),
        (
            "read own draft letter",
            Method::GET,
            format!("/api/patients/{own}/letters/{}", w.own_draft),
            None,
            200,
            403,
            404,
        ),
        (
            "read other final letter",
            Method::GET,
            format!("/api/patients/{other}/letters/{}", w.other_final),
            None,
            200,
            403,
            404,
        ),
        (
            "read access log",
            Method::GET,
            format!("/api/patients/{own}/access-log"),
            None,
            200,
            403,
            403,
        ),
        (
            "FHIR search patients",
            Method::GET,
            "/fhir/R4/Patient?family=own".into(),
            None,
            200,
            403,
            403,
        ),
        (
            "FHIR create patient",
            Method::POST,
            "/fhir/R4/Patient".into(),
            Some(patient_json("Fhir", "Made", &nhs(31))),
            201,
            403,
            403,
        ),
        (
            "FHIR read own Patient",
            Method::GET,
            format!("/fhir/R4/Patient/{own}"),
            None,
            200,
            403,
            200,
        ),
        (
            "FHIR read other Patient",
            Method::GET,
            format!("/fhir/R4/Patient/{other}"),
            None,
            200,
            403,
            404,
        ),
        (
            "FHIR search own letters",
            Method::GET,
            format!("/fhir/R4/DocumentReference?patient={own}"),
            None,
            200,
            403,
            200,
        ),
        (
            "FHIR search other letters",
            Method::GET,
            format!("/fhir/R4/DocumentReference?patient={other}"),
            None,
            200,
            403,
            // An empty searchset: nothing to see, nothing learnt.
            200,
        ),
        (
            "FHIR read own final letter",
            Method::GET,
            format!("/fhir/R4/DocumentReference/{}", w.own_final),
            None,
            200,
            403,
            200,
        ),
        (
            "FHIR read own draft letter",
            Method::GET,
            format!("/fhir/R4/DocumentReference/{}", w.own_draft),
            None,
            200,
            403,
            404,
        ),
        (
            "FHIR read other final letter",
            Method::GET,
            format!("/fhir/R4/DocumentReference/{}", w.other_final),
            None,
            200,
            403,
            404,
        ),
        (
            "read security events",
            Method::GET,
            "/api/admin/security-events".into(),
            None,
            403,
            200,
            403,
        ),
        (
            "create user",
            Method::POST,
            "/api/admin/users".into(),
            Some(
                json!({"username": "extra1", "role": "clinician", "password": "Velvet-otter-28-compass"}),
            ),
            403,
            201,
            403,
        ),
    ];
    for (what, method, path, body, want_c, want_a, want_p) in cells {
        // Each actor gets its own fresh copy of the body; creating twice
        // would conflict, so the admin's create-user uses another name.
        let got_c = status(&w.clinician, method.clone(), &path, body.clone()).await;
        let admin_body = body.clone().map(|mut b| {
            if b.get("username").is_some() {
                b["username"] = json!("extra2");
            }
            b
        });
        let got_a = status(&w.admin, method.clone(), &path, admin_body).await;
        let got_p = status(&w.patient, method.clone(), &path, body.clone()).await;
        assert_eq!(
            (got_c, got_a, got_p),
            (want_c, want_a, want_p),
            "{what}: clinician, admin, patient"
        );
    }
}

#[tokio::test]
async fn patient_sees_only_their_own_final_letters() {
    let w = world().await;
    let list: Value = w
        .patient
        .get(&format!("/api/patients/{}/letters", w.own))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![w.own_final.as_str()]);
    assert_eq!(
        w.patient
            .get(&format!("/api/patients/{}", w.other))
            .await
            .status(),
        404
    );
    let fhir: Value = w
        .patient
        .get(&format!("/fhir/R4/DocumentReference?patient={}", w.other))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        fhir.get("entry").is_none(),
        "no other patient's letters: {fhir}"
    );
    let fhir: Value = w
        .patient
        .get(&format!("/fhir/R4/DocumentReference?patient={}", w.own))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        fhir["entry"].as_array().unwrap().len(),
        1,
        "own final letter only"
    );
    assert_eq!(fhir["entry"][0]["resource"]["id"], w.own_final.as_str());
    let denied = w.t.store.access_log(&w.other, 50, None).await.unwrap();
    assert!(
        denied
            .iter()
            .any(|r| r.username == "pat" && r.outcome == "denied"),
        "refusals are logged"
    );
}

#[tokio::test]
async fn an_admin_changes_a_staff_role_and_the_account_keeps_no_session_or_token_of_the_old_one() {
    let t = TestApp::spawn().await;
    let admin = t.signed_in("root", Role::Admin).await;
    let bob = t.signed_in("bob", Role::Clinician).await;
    let (token, _) = crate::tokens::token(&bob, "read").await;
    let by_token =
        |token: &str| crate::tokens::bearer(&t, Method::GET, "/api/auth/me", token).send();
    assert_eq!(by_token(&token).await.unwrap().status(), 200);

    let res = admin
        .send(
            Method::PUT,
            "/api/admin/users/bob/role",
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        (v["username"].as_str(), v["role"].as_str()),
        (Some("bob"), Some("admin"))
    );
    assert_eq!(bob.me_status().await, 401, "bob's session has ended");
    assert_eq!(
        by_token(&token).await.unwrap().status(),
        401,
        "bob's token is revoked"
    );
    let again = t.client();
    assert_eq!(
        again.login("bob", crate::harness::PASSWORD).await.status(),
        200
    );
    let me: Value = again.get("/api/auth/me").await.json().await.unwrap();
    assert_eq!(me["role"], "admin", "{me}");
    let events = t.store.list_events(None, 20).await.unwrap();
    let changed = events
        .iter()
        .find(|e| e.kind.as_str() == "role_changed")
        .expect("a role_changed event");
    let detail: Value = serde_json::from_str(&changed.detail).unwrap();
    assert_eq!(
        (
            detail["from"].as_str(),
            detail["to"].as_str(),
            detail["actor"].as_str()
        ),
        (Some("clinician"), Some("admin"), Some("root"))
    );

    // The same role again changes nothing and ends nothing.
    let res = again
        .send(
            Method::PUT,
            "/api/admin/users/root/role",
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(admin.me_status().await, 200);
}

async fn put_role(c: &Client, who: &str, role: &str) -> u16 {
    let path = format!("/api/admin/users/{who}/role");
    c.send(Method::PUT, &path, Some(json!({"role": role})))
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn role_changes_are_refused_for_non_admins_own_accounts_and_patient_accounts() {
    let t = TestApp::spawn().await;
    let admin = t.signed_in("root", Role::Admin).await;
    let carol = t.signed_in("carol", Role::Clinician).await;
    t.create_user("pat", Role::Patient).await;
    assert_eq!(
        put_role(&carol, "root", "clinician").await,
        403,
        "not an admin"
    );
    assert_eq!(
        put_role(&admin, "root", "clinician").await,
        409,
        "their own"
    );
    assert_eq!(
        put_role(&admin, "pat", "clinician").await,
        409,
        "a patient account"
    );
    assert_eq!(
        put_role(&admin, "carol", "patient").await,
        409,
        "into a patient account"
    );
    assert_eq!(put_role(&admin, "carol", "wizard").await, 422);
    assert_eq!(put_role(&admin, "nobody", "admin").await, 404);
    // An administrator's API token cannot: a person at a browser must.
    let (token, _) = crate::tokens::token(&admin, "read-write").await;
    let res = crate::tokens::bearer(&t, Method::PUT, "/api/admin/users/carol/role", &token)
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Nor a clinician through the page's form.
    let res = carol
        .http
        .post(carol.url("/admin/users/role"))
        .form(&[
            ("csrf_token", carol.csrf_cookie().unwrap().as_str()),
            ("username", "carol"),
            ("role", "admin"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    for (name, role) in [
        ("root", Role::Admin),
        ("carol", Role::Clinician),
        ("pat", Role::Patient),
    ] {
        let rec = t
            .store
            .user_by_username(&domain::Username::parse(name).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.user.role, role, "{name} unchanged");
    }
    assert_eq!(carol.me_status().await, 200, "nothing ended");
    assert!(
        !t.store
            .list_events(None, 50)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind.as_str() == "role_changed")
    );
}

/// What a sign-in and a token being made at the moment of a role change
/// leave: each read the account before the change ended its sessions and
/// revoked its tokens, and committed after, so each names the old role.
/// Written here straight into the store, as such a race would write them.
#[tokio::test]
async fn a_session_or_token_issued_under_a_role_the_account_no_longer_has_is_refused() {
    let t = TestApp::spawn().await;
    let admin = t.signed_in("root", Role::Admin).await;
    t.create_user("bob", Role::Clinician).await;
    assert_eq!(put_role(&admin, "bob", "admin").await, 200);
    let bob = t
        .store
        .user_by_username(&domain::Username::parse("bob").unwrap())
        .await
        .unwrap()
        .unwrap()
        .user;
    assert_eq!(bob.role, Role::Admin);
    let now = app::Clock::now(t.clock.as_ref());
    let t = &t;
    let by_cookie = |token: &'static str| async move {
        reqwest::Client::new()
            .get(format!("{}/api/auth/me", t.base))
            .header("cookie", format!("vellum-session={token}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let by_bearer = |token: &'static str| async move {
        crate::tokens::bearer(t, Method::GET, "/api/auth/me", token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    for (session, token, role, expected) in [
        (
            "session-issued-as-clinician",
            "vlm_token_issued_as_clinician",
            Role::Clinician,
            401,
        ),
        (
            "session-issued-as-admin",
            "vlm_token_issued_as_admin",
            Role::Admin,
            200,
        ),
    ] {
        t.store
            .insert_session(&store::SessionRecord {
                token_hash: crypto::token_hash(session),
                user_id: Some(bob.id),
                csrf_tag: "tag".to_owned(),
                created_at: now,
                last_seen_at: now,
                stage: store::SessionStage::Full,
                issued_role: Some(role),
            })
            .await
            .unwrap();
        t.store
            .create_api_token(
                &store::ApiTokenRow {
                    id: crypto::random::uuid_v4().to_string(),
                    user_id: bob.id.to_string(),
                    name: format!("issued as {}", role.as_str()),
                    token_hash: crypto::token_hash(token),
                    scope: "read".to_owned(),
                    created_at: now.millis(),
                    expires_at: now.millis() + 86_400_000,
                    last_used_at: None,
                    revoked_at: None,
                    issued_role: role.as_str().to_owned(),
                },
                now,
                &[],
            )
            .await
            .unwrap();
        assert_eq!(by_cookie(session).await, expected, "session as {role:?}");
        assert_eq!(by_bearer(token).await, expected, "token as {role:?}");
    }
    // The stale session was ended, not merely refused once.
    assert!(
        t.store
            .session(&crypto::token_hash("session-issued-as-clinician"))
            .await
            .unwrap()
            .is_none()
    );
}

/// Two administrators demoting each other at the same moment: the changes
/// are made one after the other, and the second finds its administrator
/// demoted — one wins, and an administrator remains.
#[tokio::test]
async fn two_administrators_demoting_each_other_at_once_leave_one_administrator() {
    let t = TestApp::spawn().await;
    let ann = t.signed_in("ann", Role::Admin).await;
    let ben = t.signed_in("ben", Role::Admin).await;
    let (a, b) = tokio::join!(
        put_role(&ann, "ben", "clinician"),
        put_role(&ben, "ann", "clinician")
    );
    let mut outcomes = [a, b];
    outcomes.sort_unstable();
    // The loser is refused inside the change's transaction (403), or, if
    // its session was read after the winner's change ended it, at once
    // (401).
    assert!(
        outcomes == [200, 401] || outcomes == [200, 403],
        "one change wins, the other is refused: {outcomes:?}"
    );
    let mut admins = 0;
    for name in ["ann", "ben"] {
        let rec = t
            .store
            .user_by_username(&domain::Username::parse(name).unwrap())
            .await
            .unwrap()
            .unwrap();
        admins += usize::from(rec.user.role == Role::Admin);
    }
    assert_eq!(admins, 1, "exactly one administrator remains");
    let changed = t
        .store
        .list_events(None, 50)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind.as_str() == "role_changed")
        .count();
    assert_eq!(changed, 1, "one change recorded");
}

/// An administrator demoted by a change that committed first makes no
/// change with a request already under way: each change to an account
/// checks again inside its own transaction.
#[tokio::test]
async fn an_administrator_demoted_meanwhile_changes_no_account() {
    let t = TestApp::spawn().await;
    t.create_user("root", Role::Admin).await;
    t.create_user("ann", Role::Admin).await;
    t.create_user("carol", Role::Clinician).await;
    t.create_user("pat", Role::Patient).await;
    let read = |name: &'static str| {
        let store = t.store.clone();
        async move {
            store
                .user_by_username(&domain::Username::parse(name).unwrap())
                .await
                .unwrap()
                .unwrap()
        }
    };
    let ann = read("ann").await.user;
    let carol = read("carol").await;
    let patient = t
        .app
        .create_patient(
            &carol.user,
            &crate::clinical::patient_json("Linked", "Lee", &crate::clinical::nhs(13)),
            app::IfPossibleDuplicate::Refuse,
        )
        .await
        .unwrap();
    let (token, _) = crate::tokens::token(&t.signed_in("dan", Role::Clinician).await, "read").await;
    // The operator demotes ann; her requests, authenticated before, go on
    // with her account as it was read then.
    let meta = app::RequestMeta::default();
    t.app
        .change_role(app::Actor::Operator, "ann", Role::Clinician, &meta)
        .await
        .unwrap();
    let as_ann = app::Actor::User(&ann);
    let refused = |what: &str, r: Result<(), app::AppError>| {
        assert!(matches!(r, Err(app::AppError::Forbidden)), "{what}: {r:?}");
    };
    refused(
        "role",
        t.app
            .change_role(as_ann, "carol", Role::Admin, &meta)
            .await
            .map(drop),
    );
    refused(
        "deactivate",
        t.app
            .deactivate_user(as_ann, "carol", &meta)
            .await
            .map(drop),
    );
    refused(
        "create",
        t.app
            .create_user(
                as_ann,
                "mallory",
                Role::Admin,
                secrecy::SecretString::from(crate::harness::PASSWORD),
                &meta,
            )
            .await
            .map(drop),
    );
    refused(
        "reset password",
        t.app
            .reset_password(
                as_ann,
                "carol",
                secrecy::SecretString::from("Another-long-pass-93"),
                &meta,
            )
            .await
            .map(drop),
    );
    refused(
        "reset two-factor",
        t.app.admin_reset_totp(&ann, "carol", &meta).await,
    );
    refused(
        "link",
        t.app
            .link_patient_user(as_ann, "pat", &patient.id, &meta)
            .await
            .map(drop),
    );
    refused(
        "revoke tokens",
        t.app
            .revoke_api_tokens_of(as_ann, "dan", &meta)
            .await
            .map(drop),
    );
    // Nothing was written.
    let carol_now = read("carol").await;
    assert_eq!(
        (
            carol_now.user.role,
            carol_now.user.active,
            &carol_now.password_hash
        ),
        (Role::Clinician, true, &carol.password_hash)
    );
    assert!(
        t.store
            .user_by_username(&domain::Username::parse("mallory").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        t.store
            .linked_patient(&read("pat").await.user.id.to_string())
            .await
            .unwrap(),
        None
    );
    let by_token = crate::tokens::bearer(&t, Method::GET, "/api/auth/me", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_token.status(), 200, "dan's token is not revoked");
}

/// Neither an administrator nor the operator can leave the system with no
/// active administrator; the change is refused and nothing is written.
#[tokio::test]
async fn the_last_active_administrator_is_neither_demoted_nor_deactivated() {
    let t = TestApp::spawn().await;
    t.create_user("ann", Role::Admin).await;
    t.create_user("carol", Role::Clinician).await;
    let meta = app::RequestMeta::default();
    let demote = t
        .app
        .change_role(app::Actor::Operator, "ann", Role::Clinician, &meta)
        .await;
    assert!(
        matches!(&demote, Err(app::AppError::Conflict(m)) if m.contains("no active administrator")),
        "{demote:?}"
    );
    let off = t
        .app
        .deactivate_user(app::Actor::Operator, "ann", &meta)
        .await;
    assert!(
        matches!(&off, Err(app::AppError::Conflict(m)) if m.contains("no active administrator")),
        "{off:?}"
    );
    // Changes that leave an administrator are made as before.
    t.app
        .deactivate_user(app::Actor::Operator, "carol", &meta)
        .await
        .unwrap();
    t.create_user("ben", Role::Admin).await;
    t.app
        .change_role(app::Actor::Operator, "ann", Role::Clinician, &meta)
        .await
        .unwrap();
    let ann = t
        .store
        .user_by_username(&domain::Username::parse("ann").unwrap())
        .await
        .unwrap()
        .unwrap()
        .user;
    assert_eq!((ann.role, ann.active), (Role::Clinician, true));
    let kinds: Vec<String> = t
        .store
        .list_events(None, 50)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind.as_str().to_owned())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "role_changed").count(),
        1,
        "only the change made was recorded: {kinds:?}"
    );
}

/// Changes to accounts are checked after waiting for the lock that makes
/// them one at a time; on a PostgreSQL whose default isolation is
/// REPEATABLE READ a snapshot taken before the wait would miss the change
/// made first. The transactions ask for READ COMMITTED themselves.
#[tokio::test]
#[ignore = "needs PostgreSQL (VELLUM_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres); CI runs it"]
async fn on_a_postgresql_defaulting_to_repeatable_read_mutual_demotions_still_leave_an_administrator()
 {
    let db = crate::harness::TestDb::postgres(&crate::harness::TestDb::postgres_admin_url()).await;
    let name = db.url.rsplit_once('/').unwrap().1.to_owned();
    let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
    let t = TestApp::spawn_on(
        std::sync::Arc::new(db),
        std::sync::Arc::new(crypto::Keyring::generate(0)),
        std::sync::Arc::new(app::ManualClock::starting_now()),
        crate::harness::Options::default().config,
    )
    .await;
    let isolation: String = sqlx::query_scalar("SHOW default_transaction_isolation")
        .fetch_one(&sqlx::PgPool::connect(&t.db.url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(isolation, "repeatable read");
    for round in 0..5 {
        let (a, b) = (format!("ann{round}"), format!("ben{round}"));
        t.create_user(&a, Role::Admin).await;
        t.create_user(&b, Role::Admin).await;
        let read = |name: String| {
            let store = t.store.clone();
            async move {
                store
                    .user_by_username(&domain::Username::parse(&name).unwrap())
                    .await
                    .unwrap()
                    .unwrap()
                    .user
            }
        };
        let (ua, ub) = (read(a.clone()).await, read(b.clone()).await);
        let meta = app::RequestMeta::default();
        let (ra, rb) = tokio::join!(
            t.app
                .change_role(app::Actor::User(&ua), &b, Role::Clinician, &meta),
            t.app
                .change_role(app::Actor::User(&ub), &a, Role::Clinician, &meta),
        );
        // One wins; the other finds its administrator demoted (not a
        // failed write: a stale snapshot would collide in the security
        // log instead, a 500).
        assert!(
            matches!(
                (&ra, &rb),
                (Ok(_), Err(app::AppError::Forbidden)) | (Err(app::AppError::Forbidden), Ok(_))
            ),
            "round {round}: exactly one wins: {ra:?} {rb:?}"
        );
        let admins = [read(a).await, read(b).await]
            .iter()
            .filter(|u| u.role == Role::Admin)
            .count();
        assert_eq!(admins, 1, "round {round}");
    }
    assert!(
        t.app
            .verify_security_log()
            .await
            .unwrap()
            .first_broken
            .is_none()
    );
}
