//! Where a database stands before Vellum opens it, read without changing
//! anything (no file created, no migration applied): so an upgrade can be
//! refused until a backup exists.

use std::str::FromStr;

use domain::Timestamp;
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::{Backend, Result, StoreError};

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaState {
    /// The newest migration applied (0 for a database Vellum never opened).
    pub applied: i64,
    /// The newest this build knows.
    pub latest: i64,
    /// Whether it holds accounts or patients.
    pub has_data: bool,
    /// When the last backup was taken, by the security log.
    pub last_backup_at: Option<Timestamp>,
}

impl SchemaState {
    /// Opening it would apply migrations to data.
    pub fn upgrades_data(&self) -> bool {
        self.has_data && self.applied < self.latest
    }
}

const TABLE_SQL_SQLITE: &str =
    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1";
const TABLE_SQL_PG: &str = "SELECT COUNT(*) FROM information_schema.tables \
                            WHERE table_schema = current_schema() AND table_name = $1";

macro_rules! read_state {
    ($conn:expr, $table_sql:expr) => {{
        let conn = $conn;
        let exists = |name: &'static str| sqlx::query_scalar::<_, i64>($table_sql).bind(name);
        let has = |n: i64| n > 0;
        let migrations = has(exists("_sqlx_migrations").fetch_one(&mut *conn).await?);
        let applied: Option<i64> = if migrations {
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut *conn)
                .await?
        } else {
            None
        };
        let mut has_data = false;
        for t in ["users", "patients"] {
            if has(exists(t).fetch_one(&mut *conn).await?) {
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM {t} LIMIT 1) AS x"
                )))
                .fetch_one(&mut *conn)
                .await?;
                has_data |= n > 0;
            }
        }
        let last_backup_at: Option<i64> = if has(exists("security_events")
            .fetch_one(&mut *conn)
            .await?)
        {
            sqlx::query_scalar("SELECT MAX(at) FROM security_events WHERE kind = 'backup_created'")
                .fetch_one(&mut *conn)
                .await?
        } else {
            None
        };
        SchemaState {
            applied: applied.unwrap_or(0),
            latest: crate::latest_schema_version(),
            has_data,
            last_backup_at: last_backup_at.map(Timestamp),
        }
    }};
}

/// Reads the state of the database `url` names without changing it;
/// `None` when it does not exist yet (a SQLite file not made).
pub async fn inspect(url: &str) -> Result<Option<SchemaState>> {
    match Backend::of(url) {
        Some(Backend::Sqlite) => {
            let options = SqliteConnectOptions::from_str(url)?.create_if_missing(false);
            if !options.get_filename().exists() {
                return Ok(None);
            }
            let mut conn = SqliteConnection::connect_with(&options).await?;
            let state = read_state!(&mut conn, TABLE_SQL_SQLITE);
            conn.close().await?;
            Ok(Some(state))
        }
        Some(Backend::Postgres) => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let state = read_state!(&mut conn, TABLE_SQL_PG);
            conn.close().await?;
            Ok(Some(state))
        }
        None => Err(StoreError::Config(
            "database URL must start with sqlite:// or postgres://".to_owned(),
        )),
    }
}
