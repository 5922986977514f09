use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write; names the rule.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    /// The account making an administrator's change is no longer an
    /// active administrator (a change that committed first removed it):
    /// nothing was written.
    #[error("no longer permitted")]
    Forbidden,
    /// The session a change was to replace ended meanwhile (signed out,
    /// ended by an administrator, or replaced by a change sent at the same
    /// moment): nothing was written.
    #[error("the session has ended")]
    SessionEnded,
    /// The possible-duplicate check, repeated inside the write's
    /// transaction, found these patients: nothing was written.
    #[error("possible duplicates")]
    PossibleDuplicates(Vec<crate::PatientRow>),
    /// An update named a version that is no longer the current one.
    #[error("version conflict: the current version is {current}")]
    VersionConflict { current: i64 },
    /// A stored value could not be read back into a domain type.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database refused an operation for a reason an operator can act
    /// on (a restore into a database that is not empty).
    #[error("{0}")]
    Refused(String),
    /// The group-commit batch that carried this write was not committed.
    #[error("write not committed: {0}")]
    Batch(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From a SQLite read run on the calling task (see `sqlite_inline.rs`).
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// The database stayed locked for longer than a read may wait.
    #[error("database busy: {0}")]
    Busy(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the connection that gave this error can run the next
    /// statement: the database refused this one (a constraint, bad input)
    /// and is ready for more. Not so when the connection broke, an answer
    /// could not be read, or PostgreSQL ended the session (FATAL, PANIC).
    pub(crate) fn leaves_connection_usable(&self) -> bool {
        use sqlx::postgres::{PgDatabaseError, PgSeverity};
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => !matches!(
                db.try_downcast_ref::<PgDatabaseError>()
                    .map(PgDatabaseError::severity),
                Some(PgSeverity::Fatal | PgSeverity::Panic)
            ),
            _ => false,
        }
    }

    /// Whether the database stayed locked by another writer for longer
    /// than this one waits (SQLite's busy timeout; a read's shorter wait;
    /// PostgreSQL's `lock_timeout`, see `postgres::BEGIN_WRITE`). Trying
    /// again at once cannot help: only the lock's end can.
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Busy(_) => true,
            StoreError::Database(sqlx::Error::Database(db)) => {
                if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    // lock_not_available
                    return pg.code() == "55P03";
                }
                db.try_downcast_ref::<sqlx::sqlite::SqliteError>()
                    .and_then(sqlx::error::DatabaseError::code)
                    .and_then(|code| code.parse::<i32>().ok())
                    // SQLITE_BUSY, BUSY_RECOVERY and BUSY_TIMEOUT; not
                    // BUSY_SNAPSHOT (517), which a transaction that read an
                    // older snapshot gets at once, and which a retry fixes.
                    .is_some_and(|code| matches!(code, 5 | 261 | 773))
            }
            _ => false,
        }
    }

    /// Maps a unique-constraint violation to `Conflict(what)`; other errors pass.
    pub(crate) fn on_unique(e: sqlx::Error, what: &'static str) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
            _ => StoreError::Database(e),
        }
    }

    /// Whether this is a violation of the unique key `constraint` (SQLite
    /// names no constraint: there any unique violation; use it only where
    /// one key can fail).
    pub(crate) fn is_unique_violation_of(&self, constraint: &str) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(db))
            if db.is_unique_violation() && db.constraint().is_none_or(|c| c == constraint))
    }

    /// Maps a violation of the foreign key `constraint` (the row the write
    /// refers to does not exist) to `NotFound`; other errors pass. SQLite
    /// names no constraint, so there any foreign-key violation maps: use it
    /// only where one key can fail.
    pub(crate) fn on_missing_parent(self, constraint: &str) -> Self {
        match &self {
            StoreError::Database(sqlx::Error::Database(db))
                if db.is_foreign_key_violation()
                    && db.constraint().is_none_or(|c| c == constraint) =>
            {
                StoreError::NotFound
            }
            _ => self,
        }
    }
}
