//! The layers every request passes through.

mod csrf;
mod deadline;
mod headers;
mod session;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use tower_http::catch_panic::CatchPanicLayer;

use crate::{AppState, Problem};

/// Applies the layers, outermost last: a server error (5xx) for a browser
/// asking for a page becomes a page; errors under `/fhir/` become
/// OperationOutcomes (and non-JSON formats 406); a panic becomes a generic 500;
/// security headers go on every response; a request not answered within the
/// request timeout gets 503; the body limit; the session is loaded; the CSRF
/// guard checks every unsafe method before any handler.
pub(crate) fn wrap(routes: Router<AppState>, state: AppState) -> Router {
    let limit = state.web.max_body_bytes;
    routes
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), csrf::guard))
        .layer(from_fn_with_state(state.clone(), session::load))
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
        .layer(from_fn_with_state(state.clone(), deadline::limit))
        .layer(from_fn_with_state(state.clone(), headers::security_headers))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            axum::response::IntoResponse::into_response(Problem::internal())
        }))
        .layer(axum::middleware::from_fn(crate::fhir::outcome::layer))
        .layer(axum::middleware::from_fn(
            crate::pages::server_errors::layer,
        ))
        .with_state(state)
}

async fn fallback() -> Problem {
    Problem::not_found().detail("There is nothing at this address.")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
    )
}
