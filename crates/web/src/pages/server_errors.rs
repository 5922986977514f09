//! A browser that asked for a page gets a page when the server fails.
//!
//! A failure on the server's side — the database unreachable (503), a
//! request not answered in time (503), a fault (500) — is a problem
//! document wherever it arises: the session layer, the deadline, the panic
//! catcher, a handler. On the API that is right; in a browser a clinician
//! would see raw JSON, and might send a letter again without reading that it
//! may have been saved. This layer, outermost beside FHIR's, turns such a
//! document into a page with the same status, headers and wording, for a
//! request outside `/api/` and `/fhir/` whose `Accept` asks for HTML.
//! Refusals (4xx) are left as they are: the pages render their own.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde_json::Value;

/// Problem documents are small; anything larger is not one of ours.
const MAX_PROBLEM_BYTES: usize = 64 * 1024;

pub(crate) async fn layer(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let wants_page = !path.starts_with("/api/")
        && !path.starts_with("/fhir/")
        && req
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/html"));
    let res = next.run(req).await;
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/problem+json"));
    if !(wants_page && is_problem && res.status().is_server_error()) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let problem: Value = match axum::body::to_bytes(body, MAX_PROBLEM_BYTES).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let text = |k: &str| problem.get(k).and_then(Value::as_str);
    let title = text("title").unwrap_or("Something went wrong on our side");
    let page = super::layout(
        title,
        html! {
            h1 { (title) }
            @if let Some(detail) = text("detail") { p { (detail) } }
            p { a href="/" { "Home" } }
        },
    );
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("accept"));
    Response::from_parts(parts, Body::from(page.into_string())).into_response()
}
