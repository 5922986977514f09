//! First-run setup through the API (the page at /setup/{token} does the same).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::Deserialize;

use super::UserView;
use crate::extract::{ApiJson, Meta};
use crate::routes::Routes;
use crate::{AppState, Problem};

pub(super) fn routes(r: Routes) -> Routes {
    r.post("/api/setup", complete)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupBody {
    token: String,
    username: String,
    password: SecretString,
}

async fn complete(
    State(state): State<AppState>,
    Meta(meta): Meta,
    ApiJson(body): ApiJson<SetupBody>,
) -> Result<Response, Problem> {
    let user = state
        .app
        .complete_setup(&body.token, &body.username, body.password, &meta)
        .await
        .map_err(|e| match e {
            app::AppError::NotFound => Problem::not_found()
                .detail("This setup link is unknown, used, expired, or an account already exists."),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))).into_response())
}
