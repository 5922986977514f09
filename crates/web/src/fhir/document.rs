//! Letters as `DocumentReference`: read and search by patient.

use app::LetterView;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use domain::letter::LetterStatus;
use serde_json::{Value, json};

use super::bundle::{self, Entry};
use super::search::{DOCUMENT_PARAMS, Query};
use super::{base_url, respond};
use crate::extract::SignedIn;
use crate::routes::Routes;
use crate::{AppState, Problem};

pub(super) fn routes(r: Routes) -> Routes {
    r.get("/fhir/R4/DocumentReference", search)
        .get("/fhir/R4/DocumentReference/{id}", read)
}

/// A letter as a FHIR R4 DocumentReference. `status` says whether it is
/// the current word (current / superseded / entered-in-error), `docStatus`
/// how far it got (preliminary draft, final, amended); an amendment points
/// at the letter it replaces. The content is the Markdown as written.
pub(crate) fn document_reference(l: &LetterView) -> Result<Value, Problem> {
    let status: LetterStatus = l.status.parse().map_err(|_| {
        app::AppError::Internal(format!("letter {} has status {:?}", l.id, l.status))
    })?;
    let created = l.created_at.to_rfc3339();
    let mut doc = json!({
        "resourceType": "DocumentReference",
        "id": l.id,
        "meta": {"versionId": l.version.to_string(), "lastUpdated": l.updated_at.to_rfc3339()},
        "status": status.fhir_status(l.superseded_by.is_some()),
        "docStatus": status.fhir_doc_status(l.amends.is_some()),
        "type": {"text": "Clinical letter"},
        "subject": {"reference": format!("Patient/{}", l.patient_id)},
        "date": created,
        "author": [{"display": l.author.username}],
        "description": l.title,
        "content": [{
            "attachment": {
                "contentType": "text/markdown; charset=utf-8",
                "data": base64::engine::general_purpose::STANDARD.encode(l.body.as_bytes()),
                "title": l.title,
                "creation": created,
            }
        }],
    });
    if let Some(old) = &l.amends {
        doc["relatesTo"] = json!([{
            "code": "replaces",
            "target": {"reference": format!("DocumentReference/{old}")},
        }]);
    }
    Ok(doc)
}

async fn read(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let letter = state.app.letter_by_id(&signed_in.user, &id).await?;
    Ok(respond(
        StatusCode::OK,
        &document_reference(&letter)?,
        Some(letter.version),
        None,
    ))
}

async fn search(
    State(state): State<AppState>,
    signed_in: SignedIn,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    let query = Query::parse(raw.as_deref(), DOCUMENT_PARAMS)?;
    let patient = query.document_patient()?;
    let page = query.page()?;
    let base = base_url(&state);
    let found = match state
        .app
        .letters_sized(&signed_in.user, &patient, page, query.count()?)
        .await
    {
        Ok(found) => found,
        // A search for an unknown patient matches nothing.
        Err(app::AppError::NotFound) => app::LetterPage {
            items: Vec::new(),
            next: None,
        },
        Err(e) => return Err(e.into()),
    };
    let entries = found
        .items
        .iter()
        .map(|l| {
            Ok(Entry {
                kind: "DocumentReference",
                id: l.id.clone(),
                resource: document_reference(l)?,
            })
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    let body = bundle::searchset(
        &base,
        &state.app.now().to_rfc3339(),
        &format!("{base}/DocumentReference?{}", query.with_page(page)),
        found
            .next
            .map(|n| format!("{base}/DocumentReference?{}", query.with_page(n))),
        entries,
    );
    Ok(respond(StatusCode::OK, &body, None, None))
}
