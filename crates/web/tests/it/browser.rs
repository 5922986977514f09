//! In a real browser (headless Debian Chromium driven through chromedriver
//! over the W3C WebDriver protocol): the whole clinical flow with two-factor
//! sign-in, the patient portal, a forged cross-site form and a cross-site
//! `fetch` (seed 000), and a letter draft that outlives an expired session.
//! Screenshots of the main pages go to `target/screenshots` (or
//! `$VELLUM_SCREENSHOTS`).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use app::{AppConfig, Clock as _};
use crypto::totp::{TotpSecret, step_of};
use domain::Role;
use serde_json::{Value, json};

use crate::harness::{Options, PASSWORD, TestApp};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: Driver,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    async fn start() -> Self {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium chromium-driver)");
        let driver = Driver(child);
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1200,900"]
            }
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_owned();
        Browser {
            http,
            session: format!("{base}/session/{session}"),
            _driver: driver,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(e) = v["value"].get("error") {
            panic!("WebDriver {path}: {e} {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn find(&self, css: &str) -> String {
        for _ in 0..50 {
            let r = self
                .http
                .post(format!("{}/element", self.session))
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            if let Some(id) = v["value"][ELEMENT].as_str() {
                return id.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no element {css} on {}", self.url().await);
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn value_of(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{id}/property/value"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Presses keys as a person at the keyboard would, into whatever has
    /// the focus (`\u{E004}` is Tab, `\u{E007}` Enter).
    async fn keys(&self, text: &str) {
        let mut actions = Vec::new();
        for c in text.chars() {
            actions.push(json!({"type": "keyDown", "value": c.to_string()}));
            actions.push(json!({"type": "keyUp", "value": c.to_string()}));
        }
        self.call(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
    }

    async fn run_async(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn screenshot(&self, name: &str) {
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let dir = std::env::var("VELLUM_SCREENSHOTS").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/screenshots").to_owned()
        });
        std::fs::create_dir_all(&dir).unwrap();
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(format!("{dir}/{name}.png"), bytes).unwrap();
    }

    /// Waits until the page shows `text` (a click's navigation may still
    /// be under way when the next command arrives).
    async fn wait_for_text(&self, text: &str) {
        for _ in 0..100 {
            if self.source().await.contains(text) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never showed {text:?}: at {}", self.url().await);
    }

    async fn wait_for_path(&self, prefix: &str) {
        self.wait_for_path_except(prefix, None).await;
    }

    /// Waits for a path starting with `prefix` other than `except` (the
    /// page a form was posted from, whose path may share the prefix).
    async fn wait_for_path_except(&self, prefix: &str, except: Option<&str>) {
        for _ in 0..50 {
            let url = self.url().await;
            let path = url::path_of(&url);
            if path.starts_with(prefix) && Some(path) != except {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never reached {prefix}: at {}", self.url().await);
    }
}

mod url {
    pub fn path_of(u: &str) -> &str {
        let rest = u.split_once("://").map_or(u, |(_, r)| r);
        rest.find('/').map_or("/", |i| &rest[i..])
    }
}

async fn sign_in(b: &Browser, t: &TestApp, username: &str) {
    b.goto(&format!("{}/login", t.base)).await;
    b.type_into("#username", username).await;
    b.type_into("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
}

/// The secret a user is enrolling with, as their phone would read it.
async fn pending_secret(t: &TestApp, username: &str) -> TotpSecret {
    let id = t
        .store
        .user_by_username(&domain::Username::parse(username).unwrap())
        .await
        .unwrap()
        .unwrap()
        .user
        .id;
    let state = t.store.totp_state(id).await.unwrap();
    let (sealed, column) = match state.pending {
        Some(p) => (p, "totp_pending"),
        None => (state.secret.unwrap(), "totp_secret"),
    };
    let plain = t
        .keys
        .open(&sealed, &format!("users.{column}:{id}"))
        .unwrap();
    TotpSecret::from_bytes(&plain).unwrap()
}

fn code(t: &TestApp, secret: &TotpSecret) -> String {
    secret.code_at_step(step_of(t.clock.now().millis() / 1000))
}

async fn clinician_with_two_factor(t: &TestApp, b: &Browser) -> TotpSecret {
    t.create_user("drsmith", Role::Clinician).await;
    sign_in(b, t, "drsmith").await;
    b.wait_for_path("/account/totp/enrol").await;
    b.screenshot("enrol-password").await;
    b.type_into("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.find("img[alt^='QR code']").await;
    b.screenshot("enrol-qr").await;
    let secret = pending_secret(t, "drsmith").await;
    b.type_into("#code", &code(t, &secret)).await;
    b.click("button[type=submit]").await;
    b.wait_for_text("Two-factor sign-in is on").await;
    b.screenshot("recovery-codes").await;
    secret
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (CI installs them): run with --include-ignored"]
async fn a_clinician_writes_a_letter_and_the_patient_reads_it_in_the_portal() {
    let t = TestApp::spawn_with(Options {
        config: AppConfig::default(),
    })
    .await;
    let b = Browser::start().await;
    let secret = clinician_with_two_factor(&t, &b).await;
    t.clock.advance_ms(30_000);
    // A fresh sign-in asks for the code.
    b.goto(&format!("{}/logout-page-does-not-exist", t.base))
        .await;
    let p = Browser::start().await;
    sign_in(&p, &t, "drsmith").await;
    p.wait_for_path("/login/totp").await;
    p.screenshot("login-totp").await;
    p.type_into("#code", &code(&t, &secret)).await;
    p.click("button[type=submit]").await;
    p.wait_for_text("Signed in as").await;

    p.goto(&format!("{}/patients/new", t.base)).await;
    p.type_into("#family", "Okafor").await;
    p.type_into("#given", "Ada").await;
    p.type_into("#nhs_number", &crate::clinical::nhs(77)).await;
    p.type_into("#birth_date", "1984-05-06").await;
    p.screenshot("patient-new").await;
    p.click("button[type=submit]").await;
    p.wait_for_path_except("/patients/", Some("/patients/new"))
        .await;
    let record = p.url().await;
    let pid = url::path_of(&record)
        .trim_start_matches("/patients/")
        .to_owned();
    p.screenshot("patient-record").await;

    p.goto(&format!("{}/patients/{pid}/letters/new", t.base))
        .await;
    p.type_into("#title", "Clinic letter").await;
    p.type_into("#body", "Seen today. **Plan**: review in 4 weeks.")
        .await;
    p.click("button[value=preview]").await;
    p.find("section.preview").await;
    p.screenshot("letter-preview").await;
    p.click("button[value=final]").await;
    // The preview was answered at .../letters/new, under the same prefix.
    p.wait_for_path_except(
        &format!("/patients/{pid}/letters/"),
        Some(&format!("/patients/{pid}/letters/new")),
    )
    .await;
    p.wait_for_text("<strong>Plan</strong>").await;
    p.screenshot("letter").await;

    p.goto(&format!("{}/patients?q=okafor", t.base)).await;
    p.screenshot("patients").await;

    // The patient, linked to the record, reads it at /my/letters.
    t.create_user("ada", Role::Patient).await;
    t.app
        .link_patient_user(
            app::Actor::Operator,
            "ada",
            &pid,
            &app::RequestMeta::default(),
        )
        .await
        .unwrap();
    let q = Browser::start().await;
    sign_in(&q, &t, "ada").await;
    // Navigating before the sign-in answer arrives would abandon it.
    q.wait_for_text("Signed in as").await;
    q.goto(&format!("{}/my/letters", t.base)).await;
    assert!(q.source().await.contains("Clinic letter"));
    q.screenshot("my-letters").await;
    q.goto(&format!("{}/patients", t.base)).await;
    assert!(q.source().await.contains("Not available to you"));
}

/// Serves `html` from another origin (127.0.0.2).
async fn attacker_site(html: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (CI installs them): run with --include-ignored"]
async fn a_forged_cross_site_form_and_fetch_write_nothing_seed_000() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("helper", Role::Clinician).await;
    let created: Value = c
        .post(
            "/api/patients",
            crate::clinical::patient_json("Target", "Tom", &crate::clinical::nhs(78)),
        )
        .await
        .json()
        .await
        .unwrap();
    let pid = created["id"].as_str().unwrap().to_owned();
    // The victim signs in in the browser.
    t.create_user("victim", Role::Clinician).await;
    let b = Browser::start().await;
    sign_in(&b, &t, "victim").await;
    b.wait_for_text("Signed in as").await;
    assert!(b.source().await.contains("Signed in as"));
    let target = format!("{}/api/patients/{pid}/letters", t.base);
    let form = attacker_site(format!(
        r#"<!doctype html><html><body>
        <form id="f" method="post" action="{target}">
          <input name="title" value="Forged"><input name="body" value="Stop all medication">
          <input name="status" value="final">
        </form>
        <script>document.getElementById('f').submit();</script>
        </body></html>"#
    ))
    .await;
    b.goto(&format!("http://{form}/")).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let landed = b.source().await;
    assert!(
        landed.contains("403")
            || landed.to_lowercase().contains("csrf")
            || landed.contains("Cross-site"),
        "the forged form was refused: {landed}"
    );
    let fetcher = attacker_site(format!(
        r#"<!doctype html><html><body><p id="r">…</p><script>
        fetch("{target}", {{method: "POST", credentials: "include",
            headers: {{"Content-Type": "text/plain"}},
            body: JSON.stringify({{title: "Forged", body: "Stop all medication", status: "final"}})}})
          .then(r => document.getElementById("r").textContent = "status " + r.status)
          .catch(e => document.getElementById("r").textContent = "blocked " + e);
        </script></body></html>"#
    ))
    .await;
    b.goto(&format!("http://{fetcher}/")).await;
    // Wait until the attacker's fetch has finished, one way or the other,
    // so the count below is not taken too early.
    let mut finished = false;
    for _ in 0..50 {
        let page = b.source().await;
        if page.contains("status ") || page.contains("blocked ") {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(finished, "the forged fetch never completed");
    assert_eq!(
        t.store.count_letters(&pid).await.unwrap(),
        0,
        "neither the form nor the fetch wrote a letter"
    );
    // The victim's own session still works: the guard refused, it did not log out.
    b.goto(&format!("{}/", t.base)).await;
    assert!(b.source().await.contains("Signed in as"));
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (CI installs them): run with --include-ignored"]
async fn the_page_script_refuses_to_send_without_the_csrf_cookie() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    let b = Browser::start().await;
    sign_in(&b, &t, "alice").await;
    b.wait_for_text("Signed in as").await;
    b.call(reqwest::Method::DELETE, "/cookie/vellum-csrf", None)
        .await;
    let v = b
        .run_async(
            "const done = arguments[arguments.length - 1];
             import('/static/vellum.js').then(m => m.api('POST', '/api/patients', {}))
               .then(() => done('sent'), e => done(String(e.message)));",
        )
        .await;
    assert!(
        v.as_str().unwrap().contains("CSRF cookie is missing"),
        "{v}"
    );
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (CI installs them): run with --include-ignored"]
async fn a_letter_draft_outlives_an_expired_session() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("helper", Role::Clinician).await;
    let created = crate::clinical::create_patient(&c, "Draft", &crate::clinical::nhs(79)).await;
    let pid = created["id"].as_str().unwrap().to_owned();
    t.create_user("writer", Role::Clinician).await;
    let b = Browser::start().await;
    sign_in(&b, &t, "writer").await;
    b.wait_for_text("Signed in as").await;
    let form = format!("{}/patients/{pid}/letters/new", t.base);
    b.goto(&form).await;
    b.type_into("#title", "Follow-up").await;
    b.type_into("#body", "Long letter typed over lunch.").await;
    // The session expires while the clinician is away.
    t.clock.advance_ms(16 * 60_000);
    b.goto(&form).await;
    b.wait_for_path("/login").await;
    b.type_into("#username", "writer").await;
    b.type_into("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_for_path(&format!("/patients/{pid}/letters/new"))
        .await;
    assert_eq!(b.value_of("#title").await, "Follow-up");
    assert_eq!(b.value_of("#body").await, "Long letter typed over lunch.");
}

/// The letters of patient `pid`, as the API lists them.
async fn letters_of(c: &crate::harness::Client, pid: &str) -> Vec<Value> {
    let v: Value = c
        .get(&format!("/api/patients/{pid}/letters"))
        .await
        .json()
        .await
        .unwrap();
    v["items"].as_array().unwrap().clone()
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (CI installs them): run with --include-ignored"]
async fn a_letter_is_saved_on_the_server_as_it_is_typed_and_finished_as_one_letter() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("helper", Role::Clinician).await;
    let created = crate::clinical::create_patient(&c, "Autosave", &crate::clinical::nhs(81)).await;
    let pid = created["id"].as_str().unwrap().to_owned();
    t.create_user("typist", Role::Clinician).await;
    let b = Browser::start().await;
    sign_in(&b, &t, "typist").await;
    b.wait_for_text("Signed in as").await;
    b.goto(&format!("{}/patients/{pid}/letters/new", t.base))
        .await;
    b.type_into("#title", "Discharge summary").await;
    b.type_into("#body", "Admitted on Monday.").await;
    // A few seconds after typing stops, the server holds it as a draft, and
    // the form (and the address) continue that draft.
    b.wait_for_text("Draft saved on the server").await;
    b.wait_for_path_except(
        &format!("/patients/{pid}/letters/"),
        Some(&format!("/patients/{pid}/letters/new")),
    )
    .await;
    assert!(b.url().await.ends_with("/edit"), "{}", b.url().await);
    let letters = letters_of(&c, &pid).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        (&letters[0]["status"], &letters[0]["body"]),
        (&json!("draft"), &json!("Admitted on Monday."))
    );
    let lid = letters[0]["id"].as_str().unwrap().to_owned();

    // The tab is left without saving; the draft is continued later.
    b.goto(&format!("{}/patients/{pid}/letters/{lid}", t.base))
        .await;
    b.click(&format!("a[href='/patients/{pid}/letters/{lid}/edit']"))
        .await;
    b.wait_for_path(&format!("/patients/{pid}/letters/{lid}/edit"))
        .await;
    assert_eq!(b.value_of("#body").await, "Admitted on Monday.");
    b.type_into("#body", "Admitted on Monday. Home on Friday.")
        .await;
    // Pressed at once, whether or not a save is on its way: one letter,
    // final, with everything typed.
    b.click("button[value=final]").await;
    b.wait_for_text("Home on Friday.").await;
    b.wait_for_path_except(
        &format!("/patients/{pid}/letters/{lid}"),
        Some(&format!("/patients/{pid}/letters/{lid}/edit")),
    )
    .await;
    let letters = letters_of(&c, &pid).await;
    assert_eq!(letters.len(), 1, "still one letter: {letters:?}");
    assert_eq!(
        (&letters[0]["status"], &letters[0]["body"]),
        (
            &json!("final"),
            &json!("Admitted on Monday. Home on Friday.")
        )
    );
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (CI installs them): run with --include-ignored"]
async fn text_a_tab_kept_for_an_older_version_of_a_draft_never_replaces_the_newer_one() {
    let t = TestApp::spawn().await;
    let colleague = t.signed_in("colleague", Role::Clinician).await;
    let created =
        crate::clinical::create_patient(&colleague, "Kept", &crate::clinical::nhs(82)).await;
    let pid = created["id"].as_str().unwrap().to_owned();
    let draft: Value = colleague
        .post(
            &format!("/api/patients/{pid}/letters"),
            json!({"title": "Shared draft", "body": "Version one."}),
        )
        .await
        .json()
        .await
        .unwrap();
    let lid = draft["id"].as_str().unwrap().to_owned();
    t.create_user("tabby", Role::Clinician).await;
    let b = Browser::start().await;
    sign_in(&b, &t, "tabby").await;
    b.wait_for_text("Signed in as").await;
    let edit = format!("{}/patients/{pid}/letters/{lid}/edit", t.base);
    b.goto(&edit).await;
    // Typed into version 1, and left at once (before it is saved).
    b.type_into("#body", "Typed by tabby into version one.")
        .await;
    b.goto(&format!("{}/patients/{pid}", t.base)).await;
    // Meanwhile the colleague finishes the draft's next version.
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("if-match", "W/\"1\"".parse().unwrap());
    headers.insert(
        "x-csrf-token",
        colleague.csrf_cookie().unwrap().parse().unwrap(),
    );
    let res = colleague
        .send_with(
            reqwest::Method::PUT,
            &format!("/api/patients/{pid}/letters/{lid}"),
            Some(json!({"title": "Shared draft", "body": "Version two, by the colleague."})),
            headers,
        )
        .await;
    assert_eq!(res.status(), 200);
    // Back in the tab: the draft as saved now, and what the tab kept
    // beside it — never put in its place.
    b.goto(&edit).await;
    b.wait_for_text("This tab kept text typed into an earlier version")
        .await;
    assert_eq!(b.value_of("#body").await, "Version two, by the colleague.");
    assert!(
        b.source()
            .await
            .contains("Typed by tabby into version one.")
    );
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (CI installs them): run with --include-ignored"]
async fn signing_out_forgets_the_letter_text_the_tab_kept() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("helper", Role::Clinician).await;
    let created = crate::clinical::create_patient(&c, "Shared", &crate::clinical::nhs(83)).await;
    let pid = created["id"].as_str().unwrap().to_owned();
    t.create_user("leaver", Role::Clinician).await;
    let b = Browser::start().await;
    sign_in(&b, &t, "leaver").await;
    b.wait_for_text("Signed in as").await;
    let form = format!("{}/patients/{pid}/letters/new", t.base);
    b.goto(&form).await;
    b.type_into("#body", "Notes not for the next person.").await;
    // Kept by the tab while typing: back on the form, it is there.
    b.goto(&form).await;
    assert_eq!(b.value_of("#body").await, "Notes not for the next person.");
    b.goto(&format!("{}/", t.base)).await;
    b.click("form[action='/logout'] button").await;
    b.wait_for_path("/login").await;
    sign_in(&b, &t, "leaver").await;
    b.wait_for_text("Signed in as").await;
    b.goto(&form).await;
    b.find("#body").await;
    assert_eq!(b.value_of("#body").await, "", "forgotten at sign-out");
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (CI installs them): run with --include-ignored"]
async fn keyboard_only_sign_in_and_instant_patient_search() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("helper", Role::Clinician).await;
    let res = c
        .post(
            "/api/patients",
            crate::clinical::patient_json("Zephyr", "Zoe", &crate::clinical::nhs(80)),
        )
        .await;
    assert_eq!(res.status(), 201);
    t.create_user("keys", Role::Clinician).await;
    let b = Browser::start().await;
    b.goto(&format!("{}/login", t.base)).await;
    // The username field has the focus; Tab moves on; Enter submits.
    b.find("#username").await;
    b.keys(&format!("keys\u{E004}{PASSWORD}\u{E007}")).await;
    b.wait_for_text("Signed in as").await;
    // Results appear while typing, before any search is submitted.
    b.goto(&format!("{}/patients", t.base)).await;
    b.find("#q").await;
    b.keys("zep").await;
    b.find("#results a[href^='/patients/']").await;
    assert!(b.source().await.contains("ZEPHYR, Zoe"));
    b.screenshot("patients-instant").await;
}
