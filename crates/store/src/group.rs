//! Group commit: many requests' writes in one transaction, one fsync.
//!
//! Every read of a record writes who read it, durably, before the record is
//! shown, and every letter is written with its access-log row. Committed one
//! by one, each request waits for its own fsync and queues behind everyone
//! else's (SQLite has one writer). Here one writer task takes whatever
//! writes are waiting, runs them in one transaction, commits once, and only
//! then answers each request — so a request still returns only after its
//! own write is on disk, but many requests share one commit.
//!
//! If any write of a batch fails (a panic — a bug — included), the whole
//! transaction is rolled back and each write is run again on its own (on a
//! fresh connection whenever the last one broke), so one bad write never
//! takes others with it and each caller gets its own write's outcome. The
//! task lives apart from the requests: a caller that goes away (a client
//! hangs up) cannot cancel a commit that other callers are waiting on.
//!
//! Letters, like access-log rows, are written for the whole batch at once
//! ([`LetterRows`]): on PostgreSQL one statement takes every letter of the
//! batch with its access-log rows, so the database starts, plans and
//! flushes one statement for many letters rather than one each.
//!
//! The writer keeps its connection from one batch to the next for a short
//! turn ([`BATCHES_PER_TURN`], [`LINGER`]) rather than giving it back after
//! each, then gives it back: on SQLite every other write uses it too.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, Database, Pool, Transaction};
use tokio::sync::{mpsc, oneshot};

use domain::Timestamp;

use crate::{AccessEntry, LetterRow, LetterWrite, Result, StoreError};

/// At most this many writes go into one transaction.
const MAX_BATCH: usize = 256;

/// Writes waiting for the writer; callers wait when it is full.
const QUEUE: usize = 4096;

/// The writer keeps its connection for at most this many batches in a row
/// (and between them waits at most [`LINGER`] for the next write), then
/// gives it back: on SQLite so that every other write, which uses the same
/// connection, gets its turn; on PostgreSQL, where the group commit has a
/// connection of its own, so that sqlx tests it now and then. sqlx tests a
/// connection each time it is given back (on SQLite a hand-off to the
/// connection's thread and back,
/// on PostgreSQL an exchange with the server); given back after every batch,
/// that test and the next acquire were about a third of the time between
/// one commit and the next.
const BATCHES_PER_TURN: usize = 8;

/// How long the writer keeps its connection, idle, for the next write.
const LINGER: Duration = Duration::from_millis(1);

/// One request's write: statements run inside the batch's transaction. It
/// may run twice (in a batch that failed, then alone), so it must not have
/// effects outside the transaction.
type Job<DB> =
    Box<dyn for<'t, 'c> Fn(&'t mut Transaction<'c, DB>) -> BoxFuture<'t, Result<()>> + Send + Sync>;

/// Writes a batch's access-log rows on a connection: inside the batch's
/// transaction, or on their own when that is all the batch holds and one
/// statement takes them ([`crate::sql_clinical::ROWS_PER_INSERT`]).
pub(crate) type AccessRows<DB> = for<'t> fn(
    &'t mut <DB as Database>::Connection,
    &'t [(Timestamp, &'t AccessEntry)],
) -> BoxFuture<'t, Result<()>>;

/// A new letter with its access-log rows, written at `at`.
pub(crate) struct NewLetter {
    pub(crate) letter: LetterWrite,
    pub(crate) at: Timestamp,
    pub(crate) access: Vec<AccessEntry>,
}

/// Writes a batch's letters with their access-log rows, inside the batch's
/// transaction (or, when it is one statement and the batch holds nothing
/// else, as a transaction of its own), and gives each letter as stored, in
/// the order given.
pub(crate) type LetterRows<DB> = for<'t> fn(
    &'t mut <DB as Database>::Connection,
    &'t [&'t NewLetter],
) -> BoxFuture<'t, Result<Vec<LetterRow>>>;

/// The statements a writer runs for the writes it merges.
pub(crate) struct Statements<DB: Database> {
    /// Starts each batch's transaction (`BEGIN IMMEDIATE` on SQLite takes
    /// the write lock first).
    pub(crate) begin: &'static str,
    pub(crate) access_rows: AccessRows<DB>,
    pub(crate) letters: LetterRows<DB>,
    /// Whether `letters` is one statement (PostgreSQL), atomic without a
    /// transaction around it.
    pub(crate) letters_in_one_statement: bool,
}

/// Where what a write gave is left for its caller: by the run that
/// committed it (a write may run twice: in a batch that failed, then
/// alone). The caller reads it only once told its write committed.
type Slot<T> = Arc<std::sync::Mutex<Option<T>>>;

fn put<T>(slot: &Slot<T>, value: T) {
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
}

fn take<T>(slot: &Slot<T>) -> Option<T> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

type Stored = Slot<LetterRow>;

/// What a request wants written.
enum Write<DB: Database> {
    /// Access-log rows: every batch's go into a few multi-row INSERTs.
    Access(Timestamp, Vec<AccessEntry>),
    /// A letter: every batch's go into one [`LetterRows`] call.
    Letter(Box<NewLetter>, Stored),
    /// Any statements, run one job after another. Every write the server
    /// makes is of a kind above, which merge; the tests of this mechanism
    /// use jobs.
    Job(Job<DB>),
}

type Reply = oneshot::Sender<Result<()>>;

/// The handle requests use; the writer task ends when the store is dropped.
pub(crate) struct GroupCommit<DB: Database> {
    queue: mpsc::Sender<(Write<DB>, Reply)>,
}

impl<DB: Database> GroupCommit<DB> {
    /// Starts the writer task on `pool`, running `statements`.
    pub(crate) fn spawn(pool: Pool<DB>, statements: Statements<DB>) -> Self {
        let (queue, mut waiting) = mpsc::channel::<(Write<DB>, Reply)>(QUEUE);
        let writer = Writer { pool, statements };
        let work = async move {
            while let Some(first) = waiting.recv().await {
                let mut conn = match writer.pool.acquire().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        // The database cannot be reached now: the writes
                        // already waiting fail with this one rather than
                        // each wait out an acquire of its own in turn.
                        let why = format!("no database connection could be had: {e}");
                        let _ = first.1.send(Err(e.into()));
                        let rest = std::iter::from_fn(|| waiting.try_recv().ok());
                        refuse_all(rest.map(|(_, reply)| reply), || {
                            StoreError::Batch(why.clone())
                        });
                        continue;
                    }
                };
                let mut first = first;
                for turn in 1.. {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match waiting.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    // A write whose caller has gone — its client went away,
                    // or its request passed the server's deadline — is not
                    // written: its request was never answered (a read is
                    // answered only after its row), and nobody is told.
                    batch.retain(|(_, reply)| !reply.is_closed());
                    if !batch.is_empty() {
                        // Kept only while every batch commits at once; after
                        // a failure the connection goes back to be tested.
                        let Some(kept) = writer.run_batch(conn, batch).await else {
                            break;
                        };
                        conn = kept;
                    }
                    if turn == BATCHES_PER_TURN {
                        // Given back (and tested by sqlx) between turns.
                        break;
                    }
                    match tokio::time::timeout(LINGER, waiting.recv()).await {
                        Ok(Some(next)) => first = next,
                        _ => break,
                    }
                }
            }
        };
        tokio::spawn(work);
        Self { queue }
    }

    /// Writes access-log rows in the next batch; returns once committed.
    pub(crate) async fn access(&self, now: Timestamp, entries: &[AccessEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.send(Write::Access(now, entries.to_vec())).await
    }

    /// Writes `letter` and its access-log rows in the next batch; returns
    /// the letter as stored (its `created_at` is the database's) once
    /// committed, or the error that stopped it. When the outcome of a
    /// batch cannot be known (the connection broke as it committed), or the
    /// batch failed after its letters were written, each letter is tried
    /// again alone, and that try is refused as a duplicate of the letter's
    /// own id if the first was in fact committed: the store then gives
    /// back the letter found (`create_letter`).
    pub(crate) async fn letter(&self, letter: NewLetter) -> Result<LetterRow> {
        let stored = Stored::default();
        self.send(Write::Letter(Box::new(letter), stored.clone()))
            .await?;
        take(&stored)
            .ok_or_else(|| StoreError::Batch("a committed letter gave nothing back".to_owned()))
    }

    /// Runs `job` in the next batch and returns what it gave once that is
    /// committed, or the error that stopped it (then nothing of it was
    /// written — unless the connection broke during the COMMIT itself,
    /// when the outcome cannot be known: the write is then tried again
    /// alone, so it may be stored twice, or stored though its caller got an
    /// error). A caller given Ok always has its write committed. A job that
    /// ran twice gives what its committed run gave.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "the server's writes all merge; tests write jobs")
    )]
    pub(crate) async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t, 'c> Fn(&'t mut Transaction<'c, DB>) -> BoxFuture<'t, Result<T>>
            + Send
            + Sync
            + 'static,
    {
        let given: Slot<T> = Arc::default();
        let slot = given.clone();
        let job: Job<DB> = Box::new(move |tx| {
            let (run, slot) = (job(tx), slot.clone());
            Box::pin(async move {
                let value = run.await?;
                put(&slot, value);
                Ok(())
            })
        });
        self.send(Write::Job(job)).await?;
        let value = take(&given);
        value.ok_or_else(|| StoreError::Batch("a committed write gave nothing back".to_owned()))
    }

    async fn send(&self, write: Write<DB>) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((write, reply)).await.map_err(|_| {
            StoreError::Batch("the database writer has stopped: nothing was written".to_owned())
        })?;
        answer.await.map_err(|_| {
            StoreError::Batch("the database writer stopped before answering this write".to_owned())
        })?
    }
}

/// Answers each of `replies` with the same failure: nothing of theirs was
/// written.
fn refuse_all(replies: impl IntoIterator<Item = Reply>, error: impl Fn() -> StoreError) {
    for reply in replies {
        // A caller that went away no longer needs the answer.
        let _ = reply.send(Err(error()));
    }
}

struct Writer<DB: Database> {
    pool: Pool<DB>,
    statements: Statements<DB>,
}

impl<DB: Database> Writer<DB> {
    /// Runs `batch` on `conn` and answers each caller. Gives the
    /// connection back to keep for the next batch if everything committed
    /// at the first attempt; after any failure it goes back to the pool,
    /// to be tested.
    async fn run_batch(
        &self,
        mut conn: PoolConnection<DB>,
        batch: Vec<(Write<DB>, Reply)>,
    ) -> Option<PoolConnection<DB>> {
        let writes: Vec<&Write<DB>> = batch.iter().map(|(w, _)| w).collect();
        match self.run_guarded(&mut conn, &writes).await {
            Ok(()) => {
                for (_, reply) in batch {
                    // A caller that went away no longer needs the answer.
                    let _ = reply.send(Ok(()));
                }
                Some(conn)
            }
            Err(e) if batch.len() == 1 => {
                if let Some((_, reply)) = batch.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
                None
            }
            Err(e) if e.is_busy() => {
                // Another writer held the database past the busy timeout
                // (a `sqlite3` shell, a stuck process). Alone, each write
                // would wait it out again, one after another, with every
                // later read queued behind: all fail now (503) instead.
                let why = e.to_string();
                tracing::warn!(
                    writes = batch.len(),
                    error = %why,
                    "another writer held the database past the busy timeout; the batch failed"
                );
                refuse_all(batch.into_iter().map(|(_, reply)| reply), || {
                    StoreError::Busy(why.clone())
                });
                None
            }
            Err(e) => {
                // Something in the batch failed and all of it was rolled
                // back: each write again on its own, with its own outcome —
                // on a fresh connection whenever the last one may be broken
                // (any error but the database refusing a write).
                let mut usable = e.leaves_connection_usable().then_some(conn);
                let mut batch = batch.into_iter();
                while let Some((write, reply)) = batch.next() {
                    let mut conn = match usable.take() {
                        Some(conn) => conn,
                        None => match self.pool.acquire().await {
                            Ok(fresh) => fresh,
                            Err(e) => {
                                // Unreachable now: the rest fail at once
                                // rather than each wait out its own acquire.
                                let why = format!(
                                    "the batch failed and no database connection could be had: {e}"
                                );
                                let rest = batch.map(|(_, reply)| reply);
                                refuse_all(std::iter::once(reply).chain(rest), || {
                                    StoreError::Batch(why.clone())
                                });
                                return None;
                            }
                        },
                    };
                    let outcome = self.run_guarded(&mut conn, &[&write]).await;
                    let busy = outcome.as_ref().is_err_and(StoreError::is_busy);
                    if outcome
                        .as_ref()
                        .err()
                        .is_none_or(StoreError::leaves_connection_usable)
                    {
                        usable = Some(conn);
                    }
                    let _ = reply.send(outcome);
                    if busy {
                        // Locked out since the batch failed: the rest would
                        // each wait the lock out again, as above.
                        let why = "another writer held the database past the busy timeout";
                        tracing::warn!(
                            writes = batch.len(),
                            "{why}; the rest of the batch failed without being tried again"
                        );
                        refuse_all(batch.map(|(_, reply)| reply), || {
                            StoreError::Busy(why.to_owned())
                        });
                        return None;
                    }
                }
                None
            }
        }
    }

    /// [`Self::run`], with a panic in it (a bug) turned into that run's
    /// error: the batch then fails and each write is retried alone like
    /// after any other failure, so the bug fails only the write that hits
    /// it, and the writer goes on — rather than its task ending and every
    /// later read and write failing until the server restarts. Nothing in
    /// `run` follows its COMMIT but the reading back of letters written by
    /// one statement, so a panic in a job or a statement leaves nothing
    /// committed; one inside sqlx's own COMMIT would leave the outcome
    /// unknown, as a connection breaking there does, and one while such
    /// letters are read back leaves them written (their retries find
    /// them, see [`Self::run`]). The connection
    /// it panicked on is closed, not given back. (This needs panics to
    /// unwind, as they do in every profile of the workspace.)
    async fn run_guarded(
        &self,
        conn: &mut PoolConnection<DB>,
        writes: &[&Write<DB>],
    ) -> Result<()> {
        AssertUnwindSafe(self.run(conn, writes))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                // The panic's own message and place were already reported
                // by the panic hook.
                tracing::error!("a write panicked in the database writer");
                conn.close_on_drop();
                Err(StoreError::Batch(
                    "a fault in the server stopped this write".to_owned(),
                ))
            })
    }

    /// All of `writes` in one transaction: committed together or not at all.
    async fn run(&self, conn: &mut PoolConnection<DB>, writes: &[&Write<DB>]) -> Result<()> {
        let mut rows: Vec<(Timestamp, &AccessEntry)> = Vec::new();
        let mut letters: Vec<(&NewLetter, &Stored)> = Vec::new();
        let mut jobs: Vec<&Job<DB>> = Vec::new();
        for w in writes {
            match w {
                Write::Access(at, entries) => rows.extend(entries.iter().map(|e| (*at, e))),
                Write::Letter(letter, stored) => letters.push((letter, stored)),
                Write::Job(job) => jobs.push(job),
            }
        }
        let statements = &self.statements;
        // One statement is a transaction of its own: atomic, and durable
        // when it returns, without a BEGIN and a COMMIT to wait for (each a
        // round trip to the database).
        if jobs.is_empty()
            && letters.is_empty()
            && rows.len() <= crate::sql_clinical::ROWS_PER_INSERT
        {
            return (statements.access_rows)(&mut **conn, &rows).await;
        }
        if jobs.is_empty() && rows.is_empty() && statements.letters_in_one_statement {
            // Committed when the statement ends; reading the letters back
            // and matching them to their callers follows. Should that fail
            // (or the connection break as the answer comes), the batch
            // fails though written, and each letter is retried alone: the
            // retry meets the letter's own id already taken, and the store
            // gives back the letter found under it (`create_letter`).
            return self.write_letters(&mut **conn, &letters).await;
        }
        let mut tx = (**conn).begin_with(statements.begin).await?;
        if !rows.is_empty() {
            (statements.access_rows)(&mut tx, &rows).await?;
        }
        if !letters.is_empty() {
            self.write_letters(&mut tx, &letters).await?;
        }
        for job in jobs {
            job(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Writes `letters` on `conn` and leaves each as stored for its caller.
    async fn write_letters(
        &self,
        conn: &mut DB::Connection,
        letters: &[(&NewLetter, &Stored)],
    ) -> Result<()> {
        let given: Vec<&NewLetter> = letters.iter().map(|(l, _)| *l).collect();
        let stored = (self.statements.letters)(conn, &given).await?;
        if stored.len() != letters.len() {
            return Err(StoreError::Corrupt(format!(
                "{} letters written gave {} back",
                letters.len(),
                stored.len()
            )));
        }
        for ((_, slot), row) in letters.iter().zip(stored) {
            put(slot, row);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Postgres, Sqlite};
    use tokio::task::JoinHandle;

    /// A writer's statements for the tests' writes: jobs, and access-log
    /// rows written by `access_rows`; never a letter.
    fn statements<DB: Database>(
        begin: &'static str,
        access_rows: AccessRows<DB>,
    ) -> Statements<DB> {
        fn no_letters<'t, DB: Database>(
            _: &'t mut DB::Connection,
            _: &'t [&'t NewLetter],
        ) -> BoxFuture<'t, Result<Vec<LetterRow>>> {
            Box::pin(async { Err(StoreError::Batch("no letters here".to_owned())) })
        }
        Statements {
            begin,
            access_rows,
            letters: no_letters::<DB>,
            letters_in_one_statement: false,
        }
    }

    /// The tests' writes are jobs only; a batch has no access-log rows.
    fn no_rows<'t, DB: Database>(
        _: &'t mut DB::Connection,
        _: &'t [(Timestamp, &'t AccessEntry)],
    ) -> BoxFuture<'t, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// `job` written through `writes`, on a task of its own.
    fn spawned<DB: Database, T: Send + 'static>(
        writes: &Arc<GroupCommit<DB>>,
        job: impl for<'t, 'c> Fn(&'t mut Transaction<'c, DB>) -> BoxFuture<'t, Result<T>>
        + Send
        + Sync
        + 'static,
    ) -> JoinHandle<Result<T>> {
        let writes = writes.clone();
        tokio::spawn(async move { writes.write(job).await })
    }

    /// A job that runs `sql` and gives the number it selects.
    fn number<DB: Database>(
        sql: &'static str,
    ) -> impl for<'t, 'c> Fn(&'t mut Transaction<'c, DB>) -> BoxFuture<'t, Result<i32>>
    + Send
    + Sync
    + 'static
    where
        i32: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
        DB::Arguments: sqlx::IntoArguments<DB>,
        (i32,): for<'r> sqlx::FromRow<'r, DB::Row>,
    {
        move |tx| Box::pin(async move { Ok(sqlx::query_scalar(sql).fetch_one(&mut **tx).await?) })
    }

    /// A writer (one connection, as on SQLite) of a file holding table `t`;
    /// a file, not memory, so that a connection closed after a fault does
    /// not take the data with it. The directory lives as long as it is kept.
    async fn writer_of_t() -> (tempfile::TempDir, Arc<GroupCommit<Sqlite>>) {
        let dir = tempfile::tempdir().unwrap();
        let file = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(file)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        let writes = GroupCommit::spawn(pool, statements("BEGIN IMMEDIATE", no_rows::<Sqlite>));
        (dir, Arc::new(writes))
    }

    /// Inserts `n` into `t` through `writes`, on a task of its own; gives
    /// `n` back once committed.
    fn insert(writes: &Arc<GroupCommit<Sqlite>>, n: i32) -> JoinHandle<Result<i32>> {
        spawned(writes, move |tx| {
            Box::pin(async move {
                Ok(
                    sqlx::query_scalar::<_, i32>("INSERT INTO t VALUES ($1) RETURNING n")
                        .bind(n)
                        .fetch_one(&mut **tx)
                        .await?,
                )
            })
        })
    }

    /// How many writes wait in the queue.
    fn queued<DB: Database>(writes: &GroupCommit<DB>) -> usize {
        writes.queue.max_capacity() - writes.queue.capacity()
    }

    /// Waits (up to ten seconds) until `n` writes wait in the queue.
    async fn until_queued<DB: Database>(writes: &GroupCommit<DB>, n: usize) {
        for _ in 0..10_000 {
            if queued(writes) == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("{n} writes never queued (there are {})", queued(writes));
    }

    /// Holds the writer inside a write until `release` is notified, so that
    /// the writes sent meanwhile form the next batch, in the order sent.
    /// Returns once the writer holds; the held write gives what `first`
    /// gave, run before it holds.
    async fn hold_the_writer<DB: Database>(
        writes: &Arc<GroupCommit<DB>>,
        first: impl for<'t, 'c> Fn(&'t mut Transaction<'c, DB>) -> BoxFuture<'t, Result<i32>>
        + Send
        + Sync
        + 'static,
        release: Arc<tokio::sync::Notify>,
    ) -> JoinHandle<Result<i32>> {
        let first = Arc::new(first);
        let holds = Arc::new(tokio::sync::Notify::new());
        let (holding, release) = (holds.clone(), release.clone());
        let held = spawned(writes, move |tx| {
            let (first, holding, release) = (first.clone(), holding.clone(), release.clone());
            Box::pin(async move {
                let n = first(tx).await?;
                holding.notify_one();
                release.notified().await;
                Ok(n)
            })
        });
        holds.notified().await;
        held
    }

    #[tokio::test]
    async fn a_write_that_panics_fails_alone_and_the_writer_goes_on() {
        let (_dir, writes) = writer_of_t().await;
        let release = Arc::new(tokio::sync::Notify::new());
        let held = hold_the_writer(&writes, number("SELECT 0"), release.clone()).await;

        // One batch, in this order: a sound write, one that hits a bug,
        // two sound ones (each sent once the one before it is queued).
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = runs.clone();
        let one = insert(&writes, 1);
        until_queued(&writes, 1).await;
        let panics = spawned(&writes, move |_| -> BoxFuture<'_, Result<i32>> {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async { panic!("a bug in a write") })
        });
        until_queued(&writes, 2).await;
        let two = insert(&writes, 2);
        until_queued(&writes, 3).await;
        let three = insert(&writes, 3);
        until_queued(&writes, 4).await;
        release.notify_one();

        assert_eq!(held.await.unwrap().unwrap(), 0);
        let failed = panics.await.unwrap();
        assert!(
            matches!(&failed, Err(StoreError::Batch(why)) if why.contains("fault")),
            "{failed:?}"
        );
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the bad write ran other than once in the batch and once alone"
        );
        for (n, write) in [(1, one), (2, two), (3, three)] {
            assert_eq!(
                write.await.unwrap().unwrap(),
                n,
                "a sound write failed with the bad one"
            );
        }
        // Three rows, not four: the batch's first run of write 1 was rolled
        // back before it ran again alone.
        let rows = spawned(&writes, number("SELECT count(*) FROM t"))
            .await
            .unwrap();
        assert_eq!(rows.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_write_whose_caller_has_gone_before_its_batch_is_not_written() {
        let (_dir, writes) = writer_of_t().await;
        let release = Arc::new(tokio::sync::Notify::new());
        let held = hold_the_writer(&writes, number("SELECT 0"), release.clone()).await;
        let one = insert(&writes, 1);
        until_queued(&writes, 1).await;
        let gone = insert(&writes, 2);
        until_queued(&writes, 2).await;
        let three = insert(&writes, 3);
        until_queued(&writes, 3).await;
        // The second request is dropped (its client went away) while its
        // write waits for the writer.
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        release.notify_one();
        assert_eq!(held.await.unwrap().unwrap(), 0);
        assert_eq!(one.await.unwrap().unwrap(), 1);
        assert_eq!(three.await.unwrap().unwrap(), 3);
        let rows = spawned(&writes, number("SELECT sum(n) FROM t"))
            .await
            .unwrap();
        assert_eq!(rows.unwrap(), 4, "only writes 1 and 3");
    }

    /// How many times [`counted_rows`] ran.
    static ROW_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// Access-log rows as one row of `t`, counting each run.
    fn counted_rows<'t>(
        conn: &'t mut <Sqlite as Database>::Connection,
        _: &'t [(Timestamp, &'t AccessEntry)],
    ) -> BoxFuture<'t, Result<()>> {
        ROW_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            sqlx::query("INSERT INTO t VALUES (1)")
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    /// A writer held inside a write while another connection holds the
    /// database's write lock (see [`locked_out_behind_a_held_write`]).
    struct LockedOut {
        _dir: tempfile::TempDir,
        writes: Arc<GroupCommit<Sqlite>>,
        /// The held write; it gives 0 once released.
        held: JoinHandle<Result<i32>>,
        release: Arc<tokio::sync::Notify>,
        /// Holds the write lock until it rolls back or is dropped.
        other: sqlx::SqliteConnection,
    }

    /// A writer (one connection, a 200 ms busy timeout, `BEGIN` deferred so
    /// that writes that only read take no write lock) of a file holding
    /// table `t`, writing access-log rows with `access_rows`; held inside a
    /// write that only reads until `release` is notified, so the writes sent
    /// meanwhile form one batch — which will find the write lock held by
    /// `other`.
    async fn locked_out_behind_a_held_write(access_rows: AccessRows<Sqlite>) -> LockedOut {
        let dir = tempfile::tempdir().unwrap();
        let file = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_millis(200));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(file.clone())
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        let writes = Arc::new(GroupCommit::spawn(pool, statements("BEGIN", access_rows)));
        let release = Arc::new(tokio::sync::Notify::new());
        let held = hold_the_writer(&writes, number("SELECT 0"), release.clone()).await;
        use sqlx::Connection as _;
        let mut other = sqlx::SqliteConnection::connect_with(&file).await.unwrap();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        LockedOut {
            _dir: dir,
            writes,
            held,
            release,
            other,
        }
    }

    #[tokio::test]
    async fn once_a_write_tried_again_alone_is_locked_out_the_rest_fail_without_being_tried() {
        let LockedOut {
            _dir,
            writes,
            held,
            release,
            mut other,
        } = locked_out_behind_a_held_write(no_rows::<Sqlite>).await;
        // The next batch: a write that fails for a reason of its own (so
        // the batch fails, not as busy, and each is tried again alone), a
        // write that then finds the database locked, and one after it.
        let broken = spawned(&writes, number("SELECT n FROM missing"));
        until_queued(&writes, 1).await;
        let locked_out = insert(&writes, 1);
        until_queued(&writes, 2).await;
        static LAST_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let last = spawned(&writes, |tx| {
            LAST_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                Ok(
                    sqlx::query_scalar::<_, i32>("INSERT INTO t VALUES (2) RETURNING n")
                        .fetch_one(&mut **tx)
                        .await?,
                )
            })
        });
        until_queued(&writes, 3).await;
        release.notify_one();
        assert_eq!(held.await.unwrap().unwrap(), 0);
        let broken = broken.await.unwrap();
        assert!(broken.as_ref().is_err_and(|e| !e.is_busy()), "{broken:?}");
        for write in [locked_out, last] {
            let failed = write.await.unwrap();
            assert!(
                failed.as_ref().is_err_and(StoreError::is_busy),
                "{failed:?}"
            );
        }
        assert_eq!(
            LAST_RUNS.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "the write after the locked-out one was tried again, waiting out the lock once more"
        );
        sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
    }

    #[tokio::test]
    async fn a_batch_locked_out_by_another_writer_fails_whole_without_retrying_each_write() {
        // Three reads' rows will queue behind the held write: one batch.
        let LockedOut {
            _dir,
            writes,
            held,
            release,
            mut other,
        } = locked_out_behind_a_held_write(counted_rows).await;
        let entry = AccessEntry {
            user_id: None,
            username: "alice".to_owned(),
            role: "clinician".to_owned(),
            action: "read".to_owned(),
            resource_type: "patient".to_owned(),
            resource_id: None,
            patient_id: None,
            outcome: "ok".to_owned(),
        };
        let mut reads = Vec::new();
        for n in 1..=3 {
            let (queue, entry) = (writes.clone(), entry.clone());
            reads.push(tokio::spawn(async move {
                queue.access(Timestamp::from_millis(1), &[entry]).await
            }));
            until_queued(&writes, n).await;
        }
        release.notify_one();
        assert_eq!(held.await.unwrap().unwrap(), 0);
        for read in reads {
            let failed = read.await.unwrap();
            assert!(
                failed.as_ref().is_err_and(StoreError::is_busy),
                "{failed:?}"
            );
        }
        assert_eq!(
            ROW_RUNS.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the batch's rows were tried again, each alone, waiting out the lock each time"
        );
        // The other writer is done: writes go through again.
        sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
        writes
            .access(Timestamp::from_millis(2), &[entry])
            .await
            .unwrap();
        assert_eq!(ROW_RUNS.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn writes_waiting_while_the_database_cannot_be_reached_fail_with_the_first() {
        // A "database" that takes connections and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let connecting = Arc::new(tokio::sync::Notify::new());
        let accepted = connecting.clone();
        tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                kept.push(socket);
                accepted.notify_one();
            }
        });
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy(&format!("postgres://vellum@127.0.0.1:{port}/vellum"))
            .unwrap();
        let writes = Arc::new(GroupCommit::spawn(
            pool,
            statements("BEGIN", no_rows::<Postgres>),
        ));
        let first = spawned(&writes, number("SELECT 1"));
        connecting.notified().await;
        let waiting: Vec<_> = (0..4)
            .map(|_| spawned(&writes, number("SELECT 1")))
            .collect();
        until_queued(&writes, 4).await;

        let first = first.await.unwrap();
        assert!(
            matches!(&first, Err(StoreError::Database(sqlx::Error::PoolTimedOut))),
            "{first:?}"
        );
        for write in waiting {
            // Failed with the first rather than each after an acquire of
            // its own (the same timeout again, four times over).
            let failed = write.await.unwrap();
            assert!(
                matches!(&failed, Err(StoreError::Batch(why))
                    if why.contains("no database connection could be had")),
                "{failed:?}"
            );
        }
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (CI's PostgreSQL pass runs it)"]
    async fn writes_queued_behind_one_that_breaks_its_connection_commit_on_fresh_connections() {
        // The server's group commit has one connection of its own: each
        // fresh one comes after the broken one was closed.
        let url = crate::postgres_kept::tests::url();
        let pool = crate::postgres::group_writer(url.parse().unwrap(), 1)
            .await
            .unwrap();
        let writes = Arc::new(GroupCommit::spawn(
            pool,
            statements("BEGIN", no_rows::<Postgres>),
        ));
        let release = Arc::new(tokio::sync::Notify::new());
        let held =
            hold_the_writer(&writes, number("SELECT pg_backend_pid()"), release.clone()).await;
        // One batch. First, a write whose server process ends itself: the
        // batch fails, and so does this write again when retried alone,
        // taking that retry's connection with it. Then four sound writes.
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = runs.clone();
        let terminate = number("SELECT pg_terminate_backend(pg_backend_pid())::int");
        let breaks = spawned(&writes, move |tx| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            terminate(tx)
        });
        until_queued(&writes, 1).await;
        let after: Vec<_> = (0..4)
            .map(|_| spawned(&writes, number("SELECT pg_backend_pid()")))
            .collect();
        until_queued(&writes, 5).await;
        release.notify_one();

        let first = held.await.unwrap().unwrap();
        let broken = breaks.await.unwrap();
        assert!(
            matches!(&broken, Err(e) if !e.leaves_connection_usable()),
            "{broken:?}"
        );
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the breaking write ran other than once in the batch and once alone"
        );
        for write in after {
            let committed = write.await.unwrap();
            let Ok(pid) = committed else {
                panic!("a write queued behind the broken one failed: {committed:?}");
            };
            assert_ne!(pid, first, "a write ran on the connection that was ended");
        }
    }
}
