use thiserror::Error;

pub type AppResult<T> = Result<T, AppError>;

/// What a use case can answer besides success. The web layer maps each to a
/// status and a problem document; `Internal` details go to the log only.
#[derive(Debug, Error)]
pub enum AppError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Several fields were wrong; each names its field (a FHIR path for
    /// resources).
    #[error("invalid input: {0:?}")]
    InvalidFields(Vec<(String, String)>),
    /// A change named a version that is no longer current (HTTP 412).
    #[error("version conflict: the current version is {current}")]
    VersionConflict { current: i64 },
    /// A change did not say which version it started from (HTTP 428).
    #[error("the version this change starts from is required")]
    VersionRequired,
    #[error("not signed in")]
    Unauthenticated,
    #[error("invalid username or password")]
    InvalidCredentials,
    /// A two-factor or recovery code that is not right.
    #[error("invalid code")]
    InvalidCode,
    /// A two-factor code that was already used (or an earlier one).
    #[error("code already used")]
    CodeReplayed,
    #[error("not allowed")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    /// A new patient has the family name, first given name and date of
    /// birth of these records (hazard H008): not registered until the user
    /// says they checked and it is another person.
    #[error("possible duplicate of {} patient record(s)", .0.len())]
    PossibleDuplicates(Vec<crate::PatientSummary>),
    #[error("too many attempts")]
    RateLimited { retry_after_secs: u64 },
    #[error("service unavailable")]
    Unavailable,
    /// A backup could not be made, checked or restored; says why, for the
    /// operator (never a secret).
    #[error("{0}")]
    Backup(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        AppError::Invalid {
            field,
            message: message.into(),
        }
    }
}

impl From<domain::ParseError> for AppError {
    fn from(e: domain::ParseError) -> Self {
        AppError::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<store::StoreError> for AppError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::Conflict(what) => AppError::Conflict(what.to_owned()),
            store::StoreError::NotFound => AppError::NotFound,
            store::StoreError::Forbidden => AppError::Forbidden,
            store::StoreError::SessionEnded => AppError::Unauthenticated,
            store::StoreError::VersionConflict { current } => AppError::VersionConflict { current },
            store::StoreError::Refused(why) => AppError::Conflict(why),
            store::StoreError::Database(sqlx_err) if is_unavailable(&sqlx_err) => {
                AppError::Unavailable
            }
            store::StoreError::Batch(why) if is_unavailable(&why) => AppError::Unavailable,
            e if e.is_busy() => AppError::Unavailable,
            other => AppError::Internal(other.to_string()),
        }
    }
}

fn is_unavailable(e: &impl std::fmt::Display) -> bool {
    let s = e.to_string();
    s.contains("pool timed out") || s.contains("Connection refused") || s.contains("closed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_that_stays_busy_is_unavailable_not_an_internal_error() {
        assert!(matches!(
            AppError::from(store::StoreError::Busy("database is locked".to_owned())),
            AppError::Unavailable
        ));
        assert!(matches!(
            AppError::from(store::StoreError::Corrupt("x".to_owned())),
            AppError::Internal(_)
        ));
    }
}
