//! `/patients/new` and `/patients/{id}/edit`: the demographics form. Each
//! field's problem is shown beside it. An edit names the version it started
//! from; if someone changed the record meanwhile, the clinician sees what
//! changed and chooses again — nobody's change is silently overwritten.

use std::collections::BTreeMap;

use app::AppError;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use domain::patient::{BirthDate, Demographics, MRN_SYSTEM, NHS_SYSTEM};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::clinical::{banner, page_error, patient_banner};
use super::{PageUser, layout};
use crate::extract::CurrentSession;
use crate::routes::Routes;
use crate::{AppState, Problem, cookies};

pub(super) fn routes(r: Routes) -> Routes {
    r.get("/patients/new", new_form)
        .post("/patients/new", create)
        .get("/patients/{id}/edit", edit_form)
        .post("/patients/{id}/edit", update)
}

/// The form's fields, as typed.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct PatientForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    family: String,
    #[serde(default)]
    given: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    nhs_number: String,
    #[serde(default)]
    mrn: String,
    #[serde(default)]
    birth_date: String,
    #[serde(default)]
    gender: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    city: String,
    #[serde(default)]
    postcode: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    active: Option<String>,
    /// `checked` when the user ticked that the possible duplicates shown
    /// are other people.
    #[serde(default)]
    possible_duplicates: Option<String>,
    /// The ids of the possible duplicates shown (by commas): ticking the
    /// box writes over those, and no others.
    #[serde(default)]
    checked_duplicates: Option<String>,
    /// The possible duplicates this form was refused for, when shown again.
    #[serde(skip)]
    duplicates_shown: Vec<app::PatientSummary>,
}

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

impl PatientForm {
    /// The FHIR Patient this form describes, and which FHIR path belongs to
    /// which form field (for putting each error beside its field).
    fn resource(&self) -> (Value, Vec<(String, &'static str)>) {
        let mut paths = vec![
            ("name".to_owned(), "family"),
            ("name[0].family".to_owned(), "family"),
            ("name[0].given".to_owned(), "given"),
            ("name[0].prefix".to_owned(), "prefix"),
            ("birthDate".to_owned(), "birth_date"),
            ("gender".to_owned(), "gender"),
            ("address".to_owned(), "address"),
        ];
        let mut identifier = Vec::new();
        if !self.nhs_number.trim().is_empty() {
            paths.push((format!("identifier[{}]", identifier.len()), "nhs_number"));
            identifier.push(json!({"system": NHS_SYSTEM, "value": self.nhs_number.trim()}));
        }
        if !self.mrn.trim().is_empty() {
            paths.push((format!("identifier[{}]", identifier.len()), "mrn"));
            identifier.push(json!({"system": MRN_SYSTEM, "value": self.mrn.trim()}));
        }
        let mut telecom = Vec::new();
        for (system, value, field) in [
            ("phone", &self.phone, "phone"),
            ("email", &self.email, "email"),
        ] {
            if !value.trim().is_empty() {
                paths.push((format!("telecom[{}]", telecom.len()), field));
                telecom.push(json!({"system": system, "value": value.trim()}));
            }
        }
        let mut r = json!({
            "resourceType": "Patient",
            "name": [{"use": "official", "family": self.family.trim(), "given": words(&self.given), "prefix": words(&self.prefix)}],
            "active": self.active.is_some() || self.version.is_none(),
        });
        if !identifier.is_empty() {
            r["identifier"] = Value::Array(identifier);
        }
        if !telecom.is_empty() {
            r["telecom"] = Value::Array(telecom);
        }
        if !self.birth_date.trim().is_empty() {
            r["birthDate"] = json!(self.birth_date.trim());
        }
        if !self.gender.is_empty() {
            r["gender"] = json!(self.gender);
        }
        if !(self.address.trim().is_empty()
            && self.city.trim().is_empty()
            && self.postcode.trim().is_empty())
        {
            let mut a = json!({"use": "home"});
            let lines: Vec<&str> = self
                .address
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            if !lines.is_empty() {
                a["line"] = json!(lines);
            }
            if !self.city.trim().is_empty() {
                a["city"] = json!(self.city.trim());
            }
            if !self.postcode.trim().is_empty() {
                a["postalCode"] = json!(self.postcode.trim());
            }
            r["address"] = json!([a]);
        }
        (r, paths)
    }

    fn of(d: &Demographics, version: i64) -> Self {
        let telecom = |system: &str| {
            d.telecom
                .iter()
                .find(|t| t.system == system)
                .map(|t| t.value.clone())
                .unwrap_or_default()
        };
        let a = d.address.first();
        PatientForm {
            csrf_token: String::new(),
            version: Some(version),
            family: d.name.family.clone(),
            given: d.name.given.join(" "),
            prefix: d.name.prefix.join(" "),
            nhs_number: d
                .nhs_number
                .as_ref()
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default(),
            mrn: d.mrn.clone().unwrap_or_default(),
            birth_date: d
                .birth_date
                .as_ref()
                .map(|b| b.as_str().to_owned())
                .unwrap_or_default(),
            gender: d.gender.map(|g| g.as_str().to_owned()).unwrap_or_default(),
            address: a.map(|a| a.line.join("\n")).unwrap_or_default(),
            city: a.and_then(|a| a.city.clone()).unwrap_or_default(),
            postcode: a.and_then(|a| a.postal_code.clone()).unwrap_or_default(),
            phone: telecom("phone"),
            email: telecom("email"),
            active: d.active.then(|| "on".to_owned()),
            ..Self::default()
        }
    }
}

/// Form field → its problems.
type FieldErrors = BTreeMap<&'static str, Vec<String>>;

fn field_errors(e: &AppError, paths: &[(String, &'static str)]) -> (FieldErrors, Vec<String>) {
    let mut by_field = FieldErrors::new();
    let mut general = Vec::new();
    let list: Vec<(String, String)> = match e {
        AppError::InvalidFields(f) => f.clone(),
        AppError::Invalid { field, message } => vec![((*field).to_owned(), message.clone())],
        AppError::Conflict(what) => vec![("identifier[0]".to_owned(), what.clone())],
        _ => Vec::new(),
    };
    for (path, message) in list {
        // The longest FHIR path prefix that names a form field.
        let field = paths
            .iter()
            .filter(|(p, _)| {
                path == *p
                    || path.starts_with(&format!("{p}."))
                    || path.starts_with(&format!("{p}["))
            })
            .max_by_key(|(p, _)| p.len())
            .map(|(_, f)| *f);
        match field {
            Some(f) => by_field.entry(f).or_default().push(message),
            None => general.push(format!("{path}: {message}")),
        }
    }
    (by_field, general)
}

fn input(
    label: &str,
    name: &'static str,
    value: &str,
    errors: &FieldErrors,
    attrs: &str,
) -> Markup {
    let err = errors.get(name);
    let hint_id = format!("{name}-error");
    html! {
        label for=(name) { (label) }
        @if let Some(msgs) = err {
            p class="error" id=(hint_id) { (msgs.join("; ")) }
            input id=(name) name=(name) value=(value) aria-invalid="true" aria-describedby=(hint_id) autocomplete=(attrs);
        } @else {
            input id=(name) name=(name) value=(value) autocomplete=(attrs);
        }
    }
}

fn form_page(
    title: &str,
    action: &str,
    csrf: &str,
    f: &PatientForm,
    errors: &FieldErrors,
    general: &[String],
    notice: Option<Markup>,
) -> Markup {
    layout(
        title,
        html! {
            h1 { (title) }
            @if let Some(n) = notice { (n) }
            @for g in general { p class="error" role="alert" { (g) } }
            @if !errors.is_empty() { p class="error" role="alert" { "Please correct the fields marked below." } }
            form method="post" action=(action) {
                input type="hidden" name="csrf_token" value=(csrf);
                @if let Some(v) = f.version { input type="hidden" name="version" value=(v); }
                (input("Family name", "family", &f.family, errors, "off"))
                (input("Given names", "given", &f.given, errors, "off"))
                (input("Title (e.g. Dr, Ms)", "prefix", &f.prefix, errors, "off"))
                (input("NHS number", "nhs_number", &f.nhs_number, errors, "off"))
                (input("Local number (MRN)", "mrn", &f.mrn, errors, "off"))
                (input("Date of birth (YYYY-MM-DD)", "birth_date", &f.birth_date, errors, "off"))
                label for="gender" { "Gender" }
                @if let Some(m) = errors.get("gender") { p class="error" id="gender-error" { (m.join("; ")) } }
                select id="gender" name="gender" {
                    @for (v, l) in [("", "not recorded"), ("female", "female"), ("male", "male"), ("other", "other"), ("unknown", "unknown")] {
                        @if f.gender == v { option value=(v) selected { (l) } } @else { option value=(v) { (l) } }
                    }
                }
                label for="address" { "Address lines" }
                textarea id="address" name="address" rows="3" { (f.address) }
                (input("Town or city", "city", &f.city, errors, "off"))
                (input("Postcode", "postcode", &f.postcode, errors, "off"))
                (input("Phone", "phone", &f.phone, errors, "off"))
                (input("Email", "email", &f.email, errors, "off"))
                @if f.version.is_some() {
                    label class="check" {
                        @if f.active.is_some() { input type="checkbox" name="active" checked; } @else { input type="checkbox" name="active"; }
                        " Active record (untick to deactivate; nothing is deleted)"
                    }
                }
                @if !f.duplicates_shown.is_empty() {
                    input type="hidden" name=(crate::problem::CHECKED_DUPLICATES_PARAM)
                        value=(f.duplicates_shown.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(","));
                    label class="check" {
                        input type="checkbox" name="possible_duplicates" value=(crate::problem::POSSIBLE_DUPLICATES_CHECKED);
                        @if f.version.is_some() {
                            " I have checked the records above: this is a different person. Save this change."
                        } @else {
                            " I have checked the records above: this is a different person. Register a new record."
                        }
                    }
                }
                button type="submit" { "Save" }
            }
        },
    )
}

/// The records a new patient, or a changed one (`editing`), may
/// duplicate, with links to check them.
fn duplicates_notice(found: &[app::PatientSummary], editing: bool) -> Markup {
    html! {
        section class="warning" role="alert" aria-labelledby="duplicates-title" {
            h2 id="duplicates-title" {
                @if editing { "With this change, the patient looks like another registered one" }
                @else { "This patient may already be registered" }
            }
            p {
                @if found.len() == 1 { "One record has" } @else { (found.len()) " records have" }
                " the same family name, first given name and date of birth. "
                @if editing { "Nothing has been saved." } @else { "Nothing has been registered." }
                " Open each to check (a new tab keeps this form): if it is the same person, use \
                 that record instead."
            }
            ul {
                @for p in found {
                    li {
                        a href={ "/patients/" (p.id) } target="_blank" rel="noopener" { (p.display_name) }
                        ", born " (p.birth_date.as_deref().unwrap_or("not recorded"))
                        ", " @if let Some(n) = &p.nhs_number { "NHS number " (n) } @else { "no NHS number" }
                        @if !p.active { " (inactive record)" }
                    }
                }
            }
        }
    }
}

async fn csrf_for(
    state: &AppState,
    session: Option<&app::ActiveSession>,
    headers: &HeaderMap,
) -> Result<(HeaderMap, String), Problem> {
    let mut out = HeaderMap::new();
    let csrf = cookies::csrf_token_for(state, session, headers, &mut out).await?;
    Ok((out, csrf))
}

async fn new_form(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    if let Some(refusal) = super::refuse_unless(&user, domain::access::Action::ChangeDemographics) {
        return Ok(refusal);
    }
    let (out, csrf) = csrf_for(&state, session.as_ref(), &headers).await?;
    let page = form_page(
        "New patient",
        "/patients/new",
        &csrf,
        &PatientForm::default(),
        &FieldErrors::new(),
        &[],
        None,
    );
    Ok((out, page).into_response())
}

async fn create(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Form(f): Form<PatientForm>,
) -> Response {
    let (resource, paths) = f.resource();
    // Only the tick box's own value registers over possible duplicates.
    let if_duplicate = crate::extract::if_possible_duplicate(
        f.possible_duplicates.as_deref(),
        // The form names what it showed: naming none writes over none.
        Some(f.checked_duplicates.as_deref().unwrap_or("")),
    )
    .unwrap_or(app::IfPossibleDuplicate::Refuse);
    match state
        .app
        .create_patient(&user, &resource, if_duplicate)
        .await
    {
        Ok(view) => Redirect::to(&format!("/patients/{}", view.id)).into_response(),
        Err(AppError::PossibleDuplicates(found)) => {
            let notice = duplicates_notice(&found, false);
            let f = PatientForm {
                duplicates_shown: found,
                ..f
            };
            (
                StatusCode::CONFLICT,
                form_page(
                    "New patient",
                    "/patients/new",
                    &f.csrf_token,
                    &f,
                    &FieldErrors::new(),
                    &[],
                    Some(notice),
                ),
            )
                .into_response()
        }
        Err(
            e @ (AppError::InvalidFields(_) | AppError::Invalid { .. } | AppError::Conflict(_)),
        ) => {
            let (errors, general) = field_errors(&e, &paths);
            let status = if matches!(e, AppError::Conflict(_)) {
                StatusCode::CONFLICT
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (
                status,
                form_page(
                    "New patient",
                    "/patients/new",
                    &f.csrf_token,
                    &f,
                    &errors,
                    &general,
                    None,
                ),
            )
                .into_response()
        }
        Err(e) => page_error(e),
    }
}

fn parse(view: &app::PatientView) -> Option<Demographics> {
    Demographics::from_fhir(&view.resource, &BirthDate::from_unix_millis(i64::MAX / 2)).ok()
}

async fn edit_form(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    CurrentSession(session): CurrentSession,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    if let Some(refusal) = super::refuse_unless(&user, domain::access::Action::ChangeDemographics) {
        return Ok(refusal);
    }
    let view = match state.app.patient(&user, &id).await {
        Ok(v) => v,
        Err(e) => return Ok(page_error(e)),
    };
    let Some(d) = parse(&view) else {
        return Err(Problem::internal());
    };
    let (out, csrf) = csrf_for(&state, session.as_ref(), &headers).await?;
    let page = form_page(
        &format!("Edit {}", d.display_name()),
        &format!("/patients/{id}/edit"),
        &csrf,
        &PatientForm::of(&d, view.version),
        &FieldErrors::new(),
        &[],
        Some(banner(&id, &d)),
    );
    Ok((out, page).into_response())
}

async fn update(
    State(state): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<String>,
    Form(f): Form<PatientForm>,
) -> Response {
    let (resource, paths) = f.resource();
    let action = format!("/patients/{id}/edit");
    // Who this form is about, above everything else on it.
    let head = match patient_banner(&state, &user, &id).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // Only the tick box's own value saves over possible duplicates.
    let if_duplicate = crate::extract::if_possible_duplicate(
        f.possible_duplicates.as_deref(),
        // The form names what it showed: naming none writes over none.
        Some(f.checked_duplicates.as_deref().unwrap_or("")),
    )
    .unwrap_or(app::IfPossibleDuplicate::Refuse);
    match state
        .app
        .update_patient(&user, &id, f.version, &resource, if_duplicate)
        .await
    {
        Ok(_) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(AppError::PossibleDuplicates(found)) => {
            let notice = html! { (head) (duplicates_notice(&found, true)) };
            let f = PatientForm {
                duplicates_shown: found,
                ..f
            };
            (
                StatusCode::CONFLICT,
                form_page(
                    "Edit patient",
                    &action,
                    &f.csrf_token,
                    &f,
                    &FieldErrors::new(),
                    &[],
                    Some(notice),
                ),
            )
                .into_response()
        }
        Err(AppError::VersionConflict { current }) => {
            // Someone saved a newer version: show theirs beside ours, and
            // let the clinician apply theirs again on top of it.
            let now = match state.app.patient(&user, &id).await {
                Ok(v) => v,
                Err(e) => return page_error(e),
            };
            let Some(d) = parse(&now) else {
                return Problem::internal().into_response();
            };
            let theirs = PatientForm::of(&d, current);
            let changed: Vec<(&str, &str, &str)> = [
                ("Family name", theirs.family.as_str(), f.family.as_str()),
                ("Given names", &theirs.given, &f.given),
                ("Title", &theirs.prefix, &f.prefix),
                ("NHS number", &theirs.nhs_number, &f.nhs_number),
                ("Local number", &theirs.mrn, &f.mrn),
                ("Date of birth", &theirs.birth_date, &f.birth_date),
                ("Gender", &theirs.gender, &f.gender),
                ("Address", &theirs.address, &f.address),
                ("Town or city", &theirs.city, &f.city),
                ("Postcode", &theirs.postcode, &f.postcode),
                ("Phone", &theirs.phone, &f.phone),
                ("Email", &theirs.email, &f.email),
            ]
            .into_iter()
            .filter(|(_, a, b)| a.trim() != b.trim())
            .collect();
            let notice = html! {
                (head)
                div class="conflict" role="alert" {
                    p class="error" { "Someone else saved this record while you were editing (it is now at version " (current) "). Nothing of yours was saved." }
                    @if !changed.is_empty() {
                        table {
                            thead { tr { th { "Field" } th { "Saved meanwhile" } th { "Yours" } } }
                            tbody { @for (l, a, b) in &changed { tr { td { (l) } td { (a) } td { (b) } } } }
                        }
                    }
                    p { "Your values are in the form below. Check them against the saved record, then save again." }
                }
            };
            let mut mine = f.clone();
            mine.version = Some(current);
            (
                StatusCode::PRECONDITION_FAILED,
                form_page(
                    "Changed by someone else",
                    &action,
                    &f.csrf_token,
                    &mine,
                    &FieldErrors::new(),
                    &[],
                    Some(notice),
                ),
            )
                .into_response()
        }
        Err(
            e @ (AppError::InvalidFields(_) | AppError::Invalid { .. } | AppError::Conflict(_)),
        ) => {
            let (errors, general) = field_errors(&e, &paths);
            let status = if matches!(e, AppError::Conflict(_)) {
                StatusCode::CONFLICT
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (
                status,
                form_page(
                    "Edit patient",
                    &action,
                    &f.csrf_token,
                    &f,
                    &errors,
                    &general,
                    Some(head),
                ),
            )
                .into_response()
        }
        Err(e) => page_error(e),
    }
}
