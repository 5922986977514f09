//! Backup export and import: every table, row by row, as typed values, so a
//! backup taken on one backend restores on the other.
//!
//! Export reads all tables inside one read transaction (a consistent
//! snapshot while servers keep writing) and streams the rows through a
//! bounded channel. Import writes them into an empty database inside one
//! write transaction that commits only when told to — after the caller has
//! checked the whole backup — so a failure at any point leaves the target
//! as empty as it was.

use async_trait::async_trait;
use domain::{NewSecurityEvent, Timestamp};
use tokio::sync::mpsc;

use crate::Result;

/// How a column's values travel in a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Int,
    Bool,
}

/// One table as a backup sees it.
#[derive(Debug)]
pub struct TableSpec {
    pub name: &'static str,
    pub columns: &'static [(&'static str, ColumnType)],
    /// The primary key: rows are dumped in this order (bytewise for text on
    /// both backends), so equal data gives an equal dump.
    pub order_by: &'static [&'static str],
    /// A generated id column whose sequence must move past restored ids.
    pub identity: Option<&'static str>,
    /// Columns referring to rows of the same table: restored once every row
    /// exists, so the order of rows never breaks a foreign key.
    pub self_refs: &'static [&'static str],
}

impl TableSpec {
    pub fn column_names(&self) -> Vec<&'static str> {
        self.columns.iter().map(|(n, _)| *n).collect()
    }
}

use ColumnType::{Bool, Int, Text};

/// Every table, in an order where each row's references already exist.
/// A test compares this list with the live schema of both backends, so a
/// migration that adds a table or a column must add it here too.
pub const BACKUP_TABLES: &[TableSpec] = &[
    TableSpec {
        name: "patients",
        columns: &[
            ("id", Text),
            ("version", Int),
            ("nhs_number", Text),
            ("family_folded", Text),
            ("given_folded", Text),
            ("display_name", Text),
            ("birth_date", Text),
            ("gender", Text),
            ("active", Bool),
            ("resource", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
        order_by: &["id"],
        identity: None,
        self_refs: &[],
    },
    TableSpec {
        name: "patient_name_prefixes",
        columns: &[
            ("prefix", Text),
            ("family_folded", Text),
            ("given_folded", Text),
            ("patient_id", Text),
        ],
        order_by: &["prefix", "family_folded", "given_folded", "patient_id"],
        identity: None,
        self_refs: &[],
    },
    TableSpec {
        name: "patient_versions",
        columns: &[
            ("patient_id", Text),
            ("version", Int),
            ("resource", Text),
            ("recorded_at", Int),
            ("recorded_by", Text),
        ],
        order_by: &["patient_id", "version"],
        identity: None,
        self_refs: &[],
    },
    TableSpec {
        name: "users",
        columns: &[
            ("id", Text),
            ("username", Text),
            ("role", Text),
            ("password_hash", Text),
            ("active", Bool),
            ("created_at", Int),
            ("updated_at", Int),
            ("patient_id", Text),
            ("totp_secret", Text),
            ("totp_pending", Text),
            ("totp_last_step", Int),
            ("must_change_password", Bool),
        ],
        order_by: &["id"],
        identity: None,
        self_refs: &[],
    },
    TableSpec {
        name: "sessions",
        columns: &[
            ("token_hash", Text),
            ("user_id", Text),
            ("csrf_tag", Text),
            ("created_at", Int),
            ("last_seen_at", Int),
            ("stage", Text),
            ("issued_role", Text),
        ],
        order_by: &["token_hash"],
        identity: None,
        self_refs: &[],
    },
    TableSpec {
        name: "login_failures",
        columns: &[("id", Int), ("username", Text), ("ip", Text), ("at", Int)],
        order_by: &["id"],
        identity: Some("id"),
        self_refs: &[],
    },
    TableSpec {
        name: "setup_tokens",
        columns: &[
            ("token_hash", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("used_at", Int),
        ],
        order_by: &["token_hash"],
        identity: None,
        self_refs: &[],
    },
    TableSpec {
        name: "security_events",
        columns: &[
            ("seq", Int),
            ("at", Int),
            ("kind", Text),
            ("user_id", Text),
            ("username", Text),
            ("ip", Text),
            ("user_agent", Text),
            ("referer", Text),
            ("method", Text),
            ("path", Text),
            ("detail", Text),
            ("prev_hash", Text),
            ("hash", Text),
        ],
        order_by: &["seq"],
        identity: None,
        self_refs: &[],
    },
    TableSpec {
        name: "alerts",
        columns: &[
            ("id", Int),
            ("rule", Text),
            ("subject", Text),
            ("created_at", Int),
            ("detail", Text),
        ],
        order_by: &["id"],
        identity: Some("id"),
        self_refs: &[],
    },
    TableSpec {
        name: "alert_state",
        columns: &[("rule", Text), ("subject", Text), ("raised_at", Int)],
        order_by: &["rule", "subject"],
        identity: None,
        self_refs: &[],
    },
    TableSpec {
        name: "job_claims",
        columns: &[("job", Text), ("claimed_at", Int)],
        order_by: &["job"],
        identity: None,
        self_refs: &[],
    },
    TableSpec {
        name: "letters",
        columns: &[
            ("id", Text),
            ("patient_id", Text),
            ("version", Int),
            ("status", Text),
            ("title", Text),
            ("body", Text),
            ("author_id", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("finalised_at", Int),
            ("amends", Text),
            ("superseded_by", Text),
            ("error_reason", Text),
        ],
        order_by: &["id"],
        identity: None,
        self_refs: &["amends", "superseded_by"],
    },
    TableSpec {
        name: "access_log",
        columns: &[
            ("id", Int),
            ("at", Int),
            ("user_id", Text),
            ("username", Text),
            ("role", Text),
            ("action", Text),
            ("resource_type", Text),
            ("resource_id", Text),
            ("patient_id", Text),
            ("outcome", Text),
        ],
        order_by: &["id"],
        identity: Some("id"),
        self_refs: &[],
    },
    TableSpec {
        name: "api_tokens",
        columns: &[
            ("id", Text),
            ("user_id", Text),
            ("name", Text),
            ("token_hash", Text),
            ("scope", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("last_used_at", Int),
            ("revoked_at", Int),
            ("issued_role", Text),
        ],
        order_by: &["id"],
        identity: None,
        self_refs: &[],
    },
    TableSpec {
        name: "recovery_codes",
        columns: &[("user_id", Text), ("code_hash", Text), ("used_at", Int)],
        order_by: &["user_id", "code_hash"],
        identity: None,
        self_refs: &[],
    },
];

/// Looks a table up by name.
pub fn backup_table(name: &str) -> Option<&'static TableSpec> {
    BACKUP_TABLES.iter().find(|t| t.name == name)
}

/// One value of one column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
}

/// What an export streams, in this order: the row count of every table,
/// then each table followed by its rows.
#[derive(Debug)]
pub enum ExportItem {
    Counts(Vec<(&'static str, i64)>),
    Table(&'static TableSpec),
    Row(Vec<Value>),
}

/// What an import takes: a table, its rows, the next table …; then
/// `Commit`. If the channel closes before `Commit`, nothing is kept.
#[derive(Debug)]
pub enum ImportItem {
    Table(&'static TableSpec),
    Row(Vec<Value>),
    Commit,
}

/// The newest schema version this build knows (the last migration's
/// number; both backends number their migrations alike).
pub fn latest_schema_version() -> i64 {
    crate::sqlite::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

#[async_trait]
pub trait BackupStore {
    /// The newest migration applied to this database.
    async fn schema_version(&self) -> Result<i64>;

    /// Streams every table from one consistent snapshot. Stops with an
    /// error when the receiver goes away.
    async fn export(&self, out: mpsc::Sender<ExportItem>) -> Result<()>;

    /// The first table that holds rows, and how many; `None` when the
    /// database is empty (a restore target).
    async fn first_nonempty_table(&self) -> Result<Option<(&'static str, i64)>>;

    /// Writes the rows it receives into this (empty) database in one
    /// transaction, appends `events` to the restored security log and
    /// commits — only on `Commit`. Returns how many rows it wrote.
    /// `Refused` when the database is not empty.
    async fn import(
        &self,
        input: mpsc::Receiver<ImportItem>,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<u64>;
}

/// The `SELECT` that dumps a table in its canonical order.
pub(crate) fn select_sql(t: &TableSpec, postgres: bool) -> String {
    let order: Vec<String> = t
        .order_by
        .iter()
        .map(|c| {
            let text = t
                .columns
                .iter()
                .any(|(n, ty)| n == c && *ty == ColumnType::Text);
            if postgres && text {
                format!("{c} COLLATE \"C\"")
            } else {
                (*c).to_owned()
            }
        })
        .collect();
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        t.column_names().join(", "),
        t.name,
        order.join(", ")
    )
}

/// A multi-row `INSERT` for `rows` rows of `t` (self-references left NULL
/// for later).
pub(crate) fn insert_sql(t: &TableSpec, rows: usize, postgres: bool) -> String {
    let n = t.columns.len();
    let mut sql = format!(
        "INSERT INTO {} ({}){} VALUES ",
        t.name,
        t.column_names().join(", "),
        if postgres && t.identity.is_some() {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        }
    );
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..n {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * n + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// Rows per `INSERT`, within both backends' limits on bound parameters.
pub(crate) fn batch_rows(t: &TableSpec) -> usize {
    (20_000 / t.columns.len().max(1)).clamp(1, 500)
}

/// The value to insert now (a self-reference waits) and, for a
/// self-reference, the update to run once every row exists.
pub(crate) fn split_self_refs(t: &TableSpec, row: &mut [Value]) -> Vec<(&'static str, String)> {
    let mut later = Vec::new();
    if t.self_refs.is_empty() {
        return later;
    }
    for (i, (name, _)) in t.columns.iter().enumerate() {
        if t.self_refs.contains(name)
            && let Value::Text(target) = std::mem::replace(&mut row[i], Value::Null)
        {
            later.push((*name, target));
        }
    }
    later
}

/// Implements [`BackupStore`] for a backend struct (see `sql.rs`).
macro_rules! impl_backup_store {
    ($store:ty, $backend:expr) => {
        impl $store {
            fn is_postgres() -> bool {
                $backend == crate::Backend::Postgres
            }

            fn decode_row(
                row: &<<$store as crate::sql::HasDb>::Db as sqlx::Database>::Row,
                t: &crate::backup::TableSpec,
            ) -> crate::Result<Vec<crate::backup::Value>> {
                use crate::backup::{ColumnType, Value};
                use sqlx::Row as _;
                let mut out = Vec::with_capacity(t.columns.len());
                for (i, (_, ty)) in t.columns.iter().enumerate() {
                    let v = match ty {
                        ColumnType::Text => row
                            .try_get::<Option<String>, _>(i)?
                            .map_or(Value::Null, Value::Text),
                        ColumnType::Int => row
                            .try_get::<Option<i64>, _>(i)?
                            .map_or(Value::Null, Value::Int),
                        ColumnType::Bool => row
                            .try_get::<Option<bool>, _>(i)?
                            .map_or(Value::Null, Value::Bool),
                    };
                    out.push(v);
                }
                Ok(out)
            }

            /// The first table holding rows, with its count.
            async fn first_nonempty_in(
                conn: &mut <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Connection,
            ) -> crate::Result<Option<(&'static str, i64)>> {
                for t in crate::backup::BACKUP_TABLES {
                    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT COUNT(*) FROM {}",
                        t.name
                    )))
                    .fetch_one(&mut *conn)
                    .await?;
                    if n > 0 {
                        return Ok(Some((t.name, n)));
                    }
                }
                Ok(None)
            }

            async fn insert_batch(
                tx: &mut sqlx::Transaction<'static, <$store as crate::sql::HasDb>::Db>,
                t: &crate::backup::TableSpec,
                rows: &mut Vec<Vec<crate::backup::Value>>,
            ) -> crate::Result<()> {
                use crate::backup::{ColumnType, Value};
                if rows.is_empty() {
                    return Ok(());
                }
                let sql = crate::backup::insert_sql(t, rows.len(), Self::is_postgres());
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for row in rows.drain(..) {
                    for ((name, ty), v) in t.columns.iter().zip(row) {
                        q = match (ty, v) {
                            (ColumnType::Text, Value::Text(s)) => q.bind(s),
                            (ColumnType::Text, Value::Null) => q.bind(None::<String>),
                            (ColumnType::Int, Value::Int(i)) => q.bind(i),
                            (ColumnType::Int, Value::Null) => q.bind(None::<i64>),
                            (ColumnType::Bool, Value::Bool(b)) => q.bind(b),
                            (ColumnType::Bool, Value::Null) => q.bind(None::<bool>),
                            (_, other) => {
                                return Err(crate::StoreError::Corrupt(format!(
                                    "{}.{name}: a {other:?} where a {ty:?} belongs",
                                    t.name
                                )));
                            }
                        };
                    }
                }
                q.execute(&mut **tx).await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl crate::backup::BackupStore for $store {
            async fn schema_version(&self) -> crate::Result<i64> {
                let (v,): (Option<i64>,) =
                    sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(v.unwrap_or(0))
            }

            async fn export(
                &self,
                out: tokio::sync::mpsc::Sender<crate::backup::ExportItem>,
            ) -> crate::Result<()> {
                use crate::backup::{BACKUP_TABLES, ExportItem};
                use futures_util::TryStreamExt as _;
                let gone = || crate::StoreError::Refused("the backup writer stopped".to_owned());
                let begin = if Self::is_postgres() {
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                } else {
                    "BEGIN"
                };
                let mut tx = self.pool.begin_with(begin).await?;
                let mut counts = Vec::with_capacity(BACKUP_TABLES.len());
                for t in BACKUP_TABLES {
                    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT COUNT(*) FROM {}",
                        t.name
                    )))
                    .fetch_one(&mut *tx)
                    .await?;
                    counts.push((t.name, n));
                }
                out.send(ExportItem::Counts(counts))
                    .await
                    .map_err(|_| gone())?;
                for t in BACKUP_TABLES {
                    out.send(ExportItem::Table(t)).await.map_err(|_| gone())?;
                    let sql = crate::backup::select_sql(t, Self::is_postgres());
                    let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *tx);
                    while let Some(row) = rows.try_next().await? {
                        let values = Self::decode_row(&row, t)?;
                        out.send(ExportItem::Row(values))
                            .await
                            .map_err(|_| gone())?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn first_nonempty_table(&self) -> crate::Result<Option<(&'static str, i64)>> {
                let mut conn = self.pool.acquire().await?;
                Self::first_nonempty_in(&mut conn).await
            }

            async fn import(
                &self,
                mut input: tokio::sync::mpsc::Receiver<crate::backup::ImportItem>,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<u64> {
                use crate::backup::ImportItem;
                let mut tx = self.begin_write().await?;
                // Checked inside the restore's own write transaction, so
                // nothing can slip in between the check and the rows.
                if let Some((table, rows)) = Self::first_nonempty_in(&mut tx).await? {
                    return Err(crate::StoreError::Refused(format!(
                        "the target database is not empty (table {table} has {rows} rows); \
                         restore only into a new, empty database. Nothing was changed"
                    )));
                }
                let mut table: Option<&'static crate::backup::TableSpec> = None;
                let mut batch = Vec::new();
                let mut later: Vec<(
                    &'static crate::backup::TableSpec,
                    String,
                    &'static str,
                    String,
                )> = Vec::new();
                let mut written = 0u64;
                loop {
                    let Some(item) = input.recv().await else {
                        return Err(crate::StoreError::Refused(
                            "the restore stopped before the end of the backup; nothing was kept"
                                .to_owned(),
                        ));
                    };
                    match item {
                        ImportItem::Table(t) => {
                            if let Some(prev) = table {
                                Self::insert_batch(&mut tx, prev, &mut batch).await?;
                            }
                            table = Some(t);
                        }
                        ImportItem::Row(mut row) => {
                            let Some(t) = table else {
                                return Err(crate::StoreError::Corrupt(
                                    "a row before any table".to_owned(),
                                ));
                            };
                            if row.len() != t.columns.len() {
                                return Err(crate::StoreError::Corrupt(format!(
                                    "a row of {} with {} values, not {}",
                                    t.name,
                                    row.len(),
                                    t.columns.len()
                                )));
                            }
                            let refs = crate::backup::split_self_refs(t, &mut row);
                            if !refs.is_empty() {
                                let key = match &row[0] {
                                    crate::backup::Value::Text(s) => s.clone(),
                                    other => {
                                        return Err(crate::StoreError::Corrupt(format!(
                                            "{} key {other:?}",
                                            t.name
                                        )));
                                    }
                                };
                                for (col, target) in refs {
                                    later.push((t, key.clone(), col, target));
                                }
                            }
                            batch.push(row);
                            written += 1;
                            if batch.len() >= crate::backup::batch_rows(t) {
                                Self::insert_batch(&mut tx, t, &mut batch).await?;
                            }
                        }
                        ImportItem::Commit => break,
                    }
                }
                if let Some(t) = table {
                    Self::insert_batch(&mut tx, t, &mut batch).await?;
                }
                for (t, key, col, target) in later {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE {} SET {col} = $1 WHERE {} = $2",
                        t.name, t.columns[0].0
                    )))
                    .bind(target)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
                }
                if Self::is_postgres() {
                    for t in crate::backup::BACKUP_TABLES {
                        if let Some(id) = t.identity {
                            sqlx::query(sqlx::AssertSqlSafe(format!(
                                "SELECT setval(pg_get_serial_sequence('{0}', '{id}'), \
                                 COALESCE((SELECT MAX({id}) FROM {0}), 0) + 1, false)",
                                t.name
                            )))
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                }
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(written)
            }
        }
    };
}

pub(crate) use impl_backup_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_number_their_migrations_alike() {
        let s: Vec<i64> = crate::sqlite::MIGRATOR.iter().map(|m| m.version).collect();
        let p: Vec<i64> = crate::postgres::MIGRATOR
            .iter()
            .map(|m| m.version)
            .collect();
        assert_eq!(s, p);
        assert_eq!(latest_schema_version(), *s.last().unwrap_or(&0));
    }

    #[test]
    fn inserts_stay_within_the_bound_parameter_limits() {
        for t in BACKUP_TABLES {
            let n = batch_rows(t) * t.columns.len();
            assert!(n <= 32_766, "{} binds {n}", t.name);
            assert_eq!(
                t.order_by
                    .iter()
                    .filter(|c| t.column_names().contains(c))
                    .count(),
                t.order_by.len()
            );
        }
    }

    #[test]
    fn postgres_dumps_text_keys_in_byte_order_like_sqlite() {
        let t = backup_table("recovery_codes").map(|t| select_sql(t, true));
        assert_eq!(
            t.as_deref(),
            Some(
                "SELECT user_id, code_hash, used_at FROM recovery_codes ORDER BY user_id COLLATE \"C\", code_hash COLLATE \"C\""
            )
        );
    }
}
