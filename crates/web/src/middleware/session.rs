//! Loads the session named by the session cookie, once per request.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::extract::CurrentSession;
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
    req.extensions_mut().insert(CurrentSession(session));
    req.extensions_mut().insert(state.web.clone());
    next.run(req).await
}
