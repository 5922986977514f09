//! Loads the session named by the session cookie, once per request.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::extract::{CurrentSession, CurrentToken};
use crate::{AppState, Problem, cookies};

pub(crate) async fn load(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let names = state.web.cookie_names();
    let session = match cookies::read(req.headers(), names.session) {
        Some(token) => match state.app.session(&token).await {
            Ok(s) => s,
            Err(e) => return Problem::from(e).into_response(),
        },
        None => None,
    };
    // No session cookie: an API token may speak for a user instead.
    let token = match (&session, bearer(req.headers())) {
        (None, Some(t)) => match state.app.authenticate_token(&t).await {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                let mut res = Problem::new(
                    axum::http::StatusCode::UNAUTHORIZED,
                    "invalid-token",
                    "Invalid API token",
                )
                .detail("The bearer token is unknown, revoked or expired.")
                .into_response();
                res.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
                return res;
            }
            Err(e) => return Problem::from(e).into_response(),
        },
        _ => None,
    };
    req.extensions_mut().insert(CurrentSession(session));
    req.extensions_mut().insert(CurrentToken(token));
    req.extensions_mut().insert(state.web.clone());
    next.run(req).await
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}
