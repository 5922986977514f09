//! Backups: a consistent snapshot of every table, compressed and encrypted
//! to offline age recipients; checking one; restoring one into an empty
//! database (SQLite or PostgreSQL, whichever made it).
//!
//! The file is age( gzip( lines ) ). The lines are JSON: a header naming
//! every table with its columns and row count, then each table's marker
//! and its rows (one JSON array per row, in primary-key order), then a
//! manifest with each table's row count and the SHA-256 of its row lines.
//! Rows stream through a bounded channel between the database and a
//! blocking thread that compresses and encrypts, so memory stays flat
//! whatever the database size.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crypto::{BackupIdentity, BackupRecipients, Sha256Stream};
use domain::{NewSecurityEvent, SecurityEventKind as Kind, Timestamp};
use serde::{Deserialize, Serialize};
use store::{BACKUP_TABLES, ColumnType, ExportItem, ImportItem, Store, TableSpec, Value};
use tokio::sync::mpsc;

use crate::{App, AppError, AppResult, RequestMeta};

/// The format this build writes and reads.
pub const BACKUP_FORMAT: &str = "vellum-backup/1";
/// No line of a backup may be longer (a letter is far shorter).
const MAX_LINE: u64 = 64 << 20;
/// Rows in flight between the database and the file.
const CHANNEL_ROWS: usize = 512;
/// How often progress is reported, in rows.
const PROGRESS_EVERY: u64 = 2_000;

/// Where a long backup or restore is.
#[derive(Debug, Clone)]
pub struct BackupProgress {
    pub table: String,
    pub rows_done: u64,
    pub rows_total: u64,
}

/// Called now and then from a worker thread.
pub type ProgressFn = Arc<dyn Fn(&BackupProgress) + Send + Sync>;

/// What a backup holds, written at its end and checked on every read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    pub format: String,
    pub schema_version: i64,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// `sqlite` or `postgresql`.
    pub source: String,
    pub tables: Vec<TableDigest>,
    /// The keyring keys the sealed values in the backup need.
    pub sealed_key_ids: Vec<String>,
}

impl BackupManifest {
    pub fn total_rows(&self) -> i64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDigest {
    pub name: String,
    pub rows: i64,
    /// SHA-256 (hex) of the table's row lines, in order.
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    schema_version: i64,
    created_at: String,
    source: String,
    tables: Vec<HeaderTable>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderTable {
    name: String,
    columns: Vec<String>,
    rows: i64,
}

/// A line that is not a row.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Marker {
    Header(Header),
    Table(String),
    Manifest(BackupManifest),
}

fn failed(msg: impl Into<String>) -> AppError {
    AppError::Backup(msg.into())
}

// --- writing ------------------------------------------------------------------

/// A row as a JSON array, without copying its values.
struct RowJson<'a>(&'a [Value]);

impl Serialize for RowJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            match v {
                Value::Null => seq.serialize_element(&())?,
                Value::Int(i) => seq.serialize_element(i)?,
                Value::Bool(b) => seq.serialize_element(b)?,
                Value::Text(t) => seq.serialize_element(t)?,
            }
        }
        seq.end()
    }
}

fn json_line<T: Serialize>(value: &T) -> AppResult<Vec<u8>> {
    let mut line = serde_json::to_vec(value).map_err(|e| failed(format!("encoding: {e}")))?;
    line.push(b'\n');
    Ok(line)
}

struct Snapshot {
    schema_version: i64,
    created_at: String,
    source: String,
}

/// The blocking half of a backup: rows in, encrypted file out.
fn write_stream(
    mut rx: mpsc::Receiver<ExportItem>,
    file: File,
    recipients: &BackupRecipients,
    snap: &Snapshot,
    progress: Option<&ProgressFn>,
) -> AppResult<BackupManifest> {
    let io = |e: std::io::Error| failed(format!("writing the backup file: {e}"));
    let encrypted = recipients
        .encrypt_to(BufWriter::with_capacity(1 << 16, file))
        .map_err(|e| failed(e.to_string()))?;
    let mut gz = flate2::write::GzEncoder::new(encrypted, flate2::Compression::default());

    let Some(ExportItem::Counts(counts)) = rx.blocking_recv() else {
        return Err(failed("the database snapshot ended before it began"));
    };
    let header = Header {
        format: BACKUP_FORMAT.to_owned(),
        schema_version: snap.schema_version,
        created_at: snap.created_at.clone(),
        source: snap.source.clone(),
        tables: counts
            .iter()
            .map(|(name, rows)| HeaderTable {
                name: (*name).to_owned(),
                columns: store::backup_table(name)
                    .map(|t| t.column_names().iter().map(|c| (*c).to_owned()).collect())
                    .unwrap_or_default(),
                rows: *rows,
            })
            .collect(),
    };
    gz.write_all(&json_line(&Marker::Header(header))?)
        .map_err(io)?;
    let total: u64 = counts
        .iter()
        .map(|(_, n)| u64::try_from(*n).unwrap_or(0))
        .sum();

    let mut digests: Vec<TableDigest> = Vec::new();
    let mut current: Option<(&'static TableSpec, Sha256Stream, i64)> = None;
    let mut sealed_cols: Vec<usize> = Vec::new();
    let mut key_ids = BTreeSet::new();
    let mut done = 0u64;
    let finish = |cur: Option<(&'static TableSpec, Sha256Stream, i64)>,
                  out: &mut Vec<TableDigest>| {
        if let Some((t, hash, rows)) = cur {
            out.push(TableDigest {
                name: t.name.to_owned(),
                rows,
                sha256: hash.finish_hex(),
            });
        }
    };
    while let Some(item) = rx.blocking_recv() {
        match item {
            ExportItem::Counts(_) => return Err(failed("the snapshot counted twice")),
            ExportItem::Table(t) => {
                finish(current.take(), &mut digests);
                gz.write_all(&json_line(&Marker::Table(t.name.to_owned()))?)
                    .map_err(io)?;
                sealed_cols = t
                    .columns
                    .iter()
                    .enumerate()
                    .filter(|(_, (c, _))| t.name == "users" && store::SEALED_COLUMNS.contains(c))
                    .map(|(i, _)| i)
                    .collect();
                current = Some((t, Sha256Stream::default(), 0));
            }
            ExportItem::Row(values) => {
                let Some((t, hash, rows)) = current.as_mut() else {
                    return Err(failed("a row arrived before its table"));
                };
                for &i in &sealed_cols {
                    if let Some(Value::Text(v)) = values.get(i)
                        && let Some(id) = crypto::sealed_key_id(v)
                    {
                        key_ids.insert(id.to_owned());
                    }
                }
                let line = json_line(&RowJson(&values))?;
                hash.update(&line);
                gz.write_all(&line).map_err(io)?;
                *rows += 1;
                done += 1;
                if let Some(p) = progress
                    && done.is_multiple_of(PROGRESS_EVERY)
                {
                    p(&BackupProgress {
                        table: t.name.to_owned(),
                        rows_done: done,
                        rows_total: total,
                    });
                }
            }
        }
    }
    finish(current.take(), &mut digests);
    let consistent = digests.len() == counts.len()
        && digests
            .iter()
            .zip(&counts)
            .all(|(d, (name, rows))| d.name == *name && d.rows == *rows);
    if !consistent {
        return Err(failed(
            "the database snapshot ended early (its row counts and its rows disagree)",
        ));
    }
    let manifest = BackupManifest {
        format: BACKUP_FORMAT.to_owned(),
        schema_version: snap.schema_version,
        created_at: snap.created_at.clone(),
        source: snap.source.clone(),
        tables: digests,
        sealed_key_ids: key_ids.into_iter().collect(),
    };
    gz.write_all(&json_line(&Marker::Manifest(manifest.clone()))?)
        .map_err(io)?;
    let encrypted = gz.finish().map_err(io)?;
    let buffered = encrypted.finish().map_err(io)?;
    let file = buffered.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    if let Some(p) = progress {
        p(&BackupProgress {
            table: String::new(),
            rows_done: done,
            rows_total: total,
        });
    }
    Ok(manifest)
}

fn partial_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

fn source_name(store: &Arc<dyn Store>) -> &'static str {
    match store.backend() {
        store::Backend::Sqlite => "sqlite",
        store::Backend::Postgres => "postgresql",
    }
}

/// Writes a backup of every table to `out` (never over an existing file):
/// one read transaction, so the server keeps serving and the backup is a
/// consistent snapshot. The file appears only when complete (written as
/// `<out>.partial`, synced, renamed). Records `backup_created` — or
/// `backup_failed` with the reason — in the security log. A fault (a
/// panic) while writing it is a failed backup like any other: recorded,
/// and for a scheduled backup alerted.
pub async fn create_backup(
    store: &Arc<dyn Store>,
    recipients: &BackupRecipients,
    out: &Path,
    now: Timestamp,
    meta: &RequestMeta,
    progress: Option<ProgressFn>,
) -> AppResult<BackupManifest> {
    let result = crate::background::guarded(
        "writing a backup",
        write_backup(store, recipients, out, now, progress),
    )
    .await
    .unwrap_or_else(|| {
        Err(failed(
            "a fault in the server stopped this backup (the server's log says where)".to_owned(),
        ))
    });
    let file = out
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let event = match &result {
        Ok(m) => NewSecurityEvent::new(Kind::BackupCreated).detail(serde_json::json!({
            "file": file,
            "bytes": std::fs::metadata(out).map(|m| m.len()).unwrap_or(0),
            "rows": m.total_rows(),
            "schema_version": m.schema_version,
            "recipients": recipients.to_strings(),
            "sealed_key_ids": m.sealed_key_ids,
        })),
        Err(e) => NewSecurityEvent::new(Kind::BackupFailed)
            .detail(serde_json::json!({"file": file, "reason": e.to_string()})),
    };
    if let Err(e) = store.append_events(now, &[meta.stamp(event)]).await {
        tracing::warn!(error = %e, "could not record the backup in the security log");
    }
    result
}

async fn write_backup(
    store: &Arc<dyn Store>,
    recipients: &BackupRecipients,
    out: &Path,
    now: Timestamp,
    progress: Option<ProgressFn>,
) -> AppResult<BackupManifest> {
    if out.exists() {
        return Err(failed(format!(
            "{} already exists; choose a new file name (a backup never replaces a file)",
            out.display()
        )));
    }
    let partial = partial_path(out);
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| failed(format!("cannot create {}: {e}", partial.display())))?
    };
    let snap = Snapshot {
        schema_version: store.schema_version().await?,
        created_at: now.to_rfc3339(),
        source: source_name(store).to_owned(),
    };
    let (tx, rx) = mpsc::channel(CHANNEL_ROWS);
    let recipients = recipients.clone();
    let writer = tokio::task::spawn_blocking(move || {
        write_stream(rx, file, &recipients, &snap, progress.as_ref())
    });
    let exported = store.export(tx).await;
    // A writer that stopped (a panic) fails the backup below, which also
    // removes the partial file.
    let written = writer
        .await
        .unwrap_or_else(|e| Err(failed(format!("the backup writer stopped: {e}"))));
    let outcome = match (exported, written) {
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(AppError::from(e)),
        (Ok(()), Ok(m)) => std::fs::rename(&partial, out)
            .map(|()| m)
            .map_err(|e| failed(format!("cannot move the backup into place: {e}"))),
    };
    match &outcome {
        Ok(_) => sync_dir(out),
        Err(_) => {
            let _ = std::fs::remove_file(&partial);
        }
    }
    outcome
}

// --- reading ------------------------------------------------------------------

enum ReadError {
    Backup(AppError),
    /// The database side stopped taking rows; its error is the cause.
    SinkClosed,
}

impl From<AppError> for ReadError {
    fn from(e: AppError) -> Self {
        ReadError::Backup(e)
    }
}

fn damaged(e: &std::io::Error) -> AppError {
    failed(format!(
        "the backup is damaged: truncated or altered after it was made ({e})"
    ))
}

/// Reads one line (at most `MAX_LINE` bytes); `None` at the end.
fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> AppResult<Option<()>> {
    buf.clear();
    let n = reader
        .by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', buf)
        .map_err(|e| damaged(&e))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(failed(if n as u64 >= MAX_LINE {
            "the backup holds a line longer than any Vellum writes"
        } else {
            "the backup ends in the middle of a line: it was truncated"
        }));
    }
    Ok(Some(()))
}

fn row_values(t: &TableSpec, line: &[u8], row_no: i64) -> AppResult<Vec<Value>> {
    let wrong = |what: String| failed(format!("row {row_no} of {}: {what}", t.name));
    let json: Vec<serde_json::Value> =
        serde_json::from_slice(line).map_err(|e| wrong(format!("not a row ({e})")))?;
    if json.len() != t.columns.len() {
        return Err(wrong(format!(
            "{} values where the table has {} columns",
            json.len(),
            t.columns.len()
        )));
    }
    t.columns
        .iter()
        .zip(json)
        .map(|((name, ty), v)| match (ty, v) {
            (_, serde_json::Value::Null) => Ok(Value::Null),
            (ColumnType::Text, serde_json::Value::String(s)) => Ok(Value::Text(s)),
            (ColumnType::Int, serde_json::Value::Number(n)) if n.is_i64() => {
                Ok(Value::Int(n.as_i64().unwrap_or_default()))
            }
            (ColumnType::Bool, serde_json::Value::Bool(b)) => Ok(Value::Bool(b)),
            (ty, other) => Err(wrong(format!("{name} should be {ty:?}, not {other}"))),
        })
        .collect()
}

/// Whether this build can restore a backup of `schema_version` holding
/// `tables` (same schema, same tables).
fn check_restorable<'a>(
    schema_version: i64,
    tables: impl Iterator<Item = &'a str>,
) -> AppResult<()> {
    let ours = store::latest_schema_version();
    if schema_version != ours {
        return Err(failed(format!(
            "schema mismatch: the backup has schema version {schema_version} and this Vellum \
             has {ours}. Restore it with the Vellum release that made it (the server upgrades \
             the database when it starts); nothing was restored"
        )));
    }
    let names: Vec<&str> = tables.collect();
    let expected: Vec<&str> = BACKUP_TABLES.iter().map(|t| t.name).collect();
    if names != expected {
        return Err(failed(format!(
            "schema mismatch: the backup's tables ({}) are not this Vellum's ({})",
            names.join(", "),
            expected.join(", ")
        )));
    }
    Ok(())
}

/// Decrypts, decompresses and checks a whole backup; with a sink, feeds it
/// the rows and, only when everything checked out, `Commit`.
fn read_stream(
    path: &Path,
    identity: &BackupIdentity,
    sink: Option<&mpsc::Sender<ImportItem>>,
    progress: Option<&ProgressFn>,
) -> Result<BackupManifest, ReadError> {
    let file = File::open(path)
        .map_err(|e| failed(format!("cannot open the backup {}: {e}", path.display())))?;
    let plain = identity
        .decrypt(BufReader::with_capacity(1 << 16, file))
        .map_err(|e| failed(format!("{e}; nothing was restored")))?;
    let mut reader = BufReader::with_capacity(1 << 16, flate2::read::GzDecoder::new(plain));
    let mut line = Vec::new();
    let send = |item: ImportItem| match sink {
        Some(s) => s.blocking_send(item).map_err(|_| ReadError::SinkClosed),
        None => Ok(()),
    };

    if next_line(&mut reader, &mut line)?.is_none() {
        return Err(failed("the backup is empty").into());
    }
    let header = match serde_json::from_slice::<Marker>(&line) {
        Ok(Marker::Header(h)) => h,
        _ => return Err(failed("not a Vellum backup: it has no Vellum header").into()),
    };
    if header.format != BACKUP_FORMAT {
        return Err(failed(format!(
            "the backup's format is {:?}; this Vellum reads {BACKUP_FORMAT:?}",
            header.format
        ))
        .into());
    }
    let specs: Vec<Option<&'static TableSpec>> = header
        .tables
        .iter()
        .map(|h| {
            store::backup_table(&h.name).filter(|t| {
                t.columns.len() == h.columns.len()
                    && t.columns.iter().zip(&h.columns).all(|((a, _), b)| a == b)
            })
        })
        .collect();
    if sink.is_some() {
        check_restorable(
            header.schema_version,
            header.tables.iter().map(|t| t.name.as_str()),
        )?;
        if let Some(i) = specs.iter().position(Option::is_none) {
            return Err(failed(format!(
                "schema mismatch: the columns of table {} differ from this Vellum's",
                header.tables[i].name
            ))
            .into());
        }
    }
    let total: u64 = header
        .tables
        .iter()
        .map(|t| u64::try_from(t.rows).unwrap_or(0))
        .sum();

    let mut seen: Vec<TableDigest> = Vec::new();
    // (index into the header, hash, rows)
    let mut current: Option<(usize, Sha256Stream, i64)> = None;
    let mut done = 0u64;
    let close = |cur: Option<(usize, Sha256Stream, i64)>, seen: &mut Vec<TableDigest>| {
        if let Some((i, hash, rows)) = cur {
            seen.push(TableDigest {
                name: header.tables[i].name.clone(),
                rows,
                sha256: hash.finish_hex(),
            });
        }
    };
    let manifest = loop {
        if next_line(&mut reader, &mut line)?.is_none() {
            return Err(failed(
                "the backup ends before its manifest: it was truncated; nothing was restored",
            )
            .into());
        }
        if line.first() == Some(&b'[') {
            let Some((i, hash, rows)) = current.as_mut() else {
                return Err(failed("the backup has a row before any table").into());
            };
            *rows += 1;
            hash.update(&line);
            if let Some(spec) = specs[*i].filter(|_| sink.is_some()) {
                send(ImportItem::Row(row_values(spec, &line, *rows)?))?;
            }
            done += 1;
            if let Some(p) = progress
                && done.is_multiple_of(PROGRESS_EVERY)
            {
                p(&BackupProgress {
                    table: header.tables[*i].name.clone(),
                    rows_done: done,
                    rows_total: total,
                });
            }
            continue;
        }
        match serde_json::from_slice::<Marker>(&line) {
            Ok(Marker::Table(name)) => {
                close(current.take(), &mut seen);
                let i = seen.len();
                if header.tables.get(i).map(|t| t.name.as_str()) != Some(name.as_str()) {
                    return Err(failed(format!(
                        "the backup's table {name:?} is out of the order its header gives"
                    ))
                    .into());
                }
                if let Some(spec) = specs[i].filter(|_| sink.is_some()) {
                    send(ImportItem::Table(spec))?;
                }
                current = Some((i, Sha256Stream::default(), 0));
            }
            Ok(Marker::Manifest(m)) => {
                close(current.take(), &mut seen);
                break m;
            }
            Ok(Marker::Header(_)) => {
                return Err(failed("the backup has a second header").into());
            }
            Err(e) => {
                return Err(failed(format!("the backup holds an unreadable line ({e})")).into());
            }
        }
    };
    // Reading on to the end makes gzip check its CRC and age its last chunk.
    if next_line(&mut reader, &mut line)?.is_some() {
        return Err(failed("the backup has data after its manifest").into());
    }
    let mut tail = [0u8; 1];
    if reader.read(&mut tail).map_err(|e| damaged(&e))? != 0 {
        return Err(failed("the backup has data after its manifest").into());
    }
    if manifest.format != header.format
        || manifest.schema_version != header.schema_version
        || manifest.created_at != header.created_at
        || manifest.source != header.source
    {
        return Err(failed("the backup's manifest does not match its header").into());
    }
    if manifest.tables.len() != header.tables.len() || seen.len() != header.tables.len() {
        return Err(failed(format!(
            "the backup has {} tables, its header names {} and its manifest {}",
            seen.len(),
            header.tables.len(),
            manifest.tables.len()
        ))
        .into());
    }
    for ((got, listed), head) in seen.iter().zip(&manifest.tables).zip(&header.tables) {
        if got.name != listed.name || got.rows != listed.rows || got.rows != head.rows {
            return Err(failed(format!(
                "table {}: {} rows in the backup, {} in its manifest, {} in its header",
                got.name, got.rows, listed.rows, head.rows
            ))
            .into());
        }
        if got.sha256 != listed.sha256 {
            return Err(failed(format!(
                "table {}: its rows do not match the manifest's SHA-256",
                got.name
            ))
            .into());
        }
    }
    send(ImportItem::Commit)?;
    Ok(manifest)
}

/// Decrypts and checks a backup — every row against the manifest's counts
/// and SHA-256s — without touching any database.
pub async fn verify_backup(
    path: &Path,
    identity: Arc<BackupIdentity>,
    progress: Option<ProgressFn>,
) -> AppResult<BackupManifest> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        read_stream(&path, &identity, None, progress.as_ref()).map_err(|e| match e {
            ReadError::Backup(e) => e,
            ReadError::SinkClosed => failed("the check stopped"),
        })
    })
    .await
    .map_err(|e| failed(format!("the backup reader stopped: {e}")))?
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    pub manifest: BackupManifest,
    pub rows: u64,
}

/// The first half of a restore, before any database is touched: decrypts
/// and checks the whole backup and that this build can restore it. A wrong
/// identity, a truncated or altered file or another schema stops here.
pub async fn check_backup_for_restore(
    path: &Path,
    identity: Arc<BackupIdentity>,
    progress: Option<ProgressFn>,
) -> AppResult<BackupManifest> {
    let checked = verify_backup(path, identity, progress).await?;
    check_restorable(
        checked.schema_version,
        checked.tables.iter().map(|t| t.name.as_str()),
    )?;
    Ok(checked)
}

/// Restores a checked backup (see [`check_backup_for_restore`]) into an
/// empty database, all or nothing: the rows are written in one
/// transaction that commits only after this second read has checked every
/// row again. Records `backup_restored` in the restored security log,
/// continuing its hash chain.
pub async fn restore_backup(
    store: &Arc<dyn Store>,
    path: &Path,
    identity: Arc<BackupIdentity>,
    checked: &BackupManifest,
    now: Timestamp,
    meta: &RequestMeta,
    progress: Option<ProgressFn>,
) -> AppResult<RestoreSummary> {
    check_restorable(
        checked.schema_version,
        checked.tables.iter().map(|t| t.name.as_str()),
    )?;
    // The store refuses a target that is not empty, inside the restore's
    // transaction.
    let (tx, rx) = mpsc::channel(CHANNEL_ROWS);
    let owned = path.to_owned();
    let reader = tokio::task::spawn_blocking(move || {
        read_stream(&owned, &identity, Some(&tx), progress.as_ref())
    });
    let event = meta.stamp(
        NewSecurityEvent::new(Kind::BackupRestored).detail(serde_json::json!({
            "file": path.file_name().map(|f| f.to_string_lossy().into_owned()),
            "backup_created_at": checked.created_at,
            "source": checked.source,
            "rows": checked.total_rows(),
        })),
    );
    let imported = store.import(rx, now, &[event]).await;
    let read = reader
        .await
        .map_err(|e| failed(format!("the backup reader stopped: {e}")))?;
    match (read, imported) {
        (Err(ReadError::Backup(e)), _) => Err(e),
        (_, Err(e)) => Err(AppError::from(e)),
        (Err(ReadError::SinkClosed), Ok(_)) => Err(failed("the restore stopped early")),
        (Ok(manifest), Ok(rows)) => Ok(RestoreSummary { manifest, rows }),
    }
}

// --- upgrades -------------------------------------------------------------------

/// How recent a backup must be for a release to migrate a database that
/// holds data.
pub const UPGRADE_BACKUP_WINDOW_MS: i64 = 24 * 3_600_000;

/// Whether a database in `state` may be opened — and migrated — now:
/// refused when a newer release upgraded it, and when migrations would
/// change data without a backup in the security log from the last 24
/// hours, unless the operator vouches for one (`without_backup`).
pub fn check_upgrade(
    state: &store::SchemaState,
    now: Timestamp,
    without_backup: bool,
) -> AppResult<()> {
    if state.applied > state.latest {
        return Err(AppError::Conflict(format!(
            "the database is at schema version {} but this Vellum knows only up to {}: it was \
             upgraded by a newer release. Run that release. Nothing was changed.",
            state.applied, state.latest
        )));
    }
    if !state.upgrades_data() {
        return Ok(());
    }
    let recent = state
        .last_backup_at
        .is_some_and(|at| now.millis() - at.millis() < UPGRADE_BACKUP_WINDOW_MS);
    if !recent && !without_backup {
        return Err(AppError::Conflict(format!(
            "this Vellum upgrades the database from schema version {} to {}, and the security \
             log shows no backup from the last 24 hours. Take one first with the release that \
             runs it now (`vellum backup create --out FILE`), then start this release; or, if \
             you hold a backup made another way, pass --upgrade-without-backup. Nothing was \
             changed.",
            state.applied, state.latest
        )));
    }
    tracing::warn!(
        from = state.applied,
        to = state.latest,
        last_backup = %state.last_backup_at.map_or_else(|| "none".to_owned(), |t| t.to_rfc3339()),
        "upgrading the database schema"
    );
    Ok(())
}

// --- scheduled backups ----------------------------------------------------------

/// `serve`'s backup schedule (`[backup]` in the configuration).
#[derive(Debug, Clone)]
pub struct BackupSchedule {
    pub recipients: BackupRecipients,
    pub dir: PathBuf,
    pub every_ms: i64,
    /// How many of the newest backups to keep in `dir`.
    pub keep: usize,
}

/// The rule of the alert a failed scheduled backup raises.
pub const BACKUP_ALERT_RULE: &str = "backup_failed";
const BACKUP_JOB: &str = "scheduled_backup";

/// `vellum-20261125T213000Z.backup`: sorts by time.
pub fn backup_file_name(at: Timestamp) -> String {
    let s = at.to_rfc3339();
    let compact: String = s
        .chars()
        .take(19)
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("vellum-{compact}Z.backup")
}

impl App {
    /// One tick of the schedule: when a backup is due (no server sharing
    /// this database took one within the interval), writes one into the
    /// backup folder and keeps the newest `keep`. A failure is logged,
    /// recorded and raises the `backup_failed` alert. Returns the new file.
    pub async fn run_scheduled_backup(
        &self,
        schedule: &BackupSchedule,
    ) -> AppResult<Option<PathBuf>> {
        let now = self.now();
        // A little slack, so a tick a moment early does not skip a round.
        let not_since = now.minus_millis(schedule.every_ms - schedule.every_ms / 20);
        if !self.store.claim_job(BACKUP_JOB, not_since, now).await? {
            return Ok(None);
        }
        let meta = RequestMeta {
            ip: "scheduler".to_owned(),
            ..RequestMeta::default()
        };
        let out = schedule.dir.join(backup_file_name(now));
        // A folder that cannot be made shows as the backup failing to
        // create its file, recorded by `create_backup` like any failure.
        if let Err(e) = std::fs::create_dir_all(&schedule.dir) {
            tracing::warn!(dir = %schedule.dir.display(), error = %e, "cannot create the backup folder");
        }
        let made = create_backup(&self.store, &schedule.recipients, &out, now, &meta, None).await;
        match made {
            Ok(m) => {
                tracing::info!(
                    file = %out.display(),
                    rows = m.total_rows(),
                    "scheduled backup written"
                );
                if let Err(e) = prune_backups(&schedule.dir, schedule.keep) {
                    tracing::warn!(error = %e, "removing old backups failed");
                }
                Ok(Some(out))
            }
            Err(e) => {
                let reason = e.to_string();
                let detail = serde_json::json!({
                    "dir": schedule.dir.display().to_string(),
                    "reason": reason,
                })
                .to_string();
                self.raise_alert(
                    BACKUP_ALERT_RULE,
                    &schedule.dir.display().to_string(),
                    &detail,
                    now.minus_millis(schedule.every_ms / 2),
                    &meta,
                    &format!("a scheduled backup failed: {reason}"),
                )
                .await?;
                Err(e)
            }
        }
    }
}

/// Deletes all but the newest `keep` backups (and any leftover partial
/// files) that the schedule wrote into `dir`.
pub fn prune_backups(dir: &Path, keep: usize) -> std::io::Result<usize> {
    let mut backups = Vec::new();
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.starts_with("vellum-") {
            continue;
        }
        if name.ends_with(".backup.partial") {
            std::fs::remove_file(dir.join(&name))?;
            removed += 1;
        } else if name.ends_with(".backup") {
            backups.push(name);
        }
    }
    backups.sort();
    let excess = backups.len().saturating_sub(keep.max(1));
    for name in backups.into_iter().take(excess) {
        std::fs::remove_file(dir.join(name))?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_upgrade_of_data_needs_a_backup_from_the_last_day_and_a_newer_schema_is_refused() {
        let now = Timestamp(10 * UPGRADE_BACKUP_WINDOW_MS);
        let state = |applied, has_data, last: Option<i64>| store::SchemaState {
            applied,
            latest: 5,
            has_data,
            last_backup_at: last.map(Timestamp),
        };
        let fresh = Some(now.millis() - 60_000);
        let stale = Some(now.millis() - UPGRADE_BACKUP_WINDOW_MS);
        assert!(
            check_upgrade(&state(5, true, None), now, false).is_ok(),
            "nothing to migrate"
        );
        assert!(
            check_upgrade(&state(0, false, None), now, false).is_ok(),
            "a new database"
        );
        assert!(check_upgrade(&state(4, true, fresh), now, false).is_ok());
        assert!(check_upgrade(&state(4, true, stale), now, false).is_err());
        assert!(check_upgrade(&state(4, true, None), now, false).is_err());
        assert!(
            check_upgrade(&state(4, true, None), now, true).is_ok(),
            "the operator vouches"
        );
        assert!(
            check_upgrade(&state(6, true, fresh), now, true).is_err(),
            "newer release"
        );
    }

    #[test]
    fn backup_file_names_sort_by_time() {
        let a = backup_file_name(Timestamp(1_764_100_000_000));
        let b = backup_file_name(Timestamp(1_764_100_060_000));
        assert_eq!(a, "vellum-20251125T194640Z.backup");
        assert!(a < b);
    }

    #[test]
    fn pruning_keeps_the_newest_and_leaves_other_files() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(
                dir.path().join(backup_file_name(Timestamp(i * 60_000))),
                b"x",
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("vellum-x.backup.partial"), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        assert_eq!(prune_backups(dir.path(), 2).unwrap(), 4);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "notes.txt".to_owned(),
                backup_file_name(Timestamp(3 * 60_000)),
                backup_file_name(Timestamp(4 * 60_000)),
            ]
        );
    }

    #[test]
    fn every_column_type_reads_back_from_a_row_line() {
        let t = store::backup_table("users").unwrap();
        let values = vec![
            Value::Text("u1".into()),
            Value::Text("ann".into()),
            Value::Text("clinician".into()),
            Value::Text("$argon2id$…".into()),
            Value::Bool(true),
            Value::Int(1),
            Value::Int(-2),
            Value::Null,
            Value::Text("vlm1.k1.abc".into()),
            Value::Null,
            Value::Int(i64::MAX),
            Value::Bool(false),
        ];
        let line = json_line(&RowJson(&values)).unwrap();
        assert_eq!(row_values(t, &line, 1).unwrap(), values);
        let wrong = br#"["u1","ann","clinician","h","yes",1,2,null,null,null,null,false]"#;
        assert!(row_values(t, wrong, 1).is_err());
    }
}
