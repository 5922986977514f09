//! The layers every request passes through.

mod csrf;
mod deadline;
mod headers;
mod session;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use tower_http::catch_panic::CatchPanicLayer;

use crate::{AppState, Problem};

/// What a middleware function takes before `Next`: the request alone, or
/// the state and the request (named, as a stack built here, unlike
/// `Router::layer`, leaves them to be inferred).
type Plain = (Request,);
type WithState = (State<AppState>, Request);

/// Applies the layers, outermost first: a server error (5xx) for a browser
/// asking for a page becomes a page; errors under `/fhir/` become
/// OperationOutcomes (and non-JSON formats 406); a panic becomes a generic 500;
/// security headers go on every response; a request not answered within the
/// request timeout gets 503; the body limit; the session is loaded; the CSRF
/// guard checks every unsafe method before any handler. Every request,
/// whatever its path (unknown paths and methods included), passes them all.
pub(crate) fn wrap(routes: Router<AppState>, state: AppState) -> Router {
    let limit = state.web.max_body_bytes;
    let routes = routes
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    // Around the router as a whole, not layered onto each of its routes
    // (`Router::layer`): a route layered so is cloned, box by box, for
    // every request, where the whole stack here is one clone. First
    // listed is outermost.
    let layered = tower::ServiceBuilder::new()
        .layer(from_fn::<_, Plain>(crate::pages::server_errors::layer))
        .layer(from_fn::<_, Plain>(crate::fhir::outcome::layer))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            axum::response::IntoResponse::into_response(Problem::internal())
        }))
        .layer(from_fn_with_state::<_, _, WithState>(
            state.clone(),
            headers::security_headers,
        ))
        .layer(from_fn_with_state::<_, _, WithState>(
            state.clone(),
            deadline::limit,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
        .map_request(
            |req: axum::http::Request<tower_http::body::Limited<axum::body::Body>>| {
                req.map(axum::body::Body::new)
            },
        )
        .layer(DefaultBodyLimit::max(limit))
        .layer(from_fn_with_state::<_, _, WithState>(
            state.clone(),
            session::load,
        ))
        .layer(from_fn_with_state::<_, _, WithState>(state, csrf::guard))
        .service(routes);
    Router::new().fallback_service(layered)
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
