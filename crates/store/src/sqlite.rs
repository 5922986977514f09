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
    let name = path.to_string_lossy();
    // sqlx renames `:memory:` to a shared in-memory `file:sqlx-in-memory-N`.
    let in_memory = name == ":memory:" || name.starts_with("file:sqlx-in-memory-");
    (!name.is_empty() && !in_memory).then(|| path.to_path_buf())
}

/// The database file for a server: a `sqlite://PATH` URL whose only
/// parameter, if any, is `mode=rw` or `mode=rwc`. Other parameters
/// (`mode=memory`, `vfs=`, `immutable=`) change what sqlx opens or how it
/// locks the file, and the reads by key (`sqlite_inline`) open the named
/// file itself: both must see the same database under the same locks, so
/// such URLs are refused rather than half honoured.
fn server_file(url: &str) -> Result<std::path::PathBuf> {
    let refused = |why: String| crate::StoreError::Config(why);
    if let Some((_, query)) = url.split_once('?') {
        for parameter in query.split('&').filter(|p| !p.is_empty()) {
            if !matches!(parameter, "mode=rw" | "mode=rwc") {
                return Err(refused(format!(
                    "the SQLite URL parameter {parameter:?} is not supported: \
                     use sqlite://PATH (optionally ?mode=rwc)"
                )));
            }
        }
    }
    sqlite_file(url)
        .ok_or_else(|| refused("a SQLite database must be a file: use sqlite://PATH".to_owned()))
}

/// This backend's migrations, compiled in.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How many connections read, in each of the two reading pools (sqlx's for
/// scans, `sqlite_inline`'s for reads by key): at most `max_connections`,
/// and no more than twice the cores. A read of a cached file is all CPU, so
/// readers past that only take turns on the same cores while each keeps its
/// own page and statement caches in memory.
fn readers(max_connections: u32) -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let cap = u32::try_from(cores.saturating_mul(2))
        .unwrap_or(u32::MAX)
        .max(4);
    max_connections.clamp(1, cap)
}

pub struct SqliteStore {
    /// Readers for scans (searches, lists, exports); WAL lets them run
    /// beside the writer. Reads by key go to `inline`.
    pub(crate) pool: SqlitePool,
    /// The one connection that writes. SQLite has one writer at a time;
    /// queueing for this connection (first come, first served) replaces
    /// contending for the file lock, whose busy handler sleeps and retries.
    pub(crate) writer: SqlitePool,
    pub(crate) chain: Arc<dyn ChainHasher>,
    /// Group commit of access-log rows and letters (see `group.rs`).
    pub(crate) writes: crate::group::GroupCommit<Sqlite>,
    /// Reads by key, on the calling task (see `sqlite_inline.rs`).
    inline: crate::sqlite_inline::InlineReads,
}

impl crate::sql::HasDb for SqliteStore {
    type Db = Sqlite;
}

impl SqliteStore {
    /// Opens (creating if missing) the database file in WAL mode with full
    /// fsync on commit, so a crash or power cut loses no committed write.
    pub async fn connect(options: ConnectOptions) -> Result<Self> {
        let file = server_file(&options.url)?;
        let connect = SqliteConnectOptions::from_str(&options.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // A connection to a local file does not go stale, so the pools skip
        // the ping sqlx sends before handing one out (a round trip to the
        // connection's thread on every query).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(connect.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(readers(options.max_connections))
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(connect)
            .await?;
        let keep = usize::try_from(readers(options.max_connections)).unwrap_or(1);
        let inline = crate::sqlite_inline::InlineReads::open(file, keep)?;
        let writes = crate::group::GroupCommit::spawn(
            writer.clone(),
            crate::group::Statements {
                begin: "BEGIN IMMEDIATE",
                access_rows: Self::access_batch_in,
                letters: Self::letters_in,
                letters_in_one_statement: false,
            },
        );
        Ok(Self {
            pool,
            writer,
            chain: options.chain,
            writes,
            inline,
        })
    }

    /// A write transaction. `BEGIN IMMEDIATE` takes SQLite's write lock up
    /// front, which also serialises appends to the security log.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A write transaction that appends nothing to the security log: on
    /// SQLite the same as [`Self::begin_write`], there being one writer.
    pub(crate) async fn begin_data(&self) -> Result<Transaction<'static, Sqlite>> {
        self.begin_write().await
    }

    /// A write of demographics (registration or change): on SQLite every
    /// write is made one at a time already.
    pub(crate) async fn begin_registration(&self) -> Result<Transaction<'static, Sqlite>> {
        self.begin_write().await
    }

    /// For the group commit: a batch's letters, each with its access-log
    /// rows, and each read back as stored (its `created_at` is the
    /// database's) in the same transaction — once the commit succeeds,
    /// nothing is left that could fail and invite a retry that writes a
    /// letter twice. One after another: SQLite runs each statement in
    /// microseconds, and has no statement that inserts into two tables.
    fn letters_in<'t>(
        conn: &'t mut sqlx::SqliteConnection,
        letters: &'t [&'t crate::group::NewLetter],
    ) -> futures_util::future::BoxFuture<'t, Result<Vec<crate::LetterRow>>> {
        Box::pin(async move {
            let mut stored = Vec::with_capacity(letters.len());
            for new in letters {
                let l = &new.letter;
                Self::insert_letter_in(&mut *conn, l, new.at).await?;
                Self::access_in(&mut *conn, new.at, &new.access).await?;
                let row = Self::letter_on(&mut *conn, &l.patient_id, &l.id).await?;
                stored.push(row.ok_or_else(|| {
                    crate::StoreError::Corrupt("a letter just written was not there".to_owned())
                })?);
            }
            Ok(stored)
        })
    }

    /// A read of the database file's first page (its schema), on the
    /// calling task.
    async fn ping_db(&self) -> Result<()> {
        self.inline
            .read(|c| c.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())))
    }

    /// Closes every connection: both pools' and the inline readers'.
    async fn close_all(&self) {
        self.inline.close();
        self.pool.close().await;
        self.writer.close().await;
    }

    /// The row `sql` selects by the key `$1`, if there is one: read on the
    /// calling task (see `sqlite_inline.rs`).
    async fn by_key<T: crate::records::KeyedRow>(
        &self,
        sql: &'static str,
        key: &str,
    ) -> Result<Option<T>> {
        use rusqlite::OptionalExtension;
        self.inline.read(|c| {
            c.prepare_cached(sql)?
                .query_row([key], T::from_sqlite)
                .optional()
        })
    }

    /// Where single write statements go.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

crate::sql::impl_store!(SqliteStore, Backend::Sqlite);
crate::sql_clinical::impl_clinical_store!(SqliteStore);
crate::totp::impl_totp_store!(SqliteStore);
crate::backup::impl_backup_store!(SqliteStore, Backend::Sqlite);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::KeyedRow;

    /// Each read by key takes its columns by position: its SQL must select
    /// exactly the columns its row type names, in that order.
    #[tokio::test]
    async fn every_read_by_key_selects_the_columns_its_row_reads_in_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vellum.db");
        let store = SqliteStore::connect(ConnectOptions {
            url: format!("sqlite://{}", path.display()),
            max_connections: 2,
            chain: Arc::new(NoChain),
        })
        .await
        .unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let reads: [(&str, &[&str]); 4] = [
            (
                crate::records::SESSION_USER_SQL,
                crate::records::SessionUserRow::COLUMNS,
            ),
            (
                crate::records::LINKED_PATIENT_SQL,
                crate::records::LinkedPatientRow::COLUMNS,
            ),
            (crate::clinical::PATIENT_SQL, crate::PatientRow::COLUMNS),
            (crate::clinical::API_TOKEN_SQL, crate::ApiTokenRow::COLUMNS),
        ];
        for (sql, columns) in reads {
            let statement = conn.prepare(sql).unwrap();
            assert_eq!(statement.column_names(), columns, "{sql}");
        }
        store.close_all().await;
    }

    #[test]
    fn a_server_database_is_a_plain_file_and_other_urls_are_refused() {
        for ok in [
            "sqlite:///srv/vellum/vellum.db",
            "sqlite://data/vellum.db?mode=rwc",
            "sqlite:///srv/vellum/vellum.db?mode=rw",
        ] {
            assert!(server_file(ok).is_ok(), "{ok}");
        }
        for refused in [
            "sqlite:///srv/vellum/vellum.db?mode=memory",
            "sqlite:///srv/vellum/vellum.db?vfs=unix-none",
            "sqlite:///srv/vellum/vellum.db?immutable=true",
            "sqlite:///srv/vellum/vellum.db?mode=rwc&cache=shared",
            "sqlite::memory:",
            "sqlite://:memory:",
        ] {
            assert!(
                matches!(server_file(refused), Err(crate::StoreError::Config(_))),
                "{refused}"
            );
        }
    }

    #[tokio::test]
    async fn a_server_refuses_a_url_that_would_write_elsewhere_than_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/vellum.db?mode=memory", dir.path().display());
        let options = ConnectOptions {
            url,
            max_connections: 4,
            chain: Arc::new(NoChain),
        };
        assert!(matches!(
            SqliteStore::connect(options).await,
            Err(crate::StoreError::Config(_))
        ));
    }

    struct NoChain;
    impl ChainHasher for NoChain {
        fn hash(&self, _: &[u8]) -> String {
            String::new()
        }
    }
}
