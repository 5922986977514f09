//! The JSON API under `/api`.

mod account;
mod admin;
mod auth;
mod letters;
pub(crate) mod markdown;
mod openapi;
mod patients;
mod setup;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::User;
use serde::Serialize;

use crate::AppState;
use crate::routes::Routes;

pub(crate) use account::qr_svg;
pub(crate) use patients::{etag, if_match};

pub(crate) fn routes(r: Routes) -> Routes {
    let r = r
        .get("/api/health", health)
        .get("/api/openapi.json", openapi::serve);
    let r = auth::routes(r);
    let r = account::routes(r);
    let r = setup::routes(r);
    let r = patients::routes(r);
    let r = letters::routes(r);
    admin::routes(r)
}

/// 200 `{"status":"ok"}` when the database answers, 503 otherwise.
async fn health(State(state): State<AppState>) -> Response {
    if state.app.healthy().await {
        Json(serde_json::json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "detail": "database unreachable"})),
        )
            .into_response()
    }
}

/// A user as the API shows it.
#[derive(Serialize)]
pub(crate) struct UserView {
    id: String,
    username: String,
    role: &'static str,
    active: bool,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            username: u.username.to_string(),
            role: u.role.as_str(),
            active: u.active,
        }
    }
}
