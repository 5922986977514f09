//! Patients and letters: seed 000 on clinical routes, seed 002 gradients,
//! the role matrix, versions, duplicates and validation.

use domain::Role;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::harness::{Client, TestApp, problem};

/// A valid NHS number in the test range 999 000 0000–999 999 9999.
pub fn nhs(n: u32) -> String {
    let mut i = n;
    loop {
        let nine = format!("999{:06}", i % 1_000_000);
        let sum: u32 = nine
            .chars()
            .zip((2..=10).rev())
            .map(|(c, w)| c.to_digit(10).unwrap() * w)
            .sum();
        let check = 11 - (sum % 11);
        let check = if check == 11 { 0 } else { check };
        if check != 10 {
            return format!("{nine}{check}");
        }
        i += 1;
    }
}

pub fn patient_json(family: &str, given: &str, nhs_number: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "birthDate": "1970-01-01",
        "gender": "female"
    })
}

pub async fn create_patient(c: &Client, family: &str, nhs_number: &str) -> Value {
    let res = c
        .post("/api/patients", patient_json(family, "Ann", nhs_number))
        .await;
    assert_eq!(res.status(), 201, "create patient");
    res.json().await.unwrap()
}

async fn letter_count(t: &TestApp, patient_id: &str) -> i64 {
    t.store.count_letters(patient_id).await.unwrap()
}

fn hdr(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.parse().unwrap());
    }
    h
}

#[tokio::test]
async fn letter_post_without_csrf_header_is_403_and_writes_nothing() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let p = create_patient(&c, "Smith", &nhs(1)).await;
    let id = p["id"].as_str().unwrap();
    let res = c
        .send_with(
            Method::POST,
            &format!("/api/patients/{id}/letters"),
            Some(json!({"title": "Forged", "body": "Stop all medication", "status": "final"})),
            HeaderMap::new(),
        )
        .await;
    let (status, title, _) = problem(res).await;
    assert_eq!((status, title.as_str()), (403, "CSRF token required"));
    assert_eq!(letter_count(&t, id).await, 0);
}

#[tokio::test]
async fn letter_post_with_invalid_or_expired_csrf_token_is_403_and_writes_nothing() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let p = create_patient(&c, "Smith", &nhs(2)).await;
    let id = p["id"].as_str().unwrap();
    let stale = c.csrf_cookie().unwrap();
    // A token from before a fresh login (rotated away) is expired.
    assert_eq!(
        c.login("alice", crate::harness::PASSWORD).await.status(),
        200
    );
    for token in ["invalid-token-invalid-token", stale.as_str()] {
        let res = c
            .send_with(
                Method::POST,
                &format!("/api/patients/{id}/letters"),
                Some(json!({"title": "Forged", "body": "x"})),
                hdr(&[("x-csrf-token", token)]),
            )
            .await;
        let (status, title, _) = problem(res).await;
        assert_eq!((status, title.as_str()), (403, "CSRF token invalid"));
    }
    assert_eq!(letter_count(&t, id).await, 0);
}

#[tokio::test]
async fn demographic_update_without_or_with_invalid_csrf_token_changes_nothing() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let p = create_patient(&c, "Smith", &nhs(3)).await;
    let id = p["id"].as_str().unwrap();
    let forged = patient_json("Forged", "Mallory", &nhs(3));
    for headers in [
        hdr(&[("if-match", "W/\"1\"")]),
        hdr(&[("if-match", "W/\"1\""), ("x-csrf-token", "bad-bad-bad")]),
    ] {
        let res = c
            .send_with(
                Method::PUT,
                &format!("/api/patients/{id}"),
                Some(forged.clone()),
                headers,
            )
            .await;
        assert_eq!(res.status(), 403);
    }
    let now: Value = c
        .get(&format!("/api/patients/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(now["version"], 1);
    assert_eq!(now["resource"]["name"][0]["family"], "Smith");
}

#[tokio::test]
async fn clinician_creates_reads_and_updates_with_versions() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let res = c
        .post("/api/patients", patient_json("Ångström", "Zoë", &nhs(4)))
        .await;
    assert_eq!(res.status(), 201);
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, "W/\"1\"");
    let p: Value = res.json().await.unwrap();
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(loc, format!("/api/patients/{id}"));
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(p["resource"]["meta"]["versionId"], "1");

    let mut changed = p["resource"].clone();
    changed["gender"] = json!("other");
    let res = c
        .send_with(Method::PUT, &loc, Some(changed.clone()), {
            let mut h = hdr(&[("if-match", "W/\"1\"")]);
            h.insert("x-csrf-token", c.csrf_cookie().unwrap().parse().unwrap());
            h
        })
        .await;
    assert_eq!(res.status(), 200);
    let v2: Value = res.json().await.unwrap();
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["resource"]["gender"], "other");

    // A second clinician still holding version 1 cannot overwrite it.
    let res = c
        .send_with(
            Method::PUT,
            &loc,
            Some(patient_json("Stale", "Write", &nhs(4))),
            {
                let mut h = hdr(&[("if-match", "W/\"1\"")]);
                h.insert("x-csrf-token", c.csrf_cookie().unwrap().parse().unwrap());
                h
            },
        )
        .await;
    let (status, _, _) = problem(res).await;
    assert_eq!(status, 412);
    // Without If-Match the change is refused too.
    let res = c.send(Method::PUT, &loc, Some(changed)).await;
    assert_eq!(res.status(), 428);

    let hist: Value = c.get(&format!("{loc}/history")).await.json().await.unwrap();
    let items = hist["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["resource"]["gender"], "female");
    assert_eq!(items[1]["resource"]["gender"], "other");
    let now: Value = c.get(&loc).await.json().await.unwrap();
    assert_eq!(now["version"], 2);
}

#[tokio::test]
async fn duplicate_nhs_number_is_409() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    create_patient(&c, "Smith", &nhs(5)).await;
    let res = c
        .post("/api/patients", patient_json("Jones", "Bob", &nhs(5)))
        .await;
    let (status, _, _) = problem(res).await;
    assert_eq!(status, 409);
    // Updating another patient to that number is refused as well.
    let other = create_patient(&c, "Jones", &nhs(6)).await;
    let id = other["id"].as_str().unwrap();
    let res = c
        .send_with(
            Method::PUT,
            &format!("/api/patients/{id}"),
            Some(patient_json("Jones", "Bob", &nhs(5))),
            {
                let mut h = hdr(&[("if-match", "W/\"1\"")]);
                h.insert("x-csrf-token", c.csrf_cookie().unwrap().parse().unwrap());
                h
            },
        )
        .await;
    assert_eq!(res.status(), 409);
}

#[tokio::test]
async fn invalid_nhs_number_gender_and_dates_are_422_naming_the_field() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let mut bad = patient_json("Smith", "Ann", "9434765918");
    bad["gender"] = json!("robot");
    bad["birthDate"] = json!("2999-01-01");
    let res = c.post("/api/patients", bad).await;
    let (status, _, body) = problem(res).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.iter().any(|f| f.starts_with("identifier")),
        "{fields:?}"
    );
    assert!(fields.contains(&"gender"), "{fields:?}");
    assert!(fields.contains(&"birthDate"), "{fields:?}");
    assert!(
        t.store
            .search_patients(&store::PatientSearch {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn search_by_name_prefix_nhs_number_and_birth_date() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    create_patient(&c, "Ångström", &nhs(7)).await;
    create_patient(&c, "Anderson", &nhs(8)).await;
    create_patient(&c, "Baker", &nhs(9)).await;
    let names = |v: Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["display_name"].as_str().unwrap().to_owned())
            .collect()
    };
    let r: Value = c.get("/api/patients?q=an").await.json().await.unwrap();
    assert_eq!(
        names(r).len(),
        3,
        "an: Ångström, Anderson, and given name Ann"
    );
    let r: Value = c.get("/api/patients?q=ANGS").await.json().await.unwrap();
    assert_eq!(names(r).len(), 1);
    let r: Value = c
        .get(&format!("/api/patients?q={}", nhs(9)))
        .await
        .json()
        .await
        .unwrap();
    let items = r["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["nhs_number"], nhs(9));
    let r: Value = c
        .get("/api/patients?q=1970-01-01")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["items"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn one_letter_words_find_names_holding_both_initials_and_follow_renames() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    // Given name Ann throughout: initials a + the family's.
    create_patient(&c, "Ó Súilleabháin", &nhs(11)).await;
    create_patient(&c, "O'Brien", &nhs(12)).await;
    let smith = create_patient(&c, "Smith", &nhs(13)).await;
    let found = |q: &'static str| {
        let c = &c;
        async move {
            let r: Value = c
                .get(&format!("/api/patients?q={q}"))
                .await
                .json()
                .await
                .unwrap();
            r["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["display_name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let irish_name = "Ó SÚILLEABHÁIN, Ann";
    assert_eq!(found("o%20s").await, [irish_name]);
    assert_eq!(
        found("S%20%C3%B3").await,
        [irish_name],
        "any order, accents folded"
    );
    assert_eq!(found("a%20s").await, [irish_name, "SMITH, Ann"]);
    assert_eq!(found("o%20a").await, [irish_name, "O'BRIEN, Ann"]);
    assert_eq!(found("o%20o").await.len(), 2, "a repeated word counts once");
    assert!(found("b%20s").await.is_empty());
    // A rename replaces the initials: Smith → Owen.
    let id = smith["id"].as_str().unwrap();
    let res = c
        .send_with(
            Method::PUT,
            &format!("/api/patients/{id}"),
            Some(patient_json("Owen", "Ann", &nhs(13))),
            {
                let mut h = hdr(&[("if-match", "W/\"1\"")]);
                h.insert("x-csrf-token", c.csrf_cookie().unwrap().parse().unwrap());
                h
            },
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(found("a%20s").await, [irish_name]);
    assert_eq!(found("o%20a").await.len(), 3);
}

#[tokio::test]
async fn letters_are_drafted_finalised_amended_and_never_deleted() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let p = create_patient(&c, "Smith", &nhs(10)).await;
    let id = p["id"].as_str().unwrap();
    let base = format!("/api/patients/{id}/letters");
    let res = c
        .post(
            &base,
            json!({"title": "Clinic letter", "body": "**Plan**: review"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let draft: Value = res.json().await.unwrap();
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["author"]["username"], "alice");
    assert!(
        draft["body_html"]
            .as_str()
            .unwrap()
            .contains("<strong>Plan</strong>")
    );
    let lid = draft["id"].as_str().unwrap();
    let with_version = |v: &str| {
        let mut h = hdr(&[("if-match", v)]);
        h.insert("x-csrf-token", c.csrf_cookie().unwrap().parse().unwrap());
        h
    };
    let res = c
        .send_with(
            Method::PUT,
            &format!("{base}/{lid}"),
            Some(json!({"title": "Clinic letter", "body": "Plan: review in 6 weeks"})),
            with_version("W/\"1\""),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = c
        .send_with(
            Method::POST,
            &format!("{base}/{lid}/finalise"),
            None,
            with_version("W/\"2\""),
        )
        .await;
    assert_eq!(res.status(), 200);
    let fin: Value = res.json().await.unwrap();
    assert_eq!(fin["status"], "final");
    // Final letters are immutable.
    let res = c
        .send_with(
            Method::PUT,
            &format!("{base}/{lid}"),
            Some(json!({"title": "x", "body": "y"})),
            with_version("W/\"3\""),
        )
        .await;
    assert_eq!(res.status(), 409);
    // A correction is a new letter that amends the old.
    let res = c.post(&format!("{base}/{lid}/amend"), json!({"title": "Clinic letter (corrected)", "body": "Review in 4 weeks", "status": "final"})).await;
    assert_eq!(res.status(), 201);
    let amendment: Value = res.json().await.unwrap();
    assert_eq!(amendment["amends"], lid);
    let old: Value = c.get(&format!("{base}/{lid}")).await.json().await.unwrap();
    assert_eq!(old["superseded_by"], amendment["id"]);
    // Entered in error: kept, marked, with the reason.
    let aid = amendment["id"].as_str().unwrap();
    let res = c
        .send_with(
            Method::POST,
            &format!("{base}/{aid}/entered-in-error"),
            Some(json!({"reason": "wrong patient"})),
            with_version("W/\"1\""),
        )
        .await;
    assert_eq!(res.status(), 200);
    let list: Value = c.get(&base).await.json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "nothing is deleted");
    assert_eq!(items[0]["id"], amendment["id"], "newest first");
    assert_eq!(items[0]["status"], "entered-in-error");
    assert_eq!(items[0]["error_reason"], "wrong patient");
}

#[tokio::test]
async fn a_letter_for_a_patient_that_does_not_exist_is_404_and_writes_nothing() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let real = create_patient(&c, "Smith", &nhs(14)).await;
    let real = real["id"].as_str().unwrap();
    let missing = "0b5cbd1e-7d3f-4c1a-9e2b-5a0c3f6d8e71";
    // Sent together, so on SQLite they may share one group commit: the
    // refused letter must not take the other with it.
    let (to_missing, to_real) = (
        format!("/api/patients/{missing}/letters"),
        format!("/api/patients/{real}/letters"),
    );
    let (lost, kept) = tokio::join!(
        c.post(&to_missing, json!({"title": "Lost", "body": "For nobody"})),
        c.post(&to_real, json!({"title": "Kept", "body": "For Smith"})),
    );
    assert_eq!(lost.status(), 404);
    assert_eq!(kept.status(), 201);
    // The 201's body is the letter as stored: a later read gives the same.
    let answered: Value = kept.json().await.unwrap();
    let lid = answered["id"].as_str().unwrap();
    let read: Value = c
        .get(&format!("/api/patients/{real}/letters/{lid}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answered, read);
    assert_eq!(letter_count(&t, missing).await, 0);
    assert_eq!(letter_count(&t, real).await, 1);
    assert!(
        t.store
            .access_log(missing, 50, None)
            .await
            .unwrap()
            .is_empty(),
        "no access-log row claims a letter was written"
    );
}

#[tokio::test]
async fn letter_id_under_the_wrong_patient_is_404() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let a = create_patient(&c, "Smith", &nhs(11)).await;
    let b = create_patient(&c, "Jones", &nhs(12)).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let l: Value = c
        .post(
            &format!("/api/patients/{a}/letters"),
            json!({"title": "For A", "body": "x"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let lid = l["id"].as_str().unwrap();
    assert_eq!(
        c.get(&format!("/api/patients/{a}/letters/{lid}"))
            .await
            .status(),
        200
    );
    assert_eq!(
        c.get(&format!("/api/patients/{b}/letters/{lid}"))
            .await
            .status(),
        404
    );
    let list: Value = c
        .get(&format!("/api/patients/{b}/letters"))
        .await
        .json()
        .await
        .unwrap();
    assert!(list["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn letter_html_is_sanitised() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let p = create_patient(&c, "Smith", &nhs(13)).await;
    let id = p["id"].as_str().unwrap();
    let l: Value = c
        .post(&format!("/api/patients/{id}/letters"), json!({"title": "x", "body": "<script>alert(1)</script><img src=x onerror=alert(1)>[a](javascript:alert(1)) <a href=\"javascript:alert(2)\">b</a>"}))
        .await
        .json()
        .await
        .unwrap();
    let html = l["body_html"].as_str().unwrap();
    assert!(
        !html.contains("<script")
            && !html.contains("onerror")
            && !html.contains("href=\"javascript:"),
        "{html}"
    );
}

#[tokio::test]
async fn every_read_and_change_is_in_the_access_log() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let p = create_patient(&c, "Smith", &nhs(14)).await;
    let id = p["id"].as_str().unwrap();
    c.get(&format!("/api/patients/{id}")).await;
    c.post(
        &format!("/api/patients/{id}/letters"),
        json!({"title": "x", "body": "y"}),
    )
    .await;
    let log: Value = c
        .get(&format!("/api/patients/{id}/access-log"))
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["resource_type"].as_str().unwrap(),
            )
        })
        .collect();
    for want in [
        ("create", "patient"),
        ("read", "patient"),
        ("create", "letter"),
    ] {
        assert!(actions.contains(&want), "{want:?} in {actions:?}");
    }
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["username"] == "alice" && r["role"] == "clinician")
    );
}

/// Walks `/api/patients/{id}/letters` by its `next` links; returns the ids.
async fn walk_letters(c: &Client, patient_id: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page = Some(1u64);
    while let Some(n) = page {
        let v: Value = c
            .get(&format!("/api/patients/{patient_id}/letters?page={n}"))
            .await
            .json()
            .await
            .unwrap();
        for item in v["items"].as_array().unwrap() {
            assert_eq!(
                item["patient_id"], patient_id,
                "a letter of another patient"
            );
            ids.push(item["id"].as_str().unwrap().to_owned());
        }
        page = v["next"].as_u64();
        assert!(
            page.is_none_or(|p| p == n + 1),
            "next page {page:?} after {n}"
        );
    }
    ids
}

#[tokio::test]
async fn a_patients_letters_walked_page_by_page_appear_once_each_and_only_under_that_patient() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let p = create_patient(&c, "Paged", &nhs(301)).await;
    let other = create_patient(&c, "Other", &nhs(302)).await;
    let (pid, oid) = (p["id"].as_str().unwrap(), other["id"].as_str().unwrap());
    let mut made = Vec::new();
    for i in 0..60 {
        let (to, title) = if i % 4 == 3 {
            (oid, "other")
        } else {
            (pid, "mine")
        };
        t.clock.advance_ms(1_000);
        let res = c
            .post(
                &format!("/api/patients/{to}/letters"),
                json!({"title": format!("{title} {i}"), "body": "x"}),
            )
            .await;
        assert_eq!(res.status(), 201);
        if to == pid {
            let v: Value = res.json().await.unwrap();
            made.push(v["id"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        made.len() > 2 * app::LETTER_PAGE as usize,
        "three pages at least"
    );
    let walked = walk_letters(&c, pid).await;
    // Newest first, every letter once, none missing, none of the other patient's.
    let mut newest_first = made.clone();
    newest_first.reverse();
    assert_eq!(walked, newest_first);

    // A letter written while someone is paging shifts the list down: an
    // earlier letter may show twice, but none goes missing.
    let first: Value = c
        .get(&format!("/api/patients/{pid}/letters?page=1"))
        .await
        .json()
        .await
        .unwrap();
    t.clock.advance_ms(1_000);
    let res = c
        .post(
            &format!("/api/patients/{pid}/letters"),
            json!({"title": "while paging", "body": "x"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let mut seen: std::collections::BTreeSet<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let mut n = 2;
    loop {
        let v: Value = c
            .get(&format!("/api/patients/{pid}/letters?page={n}"))
            .await
            .json()
            .await
            .unwrap();
        for item in v["items"].as_array().unwrap() {
            seen.insert(item["id"].as_str().unwrap().to_owned());
        }
        if v["next"].is_null() {
            break;
        }
        n += 1;
    }
    for id in &made {
        assert!(seen.contains(id), "letter {id} went missing while paging");
    }
}

/// A patient with no NHS number, by name and date of birth.
fn unnumbered(family: &str, given: &[&str], birth: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{"use": "official", "family": family, "given": given}],
        "birthDate": birth,
    })
}

/// Whether patient `id`'s access log, as `c` reads it, has a row of
/// `action` by `username`.
async fn logged(c: &Client, id: &str, action: &str, username: &str) -> bool {
    let log: Value = c
        .get(&format!("/api/patients/{id}/access-log"))
        .await
        .json()
        .await
        .unwrap();
    log["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["action"] == action && r["username"] == username)
}

async fn patient_count(t: &TestApp) -> usize {
    t.store
        .search_patients(&store::PatientSearch {
            include_inactive: true,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_possible_duplicate_patient_is_refused_naming_the_records_until_the_user_says_they_checked()
 {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let res = c
        .post(
            "/api/patients",
            unnumbered("Ó Súilleabháin", &["Áine", "Marie"], "1980-02-03"),
        )
        .await;
    assert_eq!(res.status(), 201);
    let first: Value = res.json().await.unwrap();
    let first_id = first["id"].as_str().unwrap();

    // The same person typed without accents, one given name, and now with an
    // NHS number: refused, naming the record, registering nothing.
    let mut again = unnumbered("o suilleabhain", &["AINE"], "1980-02-03");
    again["identifier"] =
        json!([{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs(31)}]);
    let (status, _, body) = problem(c.post("/api/patients", again.clone()).await).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["type"], "/problems/possible-duplicate");
    let found = body["possible_duplicates"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{body}");
    assert_eq!(found[0]["id"], first_id);
    assert_eq!(found[0]["birth_date"], "1980-02-03");
    assert!(found[0]["nhs_number"].is_null());
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("?possible_duplicates=checked"),
        "{body}"
    );
    assert_eq!(patient_count(&t).await, 1, "nothing was registered");

    // The warning showed that record to alice: its access log says so.
    assert!(logged(&c, first_id, "duplicate_warning", "alice").await);

    // Only `checked` says the user checked.
    let (status, _, body) = problem(
        c.post("/api/patients?possible_duplicates=yes", again.clone())
            .await,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "possible_duplicates");
    assert_eq!(patient_count(&t).await, 1);

    let res = c
        .post("/api/patients?possible_duplicates=checked", again)
        .await;
    assert_eq!(res.status(), 201, "registered once the user checked");
    let second: Value = res.json().await.unwrap();
    assert_eq!(patient_count(&t).await, 2);
    // Registering over a possible duplicate is in both records' logs.
    for id in [first_id, second["id"].as_str().unwrap()] {
        assert!(logged(&c, id, "duplicate_override", "alice").await, "{id}");
    }
}

#[tokio::test]
async fn patients_who_differ_in_birth_date_first_name_or_nhs_number_are_not_possible_duplicates() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let created = |r: reqwest::Response| {
        let status = r.status();
        assert_eq!(status, 201);
    };
    created(
        c.post("/api/patients", unnumbered("Shaw", &["Ann"], "1950-06-07"))
            .await,
    );
    // Another birth date, another first given name, no birth date at all.
    created(
        c.post("/api/patients", unnumbered("Shaw", &["Ann"], "1950-06-08"))
            .await,
    );
    created(
        c.post("/api/patients", unnumbered("Shaw", &["Anna"], "1950-06-07"))
            .await,
    );
    created(
        c.post(
            "/api/patients",
            unnumbered("Shawcross", &["Ann"], "1950-06-07"),
        )
        .await,
    );
    created(
        c.post(
            "/api/patients",
            json!({"resourceType": "Patient", "name": [{"family": "Shaw", "given": ["Ann"]}]}),
        )
        .await,
    );
    // Two NHS numbers are two people, whatever their names.
    created(
        c.post("/api/patients", patient_json("Ng", "Li", &nhs(41)))
            .await,
    );
    created(
        c.post("/api/patients", patient_json("Ng", "Li", &nhs(42)))
            .await,
    );
    // A later given name is the same first name: still a possible duplicate.
    let (status, _, body) = problem(
        c.post(
            "/api/patients",
            unnumbered("Shaw", &["Ann", "Louise"], "1950-06-07"),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["possible_duplicates"].as_array().unwrap().len(), 1);
}

/// A PUT of `resource` as version `version` of patient `id`, with `query`.
async fn put_patient(
    c: &Client,
    id: &str,
    version: i64,
    query: &str,
    resource: Value,
) -> reqwest::Response {
    let headers = hdr(&[
        ("if-match", &format!("W/\"{version}\"")),
        ("x-csrf-token", &c.csrf_cookie().unwrap()),
    ]);
    c.send_with(
        Method::PUT,
        &format!("/api/patients/{id}{query}"),
        Some(resource),
        headers,
    )
    .await
}

#[tokio::test]
async fn a_change_that_makes_a_patient_look_like_another_is_refused_until_the_user_says_they_checked()
 {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let made = |r: Value| {
        let c = &c;
        async move {
            let res = c.post("/api/patients", r).await;
            assert_eq!(res.status(), 201);
            let v: Value = res.json().await.unwrap();
            v["id"].as_str().unwrap().to_owned()
        }
    };
    let first = made(unnumbered("Shaw", &["Ann"], "1950-06-07")).await;
    let second = made(unnumbered("Shaw", &["Ann"], "1951-01-01")).await;

    // The second's birth date corrected to the first's: refused, naming
    // the first, nothing saved.
    let res = put_patient(
        &c,
        &second,
        1,
        "",
        unnumbered("Shaw", &["Ann"], "1950-06-07"),
    )
    .await;
    let (status, _, body) = problem(res).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["type"], "/problems/possible-duplicate");
    let found = body["possible_duplicates"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{body}");
    assert_eq!(found[0]["id"], first.as_str());
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Nothing was saved")
    );
    let stored: Value = c
        .get(&format!("/api/patients/{second}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["version"], 1, "unchanged");
    assert!(logged(&c, &first, "duplicate_warning", "alice").await);

    // Said to be checked: saved, and in both records' logs.
    let res = put_patient(
        &c,
        &second,
        1,
        "?possible_duplicates=checked",
        unnumbered("Shaw", &["Ann"], "1950-06-07"),
    )
    .await;
    assert_eq!(res.status(), 200);
    for id in [&first, &second] {
        assert!(logged(&c, id, "duplicate_override", "alice").await, "{id}");
    }
    // Later edits that leave the name and birth date alone are not refused
    // again.
    let mut phone = unnumbered("Shaw", &["Ann"], "1950-06-07");
    phone["telecom"] = json!([{"system": "phone", "value": "01632 960001"}]);
    let res = put_patient(&c, &second, 2, "", phone).await;
    assert_eq!(res.status(), 200);
    // Giving the first a new name that matches nobody is not refused either.
    let res = put_patient(
        &c,
        &first,
        1,
        "",
        unnumbered("Shawcross", &["Ann"], "1950-06-07"),
    )
    .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn two_registrations_of_one_person_at_the_same_moment_cannot_both_pass_the_duplicate_check() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    // Eight at once: exactly one is registered, each other is refused as
    // its possible duplicate.
    let sends =
        (0..8).map(|_| c.post("/api/patients", unnumbered("Race", &["Rosa"], "1970-07-07")));
    let mut statuses: Vec<u16> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
    assert_eq!(patient_count(&t).await, 1);

    // Deterministically: a registration whose check found nothing before
    // another committed is still refused by the check repeated inside its
    // own transaction.
    let check = store::DuplicateCheck {
        search: store::PatientSearch {
            same_name: Some(("twin".to_owned(), "tess".to_owned())),
            birth_date: Some("1990-09-09".to_owned()),
            include_inactive: true,
            limit: 11,
            ..store::PatientSearch::default()
        },
        checked: Some(Vec::new()),
    };
    let write = |id: &str| store::PatientWrite {
        id: id.to_owned(),
        version: 1,
        nhs_number: None,
        family_folded: "twin".to_owned(),
        given_folded: "tess".to_owned(),
        name_tokens: vec!["twin".to_owned(), "tess".to_owned()],
        display_name: "TWIN, Tess".to_owned(),
        birth_date: Some("1990-09-09".to_owned()),
        gender: None,
        active: true,
        resource: "{}".to_owned(),
    };
    let now = app::Clock::now(t.clock.as_ref());
    let a = crypto::random::uuid_v4().to_string();
    let b = crypto::random::uuid_v4().to_string();
    assert!(
        t.store
            .search_patients(&check.search)
            .await
            .unwrap()
            .is_empty()
    );
    t.store
        .create_patient(&write(&a), "alice", now, &[], Some(&check))
        .await
        .unwrap();
    let refused = t
        .store
        .create_patient(&write(&b), "alice", now, &[], Some(&check))
        .await;
    match refused {
        Err(store::StoreError::PossibleDuplicates(rows)) => {
            assert_eq!(
                rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                [a.as_str()]
            );
        }
        other => panic!("expected a refusal naming the first: {other:?}"),
    }
    assert!(
        t.store.patient(&b).await.unwrap().is_none(),
        "nothing written"
    );
}

#[tokio::test]
async fn a_possible_duplicate_without_an_nhs_number_is_found_among_many_numbered_namesakes() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    // More namesakes with NHS numbers than one check reads, registered
    // first (each number a different person: they are not warned of).
    for n in 0..25 {
        let mut p = unnumbered("Common", &["Kim"], "1975-05-05");
        p["identifier"] =
            json!([{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs(100 + 2 * n)}]);
        let res = c.post("/api/patients", p).await;
        assert_eq!(res.status(), 201, "{n}");
    }
    // (Each of them may be this one: registered once the user checked.)
    let res = c
        .post(
            "/api/patients?possible_duplicates=checked",
            // Its later given name sorts it after every numbered namesake.
            unnumbered("Common", &["Kim", "Zed"], "1975-05-05"),
        )
        .await;
    assert_eq!(res.status(), 201, "registered without a number");
    let unnumbered_id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A new namesake with a number: the one without is found.
    let mut p = unnumbered("Common", &["Kim"], "1975-05-05");
    p["identifier"] = json!([{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs(200)}]);
    let (status, _, body) = problem(c.post("/api/patients", p).await).await;
    assert_eq!(status, 409, "{body}");
    let found = body["possible_duplicates"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{body}");
    assert_eq!(found[0]["id"], unnumbered_id.as_str());
}

#[tokio::test]
async fn a_record_registered_after_the_user_was_shown_the_list_is_not_written_over_unseen() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let person = || unnumbered("Late", &["Lou"], "1966-06-06");
    let first = c.post("/api/patients", person()).await;
    assert_eq!(first.status(), 201);
    let first = first.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Alice is shown the first record…
    let (status, _, body) = problem(c.post("/api/patients", person()).await).await;
    assert_eq!(status, 409);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("checked_duplicates={first}")),
        "{body}"
    );
    // …and while she checks it, a colleague registers another.
    let bob = t.signed_in("bob", Role::Clinician).await;
    let second = bob
        .post("/api/patients?possible_duplicates=checked", person())
        .await;
    assert_eq!(second.status(), 201);
    let second = second.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Her answer names what she checked: refused, naming both.
    let (status, _, body) = problem(
        c.post(
            &format!("/api/patients?possible_duplicates=checked&checked_duplicates={first}"),
            person(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let mut named: Vec<&str> = body["possible_duplicates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    named.sort_unstable();
    let mut both = [first.as_str(), second.as_str()];
    both.sort_unstable();
    assert_eq!(named, both);
    assert_eq!(patient_count(&t).await, 2, "nothing registered");
    // Checked both: registered.
    let res = c
        .post(
            &format!(
                "/api/patients?possible_duplicates=checked&checked_duplicates={first},{second}"
            ),
            person(),
        )
        .await;
    assert_eq!(res.status(), 201);
    // Naming checked records without saying they were checked is refused.
    let (status, _, body) = problem(
        c.post(
            &format!("/api/patients?checked_duplicates={first}"),
            person(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "checked_duplicates");
}
