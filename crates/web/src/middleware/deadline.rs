//! Every request is answered within about `server.request_timeout_seconds`.
//!
//! A request that waits on a database that is slow, locked or out of
//! connections would otherwise wait out the database's own timeouts (a
//! 15-second pool acquire per query, a 10-second lock wait on SQLite, none
//! at all on a PostgreSQL lock) — and hold its client all that time (H022).
//! At the deadline the client gets 503.
//!
//! What happens to the work itself depends on the method:
//!
//! - A request that only reads (GET, HEAD, OPTIONS) is dropped at the
//!   deadline: nothing of it was sent, so nothing is lost. A record read
//!   whose access-log row was not yet written is not answered.
//! - A request that changes something runs on a task of its own, to its
//!   end, whatever the deadline or the client does: several use cases write
//!   more than once (a token, then its security event), and cutting one
//!   between two writes would leave half of it. The 503 says that the change
//!   may still be saved.

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
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if method.is_safe() {
        return match tokio::time::timeout(within, next.run(req)).await {
            Ok(res) => res,
            Err(_) => late(&method, &path, within),
        };
    }
    // Detached if the deadline passes or the client goes away: the task
    // still runs to its end.
    let mut run = tokio::spawn(next.run(req));
    match tokio::time::timeout(within, &mut run).await {
        Ok(Ok(res)) => res,
        // A handler that panicked: the panic goes on, to the layer that
        // turns it into a 500 (the panic hook has logged it).
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(_)) => Problem::internal().into_response(),
        Err(_) => late(&method, &path, within),
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
            " Your change is still being processed and may yet be saved: check whether it was \
             before sending it again.",
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

    /// A router whose GET waits longer than the deadline, whose POST
    /// panics, behind the deadline and the panic layer as in `wrap`.
    fn router() -> Router {
        Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .route(
                "/bug",
                post(|| async {
                    if Duration::ZERO.is_zero() {
                        panic!("a bug in a handler");
                    }
                    "never"
                }),
            )
            .layer(axum::middleware::from_fn(|req, next| {
                answer_within(Duration::from_millis(50), req, next)
            }))
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
                Problem::internal().into_response()
            }))
    }

    async fn status(method: &str, path: &str) -> StatusCode {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        router().oneshot(req).await.unwrap().status()
    }

    #[tokio::test]
    async fn a_read_past_the_deadline_gets_503() {
        assert_eq!(
            status("GET", "/slow").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn a_change_whose_handler_panics_on_its_own_task_still_gets_the_500() {
        assert_eq!(
            status("POST", "/bug").await,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
