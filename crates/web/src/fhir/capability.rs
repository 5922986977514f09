//! `GET /fhir/R4/metadata`: the CapabilityStatement, listing exactly what
//! this server supports.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::search::{DOCUMENT_PARAMS, PATIENT_PARAMS};
use crate::AppState;

/// Public, as FHIR expects: it says what the server can do, nothing about
/// any patient.
pub(crate) async fn metadata(State(state): State<AppState>) -> Response {
    let base = super::base_url(&state);
    let params = |list: &[super::search::Param]| {
        list.iter()
            .map(|p| json!({"name": p.name, "type": p.kind, "documentation": p.doc}))
            .collect::<Vec<_>>()
    };
    let body = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": state.app.now().to_rfc3339(),
        "publisher": "Vellum",
        "kind": "instance",
        "software": {"name": "Vellum", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {
            "description": "Vellum clinical records and correspondence",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Results are paged with _count (1-100, default 20) and the \
                              Bundle's next link. Unknown search parameters and modifiers \
                              are refused (400), never ignored.",
            "security": {
                "cors": false,
                "description": "A browser session (cookie) with its CSRF token in \
                                X-CSRF-Token on every change, or an API token as \
                                Authorization: Bearer vlm_…. Roles: clinicians read and \
                                write; patients read their own record and final letters.",
            },
            "resource": [
                {
                    "type": "Patient",
                    "versioning": "versioned-update",
                    "readHistory": true,
                    "updateCreate": false,
                    "conditionalCreate": false,
                    "conditionalRead": "not-supported",
                    "conditionalUpdate": false,
                    "conditionalDelete": "not-supported",
                    "interaction": [
                        {"code": "read"},
                        {"code": "vread"},
                        {"code": "history-instance"},
                        {"code": "search-type"},
                        {"code": "create"},
                        {"code": "update", "documentation": "Requires If-Match: W/\"<versionId>\"; \
                         a stale version gets 412 and changes nothing."},
                    ],
                    "searchParam": params(PATIENT_PARAMS),
                },
                {
                    "type": "DocumentReference",
                    "documentation": "Clinical letters. Content is the letter's Markdown as an \
                                      attachment.",
                    "versioning": "versioned",
                    "readHistory": false,
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchParam": params(DOCUMENT_PARAMS),
                },
            ],
        }],
    });
    super::respond(StatusCode::OK, &body, None, None)
}
