//! Signing in through the HTML forms, without JavaScript: every form carries
//! the CSRF token in a hidden field, and the guard checks it.

use app::{AppConfig, Clock as _};
use crypto::totp::{TotpSecret, step_of};
use domain::Role;

use crate::harness::{Client, Options, PASSWORD, TestApp};

/// The value of the hidden `csrf_token` field of a page.
fn hidden_csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf_token\" value=\"")
        .unwrap_or_else(|| panic!("no csrf_token field in {html}"));
    let rest = &html[at + "name=\"csrf_token\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

async fn page(c: &Client, path: &str) -> String {
    let res = c.get(path).await;
    assert_eq!(res.status(), 200, "{path}");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    res.text().await.unwrap()
}

async fn submit(c: &Client, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    c.http.post(c.url(path)).form(fields).send().await.unwrap()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_login_form_carries_its_csrf_token_and_signs_in_without_javascript() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    let c = t.client();
    let html = page(&c, "/login?next=/patients").await;
    assert!(html.contains("<html lang=\"en-GB\">"));
    assert!(html.contains("<label for=\"username\">"), "labelled fields");
    let csrf = hidden_csrf(&html);
    let res = submit(
        &c,
        "/login",
        &[
            ("csrf_token", &csrf),
            ("username", "alice"),
            ("password", PASSWORD),
            ("next", "/patients"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/patients");
    assert_eq!(c.me_status().await, 200);
    // Signing out is a form too.
    let html = page(&c, "/").await;
    assert!(html.contains("Signed in as"));
    let res = submit(&c, "/logout", &[("csrf_token", &hidden_csrf(&html))]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(c.me_status().await, 401);
}

#[tokio::test]
async fn a_login_form_without_its_token_or_with_a_wrong_password_signs_nobody_in() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    let c = t.client();
    page(&c, "/login").await;
    let res = submit(
        &c,
        "/login",
        &[("username", "alice"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(res.status(), 403, "no csrf_token field");
    let html = page(&c, "/login").await;
    let res = submit(
        &c,
        "/login",
        &[
            ("csrf_token", &hidden_csrf(&html)),
            ("username", "alice"),
            ("password", "not-the-password"),
        ],
    )
    .await;
    assert_eq!(res.status(), 401);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("The username or password is not right."),
        "{body}"
    );
    assert!(
        !body.contains("not-the-password"),
        "the password is not echoed"
    );
    assert_eq!(c.me_status().await, 401);
}

#[tokio::test]
async fn after_sign_in_only_paths_on_this_site_are_followed() {
    let t = TestApp::spawn().await;
    t.create_user("alice", Role::Clinician).await;
    for (next, want) in [
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("/patients?q=smith", "/patients?q=smith"),
    ] {
        let c = t.client();
        let html = page(&c, "/login").await;
        let res = submit(
            &c,
            "/login",
            &[
                ("csrf_token", &hidden_csrf(&html)),
                ("username", "alice"),
                ("password", PASSWORD),
                ("next", next),
            ],
        )
        .await;
        assert_eq!(res.status(), 303);
        assert_eq!(location(&res), want, "next={next}");
    }
}

#[tokio::test]
async fn the_policy_walks_a_clinician_through_enrolment_then_the_code_step() {
    let t = TestApp::spawn_with(Options {
        config: AppConfig::default(),
    })
    .await;
    t.create_user("alice", Role::Clinician).await;
    let c = t.client();
    let html = page(&c, "/login").await;
    let res = submit(
        &c,
        "/login",
        &[
            ("csrf_token", &hidden_csrf(&html)),
            ("username", "alice"),
            ("password", PASSWORD),
            ("next", "/patients"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/totp/enrol?next=%2Fpatients");
    assert_eq!(c.me_status().await, 401, "not signed in yet");
    let html = page(&c, "/account/totp/enrol?next=%2Fpatients").await;
    let csrf = hidden_csrf(&html);
    let res = submit(
        &c,
        "/account/totp/enrol",
        &[
            ("csrf_token", &csrf),
            ("password", PASSWORD),
            ("next", "/patients"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("src=\"data:image/svg+xml;base64,"),
        "the QR code"
    );
    // The test reads the secret as an authenticator app would: from the
    // server's record of the pending secret, opened with the keyring.
    let id = t
        .store
        .user_by_username(&domain::Username::parse("alice").unwrap())
        .await
        .unwrap()
        .unwrap()
        .user
        .id;
    let state = t.store.totp_state(id).await.unwrap();
    let plain = t
        .keys
        .open(
            state.pending.as_deref().unwrap(),
            &format!("users.totp_pending:{id}"),
        )
        .unwrap();
    let secret = TotpSecret::from_bytes(&plain).unwrap();
    let step = step_of(t.clock.now().millis() / 1000);
    let res = submit(
        &c,
        "/account/totp/enrol/confirm",
        &[
            ("csrf_token", &hidden_csrf(&html)),
            ("code", &secret.code_at_step(step)),
            ("next", "/patients"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert_eq!(
        html.matches("<li><code>").count(),
        10,
        "ten recovery codes, shown once"
    );
    assert_eq!(c.me_status().await, 200, "enrolment finished the sign-in");

    // The next sign-in asks for a code on its own page.
    t.clock.advance_ms(30_000);
    let d = t.client();
    let html = page(&d, "/login").await;
    let res = submit(
        &d,
        "/login",
        &[
            ("csrf_token", &hidden_csrf(&html)),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(location(&res), "/login/totp?next=%2F");
    let html = page(&d, "/login/totp?next=%2F").await;
    assert!(html.contains("autocomplete=\"one-time-code\""));
    let csrf = hidden_csrf(&html);
    let res = submit(
        &d,
        "/login/totp",
        &[("csrf_token", &csrf), ("code", "000000"), ("next", "/")],
    )
    .await;
    assert_eq!(res.status(), 401);
    let step = step_of(t.clock.now().millis() / 1000);
    let res = submit(
        &d,
        "/login/totp",
        &[
            ("csrf_token", &csrf),
            ("code", &secret.code_at_step(step)),
            ("next", "/"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/");
    assert_eq!(d.me_status().await, 200);
    // Without a partial session the code page sends you to sign in.
    let res = t.client().get("/login/totp").await;
    assert_eq!(res.status(), 303);
}

#[tokio::test]
async fn pages_send_a_signed_out_visitor_to_sign_in_and_back() {
    let t = TestApp::spawn().await;
    let res = t.client().get("/patients?q=smith").await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/login?next=%2Fpatients%3Fq%3Dsmith");
}

#[tokio::test]
async fn a_patients_record_shows_who_it_is_about_and_what_is_missing() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let mut p = crate::clinical::patient_json("Okafor", "Ada", &crate::clinical::nhs(7));
    p.as_object_mut().unwrap().remove("birthDate");
    let created: serde_json::Value = c.post("/api/patients", p).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let res = c
        .post(
            &format!("/api/patients/{id}/letters"),
            serde_json::json!({"title": "Clinic letter", "body": "Seen <script>alert(1)</script> **today**", "status": "final"}),
        )
        .await;
    let letter: serde_json::Value = res.json().await.unwrap();

    let list = page(&c, "/patients?q=okafor").await;
    assert!(list.contains(&format!("href=\"/patients/{id}\"")));
    assert!(list.contains(&format!("class=\"avatar g{}\"", app::avatar_gradient(id))));
    let nhs = crate::clinical::nhs(7);
    let grouped = format!("{} {} {}", &nhs[..3], &nhs[3..6], &nhs[6..]);
    assert!(list.contains(&grouped), "NHS number grouped 3-3-4");

    let record = page(&c, &format!("/patients/{id}")).await;
    assert!(record.contains("class=\"patient-banner\""));
    assert!(record.contains("OKAFOR, Ada"));
    assert!(record.contains(&grouped));
    assert!(
        record.contains("not recorded"),
        "the missing birth date says so"
    );
    assert!(record.contains("Clinic letter"));
    assert!(record.contains("Version 1, "), "the version history");
    assert!(record.contains("Access history") && record.contains("alice (clinician)"));

    let shown = page(
        &c,
        &format!("/patients/{id}/letters/{}", letter["id"].as_str().unwrap()),
    )
    .await;
    assert!(
        shown.contains("class=\"patient-banner\""),
        "the patient in context"
    );
    assert!(shown.contains("<strong>today</strong>"));
    assert!(
        !shown.contains("<script>alert"),
        "the body went through the sanitiser"
    );
}

#[tokio::test]
async fn a_patient_reads_their_own_final_letters_and_cannot_open_the_patient_list() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("clin", Role::Clinician).await;
    let admin = t.signed_in("root", Role::Admin).await;
    let created: serde_json::Value = c
        .post(
            "/api/patients",
            crate::clinical::patient_json("Own", "Olive", &crate::clinical::nhs(8)),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    for (title, status) in [("Final words", "final"), ("Draft words", "draft")] {
        let res = c
            .post(
                &format!("/api/patients/{id}/letters"),
                serde_json::json!({"title": title, "body": "b", "status": status}),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
    t.create_user("pat", Role::Patient).await;
    let res = admin
        .post(
            "/api/admin/users/pat/link-patient",
            serde_json::json!({"patient_id": id}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let p = t.client();
    p.login("pat", PASSWORD).await;
    let mine = page(&p, "/my/letters").await;
    assert!(mine.contains("Final words"));
    assert!(
        !mine.contains("Draft words"),
        "drafts are not shown to patients"
    );
    let res = p.get("/patients").await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("Not available to you"));
}

#[tokio::test]
async fn the_new_patient_form_puts_each_problem_beside_its_field() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let html = page(&c, "/patients/new").await;
    let csrf = hidden_csrf(&html);
    let bad_nhs = "9434765918";
    let res = submit(
        &c,
        "/patients/new",
        &[
            ("csrf_token", &csrf),
            ("family", "Okafor"),
            ("given", "Ada"),
            ("nhs_number", bad_nhs),
            ("birth_date", "2999-01-01"),
            ("gender", "banana"),
        ],
    )
    .await;
    assert_eq!(res.status(), 422);
    let body = res.text().await.unwrap();
    assert!(body.contains("id=\"nhs_number-error\""), "{body}");
    assert!(body.contains("id=\"birth_date-error\""));
    assert!(body.contains("id=\"gender-error\""));
    assert!(body.contains("value=\"Okafor\""), "what was typed is kept");
    let nhs = crate::clinical::nhs(9);
    let res = submit(
        &c,
        "/patients/new",
        &[
            ("csrf_token", &csrf),
            ("family", "Okafor"),
            ("given", "Ada"),
            ("nhs_number", &nhs),
            ("birth_date", "1980-05-06"),
            ("gender", "female"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/patients/"));
    // The same NHS number again is refused beside the field.
    let res = submit(
        &c,
        "/patients/new",
        &[
            ("csrf_token", &csrf),
            ("family", "Other"),
            ("nhs_number", &nhs),
        ],
    )
    .await;
    assert_eq!(res.status(), 409);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("id=\"nhs_number-error\"")
    );
}

#[tokio::test]
async fn the_new_patient_form_shows_possible_duplicates_and_registers_only_once_the_user_ticks_they_checked()
 {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let csrf = hidden_csrf(&page(&c, "/patients/new").await);
    let fields = [
        ("csrf_token", csrf.as_str()),
        ("family", "Twice"),
        ("given", "Tom"),
        ("birth_date", "1990-09-09"),
    ];
    let res = submit(&c, "/patients/new", &fields).await;
    assert_eq!(res.status(), 303);
    let first = location(&res);

    // Again, as another clerk might: the form comes back with the record to
    // check, a link to it, and the box to tick; nothing is registered.
    let res = submit(&c, "/patients/new", &fields).await;
    assert_eq!(res.status(), 409);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("This patient may already be registered"),
        "{body}"
    );
    assert!(body.contains(&format!("href=\"{first}\"")), "{body}");
    assert!(body.contains("no NHS number"), "{body}");
    assert!(
        body.contains("name=\"possible_duplicates\" value=\"checked\""),
        "{body}"
    );
    assert!(body.contains("value=\"Twice\""), "what was typed is kept");
    let list: serde_json::Value = c.get("/api/patients?q=twice").await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");

    // The form names the records it showed; ticked without them (a form
    // made by hand), nothing found is written over.
    let named = {
        let at = body
            .find("name=\"checked_duplicates\" value=\"")
            .expect("the records shown are named in the form");
        let rest = &body[at + "name=\"checked_duplicates\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    };
    assert_eq!(format!("/patients/{named}"), first);
    let mut ticked = fields.to_vec();
    ticked.push(("possible_duplicates", "checked"));
    let res = submit(&c, "/patients/new", &ticked).await;
    assert_eq!(res.status(), 409, "ticked, but naming no record");
    ticked.push(("checked_duplicates", &named));
    let res = submit(&c, "/patients/new", &ticked).await;
    assert_eq!(res.status(), 303);
    assert_ne!(location(&res), first, "a second record");
}

#[tokio::test]
async fn a_stale_edit_shows_what_changed_and_overwrites_nothing() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let d = t.signed_in("bob", Role::Clinician).await;
    let created: serde_json::Value = c
        .post(
            "/api/patients",
            crate::clinical::patient_json("Stale", "Sam", &crate::clinical::nhs(10)),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let path = format!("/patients/{id}/edit");
    let mine = page(&c, &path).await;
    assert!(
        mine.contains("class=\"patient-banner\""),
        "the patient in context"
    );
    let theirs = page(&d, &path).await;
    let nhs = crate::clinical::nhs(10);
    let res = submit(
        &d,
        &path,
        &[
            ("csrf_token", &hidden_csrf(&theirs)),
            ("version", "1"),
            ("family", "Stale"),
            ("given", "Samuel"),
            ("nhs_number", &nhs),
            ("active", "on"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303, "bob saves first");
    let res = submit(
        &c,
        &path,
        &[
            ("csrf_token", &hidden_csrf(&mine)),
            ("version", "1"),
            ("family", "Stale"),
            ("given", "Sam"),
            ("phone", "01234 567890"),
            ("nhs_number", &nhs),
            ("active", "on"),
        ],
    )
    .await;
    assert_eq!(res.status(), 412);
    let body = res.text().await.unwrap();
    assert!(body.contains("Someone else saved this record"));
    assert!(
        body.contains("<td>Samuel</td>"),
        "what was saved meanwhile: {body}"
    );
    assert!(
        body.contains("name=\"version\" value=\"2\""),
        "a retry starts from the new version"
    );
    let now: serde_json::Value = c
        .get(&format!("/api/patients/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(now["version"], 2);
    assert_eq!(
        now["resource"]["name"][0]["given"][0], "Samuel",
        "bob's change stands"
    );
    // Retrying on top of the new version saves.
    let res = submit(
        &c,
        &path,
        &[
            ("csrf_token", &hidden_csrf(&body)),
            ("version", "2"),
            ("family", "Stale"),
            ("given", "Samuel"),
            ("phone", "01234 567890"),
            ("nhs_number", &nhs),
            ("active", "on"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
}

#[tokio::test]
async fn letters_are_written_previewed_finalised_amended_and_marked_in_error_through_forms() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let created: serde_json::Value = c
        .post(
            "/api/patients",
            crate::clinical::patient_json("Letter", "Lou", &crate::clinical::nhs(11)),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let form = page(&c, &format!("/patients/{id}/letters/new")).await;
    assert!(
        form.contains("class=\"patient-banner\""),
        "who the letter is for"
    );
    let csrf = hidden_csrf(&form);
    let path = format!("/patients/{id}/letters/new");
    let res = submit(
        &c,
        &path,
        &[
            ("csrf_token", &csrf),
            ("title", "Clinic letter"),
            ("body", "Seen **today** <img src=x onerror=alert(1)>"),
            ("action", "preview"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let preview = res.text().await.unwrap();
    assert!(preview.contains("<strong>today</strong>"));
    let rendered = &preview[preview.find("aria-label=\"Preview\"").unwrap()..];
    assert!(
        !rendered.contains("onerror"),
        "the preview is sanitised too: {rendered}"
    );
    assert_eq!(
        t.store.count_letters(id).await.unwrap(),
        0,
        "a preview saves nothing"
    );
    let res = submit(
        &c,
        &path,
        &[
            ("csrf_token", &csrf),
            ("title", "Clinic letter"),
            ("body", "Seen today."),
            ("action", "draft"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let saved_at = location(&res);
    let (letter_path, saved) = saved_at.split_once('?').unwrap();
    let letter_path = letter_path.to_owned();
    assert_eq!(
        saved,
        "saved=%2Fpatients%2F".to_owned() + id + "%2Fletters%2Fnew"
    );
    let shown = page(&c, &saved_at).await;
    assert!(
        shown.contains(&format!(
            "data-clear-draft=\"draft:/patients/{id}/letters/new\""
        )),
        "the browser may forget the kept draft"
    );
    assert!(shown.contains("Finalise"));
    let res = submit(
        &c,
        &format!("{letter_path}/finalise"),
        &[("csrf_token", &hidden_csrf(&shown)), ("version", "1")],
    )
    .await;
    assert_eq!(res.status(), 303);
    let shown = page(&c, &letter_path).await;
    assert!(shown.contains("Correct this letter"));
    let amend = page(&c, &format!("{letter_path}/amend")).await;
    let res = submit(
        &c,
        &format!("{letter_path}/amend"),
        &[
            ("csrf_token", &hidden_csrf(&amend)),
            ("title", "Clinic letter (corrected)"),
            ("body", "Seen yesterday."),
            ("action", "final"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let corrected = location(&res).split('?').next().unwrap().to_owned();
    assert_ne!(corrected, letter_path);
    let shown = page(&c, &corrected).await;
    let res = submit(
        &c,
        &format!("{corrected}/entered-in-error"),
        &[
            ("csrf_token", &hidden_csrf(&shown)),
            ("version", "1"),
            ("reason", "wrong patient"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let shown = page(&c, &corrected).await;
    assert!(shown.contains("Entered in error: wrong patient"));
    assert_eq!(
        t.store.count_letters(id).await.unwrap(),
        2,
        "nothing is deleted"
    );
    // Without its token, a letter form writes nothing.
    let res = submit(
        &c,
        &path,
        &[("title", "Forged"), ("body", "x"), ("action", "final")],
    )
    .await;
    assert_eq!(res.status(), 403);
    assert_eq!(t.store.count_letters(id).await.unwrap(), 2);
}

#[tokio::test]
async fn the_account_page_changes_the_password_makes_tokens_and_signs_out_elsewhere() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let other = t.client();
    other.login("alice", PASSWORD).await;
    let html = page(&c, "/account").await;
    assert!(html.contains("Set up two-factor sign-in"));
    let csrf = hidden_csrf(&html);
    let res = submit(
        &c,
        "/account/tokens",
        &[("csrf_token", &csrf), ("name", "lab"), ("scope", "read")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(body.contains("shown only now: <code>vlm_"), "{body}");
    let res = submit(&c, "/account/sessions/end-others", &[("csrf_token", &csrf)]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(other.me_status().await, 401);
    let res = submit(
        &c,
        "/account/password",
        &[
            ("csrf_token", &csrf),
            ("current_password", "wrong-one-here"),
            ("new_password", "Fresh-walrus-42-basket"),
        ],
    )
    .await;
    assert_eq!(res.status(), 422);
    let res = submit(
        &c,
        "/account/password",
        &[
            ("csrf_token", &csrf),
            ("current_password", PASSWORD),
            ("new_password", "Fresh-walrus-42-basket"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Password changed"));
}

#[tokio::test]
async fn the_account_page_gives_new_recovery_codes_once_for_the_password_and_a_code() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let (secret, old) = crate::totp::enrol(&t, &c).await;
    t.clock.advance_ms(30_000);
    let html = page(&c, "/account").await;
    assert!(html.contains("New recovery codes"), "{html}");
    let csrf = hidden_csrf(&html);
    let code = secret.code_at_step(crate::totp::step(&t));
    let res = submit(
        &c,
        "/account/totp/recovery-codes",
        &[
            ("csrf_token", &csrf),
            ("password", "wrong-one-here"),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(res.status(), 401);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("The password is not right.")
    );
    let res = submit(
        &c,
        "/account/totp/recovery-codes",
        &[
            ("csrf_token", &csrf),
            ("password", PASSWORD),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("Your new recovery codes, shown only now"),
        "{body}"
    );
    assert_eq!(body.matches("<li><code>").count(), 10, "{body}");
    assert!(!body.contains(&old[0]), "an old code is shown");
    // Shown once: the page after shows none.
    let again = page(&c, "/account").await;
    assert!(!again.contains("shown only now"));
    // Without its token, the form replaces nothing.
    let res = submit(
        &c,
        "/account/totp/recovery-codes",
        &[("password", PASSWORD), ("code", &code)],
    )
    .await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn administrators_manage_accounts_and_read_the_security_log_through_pages() {
    let t = TestApp::spawn().await;
    let admin = t.signed_in("root", Role::Admin).await;
    let html = page(&admin, "/admin/users").await;
    let csrf = hidden_csrf(&html);
    let res = submit(
        &admin,
        "/admin/users",
        &[
            ("csrf_token", &csrf),
            ("username", "newdoc"),
            ("role", "clinician"),
            ("password", "Velvet-otter-28-compass"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Created clinician newdoc")
    );
    let res = submit(
        &admin,
        "/admin/users/deactivate",
        &[("csrf_token", &csrf), ("username", "newdoc")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let res = submit(
        &admin,
        "/admin/users/deactivate",
        &[("csrf_token", &csrf), ("username", "nobody")],
    )
    .await;
    assert_eq!(res.status(), 404);
    // A clinician made an administrator, through the form: their session ends.
    let lead = t.signed_in("lead", Role::Clinician).await;
    let res = submit(
        &admin,
        "/admin/users/role",
        &[
            ("csrf_token", &csrf),
            ("username", "lead"),
            ("role", "admin"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(body.contains("The role of lead is now admin"), "{body}");
    assert_eq!(lead.me_status().await, 401);
    let res = submit(
        &admin,
        "/admin/users/role",
        &[
            ("csrf_token", &csrf),
            ("username", "root"),
            ("role", "clinician"),
        ],
    )
    .await;
    assert_eq!(res.status(), 409, "never their own");
    let log = page(&admin, "/admin/security").await;
    assert!(log.contains("user_created") && log.contains("user_deactivated"));
    assert!(log.contains("role_changed"));
    // Not for anyone else.
    let c = t.signed_in("alice", Role::Clinician).await;
    assert_eq!(c.get("/admin/users").await.status(), 403);
    assert_eq!(c.get("/admin/security").await.status(), 403);
}

#[tokio::test]
async fn a_form_sent_after_the_session_expired_goes_to_sign_in_and_writes_nothing() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let created: serde_json::Value = c
        .post(
            "/api/patients",
            crate::clinical::patient_json("Late", "Lena", &crate::clinical::nhs(12)),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let path = format!("/patients/{id}/letters/new");
    let form = page(&c, &path).await;
    t.clock.advance_ms(16 * 60_000);
    let res = c
        .http
        .post(c.url(&path))
        .header("referer", c.url(&path))
        .form(&[
            ("csrf_token", hidden_csrf(&form).as_str()),
            ("title", "Late"),
            ("body", "b"),
            ("action", "final"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        location(&res),
        format!("/login?next=%2Fpatients%2F{id}%2Fletters%2Fnew")
    );
    assert_eq!(
        t.store.count_letters(id).await.unwrap(),
        0,
        "nothing was written"
    );
    // The JSON API still answers such a request with a problem document.
    let res = c
        .post(
            &format!("/api/patients/{id}/letters"),
            serde_json::json!({"title": "t", "body": "b"}),
        )
        .await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn an_administrators_new_colleague_chooses_their_own_password_on_its_own_page_before_any_other()
 {
    let t = TestApp::spawn().await;
    let admin = t.signed_in("root", Role::Admin).await;
    let csrf = hidden_csrf(&page(&admin, "/admin/users").await);
    let given = "Handed-over-plum-41-lantern";
    let res = submit(
        &admin,
        "/admin/users",
        &[
            ("csrf_token", &csrf),
            ("username", "newdoc"),
            ("role", "clinician"),
            ("password", given),
        ],
    )
    .await;
    let body = res.text().await.unwrap();
    assert!(body.contains("The password is temporary"), "{body}");

    let c = t.client();
    let csrf = hidden_csrf(&page(&c, "/login?next=/patients").await);
    let res = submit(
        &c,
        "/login",
        &[
            ("csrf_token", &csrf),
            ("username", "newdoc"),
            ("password", given),
            ("next", "/patients"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/login/password?next=%2Fpatients");
    // Every other page sends the user back to that one.
    let res = c.get("/patients").await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/login/password?next=%2Fpatients");
    let res = c.get("/").await;
    assert_eq!(res.status(), 303, "the front page too");
    assert_eq!(location(&res), "/login/password?next=%2F");
    let partial = c.session_cookie().unwrap();
    let html = page(&c, "/login/password?next=/patients").await;
    assert!(html.contains("Choose your own password"), "{html}");
    let csrf = hidden_csrf(&html);
    let res = submit(
        &c,
        "/login/password",
        &[
            ("csrf_token", &csrf),
            ("current_password", "Not-what-was-given-11"),
            ("new_password", "Quiet-heron-73-marmalade"),
            ("next", "/patients"),
        ],
    )
    .await;
    assert_eq!(res.status(), 422);
    let body = res.text().await.unwrap();
    assert!(body.contains("The password you were given"), "{body}");
    let res = submit(
        &c,
        "/login/password",
        &[
            ("csrf_token", &csrf),
            ("current_password", given),
            ("new_password", "Quiet-heron-73-marmalade"),
            ("next", "/patients"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/patients");
    assert_ne!(c.session_cookie().unwrap(), partial, "a new session token");
    page(&c, "/patients").await;
    // A full session has nothing to do on that page.
    let res = c.get("/login/password?next=/patients").await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/patients");

    // Forgotten later: an administrator resets it through the form; the
    // colleague's session ends and the new password is temporary again.
    let csrf = hidden_csrf(&page(&admin, "/admin/users").await);
    let res = submit(
        &admin,
        "/admin/users/reset-password",
        &[
            ("csrf_token", &csrf),
            ("username", "newdoc"),
            ("password", "Second-handover-62-kettle"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(body.contains("The password of newdoc was reset"), "{body}");
    assert_eq!(c.me_status().await, 401);
    let status = c.login("newdoc", "Second-handover-62-kettle").await;
    let v: serde_json::Value = status.json().await.unwrap();
    assert_eq!(v["status"], "password_change_required");
}

#[tokio::test]
async fn an_administrator_revokes_a_colleagues_api_tokens_on_the_users_page() {
    let t = TestApp::spawn().await;
    let admin = t.signed_in("root", Role::Admin).await;
    let bob = t.signed_in("bob", Role::Clinician).await;
    let (token, _) = crate::tokens::token(&bob, "read").await;
    let by_token =
        || crate::tokens::bearer(&t, reqwest::Method::GET, "/api/auth/me", &token).send();
    assert_eq!(by_token().await.unwrap().status(), 200);
    let users = page(&admin, "/admin/users").await;
    assert!(users.contains("Revoke API tokens"), "{users}");
    let csrf = hidden_csrf(&users);
    let res = submit(
        &admin,
        "/admin/users/revoke-tokens",
        &[("csrf_token", &csrf), ("username", "bob")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(body.contains("Revoked 1 API token(s) of bob."), "{body}");
    assert_eq!(by_token().await.unwrap().status(), 401);
    assert_eq!(bob.me_status().await, 200, "bob's session is kept");
}

#[tokio::test]
async fn a_draft_is_continued_on_its_own_page_and_a_save_over_a_change_made_elsewhere_keeps_the_text()
 {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let created = crate::clinical::create_patient(&c, "Draft", &crate::clinical::nhs(12)).await;
    let id = created["id"].as_str().unwrap();
    // The new-letter form is saved as it is typed; no letter yet.
    let new = page(&c, &format!("/patients/{id}/letters/new")).await;
    assert!(
        new.contains(&format!("data-autosave-patient=\"{id}\"")),
        "{new}"
    );
    assert!(!new.contains("data-autosave-letter"), "{new}");
    let draft: serde_json::Value = c
        .post(
            &format!("/api/patients/{id}/letters"),
            serde_json::json!({"title": "Referral", "body": "First lines."}),
        )
        .await
        .json()
        .await
        .unwrap();
    let lid = draft["id"].as_str().unwrap();
    let shown = page(&c, &format!("/patients/{id}/letters/{lid}")).await;
    let edit = format!("/patients/{id}/letters/{lid}/edit");
    assert!(shown.contains(&format!("href=\"{edit}\"")), "{shown}");

    let form = page(&c, &edit).await;
    assert!(form.contains("class=\"patient-banner\""), "who it is for");
    assert!(form.contains("value=\"Referral\""), "{form}");
    assert!(form.contains("First lines."), "{form}");
    assert!(form.contains("name=\"version\" value=\"1\""), "{form}");
    assert!(
        form.contains(&format!("data-autosave-letter=\"{lid}\"")),
        "{form}"
    );
    let csrf = hidden_csrf(&form);
    let res = submit(
        &c,
        &edit,
        &[
            ("csrf_token", &csrf),
            ("version", "1"),
            ("title", "Referral"),
            ("body", "First lines. Second lines."),
            ("action", "draft"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with(&format!("/patients/{id}/letters/{lid}?saved=")));
    let api = format!("/api/patients/{id}/letters/{lid}");
    let stored: serde_json::Value = c.get(&api).await.json().await.unwrap();
    assert_eq!(
        (&stored["version"], &stored["status"], &stored["body"]),
        (
            &serde_json::json!(2),
            &serde_json::json!("draft"),
            &serde_json::json!("First lines. Second lines.")
        )
    );

    // A form opened at version 1 is refused: nothing saved, the text kept,
    // and the form now names the stored version.
    let res = submit(
        &c,
        &edit,
        &[
            ("csrf_token", &csrf),
            ("version", "1"),
            ("title", "Referral"),
            ("body", "Typed in an older tab."),
            ("action", "final"),
        ],
    )
    .await;
    assert_eq!(res.status(), 412);
    let refused = res.text().await.unwrap();
    assert!(refused.contains("changed elsewhere"), "{refused}");
    assert!(refused.contains("Typed in an older tab."), "{refused}");
    assert!(
        refused.contains("name=\"version\" value=\"2\""),
        "{refused}"
    );
    assert!(
        !refused.contains("data-autosave-letter"),
        "not saved as it is typed over the other change: {refused}"
    );
    let stored: serde_json::Value = c.get(&api).await.json().await.unwrap();
    assert_eq!(stored["body"], "First lines. Second lines.", "unchanged");
    // Sent again from that form, on purpose: saved, and final.
    let res = submit(
        &c,
        &edit,
        &[
            ("csrf_token", &csrf),
            ("version", "2"),
            ("title", "Referral"),
            ("body", "Typed in an older tab."),
            ("action", "final"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let stored: serde_json::Value = c.get(&api).await.json().await.unwrap();
    assert_eq!(
        (&stored["status"], &stored["body"]),
        (
            &serde_json::json!("final"),
            &serde_json::json!("Typed in an older tab.")
        )
    );
    assert_eq!(t.store.count_letters(id).await.unwrap(), 1, "one letter");
    // A final letter is not continued: it is corrected by an amendment.
    let res = c.get(&edit).await;
    assert_eq!(res.status(), 409);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("only a draft can be edited")
    );
    let shown = page(&c, &format!("/patients/{id}/letters/{lid}")).await;
    assert!(!shown.contains(&format!("href=\"{edit}\"")), "{shown}");
}

#[tokio::test]
async fn the_edit_form_shows_whom_a_changed_patient_now_resembles_and_saves_once_ticked() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let mut ids = Vec::new();
    for birth in ["1963-04-04", "1963-05-05"] {
        let res = c
            .post(
                "/api/patients",
                serde_json::json!({
                    "resourceType": "Patient",
                    "name": [{"family": "Foxtrot", "given": ["Fay"]}],
                    "birthDate": birth,
                }),
            )
            .await;
        let v: serde_json::Value = res.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let path = format!("/patients/{}/edit", ids[1]);
    let csrf = hidden_csrf(&page(&c, &path).await);
    let fields = |tick: bool| {
        let mut f = vec![
            ("csrf_token", csrf.clone()),
            ("version", "1".to_owned()),
            ("family", "Foxtrot".to_owned()),
            ("given", "Fay".to_owned()),
            ("birth_date", "1963-04-04".to_owned()),
            ("active", "on".to_owned()),
        ];
        if tick {
            f.push(("possible_duplicates", "checked".to_owned()));
            f.push(("checked_duplicates", ids[0].clone()));
        }
        f
    };
    let send = |tick: bool| {
        let f = fields(tick);
        let (c, path) = (&c, &path);
        async move {
            let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            submit(c, path, &pairs).await
        }
    };
    let res = send(false).await;
    assert_eq!(res.status(), 409);
    let body = res.text().await.unwrap();
    assert!(body.contains("looks like another registered one"), "{body}");
    assert!(body.contains("Nothing has been saved."), "{body}");
    assert!(
        body.contains(&format!("href=\"/patients/{}\"", ids[0])),
        "{body}"
    );
    assert!(body.contains("Save this change."), "{body}");
    assert!(
        body.contains(&format!("name=\"checked_duplicates\" value=\"{}\"", ids[0])),
        "the form names the records shown: {body}"
    );
    let res = send(true).await;
    assert_eq!(res.status(), 303);
    let stored: serde_json::Value = c
        .get(&format!("/api/patients/{}", ids[1]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["resource"]["birthDate"], "1963-04-04");
}
