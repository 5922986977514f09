//! PostgreSQL connections kept for one-statement queries, without sqlx's
//! ping on release.
//!
//! sqlx's pool pings every connection when it comes back (a round trip to
//! PostgreSQL: a Sync message and its ReadyForQuery), in case the query was
//! cancelled half-way and left the connection in an unknown state. Every
//! request makes at least one query — the session lookup — so every request
//! cost PostgreSQL two exchanges instead of one (measured: two sends to
//! PostgreSQL per `GET /api/auth/me`). The hot one-statement queries — reads
//! by key — run here instead, on connections this module keeps. A
//! connection goes back to the idle list only when its statement finished,
//! with rows or with PostgreSQL's own refusal (a constraint): one that
//! broke, whose reply could not be decoded, or whose future was dropped
//! half-way (a client that hung up) is closed, never reused, so nothing
//! needs to test it on the way back.
//!
//! Transactions, scans and the group commit stay on the sqlx pool.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, PgPool};

use crate::postgres::PING_IF_IDLE_FOR;
use crate::{Result, StoreError};

/// A kept connection idle this long is closed rather than used (as sqlx's
/// pool closes idle connections).
const CLOSE_IF_IDLE_FOR: Duration = Duration::from_secs(600);

/// How long closing waits for PostgreSQL to take its leave.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct Kept {
    options: PgConnectOptions,
    /// Connections not in use, with when each was last used.
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    /// Kept connections that exist (idle or in use).
    open: AtomicUsize,
    /// At most this many connections are kept; when all are busy a query
    /// runs on the sqlx pool instead.
    keep: usize,
    /// Set by [`Self::close`]: queries then fail as on a closed sqlx pool.
    closed: AtomicBool,
}

/// One statement on a connection; it owns what it needs.
pub(crate) type Statement<T> =
    Box<dyn for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T>> + Send>;

impl Kept {
    /// Keeps up to `keep` connections to the database `pool` reaches;
    /// they are opened when first needed.
    pub(crate) fn new(pool: &PgPool, keep: usize) -> Self {
        Self {
            options: (*pool.connect_options()).clone(),
            idle: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            keep: keep.max(1),
            closed: AtomicBool::new(false),
        }
    }

    /// Runs `statement` on a kept connection, or on `pool` when every kept
    /// connection is busy.
    pub(crate) async fn run<T>(&self, pool: &PgPool, statement: Statement<T>) -> Result<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Database(sqlx::Error::PoolClosed));
        }
        let Some(mut taken) = self.take().await? else {
            let mut conn = pool.acquire().await?;
            return statement(&mut conn).await;
        };
        let out = match taken.conn.as_mut() {
            Some(conn) => statement(conn).await,
            None => Err(StoreError::Database(sqlx::Error::PoolClosed)),
        };
        // The server's refusal (a constraint, bad input) leaves the
        // connection ready for the next query; anything else — the
        // connection broke, a reply could not be decoded — may not.
        if out
            .as_ref()
            .err()
            .is_none_or(StoreError::leaves_connection_usable)
        {
            taken.give_back();
        }
        out
    }

    /// An idle connection (pinged first if it sat idle a while), a new one
    /// while fewer than `keep` exist, or `None` when all are busy. The
    /// connection is counted from the moment it is taken or its slot
    /// claimed: dropped half-way (a client that hung up), it is uncounted.
    async fn take(&self) -> Result<Option<Taken<'_>>> {
        loop {
            let idle = self.lock().pop();
            match idle {
                Some((conn, last)) => {
                    let mut taken = Taken {
                        kept: self,
                        conn: Some(conn),
                    };
                    let idle_for = last.elapsed();
                    if idle_for < PING_IF_IDLE_FOR {
                        return Ok(Some(taken));
                    }
                    if idle_for < CLOSE_IF_IDLE_FOR
                        && let Some(conn) = taken.conn.as_mut()
                        && conn.ping().await.is_ok()
                    {
                        return Ok(Some(taken));
                    }
                    // Gone stale or idle too long: `taken` closes it; look
                    // again.
                }
                None => {
                    let claimed = self
                        .open
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                            (n < self.keep).then_some(n + 1)
                        })
                        .is_ok();
                    if !claimed {
                        return Ok(None);
                    }
                    let mut taken = Taken {
                        kept: self,
                        conn: None,
                    };
                    let mut conn = PgConnection::connect_with(&self.options).await?;
                    sqlx::raw_sql(crate::postgres::CONNECTION_SETUP)
                        .execute(&mut conn)
                        .await?;
                    taken.conn = Some(conn);
                    return Ok(Some(taken));
                }
            }
        }
    }

    /// Closes the idle connections; every later query fails (one running
    /// now finishes and its connection is closed).
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let idle = std::mem::take(&mut *self.lock());
        self.open.fetch_sub(idle.len(), Ordering::AcqRel);
        for (conn, _) in idle {
            // Closing tells PostgreSQL goodbye; a connection already broken,
            // or a server that does not answer, is left all the same.
            let _ = tokio::time::timeout(CLOSE_WAIT, conn.close()).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PgConnection, Instant)>> {
        // The list holds only idle connections; a panic elsewhere while it
        // was locked leaves it valid.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One count of `Kept::open`: a kept connection in use (or its claimed
/// slot, while it connects). Dropped without [`Taken::give_back`] — the statement broke, or its
/// future was dropped half-way — the connection is closed and uncounted.
struct Taken<'k> {
    kept: &'k Kept,
    conn: Option<PgConnection>,
}

impl Taken<'_> {
    fn give_back(mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // Checked under the lock, so a close that runs meanwhile either
        // sees this connection in the list or is seen here.
        let mut idle = self.kept.lock();
        if self.kept.closed.load(Ordering::Acquire) {
            drop(idle);
            drop(conn);
            // Uncounted by `Drop`.
        } else {
            idle.push((conn, Instant::now()));
            drop(idle);
            // Counted on in the list.
            std::mem::forget(self);
        }
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.kept.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;

    /// The PostgreSQL the tests use.
    pub(crate) fn url() -> String {
        std::env::var("VELLUM_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
    }

    /// The PostgreSQL server tests use (no tables needed: the tests ask
    /// which server process answers), at most `max` connections.
    pub(crate) async fn pool_of(max: u32) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(max)
            .connect(&url())
            .await
            .expect("PostgreSQL is unreachable")
    }

    async fn pool() -> PgPool {
        pool_of(2).await
    }

    /// A one-value query read as a number.
    fn number(sql: &'static str) -> Statement<i32> {
        Box::new(move |c| Box::pin(async move { Ok(sqlx::query_scalar(sql).fetch_one(c).await?) }))
    }

    /// Which server process answers.
    fn backend_pid() -> Statement<i32> {
        number("SELECT pg_backend_pid()")
    }

    /// PostgreSQL refuses it (division by zero).
    fn refused() -> Statement<i32> {
        number("SELECT 1 / 0")
    }

    /// PostgreSQL answers, but the answer cannot be read as asked (text
    /// read as a number).
    fn undecodable() -> Statement<i32> {
        number("SELECT 'x'::text")
    }

    fn sleeping(seconds: f64) -> Statement<()> {
        Box::new(move |c| {
            Box::pin(async move {
                sqlx::query("SELECT pg_sleep($1)")
                    .bind(seconds)
                    .execute(c)
                    .await?;
                Ok(())
            })
        })
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (CI's PostgreSQL pass runs it)"]
    async fn a_connection_whose_statement_finished_is_used_again() {
        let pool = pool().await;
        let kept = Kept::new(&pool, 2);
        let first = kept.run(&pool, backend_pid()).await.unwrap();
        let second = kept.run(&pool, backend_pid()).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(kept.open.load(Ordering::Acquire), 1);
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (CI's PostgreSQL pass runs it)"]
    async fn a_connection_whose_statement_the_server_refused_is_used_again() {
        let pool = pool().await;
        let kept = Kept::new(&pool, 1);
        let before = kept.run(&pool, backend_pid()).await.unwrap();
        assert!(matches!(
            kept.run(&pool, refused()).await,
            Err(StoreError::Database(sqlx::Error::Database(_)))
        ));
        assert_eq!(kept.open.load(Ordering::Acquire), 1);
        let after = kept.run(&pool, backend_pid()).await.unwrap();
        assert_eq!(before, after);
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (CI's PostgreSQL pass runs it)"]
    async fn a_connection_whose_answer_could_not_be_read_is_closed_not_reused() {
        let pool = pool().await;
        let kept = Kept::new(&pool, 1);
        let before = kept.run(&pool, backend_pid()).await.unwrap();
        assert!(kept.run(&pool, undecodable()).await.is_err());
        assert_eq!(kept.open.load(Ordering::Acquire), 0);
        let after = kept.run(&pool, backend_pid()).await.unwrap();
        assert_ne!(before, after);
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (CI's PostgreSQL pass runs it)"]
    async fn a_statement_dropped_half_way_closes_its_connection() {
        let pool = pool().await;
        let kept = Kept::new(&pool, 1);
        let before = kept.run(&pool, backend_pid()).await.unwrap();
        let cut =
            tokio::time::timeout(Duration::from_millis(100), kept.run(&pool, sleeping(5.0))).await;
        assert!(cut.is_err(), "the sleep should have been cut off");
        assert_eq!(kept.open.load(Ordering::Acquire), 0);
        let after = kept.run(&pool, backend_pid()).await.unwrap();
        assert_ne!(before, after);
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (CI's PostgreSQL pass runs it)"]
    async fn when_every_kept_connection_is_busy_the_pool_answers() {
        let pool = pool().await;
        let kept = Kept::new(&pool, 1);
        let own = kept.run(&pool, backend_pid()).await.unwrap();
        let (slow, other) = tokio::join!(kept.run(&pool, sleeping(0.5)), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            kept.run(&pool, backend_pid()).await
        });
        slow.unwrap();
        assert_ne!(other.unwrap(), own, "answered by a pooled connection");
        assert_eq!(kept.open.load(Ordering::Acquire), 1);
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (CI's PostgreSQL pass runs it)"]
    async fn after_close_statements_fail_as_on_a_closed_pool() {
        let pool = pool().await;
        let kept = Kept::new(&pool, 1);
        kept.run(&pool, backend_pid()).await.unwrap();
        kept.close().await;
        assert_eq!(kept.open.load(Ordering::Acquire), 0);
        let refused = kept.run(&pool, backend_pid()).await;
        assert!(matches!(
            refused,
            Err(StoreError::Database(sqlx::Error::PoolClosed))
        ));
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (CI's PostgreSQL pass runs it)"]
    async fn a_request_cut_off_while_connecting_or_pinging_leaves_no_slot_taken() {
        let (pool, held) = relayed_pool().await;
        let kept = Kept::new(&pool, 1);
        // Cut off while connecting: the claimed slot is given back.
        let cut = tokio::time::timeout(Duration::ZERO, kept.run(&pool, backend_pid())).await;
        assert!(cut.is_err());
        assert_eq!(kept.open.load(Ordering::Acquire), 0);
        // Cut off while pinging a connection that sat idle (PostgreSQL's
        // answer to the ping held back): it is closed and uncounted.
        kept.run(&pool, backend_pid()).await.unwrap();
        {
            let mut idle = kept.lock();
            let (conn, _) = idle.pop().unwrap();
            idle.push((conn, Instant::now() - Duration::from_secs(5)));
        }
        held.store(true, Ordering::Release);
        let cut =
            tokio::time::timeout(Duration::from_millis(300), kept.run(&pool, backend_pid())).await;
        held.store(false, Ordering::Release);
        assert!(
            cut.is_err(),
            "the ping was not answered, so the run was cut off"
        );
        assert_eq!(kept.open.load(Ordering::Acquire), 0);
        assert!(kept.lock().is_empty(), "the connection cut off is not kept");
        // The slot is there to be used again.
        kept.run(&pool, backend_pid()).await.unwrap();
        assert_eq!(kept.open.load(Ordering::Acquire), 1);
    }

    /// A pool (at most two connections) that reaches PostgreSQL through a
    /// relay on loopback, and the switch that holds back PostgreSQL's
    /// answers while it is on — so a test can cut a request off while it
    /// waits for one, every time (without the relay, PostgreSQL may answer
    /// within the request's first poll).
    async fn relayed_pool() -> (PgPool, Arc<AtomicBool>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let direct = pool().await;
        let target = (*direct.connect_options()).clone();
        let server = format!("{}:{}", target.get_host(), target.get_port());
        direct.close().await;
        let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = relay.local_addr().unwrap().port();
        let held = Arc::new(AtomicBool::new(false));
        let holding = held.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = relay.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(&server).await else {
                    continue;
                };
                let (mut client_in, mut client_out) = client.into_split();
                let (mut server_in, mut server_out) = upstream.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_in, &mut server_out).await;
                });
                let holding = holding.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = server_in.read(&mut buf).await {
                        while holding.load(Ordering::Acquire) {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        if client_out.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let options = target.host("127.0.0.1").port(port);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .expect("PostgreSQL is unreachable through the relay");
        (pool, held)
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (CI's PostgreSQL pass runs it)"]
    async fn a_connection_postgresql_ended_is_closed_not_reused() {
        let pool = pool().await;
        let kept = Kept::new(&pool, 1);
        let before = kept.run(&pool, backend_pid()).await.unwrap();
        let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(before)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(ended);
        // The next statement on it fails (PostgreSQL said FATAL, or the
        // socket is gone) and the connection is not kept.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(kept.run(&pool, backend_pid()).await.is_err());
        assert_eq!(kept.open.load(Ordering::Acquire), 0);
        let after = kept.run(&pool, backend_pid()).await.unwrap();
        assert_ne!(before, after);
    }
}
