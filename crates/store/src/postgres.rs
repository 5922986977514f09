//! PostgreSQL: the production choice; several servers may share one database.

use std::sync::Arc;
use std::time::Duration;

use domain::ChainHasher;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::{Backend, ConnectOptions, Result};

/// The advisory lock that serialises appends to the security log (an
/// operator sees who holds it in `pg_locks`: `locktype = 'advisory'`).
pub const SECURITY_LOG_LOCK: i64 = 0x5645_4c4c_554d_0001;

/// The advisory lock that serialises writes of demographics, so that the
/// possible-duplicate check one repeats inside its transaction (safety
/// file, H008) sees every other: two registrations of one person at the
/// same moment cannot both pass it.
pub const PATIENT_REGISTRATION_LOCK: i64 = 0x5645_4c4c_554d_0002;

/// How a transaction that takes an advisory lock begins (see
/// [`PostgresStore::begin_write`]).
const READ_COMMITTED: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// How long a statement waits for any one lock — the security log's, or a
/// table or row another transaction holds — before it fails as busy (503):
/// the same as SQLite's busy timeout. A transaction stuck elsewhere
/// (another server paused mid-write, a `psql` session left open) then
/// turns requests away after that wait, instead of each holding a
/// connection here and a PostgreSQL backend, still waiting, for as long as
/// it lasts — past the request's own deadline, which drops the request but
/// cannot stop the backend's wait; and the group commit's writer, which
/// every record read waits for, goes on to the next batch. Migrations are
/// the exception: they run on a connection of their own, without it, so a
/// server starting while another migrates waits for it.
macro_rules! lock_wait {
    () => {
        "10s"
    };
}

/// Run on every connection this store opens (pooled, kept, and the group
/// commit's), by a statement, not as a startup option, which connection
/// poolers such as PgBouncer may refuse.
pub(crate) const CONNECTION_SETUP: &str = concat!("SET lock_timeout = '", lock_wait!(), "'");

/// The same for the group commit's connections, which also always take the
/// generic plan (see [`group_writer`]).
const GROUP_WRITER_SETUP: &str = concat!(
    "SET lock_timeout = '",
    lock_wait!(),
    "'; SET plan_cache_mode = force_generic_plan"
);

/// A connection (pooled or kept) idle this long is pinged before it is
/// used.
pub(crate) const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// This backend's migrations, compiled in.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PostgresStore {
    pub(crate) pool: PgPool,
    pub(crate) chain: Arc<dyn ChainHasher>,
    /// Group commit of access-log rows and letters (see `group.rs`).
    pub(crate) writes: crate::group::GroupCommit<Postgres>,
    /// The group commit's own connection (generic plans only).
    group_writer: PgPool,
    /// Connections for one-statement queries (see `postgres_kept.rs`).
    kept: crate::postgres_kept::Kept,
}

impl crate::sql::HasDb for PostgresStore {
    type Db = Postgres;
}

impl PostgresStore {
    pub async fn connect(options: ConnectOptions) -> Result<Self> {
        let budget = split_connections(options.max_connections);
        let connect: PgConnectOptions = options.url.parse()?;
        // sqlx takes an advisory lock while migrating, so servers starting
        // together apply each migration once; on a connection without the
        // lock wait, so that a server starting while another migrates
        // waits for it rather than failing after ten seconds.
        let mut migrating =
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&connect).await?;
        MIGRATOR.run(&mut migrating).await?;
        sqlx::Connection::close(migrating).await?;
        let pool = pool_options(budget.pooled, CONNECTION_SETUP)
            .connect_with(connect.clone())
            .await?;
        let group_writer = group_writer(connect, budget.writer).await?;
        let writes = crate::group::GroupCommit::spawn(
            group_writer.clone(),
            crate::group::Statements {
                begin: "BEGIN",
                access_rows: Self::access_batch_in,
                letters: Self::letters_in,
                letters_in_one_statement: true,
            },
        );
        let kept = crate::postgres_kept::Kept::new(&pool, budget.kept);
        Ok(Self {
            pool,
            chain: options.chain,
            writes,
            group_writer,
            kept,
        })
    }

    /// A write transaction holding the security log's advisory lock for its
    /// whole life, so hash-chain appends from many servers never interleave.
    /// READ COMMITTED whatever the database's default: each statement after
    /// the lock must see what the lock's previous holder committed (the
    /// chain's last row, an account changed by a change made first), which
    /// a snapshot taken before the lock was granted would not.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin_with(READ_COMMITTED).await?;
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

    /// A write of demographics (registration or change): such writes are
    /// made one at a time, from every server, so the possible-duplicate
    /// check one repeats inside it sees every other that committed.
    pub(crate) async fn begin_registration(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin_with(READ_COMMITTED).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PATIENT_REGISTRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// For the group commit: every letter of a batch with its access-log
    /// rows, and the letters as stored, in one statement — PostgreSQL
    /// starts, plans and flushes one statement for the batch rather than
    /// one per letter (profiled: that per-statement work, not the rows, was
    /// most of a letter's cost). The values go in as arrays, so the
    /// statement's text, and its prepared plan, is the same for any batch.
    fn letters_in<'t>(
        conn: &'t mut sqlx::PgConnection,
        letters: &'t [&'t crate::group::NewLetter],
    ) -> futures_util::future::BoxFuture<'t, Result<Vec<crate::LetterRow>>> {
        Box::pin(async move {
            let column = |f: fn(&crate::group::NewLetter) -> String| -> Vec<String> {
                letters.iter().map(|n| f(n)).collect()
            };
            let access: Vec<(domain::Timestamp, &crate::AccessEntry)> = letters
                .iter()
                .flat_map(|n| n.access.iter().map(move |e| (n.at, e)))
                .collect();
            let rows: Vec<crate::LetterRow> = sqlx::query_as(LETTERS_AT_ONCE)
                .bind(column(|n| n.letter.id.clone()))
                .bind(column(|n| n.letter.patient_id.clone()))
                .bind(
                    letters
                        .iter()
                        .map(|n| n.letter.version)
                        .collect::<Vec<i64>>(),
                )
                .bind(column(|n| n.letter.status.clone()))
                .bind(column(|n| n.letter.title.clone()))
                .bind(column(|n| n.letter.body.clone()))
                .bind(column(|n| n.letter.author_id.clone()))
                .bind(letters.iter().map(|n| n.at.millis()).collect::<Vec<i64>>())
                .bind(
                    letters
                        .iter()
                        .map(|n| n.letter.finalised_at)
                        .collect::<Vec<Option<i64>>>(),
                )
                .bind(
                    letters
                        .iter()
                        .map(|n| n.letter.amends.clone())
                        .collect::<Vec<Option<String>>>(),
                )
                .bind(
                    letters
                        .iter()
                        .map(|n| n.letter.error_reason.clone())
                        .collect::<Vec<Option<String>>>(),
                )
                .bind(
                    access
                        .iter()
                        .map(|(at, _)| at.millis())
                        .collect::<Vec<i64>>(),
                )
                .bind(
                    access
                        .iter()
                        .map(|(_, e)| e.user_id.clone())
                        .collect::<Vec<Option<String>>>(),
                )
                .bind(
                    access
                        .iter()
                        .map(|(_, e)| e.username.clone())
                        .collect::<Vec<String>>(),
                )
                .bind(
                    access
                        .iter()
                        .map(|(_, e)| e.role.clone())
                        .collect::<Vec<String>>(),
                )
                .bind(
                    access
                        .iter()
                        .map(|(_, e)| e.action.clone())
                        .collect::<Vec<String>>(),
                )
                .bind(
                    access
                        .iter()
                        .map(|(_, e)| e.resource_type.clone())
                        .collect::<Vec<String>>(),
                )
                .bind(
                    access
                        .iter()
                        .map(|(_, e)| e.resource_id.clone())
                        .collect::<Vec<Option<String>>>(),
                )
                .bind(
                    access
                        .iter()
                        .map(|(_, e)| e.patient_id.clone())
                        .collect::<Vec<Option<String>>>(),
                )
                .bind(
                    access
                        .iter()
                        .map(|(_, e)| e.outcome.clone())
                        .collect::<Vec<String>>(),
                )
                .fetch_all(&mut *conn)
                .await?;
            // RETURNING gives no order: each letter is found by its id.
            let mut by_id: std::collections::HashMap<String, crate::LetterRow> =
                rows.into_iter().map(|r| (r.id.clone(), r)).collect();
            letters
                .iter()
                .map(|n| {
                    by_id.remove(&n.letter.id).ok_or_else(|| {
                        crate::StoreError::Corrupt("a letter just written was not there".to_owned())
                    })
                })
                .collect()
        })
    }

    /// A query the database answers.
    async fn ping_db(&self) -> Result<()> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, the group commit's connection and the kept
    /// connections; later queries fail as on a closed pool.
    async fn close_all(&self) {
        self.kept.close().await;
        self.pool.close().await;
        self.group_writer.close().await;
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

/// How `max_connections` is shared out.
#[derive(Debug, PartialEq, Eq)]
struct Budget {
    /// sqlx's pool: transactions and scans.
    pooled: u32,
    /// The group commit's writer, which uses one at a time.
    writer: u32,
    /// Kept for one-statement reads by key.
    kept: usize,
}

/// Half of `max_connections` kept for reads by key, one for the group
/// commit's writer, the rest (the odd one included) the pool; at least one
/// each.
fn split_connections(max: u32) -> Budget {
    let max = max.max(3);
    let kept = max / 2;
    Budget {
        pooled: (max - kept - 1).max(1),
        writer: 1,
        kept: usize::try_from(kept).unwrap_or(1),
    }
}

/// The group commit's own connections, whose prepared statements always
/// run their generic plan: every statement it sends has one fixed shape
/// (rows in, by arrays or a VALUES list) whose plan does not depend on the
/// values. Left to choose, PostgreSQL planned the letters' statement afresh
/// for every batch — a plan for so few rows looks cheaper than the generic
/// one — which was ~7 % of its CPU under load.
pub(crate) async fn group_writer(connect: PgConnectOptions, max: u32) -> Result<PgPool> {
    Ok(pool_options(max, GROUP_WRITER_SETUP)
        .connect_with(connect)
        .await?)
}

/// A pool of at most `max` connections, each pinged before use only if it
/// sat idle: a ping before every use costs a round trip per query, and one
/// that sat idle (when the server may have restarted or a firewall dropped
/// it) is still checked.
/// Each new connection first runs `setup`.
fn pool_options(max: u32, setup: &'static str) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                sqlx::raw_sql(setup).execute(conn).await?;
                Ok(())
            })
        })
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
}

crate::sql::impl_store!(PostgresStore, Backend::Postgres);
crate::sql_clinical::impl_clinical_store!(PostgresStore);
crate::totp::impl_totp_store!(PostgresStore);
crate::backup::impl_backup_store!(PostgresStore, Backend::Postgres);

/// Many new letters and their access-log rows in one statement, the values
/// bound as arrays (`$1`…`$11` the letters' columns in `letter_args` order,
/// `$12`…`$20` the access-log rows' in `ACCESS_COLUMNS` order). Each
/// letter's `created_at` is its time, or one past the patient's newest
/// letter when that is later — including the letters before it in the
/// same statement (`ord`): for a patient's k-th letter here it is
/// `k + max(newest, max over j ≤ k of (at_j − j))`, which is that rule
/// applied one letter after another. Each author's name is looked up by
/// key (a join could be planned as a scan of every user).
const LETTERS_AT_ONCE: &str = "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], \
     $5::text[], $6::text[], $7::text[], $8::int8[], $9::int8[], $10::text[], $11::text[]) \
     WITH ORDINALITY AS v (id, patient_id, version, status, title, body, author_id, at, \
     finalised_at, amends, error_reason, ord)), \
     k AS (SELECT v.*, row_number() OVER (PARTITION BY v.patient_id ORDER BY v.ord) AS k \
     FROM v), \
     l AS (INSERT INTO letters (id, patient_id, version, status, title, body, author_id, \
     created_at, updated_at, finalised_at, amends, error_reason) \
     SELECT k.id, k.patient_id, k.version, k.status, k.title, k.body, k.author_id, \
     k.k + GREATEST(\
     COALESCE((SELECT MAX(created_at) FROM letters x WHERE x.patient_id = k.patient_id), 0), \
     MAX(k.at - k.k) OVER (PARTITION BY k.patient_id ORDER BY k.ord)), \
     k.at, k.finalised_at, k.amends, k.error_reason FROM k RETURNING *), \
     logged AS (INSERT INTO access_log (at, user_id, username, role, action, resource_type, \
     resource_id, patient_id, outcome) \
     SELECT * FROM unnest($12::int8[], $13::text[], $14::text[], $15::text[], $16::text[], \
     $17::text[], $18::text[], $19::text[], $20::text[])) \
     SELECT l.id, l.patient_id, l.version, l.status, l.title, l.body, l.author_id, \
     (SELECT u.username FROM users u WHERE u.id = l.author_id) AS author_username, \
     l.created_at, l.updated_at, l.finalised_at, l.amends, l.superseded_by, l.error_reason \
     FROM l";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::NewLetter;
    use crate::{AccessEntry, LetterWrite};

    #[test]
    fn the_connection_budget_is_split_between_the_pool_the_writer_and_the_kept_connections() {
        let budget = |pooled, writer, kept| Budget {
            pooled,
            writer,
            kept,
        };
        assert_eq!(split_connections(10), budget(4, 1, 5));
        assert_eq!(split_connections(11), budget(5, 1, 5));
        assert_eq!(split_connections(3), budget(1, 1, 1));
        // Fewer cannot serve all three; three is the least.
        assert_eq!(split_connections(2), budget(1, 1, 1));
        assert_eq!(split_connections(0), budget(1, 1, 1));
    }

    fn new_letter(id: &str, patient_id: &str, at: i64) -> NewLetter {
        NewLetter {
            letter: LetterWrite {
                id: id.to_owned(),
                patient_id: patient_id.to_owned(),
                version: 1,
                status: "draft".to_owned(),
                title: format!("Letter {id}"),
                body: format!("Body of {id}"),
                author_id: "u1".to_owned(),
                finalised_at: None,
                amends: None,
                error_reason: None,
            },
            at: domain::Timestamp::from_millis(at),
            access: vec![AccessEntry {
                user_id: Some("u1".to_owned()),
                username: "alice".to_owned(),
                role: "clinician".to_owned(),
                action: "create".to_owned(),
                resource_type: "letter".to_owned(),
                resource_id: Some(id.to_owned()),
                patient_id: Some(patient_id.to_owned()),
                outcome: "ok".to_owned(),
            }],
        }
    }

    /// A connection to the test server whose tables are those of
    /// Vellum's migrations, in a schema of its own (first on its search
    /// path, dropped when the test ends), with user `u1` (alice), patients
    /// `p1` and `p2`, and p1's letter `old` at 1000.
    struct Scratch {
        conn: sqlx::PgConnection,
        schema: String,
    }

    impl Scratch {
        async fn new() -> Self {
            let pool = crate::postgres_kept::tests::pool_of(1).await;
            let mut conn = pool.acquire().await.unwrap().detach();
            static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let schema = format!("letters_test_{}_{n}", std::process::id());
            for sql in [
                format!("CREATE SCHEMA {schema}"),
                format!("SET search_path TO {schema}"),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            MIGRATOR.run(&mut conn).await.unwrap();
            for sql in [
                "INSERT INTO users (id, username, role, password_hash, created_at, updated_at) \
                 VALUES ('u1', 'alice', 'clinician', 'x', 0, 0)",
                "INSERT INTO patients (id, version, family_folded, given_folded, display_name, \
                 active, resource, created_at, updated_at) \
                 VALUES ('p1', 1, 'a', 'a', 'A', TRUE, '{}', 0, 0), \
                 ('p2', 1, 'b', 'b', 'B', TRUE, '{}', 0, 0)",
                "INSERT INTO letters (id, patient_id, version, status, title, body, author_id, \
                 created_at, updated_at) VALUES ('old', 'p1', 1, 'final', 't', 'b', 'u1', 1000, 1000)",
            ] {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
            Self { conn, schema }
        }

        /// Letters and access-log rows written.
        async fn counts(&mut self) -> (i64, i64) {
            sqlx::query_as(
                "SELECT (SELECT count(*) FROM letters), (SELECT count(*) FROM access_log)",
            )
            .fetch_one(&mut self.conn)
            .await
            .unwrap()
        }

        async fn drop(mut self) {
            let sql = format!("DROP SCHEMA {} CASCADE", self.schema);
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut self.conn)
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (CI's PostgreSQL pass runs it)"]
    async fn letters_written_in_one_statement_each_come_back_in_order_later_than_the_one_before() {
        let mut db = Scratch::new().await;
        // Given in this order: p1's at times before, at and after its
        // newest letter (1000), p2's first two at one instant, then one of
        // p1's at an earlier time than the one before it.
        let mut given = [
            new_letter("a", "p1", 900),
            new_letter("b", "p2", 5000),
            new_letter("c", "p1", 1001),
            new_letter("d", "p2", 5000),
            new_letter("e", "p1", 1500),
            new_letter("f", "p1", 1499),
        ];
        // Values and NULLs side by side in each column that may be NULL,
        // and a letter without an access-log row.
        given[1].letter.status = "final".to_owned();
        given[1].letter.finalised_at = Some(5000);
        given[2].letter.amends = Some("old".to_owned());
        given[3].letter.error_reason = Some("wrong patient".to_owned());
        given[4].access[0].user_id = None;
        given[4].access[0].patient_id = None;
        given[5].access.clear();
        let refs: Vec<&NewLetter> = given.iter().collect();
        let stored = PostgresStore::letters_in(&mut db.conn, &refs)
            .await
            .unwrap();
        let got: Vec<(&str, i64)> = stored
            .iter()
            .map(|r| (r.id.as_str(), r.created_at))
            .collect();
        // Each is its own time, or one past the patient's letter before it
        // when that is later: the rule applied one letter after another.
        assert_eq!(
            got,
            [
                ("a", 1001),
                ("b", 5000),
                ("c", 1002),
                ("d", 5001),
                ("e", 1500),
                ("f", 1501),
            ]
        );
        for (row, new) in stored.iter().zip(&given) {
            let l = &new.letter;
            assert_eq!(
                (&row.patient_id, &row.status, &row.title, &row.body),
                (&l.patient_id, &l.status, &l.title, &l.body)
            );
            assert_eq!(
                (row.finalised_at, &row.amends, &row.error_reason),
                (l.finalised_at, &l.amends, &l.error_reason)
            );
            assert_eq!(row.author_username, "alice");
            assert_eq!(row.updated_at, new.at.millis());
        }
        let logged: Vec<(Option<String>, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT resource_id, patient_id, user_id FROM access_log ORDER BY id")
                .fetch_all(&mut db.conn)
                .await
                .unwrap();
        let expected: Vec<_> = given
            .iter()
            .flat_map(|n| &n.access)
            .map(|e| {
                (
                    e.resource_id.clone(),
                    e.patient_id.clone(),
                    e.user_id.clone(),
                )
            })
            .collect();
        assert_eq!(expected.len(), 5);
        assert_eq!(logged, expected, "each letter has its access-log rows");
        db.drop().await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (CI's PostgreSQL pass runs it)"]
    async fn every_connection_waits_for_a_lock_as_long_as_any_write_and_the_group_commits_take_the_generic_plan()
     {
        let url = crate::postgres_kept::tests::url();
        let writer = group_writer(url.parse().unwrap(), 1).await.unwrap();
        let pool = pool_options(1, CONNECTION_SETUP)
            .connect(&url)
            .await
            .unwrap();
        let show = |pool: PgPool, setting: &'static str| async move {
            let sql = sqlx::AssertSqlSafe(format!("SHOW {setting}"));
            let (value,): (String,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            value
        };
        assert_eq!(
            show(writer.clone(), "plan_cache_mode").await,
            "force_generic_plan"
        );
        // Only there: every other query may still have a plan of its own.
        assert_eq!(show(pool.clone(), "plan_cache_mode").await, "auto");
        assert_eq!(show(writer.clone(), "lock_timeout").await, "10s");
        assert_eq!(show(pool.clone(), "lock_timeout").await, "10s");
        // The kept connections too.
        let kept = crate::postgres_kept::Kept::new(&pool, 1);
        let on_kept: String = kept
            .run(
                &pool,
                Box::new(|c| {
                    Box::pin(async move {
                        Ok(sqlx::query_scalar("SHOW lock_timeout").fetch_one(c).await?)
                    })
                }),
            )
            .await
            .unwrap();
        assert_eq!(on_kept, "10s");
        kept.close().await;
        writer.close().await;
        pool.close().await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (CI's PostgreSQL pass runs it)"]
    async fn letters_in_one_statement_are_written_all_or_none() {
        let mut db = Scratch::new().await;
        // The second names a patient that does not exist.
        let given = [new_letter("x", "p1", 2000), new_letter("y", "p9", 2000)];
        let refs: Vec<&NewLetter> = given.iter().collect();
        let refused = PostgresStore::letters_in(&mut db.conn, &refs).await;
        assert!(
            matches!(&refused, Err(e) if e.to_string().contains("letters_patient_id_fkey")),
            "{refused:?}"
        );
        assert_eq!(
            db.counts().await,
            (1, 0),
            "a letter or a row of the failed statement was kept"
        );
        db.drop().await;
    }
}
