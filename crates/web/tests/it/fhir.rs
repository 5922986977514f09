//! The FHIR R4 API: the same rules as the JSON API, FHIR's shapes.
//! (`tests/fhir/interop.py` checks the same surface with an independent
//! FHIR model library and a real FHIR client.)

use domain::Role;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::clinical::{nhs, patient_json};
use crate::harness::{Client, TestApp};

const FHIR_JSON: &str = "application/fhir+json";

async fn fhir(res: reqwest::Response) -> (u16, HeaderMap, Value) {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let ct = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        ct.starts_with(FHIR_JSON),
        "content type {ct} (status {status})"
    );
    let body = res.json().await.unwrap();
    (status, headers, body)
}

fn if_match(version: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("if-match", format!("W/\"{version}\"").parse().unwrap());
    h
}

/// A clinician's FHIR write carrying the CSRF token (session auth).
async fn fhir_write(
    c: &Client,
    method: Method,
    path: &str,
    body: Value,
    mut headers: HeaderMap,
) -> reqwest::Response {
    if let Some(t) = c.csrf_cookie() {
        headers.insert("x-csrf-token", t.parse().unwrap());
    }
    c.send_with(method, path, Some(body), headers).await
}

async fn create(
    c: &Client,
    family: &str,
    given: &str,
    n: u32,
    birth: &str,
    gender: &str,
) -> String {
    let mut p = patient_json(family, given, &nhs(n));
    p["birthDate"] = json!(birth);
    p["gender"] = json!(gender);
    let (status, _, body) =
        fhir(fhir_write(c, Method::POST, "/fhir/R4/Patient", p, HeaderMap::new()).await).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn search(c: &Client, query: &str) -> Value {
    let (status, _, body) = fhir(c.get(&format!("/fhir/R4/Patient?{query}")).await).await;
    assert_eq!(status, 200, "{query}: {body}");
    assert_eq!(body["resourceType"], "Bundle");
    assert_eq!(body["type"], "searchset");
    body
}

#[tokio::test]
async fn metadata_lists_exactly_what_is_supported() {
    let t = TestApp::spawn().await;
    // Public, like every FHIR server's CapabilityStatement.
    let (status, _, cs) = fhir(t.client().get("/fhir/R4/metadata").await).await;
    assert_eq!(status, 200);
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    let types: Vec<&str> = resources
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Patient", "DocumentReference"]);
    let codes = |r: &Value| -> Vec<String> {
        r["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        codes(&resources[0]),
        [
            "read",
            "vread",
            "history-instance",
            "search-type",
            "create",
            "update"
        ]
    );
    assert_eq!(codes(&resources[1]), ["read", "search-type"]);
    let params: Vec<&str> = resources[0]["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        params,
        [
            "_id",
            "identifier",
            "name",
            "family",
            "given",
            "birthdate",
            "gender"
        ]
    );
    // Every listed Patient parameter is accepted by the server.
    let c = t.signed_in("alice", Role::Clinician).await;
    for p in params {
        let value = match p {
            "birthdate" => "1970",
            "gender" => "female",
            _ => "x",
        };
        search(&c, &format!("{p}={value}")).await;
    }
}

#[tokio::test]
async fn create_read_vread_and_history_carry_versions() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let res = fhir_write(
        &c,
        Method::POST,
        "/fhir/R4/Patient",
        patient_json("Okafor", "Ada", &nhs(1)),
        HeaderMap::new(),
    )
    .await;
    let (status, headers, created) = fhir(res).await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["meta"]["versionId"], "1");
    assert_eq!(headers["etag"], "W/\"1\"");
    assert_eq!(
        headers["location"].to_str().unwrap(),
        format!("{}/fhir/R4/Patient/{id}/_history/1", t.base)
    );

    let (status, headers, read) = fhir(c.get(&format!("/fhir/R4/Patient/{id}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(headers["etag"], "W/\"1\"");
    assert_eq!(read["name"][0]["family"], "Okafor");
    assert!(read["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));

    let mut changed = read.clone();
    changed["name"][0]["family"] = json!("Okafor-Smith");
    let (status, headers, updated) = fhir(
        fhir_write(
            &c,
            Method::PUT,
            &format!("/fhir/R4/Patient/{id}"),
            changed,
            if_match("1"),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(headers["etag"], "W/\"2\"");
    assert_eq!(updated["meta"]["versionId"], "2");

    let (_, _, v1) = fhir(c.get(&format!("/fhir/R4/Patient/{id}/_history/1")).await).await;
    assert_eq!(
        v1["name"][0]["family"], "Okafor",
        "version 1 is kept as it was"
    );
    let (status, _, oo) = fhir(c.get(&format!("/fhir/R4/Patient/{id}/_history/9")).await).await;
    assert_eq!(
        (status, oo["resourceType"].as_str()),
        (404, Some("OperationOutcome"))
    );

    let (_, _, h) = fhir(c.get(&format!("/fhir/R4/Patient/{id}/_history")).await).await;
    assert_eq!(h["type"], "history");
    assert_eq!(h["total"], 2);
    let versions: Vec<&str> = h["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["2", "1"], "newest first");
    assert_eq!(h["entry"][1]["request"]["method"], "POST");
    assert_eq!(h["entry"][0]["request"]["method"], "PUT");
}

#[tokio::test]
async fn update_needs_the_current_version_and_the_urls_id() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let id = create(&c, "Stale", "Sam", 2, "1980-01-01", "male").await;
    let (_, _, current) = fhir(c.get(&format!("/fhir/R4/Patient/{id}")).await).await;
    let path = format!("/fhir/R4/Patient/{id}");
    let mut changed = current.clone();
    changed["gender"] = json!("other");

    let (status, _, oo) =
        fhir(fhir_write(&c, Method::PUT, &path, changed.clone(), HeaderMap::new()).await).await;
    assert_eq!(status, 428, "no If-Match: {oo}");
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert_eq!(oo["issue"][0]["code"], "required");

    let (status, _, _) =
        fhir(fhir_write(&c, Method::PUT, &path, changed.clone(), if_match("1")).await).await;
    assert_eq!(status, 200);
    let (status, _, oo) =
        fhir(fhir_write(&c, Method::PUT, &path, changed.clone(), if_match("1")).await).await;
    assert_eq!(status, 412, "stale If-Match");
    assert_eq!(oo["issue"][0]["code"], "conflict");

    let mut wrong = changed.clone();
    wrong["id"] = json!("00000000-0000-4000-8000-000000000000");
    let (status, _, oo) =
        fhir(fhir_write(&c, Method::PUT, &path, wrong, if_match("2")).await).await;
    assert_eq!(status, 400, "{oo}");
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("not the id in the URL")
    );

    let mut bad = changed;
    bad["gender"] = json!("banana");
    let (status, _, oo) = fhir(fhir_write(&c, Method::PUT, &path, bad, if_match("2")).await).await;
    assert_eq!(status, 422);
    assert_eq!(oo["issue"][1]["expression"][0], "gender", "{oo}");

    let (_, headers, now) = fhir(c.get(&path).await).await;
    assert_eq!(
        headers["etag"], "W/\"2\"",
        "refused updates changed nothing"
    );
    assert_eq!(now["gender"], "other");
}

#[tokio::test]
async fn search_by_every_parameter() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let zoe = create(&c, "Zoë", "Anne Marie", 10, "1980-05-06", "female").await;
    let sam = create(&c, "Brown", "Sam", 11, "1980-12-31", "male").await;
    let old = create(&c, "Zebedee", "Annie", 12, "1950", "other").await;

    let got = |b: &Value| {
        let mut v = ids(b);
        v.sort();
        v
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    assert_eq!(
        got(&search(&c, "family=zoe").await),
        sorted(vec![&zoe]),
        "accents and case folded"
    );
    assert_eq!(got(&search(&c, "family=Z").await), sorted(vec![&zoe, &old]));
    assert_eq!(
        got(&search(&c, "given=mar").await),
        sorted(vec![&zoe]),
        "any given name"
    );
    assert_eq!(
        got(&search(&c, "given=ann").await),
        sorted(vec![&zoe, &old])
    );
    assert_eq!(got(&search(&c, "name=sam").await), sorted(vec![&sam]));
    assert_eq!(got(&search(&c, "name=anne%20zo").await), sorted(vec![&zoe]));
    assert_eq!(got(&search(&c, "gender=male").await), sorted(vec![&sam]));
    assert_eq!(
        got(&search(
            &c,
            &format!("identifier=https://fhir.nhs.uk/Id/nhs-number|{}", nhs(11))
        )
        .await),
        sorted(vec![&sam])
    );
    assert_eq!(
        got(&search(&c, &format!("identifier={}", nhs(12))).await),
        sorted(vec![&old])
    );
    assert_eq!(
        got(&search(&c, &format!("_id={zoe},{old}")).await),
        sorted(vec![&zoe, &old])
    );
    assert_eq!(
        got(&search(&c, "birthdate=1980").await),
        sorted(vec![&zoe, &sam])
    );
    assert_eq!(
        got(&search(&c, "birthdate=eq1980-05").await),
        sorted(vec![&zoe])
    );
    assert_eq!(
        got(&search(&c, "birthdate=1950").await),
        sorted(vec![&old]),
        "a partial stored date"
    );
    assert_eq!(
        got(&search(&c, "birthdate=gt1980-05-06").await),
        sorted(vec![&sam])
    );
    assert_eq!(
        got(&search(&c, "birthdate=ge1980-05-06").await),
        sorted(vec![&zoe, &sam])
    );
    assert_eq!(
        got(&search(&c, "birthdate=lt1980").await),
        sorted(vec![&old])
    );
    assert_eq!(
        got(&search(&c, "birthdate=le1980-05-06").await),
        sorted(vec![&zoe, &old])
    );
    assert_eq!(
        got(&search(&c, "birthdate=ge1980-01-01&birthdate=lt1980-12-31").await),
        sorted(vec![&zoe])
    );
    assert_eq!(
        got(&search(&c, "family=z&gender=other").await),
        sorted(vec![&old]),
        "all criteria hold"
    );
    assert!(ids(&search(&c, "family=nobody").await).is_empty());

    for bad in [
        "famly=x",
        "family:exact=Zoë",
        "birthdate=ap1980",
        "birthdate=1980-13",
        "gender=banana",
        "_count=0",
        "identifier=urn:oid:1.2.3|42",
    ] {
        let (status, _, oo) = fhir(c.get(&format!("/fhir/R4/Patient?{bad}")).await).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(oo["resourceType"], "OperationOutcome", "{bad}");
        assert_eq!(oo["issue"][0]["code"], "invalid", "{bad}");
    }
}

#[tokio::test]
async fn search_pages_follow_next_links_to_every_match_once() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(
            create(
                &c,
                "Pager",
                &format!("P{i}"),
                50 + i,
                "1990-01-01",
                "unknown",
            )
            .await,
        );
    }
    let mut seen = Vec::new();
    let mut url = format!("{}/fhir/R4/Patient?family=pager&_count=3", t.base);
    let mut pages = 0;
    loop {
        let (status, _, b) = fhir(c.http.get(&url).send().await.unwrap()).await;
        assert_eq!(status, 200);
        pages += 1;
        seen.extend(ids(&b));
        for e in b["entry"].as_array().unwrap() {
            let id = e["resource"]["id"].as_str().unwrap();
            assert_eq!(e["fullUrl"], format!("{}/fhir/R4/Patient/{id}", t.base));
        }
        let next = b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    seen.sort();
    made.sort();
    assert_eq!(seen, made);
}

#[tokio::test]
async fn errors_are_operation_outcomes() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let admin = t.signed_in("root", Role::Admin).await;
    let cases = [
        (
            c.get("/fhir/R4/Patient/00000000-0000-4000-8000-000000000000")
                .await,
            404,
            "not-found",
        ),
        (c.get("/fhir/R4/Observation").await, 404, "not-found"),
        (
            t.client().get("/fhir/R4/Patient?family=x").await,
            401,
            "login",
        ),
        (
            admin.get("/fhir/R4/Patient?family=x").await,
            403,
            "forbidden",
        ),
        (
            c.http
                .get(c.url("/fhir/R4/Patient?family=x"))
                .header("accept", "application/fhir+xml")
                .send()
                .await
                .unwrap(),
            406,
            "not-supported",
        ),
        (
            c.get("/fhir/R4/Patient?family=x&_format=xml").await,
            406,
            "not-supported",
        ),
    ];
    for (res, status, code) in cases {
        let url = res.url().to_string();
        let (got, _, oo) = fhir(res).await;
        assert_eq!(got, status, "{url}");
        assert_eq!(oo["resourceType"], "OperationOutcome", "{url}");
        assert_eq!(oo["issue"][0]["code"], code, "{url}: {oo}");
        assert!(!oo["issue"][0]["diagnostics"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn fhir_writes_by_session_need_the_csrf_token() {
    // Seed 000: the FHIR surface is behind the same guard as the JSON API.
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let id = create(&c, "Guarded", "Gina", 3, "1970-01-01", "female").await;
    let (_, _, current) = fhir(c.get(&format!("/fhir/R4/Patient/{id}")).await).await;
    let mut changed = current;
    changed["gender"] = json!("male");
    let res = c
        .send_with(
            Method::PUT,
            &format!("/fhir/R4/Patient/{id}"),
            Some(changed),
            if_match("1"),
        )
        .await;
    let (status, _, oo) = fhir(res).await;
    assert_eq!(status, 403);
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("CSRF token required")
    );
    let res = c
        .send_with(
            Method::POST,
            "/fhir/R4/Patient",
            Some(patient_json("Forged", "Fred", &nhs(4))),
            HeaderMap::new(),
        )
        .await;
    assert_eq!(res.status(), 403);
    let found = search(&c, "family=forged").await;
    assert!(ids(&found).is_empty(), "nothing was created");
    let (_, headers, _) = fhir(c.get(&format!("/fhir/R4/Patient/{id}")).await).await;
    assert_eq!(headers["etag"], "W/\"1\"", "nothing was changed");
}

#[tokio::test]
async fn letters_are_document_references_with_their_status() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let pid = create(&c, "Lettered", "Lou", 5, "1970-01-01", "female").await;
    let other = create(&c, "Elsewhere", "Eli", 6, "1970-01-01", "male").await;
    let base = format!("/api/patients/{pid}/letters");
    let write = |path: String, body: Value| {
        let c = &c;
        async move {
            let res = c.post(&path, body).await;
            assert!(res.status().is_success(), "{path}");
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let draft = write(base.clone(), json!({"title": "Draft", "body": "not yet"})).await;
    let first = write(
        base.clone(),
        json!({"title": "Clinic letter", "body": "Seen **today**.", "status": "final"}),
    )
    .await;
    let amended = write(
        format!("{base}/{first}/amend"),
        json!({"title": "Clinic letter (corrected)", "body": "Seen yesterday.", "status": "final"}),
    )
    .await;
    let wrong = write(
        base.clone(),
        json!({"title": "Wrong", "body": "meant for someone else", "status": "final"}),
    )
    .await;
    let res = fhir_write(
        &c,
        Method::POST,
        &format!("{base}/{wrong}/entered-in-error"),
        json!({"reason": "wrong patient"}),
        if_match("1"),
    )
    .await;
    assert_eq!(res.status(), 200, "entered in error");
    write(
        format!("/api/patients/{other}/letters"),
        json!({"title": "Other", "body": "x", "status": "final"}),
    )
    .await;

    let (status, _, b) = fhir(
        c.get(&format!("/fhir/R4/DocumentReference?patient={pid}"))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    let docs: Vec<&Value> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    assert_eq!(
        docs.len(),
        4,
        "all of this patient's letters and no one else's"
    );
    let by_id = |id: &str| *docs.iter().find(|d| d["id"] == id).unwrap();
    assert_eq!(
        (
            by_id(&draft)["status"].as_str(),
            by_id(&draft)["docStatus"].as_str()
        ),
        (Some("current"), Some("preliminary"))
    );
    assert_eq!(by_id(&first)["status"], "superseded");
    assert_eq!(by_id(&amended)["status"], "current");
    assert_eq!(by_id(&amended)["docStatus"], "amended");
    assert_eq!(
        by_id(&amended)["relatesTo"][0]["target"]["reference"],
        format!("DocumentReference/{first}")
    );
    assert_eq!(by_id(&wrong)["status"], "entered-in-error");
    for d in &docs {
        assert_eq!(d["subject"]["reference"], format!("Patient/{pid}"));
    }

    let (_, _, by_subject) = fhir(
        c.get(&format!(
            "/fhir/R4/DocumentReference?subject=Patient/{pid}&_count=2"
        ))
        .await,
    )
    .await;
    assert_eq!(by_subject["entry"].as_array().unwrap().len(), 2);
    assert!(
        by_subject["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next")
    );

    let (status, headers, doc) =
        fhir(c.get(&format!("/fhir/R4/DocumentReference/{first}")).await).await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("etag"));
    let attachment = &doc["content"][0]["attachment"];
    assert!(
        attachment["contentType"]
            .as_str()
            .unwrap()
            .starts_with("text/markdown")
    );
    assert_eq!(
        attachment["data"], "U2VlbiAqKnRvZGF5Kiou",
        "base64 of the Markdown"
    );
    assert_eq!(doc["description"], "Clinic letter");
    assert_eq!(doc["author"][0]["display"], "alice");

    let (status, _, oo) = fhir(c.get("/fhir/R4/DocumentReference").await).await;
    assert_eq!(status, 400, "a letter search names its patient");
    assert_eq!(oo["resourceType"], "OperationOutcome");
    let (status, _, b) = fhir(
        c.get("/fhir/R4/DocumentReference?patient=00000000-0000-4000-8000-000000000000")
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert!(ids(&b).is_empty(), "an unknown patient has no letters");
}

#[tokio::test]
async fn fhir_reads_go_to_the_access_log() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let pid = create(&c, "Logged", "Lee", 7, "1970-01-01", "female").await;
    let before = t.store.access_log(&pid, 100, None).await.unwrap().len();
    fhir(c.get(&format!("/fhir/R4/Patient/{pid}")).await).await;
    fhir(c.get(&format!("/fhir/R4/Patient/{pid}/_history")).await).await;
    fhir(
        c.get(&format!("/fhir/R4/DocumentReference?patient={pid}"))
            .await,
    )
    .await;
    let rows = t.store.access_log(&pid, 100, None).await.unwrap();
    assert_eq!(rows.len(), before + 3);
    let actions: Vec<&str> = rows.iter().take(3).map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["list", "read_history", "read"], "newest first");
    assert!(
        rows.iter()
            .take(3)
            .all(|r| r.username == "alice" && r.outcome == "ok")
    );
}

#[tokio::test]
async fn bearer_tokens_use_fhir_without_csrf_and_within_scope() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let tok = |scope: &'static str| {
        let c = &c;
        async move {
            let v: Value = c
                .post(
                    "/api/account/tokens",
                    json!({"name": "interface", "scope": scope}),
                )
                .await
                .json()
                .await
                .unwrap();
            v["token"].as_str().unwrap().to_owned()
        }
    };
    let rw = tok("read-write").await;
    let ro = tok("read").await;
    let plain = reqwest::Client::new();
    let res = plain
        .post(format!("{}/fhir/R4/Patient", t.base))
        .bearer_auth(&rw)
        .header("content-type", FHIR_JSON)
        .body(patient_json("Bearer", "Bea", &nhs(8)).to_string())
        .send()
        .await
        .unwrap();
    let (status, _, p) = fhir(res).await;
    assert_eq!(
        status, 201,
        "application/fhir+json bodies are accepted: {p}"
    );
    let res = plain
        .get(format!("{}/fhir/R4/Patient?identifier={}", t.base, nhs(8)))
        .bearer_auth(&ro)
        .send()
        .await
        .unwrap();
    let (status, _, b) = fhir(res).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&b), [p["id"].as_str().unwrap().to_owned()]);
    let res = plain
        .post(format!("{}/fhir/R4/Patient", t.base))
        .bearer_auth(&ro)
        .json(&patient_json("Readonly", "Rex", &nhs(9)))
        .send()
        .await
        .unwrap();
    let (status, _, oo) = fhir(res).await;
    assert_eq!(status, 403, "a read-only token cannot create: {oo}");
}

#[tokio::test]
async fn a_possible_duplicate_created_through_fhir_is_an_operation_outcome_naming_the_patient() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let first = create(&c, "Duplex", "Dora", 51, "1961-01-02", "female").await;
    let mut again = json!({
        "resourceType": "Patient",
        "name": [{"family": "Duplex", "given": ["Dora"]}],
        "birthDate": "1961-01-02",
    });
    let (status, _, outcome) = fhir(
        fhir_write(
            &c,
            Method::POST,
            "/fhir/R4/Patient",
            again.clone(),
            HeaderMap::new(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 409, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let issues = outcome["issue"].as_array().unwrap();
    assert_eq!(issues[0]["code"], "duplicate");
    assert!(
        issues.iter().any(|i| i["code"] == "duplicate"
            && i["diagnostics"]
                .as_str()
                .unwrap()
                .contains(&format!("Patient/{first}"))),
        "{outcome}"
    );
    assert_eq!(ids(&search(&c, "family=duplex").await).len(), 1);
    again["gender"] = json!("female");
    let (status, _, created) = fhir(
        fhir_write(
            &c,
            Method::POST,
            "/fhir/R4/Patient?possible_duplicates=checked",
            again,
            HeaderMap::new(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(ids(&search(&c, "family=duplex").await).len(), 2);
}

#[tokio::test]
async fn a_fhir_update_that_makes_a_patient_look_like_another_is_an_operation_outcome_until_checked()
 {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let unnumbered = |birth: &str| {
        json!({
            "resourceType": "Patient",
            "name": [{"family": "Echo", "given": ["Edna"]}],
            "birthDate": birth,
        })
    };
    let mut ids = Vec::new();
    for birth in ["1962-02-02", "1962-03-03"] {
        let (status, _, body) = fhir(
            fhir_write(
                &c,
                Method::POST,
                "/fhir/R4/Patient",
                unnumbered(birth),
                HeaderMap::new(),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let (first, second) = (&ids[0], &ids[1]);
    let mut changed = unnumbered("1962-02-02");
    changed["id"] = json!(second);
    let mut if_match = HeaderMap::new();
    if_match.insert("if-match", "W/\"1\"".parse().unwrap());
    let path = format!("/fhir/R4/Patient/{second}");
    let put = fhir_write(&c, Method::PUT, &path, changed.clone(), if_match.clone());
    let (status, _, outcome) = fhir(put.await).await;
    assert_eq!(status, 409, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(
        outcome["issue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["code"] == "duplicate"
                && i["diagnostics"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("Patient/{first}"))),
        "{outcome}"
    );
    let checked = format!("{path}?possible_duplicates=checked");
    let put = fhir_write(&c, Method::PUT, &checked, changed, if_match);
    let (status, _, body) = fhir(put.await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["birthDate"], "1962-02-02");
}
