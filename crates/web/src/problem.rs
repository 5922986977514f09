//! Errors as RFC 9457 problem documents (`application/problem+json`).
//!
//! Every error the API answers goes through here. Internal errors are logged
//! with their cause and answered generically: no stack trace, SQL or secret
//! ever reaches a client.

use app::AppError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// A problem document.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Members only some problems carry; boxed, as they are rare and a
    /// problem travels in every `Result` of a handler.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub extension: Option<Box<Extension>>,
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

/// Extension members of a problem document.
#[derive(Debug, Clone, Serialize)]
pub struct Extension {
    /// The records a new patient may duplicate (`possible-duplicate`).
    pub possible_duplicates: Vec<app::PatientSummary>,
}

/// The query parameter, and its one value, by which a client says it
/// checked the possible duplicates of a new patient and registers anyway.
pub const POSSIBLE_DUPLICATES_PARAM: &str = "possible_duplicates";
pub const POSSIBLE_DUPLICATES_CHECKED: &str = "checked";
/// The query parameter (and form field) naming, by commas, the records the
/// user checked: a record found that it does not name refuses the write.
pub const CHECKED_DUPLICATES_PARAM: &str = "checked_duplicates";

impl Problem {
    /// `slug` names the stable type (`/problems/<slug>`).
    pub fn new(status: StatusCode, slug: &str, title: &'static str) -> Self {
        Self {
            kind: format!("/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
            extension: None,
            retry_after: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn field(mut self, field: &str, message: &str) -> Self {
        self.errors.push(FieldError {
            field: field.to_owned(),
            message: message.to_owned(),
        });
        self
    }

    pub fn csrf_required() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf-token-required",
            "CSRF token required",
        )
        .detail(
            "State-changing requests must carry the CSRF token in the X-CSRF-Token header \
             (or the csrf_token form field). GET /api/auth/csrf issues one.",
        )
    }

    pub fn csrf_invalid() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf-token-invalid",
            "CSRF token invalid",
        )
        .detail(
            "The CSRF token does not belong to this session or does not match the CSRF cookie. \
             Reload the page or GET /api/auth/csrf and try again.",
        )
    }

    pub fn cross_site(detail: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "cross-site-request",
            "Cross-site request refused",
        )
        .detail(detail.to_owned())
    }

    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Not signed in")
            .detail("Sign in first; your session may have expired.")
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found")
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on our side",
        )
        .detail("The error has been logged. Nothing was changed by this request.")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.retry_after;
        let mut res = (status, axum::Json(self)).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(v) = retry.and_then(|secs| HeaderValue::from_str(&secs.to_string()).ok()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

impl From<AppError> for Problem {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Invalid { field, message } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-input",
                "Invalid input",
            )
            .detail(format!("{field}: {message}"))
            .field(field, &message),
            AppError::InvalidFields(fields) => {
                let detail = fields
                    .iter()
                    .map(|(f, m)| format!("{f}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut p = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-input",
                    "Invalid input",
                )
                .detail(detail);
                for (f, m) in &fields {
                    p = p.field(f, m);
                }
                p
            }
            AppError::VersionConflict { current } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "version-conflict",
                "Changed by someone else",
            )
            .detail(format!(
                "This record changed since you loaded it (it is now at version {current}). \
                 Reload it, check what changed, and apply your change again."
            )),
            AppError::VersionRequired => Problem::new(
                StatusCode::PRECONDITION_REQUIRED,
                "version-required",
                "Say which version you are changing",
            )
            .detail("Send If-Match: W/\"<version>\" with the version you started from."),
            AppError::Unauthenticated => Problem::unauthenticated(),
            AppError::InvalidCredentials => Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid-credentials",
                "Invalid username or password",
            ),
            AppError::InvalidCode => Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid-code",
                "Invalid code",
            )
            .detail("The code is not right. Check the time on your phone and enter the code shown now."),
            AppError::CodeReplayed => Problem::new(
                StatusCode::UNAUTHORIZED,
                "code-already-used",
                "This code was already used",
            )
            .detail(
                "Each code works once. Wait for the next code in your authenticator app. \
                 If you did not just sign in, someone may have seen your code: tell your administrator.",
            ),
            AppError::Forbidden => Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed")
                .detail("Your role does not allow this."),
            AppError::NotFound => Problem::not_found(),
            AppError::Conflict(what) => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict").detail(what)
            }
            AppError::PossibleDuplicates(found) => {
                let mut p = Problem::new(
                    StatusCode::CONFLICT,
                    "possible-duplicate",
                    "Possible duplicate patient",
                )
                .detail(format!(
                    "{} already registered with the same family name, first given name and date \
                     of birth (listed in possible_duplicates). Nothing was saved. Check \
                     whether this is the same person: if so, use that record; if it is another \
                     person, send the request again with ?{}={}&{}={} (the records you \
                     checked: one registered meanwhile is not written over).",
                    match found.len() {
                        1 => "One patient is".to_owned(),
                        n => format!("{n} patients are"),
                    },
                    POSSIBLE_DUPLICATES_PARAM,
                    POSSIBLE_DUPLICATES_CHECKED,
                    CHECKED_DUPLICATES_PARAM,
                    found.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(","),
                ));
                p.extension = Some(Box::new(Extension {
                    possible_duplicates: found,
                }));
                p
            }
            AppError::RateLimited { retry_after_secs } => {
                let mut p = Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too-many-attempts",
                    "Too many failed attempts",
                )
                .detail(format!(
                    "Too many failed sign-in attempts. Try again in {} minute(s).",
                    retry_after_secs.div_ceil(60)
                ));
                p.retry_after = Some(retry_after_secs);
                p
            }
            AppError::Unavailable => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            )
            .detail("The database is busy or cannot be reached. Try again shortly."),
            AppError::Internal(cause) | AppError::Backup(cause) => {
                tracing::error!(%cause, "internal error");
                Problem::internal()
            }
        }
    }
}
