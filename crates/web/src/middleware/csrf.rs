//! The CSRF guard (seed 000): one layer over the whole router.
//!
//! Every request whose method is not GET, HEAD or OPTIONS is checked, in
//! this order, before any handler sees it:
//! 1. `Sec-Fetch-Site: cross-site` → 403;
//! 2. an `Origin` that is not the public origin → 403;
//! 3. the double-submit check: the token in `X-CSRF-Token` (or the
//!    `csrf_token` field of a form) must equal the CSRF cookie, and its MAC
//!    the one stored in the server-side session. Missing → 403 "CSRF token
//!    required"; anything else wrong → 403 "CSRF token invalid".
//!
//! A refused request is not processed at all; the refusal is a security
//! event, and bursts from one address raise an alert. Requests that carry an
//! `Authorization: Bearer` API token and no cookies at all carry no ambient
//! credential, so a forged cross-site request cannot use them: they pass.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::extract::{CurrentSession, meta_of};
use crate::{AppState, Problem, cookies};

/// The request header that carries the token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field that carries the token in HTML form posts.
pub const CSRF_FIELD: &str = "csrf_token";

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

pub(crate) async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if is_safe(req.method()) {
        return next.run(req).await;
    }
    let headers = req.headers();
    if is_bearer_only(headers) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let session = parts
        .extensions
        .get::<CurrentSession>()
        .and_then(|s| s.0.clone());

    let site = header_str(&parts.headers, "sec-fetch-site");
    let origin = header_str(&parts.headers, header::ORIGIN.as_str());
    let refusal = if site.as_deref() == Some("cross-site") {
        Some((
            "cross-site request (Sec-Fetch-Site)",
            Problem::cross_site("The browser reports this request as coming from another site."),
        ))
    } else if origin
        .as_deref()
        .is_some_and(|o| o != state.web.public_origin)
    {
        Some((
            "foreign Origin",
            Problem::cross_site("The request's Origin is not this server's origin."),
        ))
    } else {
        None
    };

    let (body, presented) = if refusal.is_some() {
        (Body::empty(), None)
    } else if let Some(t) = header_str(&parts.headers, CSRF_HEADER) {
        (body, Some(t))
    } else if is_form(&parts.headers) {
        // HTML forms carry the token as a field: read the (size-limited)
        // body, take the field, and hand the same bytes on to the handler.
        let Ok(bytes) = to_bytes(body, state.web.max_body_bytes).await else {
            return Problem::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request body too large",
            )
            .into_response();
        };
        let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()
            .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == CSRF_FIELD))
            .map(|(_, v)| v);
        (Body::from(bytes), token)
    } else {
        (body, None)
    };

    let same_site = refusal.is_none();
    let (reason, problem) = match refusal {
        Some(r) => r,
        None => {
            let cookie = cookies::read(&parts.headers, state.web.cookie_names().csrf);
            match state
                .app
                .check_csrf(session.as_ref(), presented.as_deref(), cookie.as_deref())
            {
                app::CsrfCheck::Valid => {
                    return next.run(Request::from_parts(parts, body)).await;
                }
                app::CsrfCheck::Missing => ("token missing", Problem::csrf_required()),
                app::CsrfCheck::Invalid => ("token invalid", Problem::csrf_invalid()),
            }
        }
    };

    let meta = meta_of(&parts);
    let user = session.as_ref().and_then(|s| s.user.as_ref());
    tracing::warn!(ip = %meta.ip, method = %parts.method, path = %parts.uri.path(), reason, "CSRF check refused a request");
    if let Err(e) = state.app.record_csrf_failure(reason, user, &meta).await {
        tracing::error!(error = %e, "could not record a CSRF failure");
    }
    // A page's own form sent after its session expired: refused all the
    // same, but the person is sent to sign in and back to the page the form
    // was on (the script has kept what they typed), not shown a JSON error.
    let page_form = same_site
        && session.is_none()
        && is_form(&parts.headers)
        && !parts.uri.path().starts_with("/api/")
        && !parts.uri.path().starts_with("/fhir/");
    if page_form {
        let from = header_str(&parts.headers, header::REFERER.as_str())
            .and_then(|r| {
                r.strip_prefix(state.web.public_origin.as_str())
                    .map(str::to_owned)
            })
            .filter(|p| p.starts_with('/'));
        let next = crate::pages::safe_next(from.as_deref());
        let q = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
        return axum::response::Redirect::to(&format!("/login?{q}")).into_response();
    }
    problem.into_response()
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn is_form(headers: &HeaderMap) -> bool {
    header_str(headers, header::CONTENT_TYPE.as_str())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
}

fn is_bearer_only(headers: &HeaderMap) -> bool {
    let bearer = header_str(headers, header::AUTHORIZATION.as_str())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    bearer && headers.get(header::COOKIE).is_none()
}
