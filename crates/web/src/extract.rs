//! Extractors: JSON bodies with problem+json rejections, the request's
//! metadata for the security log, and the caller's session.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use app::{ActiveSession, RequestMeta};
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use domain::User;
use serde::de::DeserializeOwned;

use crate::{Problem, WebConfig};

/// `Json<T>` whose rejections are problem documents: 415 without a JSON
/// content type, 400 for malformed JSON, 422 for the wrong shape (unknown or
/// missing fields, wrong types), 413 when too large.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
}

fn json_problem(r: JsonRejection) -> Problem {
    let text = r.body_text();
    match r {
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
        )
        .detail("Send the body as JSON with Content-Type: application/json."),
        JsonRejection::JsonSyntaxError(_) => {
            Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON").detail(text)
        }
        JsonRejection::JsonDataError(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            "The JSON body has the wrong shape",
        )
        .detail(text),
        _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request body too large",
        ),
        _ => Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request").detail(text),
    }
}

/// Who sent the request, for the security log.
pub struct Meta(pub RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Meta(meta_of(parts)))
    }
}

/// Limits a header value to what the log needs.
fn header_text(parts: &Parts, name: axum::http::HeaderName) -> Option<String> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect())
}

/// The client's address: the TCP peer, or — when the peer is a trusted
/// reverse proxy — the nearest address in `X-Forwarded-For` that is not one.
pub(crate) fn client_ip(parts: &Parts) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    let trusted = parts
        .extensions
        .get::<Arc<WebConfig>>()
        .map(|w| w.trusted_proxies.as_slice())
        .unwrap_or_default();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|a| !trusted.contains(a))
            .unwrap_or(peer),
    )
}

pub(crate) fn meta_of(parts: &Parts) -> RequestMeta {
    let ip = client_ip(parts).map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    RequestMeta {
        ip,
        user_agent: header_text(parts, axum::http::header::USER_AGENT),
        referer: header_text(parts, axum::http::header::REFERER),
        method: Some(parts.method.as_str().to_owned()),
        path: Some(parts.uri.path().chars().take(512).collect()),
    }
}

/// The session the request presented (set by the session layer); `None`
/// when it had none or it has expired.
#[derive(Clone)]
pub struct CurrentSession(pub Option<ActiveSession>);

impl<S: Send + Sync> FromRequestParts<S> for CurrentSession {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<CurrentSession>()
            .cloned()
            .unwrap_or(CurrentSession(None)))
    }
}

/// The principal of a valid `Authorization: Bearer` API token (set by the
/// session layer when the request carries no session cookie).
#[derive(Clone)]
pub struct CurrentToken(pub Option<app::TokenPrincipal>);

/// A signed-in user: by session cookie, or by API token within its scope;
/// 401 otherwise.
pub struct SignedIn {
    pub user: User,
    /// `None` when the request came with an API token.
    pub session: Option<ActiveSession>,
}

/// A user fully signed in at a browser, for what an API token may never do
/// (their own password, tokens and second factor; every administrator's
/// change to an account): 403 `session-required` for a token, before the
/// request's body is read.
pub struct BrowserSignedIn {
    pub user: User,
    pub session: ActiveSession,
}

impl<S: Send + Sync> FromRequestParts<S> for BrowserSignedIn {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let SignedIn { user, session } = SignedIn::from_request_parts(parts, state).await?;
        let session = session.ok_or_else(session_required)?;
        Ok(BrowserSignedIn { user, session })
    }
}

/// 403 for an API token where only a browser session will do.
fn session_required() -> Problem {
    Problem::new(
        axum::http::StatusCode::FORBIDDEN,
        "session-required",
        "Sign in with a browser session",
    )
    .detail("API tokens cannot do this; sign in with your username and password.")
}

/// The browser session at whatever stage of signing in it is — for the
/// steps of signing in itself (two-factor enrolment, a temporary password),
/// whose use cases check the stage; 401 without one, 403 for a request that
/// came with an API token instead.
pub struct AnySession(pub ActiveSession);

impl<S: Send + Sync> FromRequestParts<S> for AnySession {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Ok(CurrentSession(Some(s))) = CurrentSession::from_request_parts(parts, state).await
        {
            return Ok(AnySession(s));
        }
        match parts.extensions.get::<CurrentToken>() {
            Some(CurrentToken(Some(_))) => Err(session_required()),
            _ => Err(Problem::unauthenticated()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let CurrentSession(session) = CurrentSession::from_request_parts(parts, state)
            .await
            .unwrap_or(CurrentSession(None));
        if let Some(s) = session {
            return match s.user() {
                Ok(user) => Ok(SignedIn {
                    user: user.clone(),
                    session: Some(s),
                }),
                Err(_) if s.stage() == app::SessionStage::Password => {
                    Err(Problem::unauthenticated().detail(
                        "Choose your own password first: the one you signed in with was set by \
                         an administrator (POST /api/account/password with current_password and \
                         new_password).",
                    ))
                }
                Err(_) if s.user.is_some() => Err(Problem::unauthenticated().detail(
                    "Finish signing in first: enter the code from your authenticator app \
                     (POST /api/auth/login/totp), or set up two-factor sign-in if asked.",
                )),
                Err(_) => Err(Problem::unauthenticated()),
            };
        }
        let token = parts
            .extensions
            .get::<CurrentToken>()
            .and_then(|t| t.0.clone());
        match token {
            Some(p) => {
                let safe = matches!(
                    parts.method,
                    axum::http::Method::GET
                        | axum::http::Method::HEAD
                        | axum::http::Method::OPTIONS
                );
                if !safe && p.scope == app::TokenScope::Read {
                    return Err(Problem::new(
                        axum::http::StatusCode::FORBIDDEN,
                        "read-only-token",
                        "This API token is read-only",
                    )
                    .detail("Create a read-write token to make changes."));
                }
                Ok(SignedIn {
                    user: p.user,
                    session: None,
                })
            }
            None => Err(Problem::unauthenticated()),
        }
    }
}

/// Whether a request creating or changing a patient says the user checked
/// the possible duplicates (`?possible_duplicates=checked`) and writes
/// anyway — over the records `checked_duplicates` names (ids, by commas),
/// when given, and no others; any other value of `possible_duplicates`, or
/// `checked_duplicates` without it, is a 400, never taken as a yes.
pub struct DuplicateCheck(pub app::IfPossibleDuplicate);

impl<S: Send + Sync> FromRequestParts<S> for DuplicateCheck {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        use crate::problem::{
            CHECKED_DUPLICATES_PARAM, POSSIBLE_DUPLICATES_CHECKED, POSSIBLE_DUPLICATES_PARAM,
        };
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).map_err(|_| {
                Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request")
                    .detail("The query string cannot be read.")
            })?;
        let mut answer = app::IfPossibleDuplicate::Refuse;
        // Every `checked_duplicates` given, as one list.
        let named: Vec<&str> = pairs
            .iter()
            .filter(|(k, _)| k == CHECKED_DUPLICATES_PARAM)
            .map(|(_, v)| v.as_str())
            .collect();
        let joined = named.join(",");
        let ids = (!named.is_empty()).then_some(joined.as_str());
        for (_, value) in pairs.iter().filter(|(k, _)| k == POSSIBLE_DUPLICATES_PARAM) {
            let Some(said) = if_possible_duplicate(Some(value), ids) else {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    "Bad request",
                )
                .detail(format!(
                    "{POSSIBLE_DUPLICATES_PARAM}: the only value is `{POSSIBLE_DUPLICATES_CHECKED}`"
                ))
                .field(
                    POSSIBLE_DUPLICATES_PARAM,
                    &format!("the only value is `{POSSIBLE_DUPLICATES_CHECKED}`"),
                ));
            };
            answer = said;
        }
        if ids.is_some() && answer == app::IfPossibleDuplicate::Refuse {
            return Err(
                Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request")
                    .detail(format!(
                        "{CHECKED_DUPLICATES_PARAM} names the records checked: send it with \
                         {POSSIBLE_DUPLICATES_PARAM}={POSSIBLE_DUPLICATES_CHECKED}"
                    ))
                    .field(
                        CHECKED_DUPLICATES_PARAM,
                        &format!(
                            "only with {POSSIBLE_DUPLICATES_PARAM}={POSSIBLE_DUPLICATES_CHECKED}"
                        ),
                    ),
            );
        }
        Ok(DuplicateCheck(answer))
    }
}

/// What a `possible_duplicates` value (the query parameter, or the patient
/// form's tick box) says, with the `checked_duplicates` ids beside it (the
/// records the user was shown): none is "refuse", `checked` is "write over
/// those records" (or over whatever is found, without ids); `None` for any
/// other value, which says nothing.
pub(crate) fn if_possible_duplicate(
    value: Option<&str>,
    checked_ids: Option<&str>,
) -> Option<app::IfPossibleDuplicate> {
    match value {
        None => Some(app::IfPossibleDuplicate::Refuse),
        Some(crate::problem::POSSIBLE_DUPLICATES_CHECKED) => Some(match checked_ids {
            Some(ids) => app::IfPossibleDuplicate::RegisterOver(
                ids.split(',')
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            None => app::IfPossibleDuplicate::Register,
        }),
        Some(_) => None,
    }
}
