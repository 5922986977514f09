//! HTTP: the JSON API, pages, and the middleware every request passes.
//!
//! Handlers are thin: parse the request into domain types, call one `app`
//! use case, map the answer to HTTP. The order of the layers, outermost
//! first: server-error pages for browsers → FHIR outcomes → panic catcher →
//! security headers → request timeout → body limit → session → CSRF guard
//! → routes.
//! The CSRF guard wraps the whole router; no route can opt out.

mod api;
mod cookies;
mod extract;
mod fhir;
pub mod logging;
mod middleware;
mod pages;
mod problem;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use app::App;
use axum::Router;
use tokio::net::TcpListener;

pub use cookies::CookieNames;
pub use problem::Problem;
pub use routes::{RouteInfo, route_table};

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The origin users reach, e.g. `https://vellum.example.org`; requests
    /// whose `Origin` differs are refused on unsafe methods.
    pub public_origin: String,
    /// Requests larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// A request not answered within this gets 503 (its handler is
    /// dropped), instead of waiting out one pool timeout per query.
    pub request_timeout: std::time::Duration,
    /// Reverse proxies whose `X-Forwarded-For` is believed. A request from
    /// any other peer is attributed to the peer's own address, so a client
    /// cannot pick the address its failures are counted against.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl WebConfig {
    /// Cookies are `Secure` and `__Host-` prefixed when served over HTTPS.
    pub fn secure(&self) -> bool {
        self.public_origin.starts_with("https://")
    }

    pub fn cookie_names(&self) -> CookieNames {
        CookieNames::for_origin(self.secure())
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub app: Arc<App>,
    pub web: Arc<WebConfig>,
}

/// The whole HTTP surface with every layer applied.
pub fn router(state: AppState) -> Router {
    let (routes, _) = routes::build();
    middleware::wrap(routes, state)
}

/// Serves until `shutdown` completes, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
