//! PostgreSQL: the production choice; several servers may share one database.

use std::sync::Arc;
use std::time::Duration;

use domain::ChainHasher;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use crate::{Backend, ConnectOptions, Result};

/// The advisory lock that serialises appends to the security log.
const SECURITY_LOG_LOCK: i64 = 0x5645_4c4c_554d_0001;

/// A connection (pooled or kept) idle this long is pinged before it is
/// used.
pub(crate) const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// This backend's migrations, compiled in.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PostgresStore {
    pub(crate) pool: PgPool,
    pub(crate) chain: Arc<dyn ChainHasher>,
    /// Group commit of access-log rows (see `group.rs`).
    pub(crate) writes: crate::group::GroupCommit<Postgres>,
    /// Connections for one-statement queries (see `postgres_kept.rs`).
    kept: crate::postgres_kept::Kept,
}

impl crate::sql::HasDb for PostgresStore {
    type Db = Postgres;
}

impl PostgresStore {
    pub async fn connect(options: ConnectOptions) -> Result<Self> {
        let (pooled, kept) = split_connections(options.max_connections);
        let pool = PgPoolOptions::new()
            .max_connections(pooled)
            // A ping before every use costs a round trip per query; a
            // connection that sat idle (when the server may have restarted
            // or a firewall dropped it) is still checked before use.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .acquire_timeout(Duration::from_secs(15))
            .connect(&options.url)
            .await?;
        // sqlx takes an advisory lock while migrating, so servers starting
        // together apply each migration once.
        MIGRATOR.run(&pool).await?;
        let writes = crate::group::GroupCommit::spawn(pool.clone(), "BEGIN", Self::access_batch_in);
        let kept = crate::postgres_kept::Kept::new(&pool, kept);
        Ok(Self {
            pool,
            chain: options.chain,
            writes,
            kept,
        })
    }

    /// A write transaction holding the security log's advisory lock for its
    /// whole life, so hash-chain appends from many servers never interleave.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SECURITY_LOG_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// A write transaction that appends nothing to the security log, so it
    /// need not wait for the log's lock.
    pub(crate) async fn begin_data(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// The letter, its access-log rows and the letter as stored, in one
    /// statement (one round trip, committed on its own): a data-modifying
    /// `WITH` runs every insert once, all or nothing.
    async fn insert_letter_logged(
        &self,
        l: &crate::LetterWrite,
        now: domain::Timestamp,
        access: &[crate::AccessEntry],
    ) -> Result<crate::LetterRow> {
        let rows: Vec<(domain::Timestamp, &crate::AccessEntry)> =
            access.iter().map(|e| (now, e)).collect();
        let mut args = Self::letter_args(l, now)?;
        Self::access_args(&mut args, &rows)?;
        let logged = if rows.is_empty() {
            String::new()
        } else {
            format!(
                ", logged AS ({})",
                crate::sql_clinical::insert_sql_from(
                    crate::sql_clinical::ACCESS_COLUMNS,
                    9,
                    rows.len(),
                    12
                )
            )
        };
        let sql = format!(
            concat!(
                "WITH l AS (",
                crate::sql_clinical::LETTER_INSERT!(),
                " RETURNING *){logged} SELECT ",
                crate::sql_clinical::LETTER_COLUMNS!(),
                " FROM l JOIN users u ON u.id = l.author_id"
            ),
            logged = logged
        );
        self.kept
            .run(
                &self.pool,
                Box::new(move |conn| {
                    Box::pin(async move {
                        Ok(sqlx::query_as_with(sqlx::AssertSqlSafe(sql), args)
                            .fetch_one(conn)
                            .await?)
                    })
                }),
            )
            .await
    }

    /// A query the database answers.
    async fn ping_db(&self) -> Result<()> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool and the kept connections; later queries fail as on
    /// a closed pool.
    async fn close_all(&self) {
        self.kept.close().await;
        self.pool.close().await;
    }

    /// The row `sql` selects by the key `$1`, if there is one.
    async fn by_key<T>(&self, sql: &'static str, key: &str) -> Result<Option<T>>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin + 'static,
    {
        let key = key.to_owned();
        self.kept
            .run(
                &self.pool,
                Box::new(move |conn| {
                    Box::pin(async move {
                        Ok(sqlx::query_as(sql).bind(key).fetch_optional(conn).await?)
                    })
                }),
            )
            .await
    }

    /// Where single write statements go.
    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// `max_connections` split between the sqlx pool (transactions, scans, the
/// group commit) and the kept connections (reads by key, letter writes):
/// half each, the pool taking the odd one; at least one each.
fn split_connections(max: u32) -> (u32, usize) {
    let max = max.max(2);
    let kept = max / 2;
    (max - kept, usize::try_from(kept).unwrap_or(1))
}

crate::sql::impl_store!(PostgresStore, Backend::Postgres);
crate::sql_clinical::impl_clinical_store!(PostgresStore);
crate::totp::impl_totp_store!(PostgresStore);
crate::backup::impl_backup_store!(PostgresStore, Backend::Postgres);

#[cfg(test)]
mod tests {
    use super::split_connections;

    #[test]
    fn the_connection_budget_is_split_between_the_pool_and_the_kept_connections() {
        assert_eq!(split_connections(10), (5, 5));
        assert_eq!(split_connections(3), (2, 1));
        // One connection cannot serve both; two is the least.
        assert_eq!(split_connections(1), (1, 1));
        assert_eq!(split_connections(0), (1, 1));
    }
}
