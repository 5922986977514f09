//! SQLite: the zero-setup default, one file under the data directory.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use domain::ChainHasher;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::{Backend, ConnectOptions, Result};

/// The file a `sqlite:` URL names; `None` for other URLs and in-memory
/// databases.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    let name = path.as_os_str();
    (!name.is_empty() && name != ":memory:").then(|| path.to_path_buf())
}

/// This backend's migrations, compiled in.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    pub(crate) chain: Arc<dyn ChainHasher>,
}

impl crate::sql::HasDb for SqliteStore {
    type Db = Sqlite;
}

impl SqliteStore {
    /// Opens (creating if missing) the database file in WAL mode with full
    /// fsync on commit, so a crash or power cut loses no committed write.
    pub async fn connect(options: ConnectOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::from_str(&options.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(connect)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            chain: options.chain,
        })
    }

    /// A write transaction. `BEGIN IMMEDIATE` takes SQLite's write lock up
    /// front, which also serialises appends to the security log.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

crate::sql::impl_store!(SqliteStore, Backend::Sqlite);
crate::sql_clinical::impl_clinical_store!(SqliteStore);
crate::totp::impl_totp_store!(SqliteStore);
crate::backup::impl_backup_store!(SqliteStore, Backend::Sqlite);
