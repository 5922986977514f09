//! SQLite reads by key, run on the calling task.
//!
//! sqlx gives every SQLite connection a thread of its own: each query is
//! sent to that thread and its rows sent back, two thread wake-ups per
//! query. A read of one row by its key from cached pages takes a few
//! microseconds, far less than those hand-offs (profiled: about half the
//! server's time on the `me` benchmark). So the reads by key that requests
//! make — the session, a patient, an API token, the record a patient's
//! account is linked to — run here instead, on
//! connections of this module's own, on the task that asks. Anything that
//! scans (searches, lists, exports) stays on the sqlx pool so that no task
//! holds a runtime thread for long.
//!
//! These connections are opened read-only: nothing written through them
//! can bypass the writer or the group commit. In WAL mode a reader sees
//! every committed transaction and never waits for the writer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{Result, StoreError};

/// How long a read waits for a lock before it fails (`StoreError::Busy`:
/// 503 to the client).
const BUSY: Duration = Duration::from_secs(1);

/// Prepared statements kept per connection (the hot reads are few).
const STATEMENTS: usize = 32;

pub(crate) struct InlineReads {
    path: PathBuf,
    /// Connections not in use; a read takes one and gives it back.
    idle: Mutex<Vec<Connection>>,
    /// How many idle connections to keep; more are opened when more reads
    /// run at once, and closed after.
    keep: usize,
    /// Set by [`Self::close`]: reads then fail as on a closed sqlx pool.
    closed: AtomicBool,
}

impl InlineReads {
    /// Reads of the database file at `path`, keeping up to `keep` idle
    /// connections. Opens one now, so a file that cannot be read fails at
    /// start-up rather than at the first request.
    pub(crate) fn open(path: PathBuf, keep: usize) -> Result<Self> {
        let first = connect(&path)?;
        Ok(Self {
            path,
            idle: Mutex::new(vec![first]),
            keep: keep.max(1),
            closed: AtomicBool::new(false),
        })
    }

    /// Runs `read` on an idle connection (opening one if none is idle).
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Database(sqlx::Error::PoolClosed));
        }
        let taken = self.lock().pop();
        let conn = match taken {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let out = read(&conn);
        let mut idle = self.lock();
        if idle.len() < self.keep && !self.closed.load(Ordering::Acquire) {
            idle.push(conn);
        }
        Ok(out?)
    }

    /// Closes the idle connections; every later read fails (a read running
    /// now finishes and closes its connection).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // The list holds only idle connections; a panic elsewhere while it
        // was locked leaves it valid.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn connect(path: &PathBuf) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // A WAL reader waits only in rare moments (another process recovering
    // the log after a crash); it waits on a runtime thread, so not long.
    conn.busy_timeout(BUSY)?;
    conn.set_prepared_statement_cache_capacity(STATEMENTS);
    Ok(conn)
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        match e.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked) => StoreError::Busy(e.to_string()),
            _ => StoreError::Sqlite(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER NOT NULL);")
            .unwrap();
        (dir, path, writer)
    }

    fn count(reads: &InlineReads) -> i64 {
        reads
            .read(|c| {
                c.prepare_cached("SELECT count(*) FROM t")?
                    .query_row([], |r| r.get(0))
            })
            .unwrap()
    }

    #[test]
    fn a_read_sees_every_write_committed_before_it_on_a_kept_connection() {
        let (_dir, path, writer) = database();
        let reads = InlineReads::open(path, 1).unwrap();
        assert_eq!(count(&reads), 0);
        writer.execute("INSERT INTO t (n) VALUES (1)", []).unwrap();
        assert_eq!(count(&reads), 1, "the kept connection saw a stale snapshot");
        writer.execute("DELETE FROM t", []).unwrap();
        assert_eq!(count(&reads), 0);
    }

    #[test]
    fn nothing_can_be_written_through_a_read_connection() {
        let (_dir, path, writer) = database();
        let reads = InlineReads::open(path, 1).unwrap();
        let refused = reads.read(|c| c.execute("INSERT INTO t (n) VALUES (7)", []));
        match refused {
            Err(StoreError::Sqlite(e)) => assert_eq!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::ReadOnly),
                "{e}"
            ),
            other => panic!("the write was not refused as read-only: {other:?}"),
        }
        let n: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn reads_at_once_beyond_the_kept_connections_each_get_one_and_extras_close() {
        let (_dir, path, _writer) = database();
        let reads = InlineReads::open(path, 2).unwrap();
        // Three reads nested: each holds its connection while the next runs.
        let innermost = || reads.read(|c| c.query_row("SELECT 3", [], |r| r.get::<_, i64>(0)));
        let depth = reads
            .read(|_| Ok(reads.read(|_| Ok(innermost()))))
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(depth, 3);
        assert_eq!(
            reads.lock().len(),
            2,
            "idle connections beyond `keep` were kept"
        );
    }

    #[test]
    fn after_close_every_read_fails_as_on_a_closed_pool() {
        let (_dir, path, _writer) = database();
        let reads = InlineReads::open(path, 2).unwrap();
        assert_eq!(count(&reads), 0);
        reads.close();
        assert!(reads.lock().is_empty());
        assert!(matches!(
            reads.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))),
            Err(StoreError::Database(sqlx::Error::PoolClosed))
        ));
    }

    #[test]
    fn a_read_that_waits_too_long_for_a_lock_is_busy() {
        let (_dir, path, writer) = database();
        let reads = InlineReads::open(path, 1).unwrap();
        // Exclusive locking mode: the writer keeps the file locked after
        // its write, so no reader can start.
        writer
            .execute_batch(
                "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; \
                 INSERT INTO t (n) VALUES (1); COMMIT;",
            )
            .unwrap();
        let read =
            reads.read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)));
        assert!(matches!(read, Err(StoreError::Busy(_))), "{read:?}");
    }

    /// `.cargo/config.toml` builds SQLite without the process-wide page
    /// cache and memory-statistics locks that readers on several threads
    /// queued for; this fails if that setting is lost.
    #[test]
    fn sqlite_is_built_without_process_wide_cache_locks() {
        let (_dir, _path, conn) = database();
        let options: Vec<String> = conn
            .prepare("PRAGMA compile_options")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "every connection shares one locked page cache: {options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "every allocation takes the memory-statistics lock: {options:?}"
        );
    }

    #[test]
    fn a_file_that_does_not_exist_fails_at_open() {
        let dir = tempfile::tempdir().unwrap();
        assert!(InlineReads::open(dir.path().join("missing.db"), 1).is_err());
    }
}
