//! Every request is answered within about `server.request_timeout_seconds`.
//!
//! A request that waits on a database that is slow, locked or out of
//! connections would otherwise wait out the database's own timeouts (a
//! 15-second pool acquire per query, a 10-second lock wait on SQLite, none
//! at all on a PostgreSQL lock) — and hold its client all that time (H022).
//! At the deadline the handler is dropped and the client gets 503, as when
//! a client goes away. The writes of a change that belong together are one
//! transaction (a letter with its access-log row, a token with its security
//! event), so a dropped one is saved whole or not at all; and the group
//! commit skips a write whose caller is gone before its batch starts. A
//! statement or batch already under way may still commit, so the answer to
//! a change says to check before sending it again.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{AppState, Problem};

pub(crate) async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    answer_within(state.web.request_timeout, req, next).await
}

async fn answer_within(within: Duration, req: Request, next: Next) -> Response {
    // Kept for the answer if it is late (a `Uri` clone shares its bytes).
    let (method, uri) = (req.method().clone(), req.uri().clone());
    match tokio::time::timeout(within, next.run(req)).await {
        Ok(res) => res,
        Err(_) => late(&method, uri.path(), within),
    }
}

/// The answer to a request not answered in time.
fn late(method: &Method, path: &str, within: Duration) -> Response {
    tracing::warn!(
        %method,
        path,
        seconds = within.as_secs_f64(),
        "a request was not answered in time; answered 503"
    );
    let mut detail = format!(
        "No answer within {} seconds: the server or its database is too busy, or cannot be \
         reached.",
        within.as_secs()
    );
    if method.is_safe() {
        detail.push_str(" Try again shortly.");
    } else {
        detail.push_str(
            " Your change was stopped, but it may have been saved already, or may still be: \
             check whether it was before sending it again.",
        );
    }
    let mut p = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        "The server could not answer in time",
    )
    .detail(detail);
    p.retry_after = Some(5);
    p.into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt as _;

    use super::*;

    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_secs(30)).await;
        "late"
    }

    /// (status, detail) of `method /slow` behind a 50 ms deadline.
    async fn answer(method: &str) -> (StatusCode, String) {
        let router = Router::new()
            .route("/slow", get(slow))
            .route("/slow", post(slow))
            .layer(axum::middleware::from_fn(|req, next| {
                answer_within(Duration::from_millis(50), req, next)
            }));
        let req = Request::builder()
            .method(method)
            .uri("/slow")
            .body(Body::empty())
            .unwrap();
        let res = router.oneshot(req).await.unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (status, problem["detail"].as_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn a_read_past_the_deadline_gets_503_and_a_change_is_told_to_check_before_resending() {
        let (status, detail) = answer("GET").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(detail.contains("Try again shortly"), "{detail}");
        let (status, detail) = answer("POST").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(detail.contains("check whether it was"), "{detail}");
    }
}
