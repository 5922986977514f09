//! Every request is answered within `server.request_timeout_seconds`.
//!
//! A request that waits on a database that is slow, locked or out of
//! connections would otherwise wait out one 15-second pool acquire per query
//! — and hold its client, its task and its memory all that time (H022). At
//! the deadline the handler is dropped and the client gets 503. Dropping a
//! handler part-way is nothing new to it: a client that goes away does the
//! same. What a handler commits is committed whole or not at all (each write
//! is one transaction), so the 503 cannot leave anything half-written — but a
//! write may have been committed just before the deadline, so the answer
//! tells the client to check before sending it again.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{AppState, Problem};

pub(crate) async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let within = state.web.request_timeout;
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    match tokio::time::timeout(within, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(
                %method,
                path,
                seconds = within.as_secs_f64(),
                "a request was not answered in time; answered 503"
            );
            let mut p = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "The server could not answer in time",
            )
            .detail(format!(
                "No answer within {} seconds: the database is slow or unreachable. If this \
                 request changed something, check whether the change was saved before \
                 sending it again.",
                within.as_secs()
            ));
            p.retry_after = Some(5);
            p.into_response()
        }
    }
}
