//! The clinical SQL both backends share (see `sql.rs` for why one body).

macro_rules! impl_clinical_store {
    ($store:ty) => {
        impl $store {
            /// Access-log rows at `now`, on `conn` (a transaction's).
            async fn access_in(
                conn: &mut <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Connection,
                now: domain::Timestamp,
                entries: &[crate::AccessEntry],
            ) -> crate::Result<()> {
                let rows: Vec<(domain::Timestamp, &crate::AccessEntry)> =
                    entries.iter().map(|e| (now, e)).collect();
                Self::access_rows_in(conn, &rows).await
            }

            /// Access-log rows, many per INSERT statement, on `conn` (a
            /// transaction's, or on its own when they fit in one statement).
            async fn access_rows_in(
                conn: &mut <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Connection,
                rows: &[(domain::Timestamp, &crate::AccessEntry)],
            ) -> crate::Result<()> {
                for chunk in rows.chunks(crate::sql_clinical::ROWS_PER_INSERT) {
                    let mut args = Default::default();
                    Self::access_args(&mut args, chunk)?;
                    let sql = crate::sql_clinical::insert_sql(
                        crate::sql_clinical::ACCESS_COLUMNS,
                        9,
                        chunk.len(),
                    );
                    sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            }

            /// For the group commit: one batch's access-log rows.
            fn access_batch_in<'t>(
                conn: &'t mut <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Connection,
                rows: &'t [(domain::Timestamp, &'t crate::AccessEntry)],
            ) -> futures_util::future::BoxFuture<'t, crate::Result<()>> {
                Box::pin(Self::access_rows_in(conn, rows))
            }

            /// Refuses a write of demographics, inside its transaction,
            /// when `check` finds possible duplicates of patient `id`.
            async fn refuse_duplicates_in(
                conn: &mut <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Connection,
                check: &crate::DuplicateCheck,
                id: &str,
            ) -> crate::Result<()> {
                if check.checked.is_none() {
                    return Ok(());
                }
                let q = &check.search;
                let (sql, binds) = crate::sql_clinical::search_sql(q);
                let mut query = sqlx::query_as::<_, crate::PatientRow>(sqlx::AssertSqlSafe(sql));
                for b in binds {
                    query = query.bind(b);
                }
                let rows = query.bind(q.offset).fetch_all(&mut *conn).await?;
                let found: Vec<crate::PatientRow> =
                    rows.into_iter().filter(|r| r.id != id).collect();
                if check.refuses(&found) {
                    Err(crate::StoreError::PossibleDuplicates(found))
                } else {
                    Ok(())
                }
            }

            /// A new patient row with its first version.
            async fn insert_patient_in(
                tx: &mut sqlx::Transaction<'static, <$store as crate::sql::HasDb>::Db>,
                p: &crate::PatientWrite,
                recorded_by: &str,
                now: domain::Timestamp,
            ) -> crate::Result<()> {
                sqlx::query(
                    "INSERT INTO patients (id, version, nhs_number, family_folded, given_folded, \
                     display_name, birth_date, gender, active, resource, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
                )
                .bind(&p.id)
                .bind(p.version)
                .bind(&p.nhs_number)
                .bind(&p.family_folded)
                .bind(&p.given_folded)
                .bind(&p.display_name)
                .bind(&p.birth_date)
                .bind(&p.gender)
                .bind(p.active)
                .bind(&p.resource)
                .bind(now.millis())
                .execute(&mut **tx)
                .await
                .map_err(|e| crate::StoreError::on_unique(e, "nhs_number"))?;
                Self::patient_version_in(tx, p, recorded_by, now).await
            }

            async fn patient_version_in(
                tx: &mut sqlx::Transaction<'static, <$store as crate::sql::HasDb>::Db>,
                p: &crate::PatientWrite,
                recorded_by: &str,
                now: domain::Timestamp,
            ) -> crate::Result<()> {
                sqlx::query(
                    "INSERT INTO patient_versions (patient_id, version, resource, recorded_at, \
                     recorded_by) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&p.id)
                .bind(p.version)
                .bind(&p.resource)
                .bind(now.millis())
                .bind(recorded_by)
                .execute(&mut **tx)
                .await?;
                sqlx::query("DELETE FROM patient_name_prefixes WHERE patient_id = $1")
                    .bind(&p.id)
                    .execute(&mut **tx)
                    .await?;
                let prefixes = crate::sql_clinical::name_prefixes(&p.name_tokens);
                for chunk in prefixes.chunks(crate::sql_clinical::ROWS_PER_INSERT) {
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(
                        crate::sql_clinical::insert_sql(
                            "patient_name_prefixes (prefix, family_folded, given_folded, \
                             patient_id)",
                            4,
                            chunk.len(),
                        ),
                    ));
                    for prefix in chunk {
                        query = query
                            .bind(prefix)
                            .bind(&p.family_folded)
                            .bind(&p.given_folded)
                            .bind(&p.id);
                    }
                    query.execute(&mut **tx).await?;
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl crate::ClinicalStore for $store {
            async fn create_patient(
                &self,
                p: &crate::PatientWrite,
                recorded_by: &str,
                now: domain::Timestamp,
                access: &[crate::AccessEntry],
                refuse_duplicates: Option<&crate::DuplicateCheck>,
            ) -> crate::Result<()> {
                let mut tx = self.begin_registration().await?;
                if let Some(check) = refuse_duplicates {
                    Self::refuse_duplicates_in(&mut tx, check, &p.id).await?;
                }
                Self::insert_patient_in(&mut tx, p, recorded_by, now).await?;
                Self::access_in(&mut tx, now, access).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn update_patient(
                &self,
                p: &crate::PatientWrite,
                expected_version: i64,
                recorded_by: &str,
                now: domain::Timestamp,
                access: &[crate::AccessEntry],
                refuse_duplicates: Option<&crate::DuplicateCheck>,
            ) -> crate::Result<()> {
                let mut tx = self.begin_registration().await?;
                if let Some(check) = refuse_duplicates {
                    Self::refuse_duplicates_in(&mut tx, check, &p.id).await?;
                }
                let done = sqlx::query(
                    "UPDATE patients SET version = $1, nhs_number = $2, family_folded = $3, \
                     given_folded = $4, display_name = $5, birth_date = $6, gender = $7, \
                     active = $8, resource = $9, updated_at = $10 \
                     WHERE id = $11 AND version = $12",
                )
                .bind(p.version)
                .bind(&p.nhs_number)
                .bind(&p.family_folded)
                .bind(&p.given_folded)
                .bind(&p.display_name)
                .bind(&p.birth_date)
                .bind(&p.gender)
                .bind(p.active)
                .bind(&p.resource)
                .bind(now.millis())
                .bind(&p.id)
                .bind(expected_version)
                .execute(&mut *tx)
                .await
                .map_err(|e| crate::StoreError::on_unique(e, "nhs_number"))?;
                if done.rows_affected() != 1 {
                    let current: Option<(i64,)> =
                        sqlx::query_as("SELECT version FROM patients WHERE id = $1")
                            .bind(&p.id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    return Err(match current {
                        Some((current,)) => crate::StoreError::VersionConflict { current },
                        None => crate::StoreError::NotFound,
                    });
                }
                Self::patient_version_in(&mut tx, p, recorded_by, now).await?;
                Self::access_in(&mut tx, now, access).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn patient(&self, id: &str) -> crate::Result<Option<crate::PatientRow>> {
                self.by_key(crate::clinical::PATIENT_SQL, id).await
            }

            async fn patient_versions(
                &self,
                id: &str,
            ) -> crate::Result<Vec<crate::PatientVersionRow>> {
                Ok(sqlx::query_as(
                    "SELECT version, resource, recorded_at, recorded_by FROM patient_versions \
                     WHERE patient_id = $1 ORDER BY version ASC",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn search_patients(
                &self,
                q: &crate::PatientSearch,
            ) -> crate::Result<Vec<crate::PatientRow>> {
                let (sql, binds) = crate::sql_clinical::search_sql(q);
                let mut query = sqlx::query_as::<_, crate::PatientRow>(sqlx::AssertSqlSafe(sql));
                for b in binds {
                    query = query.bind(b);
                }
                Ok(query.bind(q.offset).fetch_all(&self.pool).await?)
            }

            async fn create_letter(
                &self,
                l: &crate::LetterWrite,
                now: domain::Timestamp,
                access: &[crate::AccessEntry],
            ) -> crate::Result<crate::LetterRow> {
                let new = crate::group::NewLetter {
                    letter: l.clone(),
                    at: now,
                    access: access.to_vec(),
                };
                match self.writes.letter(new).await {
                    Ok(row) => Ok(row),
                    // The letter's id is new to this request, so a letter
                    // already under it is this one, written by a try whose
                    // outcome was lost (see `GroupCommit::letter`): given
                    // back, not written twice — with its access-log rows,
                    // written in the same statement or transaction.
                    Err(e) if e.is_unique_violation_of("letters_pkey") => {
                        match Self::letter_on(&self.pool, &l.patient_id, &l.id).await? {
                            Some(row) if row.is_written_from(l) => Ok(row),
                            _ => Err(e),
                        }
                    }
                    Err(e) => Err(e.on_missing_parent("letters_patient_id_fkey")),
                }
            }

            async fn update_letter(
                &self,
                l: &crate::LetterWrite,
                expected_version: i64,
                now: domain::Timestamp,
                access: &[crate::AccessEntry],
            ) -> crate::Result<()> {
                let mut tx = self.begin_data().await?;
                let done = sqlx::query(
                    "UPDATE letters SET version = $1, status = $2, title = $3, body = $4, \
                     updated_at = $5, finalised_at = $6, error_reason = $7 \
                     WHERE id = $8 AND patient_id = $9 AND version = $10",
                )
                .bind(l.version)
                .bind(&l.status)
                .bind(&l.title)
                .bind(&l.body)
                .bind(now.millis())
                .bind(l.finalised_at)
                .bind(&l.error_reason)
                .bind(&l.id)
                .bind(&l.patient_id)
                .bind(expected_version)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    let current: Option<(i64,)> = sqlx::query_as(
                        "SELECT version FROM letters WHERE id = $1 AND patient_id = $2",
                    )
                    .bind(&l.id)
                    .bind(&l.patient_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    return Err(match current {
                        Some((current,)) => crate::StoreError::VersionConflict { current },
                        None => crate::StoreError::NotFound,
                    });
                }
                Self::access_in(&mut tx, now, access).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn amend_letter(
                &self,
                amendment: &crate::LetterWrite,
                old_id: &str,
                now: domain::Timestamp,
                access: &[crate::AccessEntry],
            ) -> crate::Result<()> {
                let mut tx = self.begin_data().await?;
                Self::insert_letter_in(&mut tx, amendment, now).await?;
                let done = sqlx::query(
                    "UPDATE letters SET superseded_by = $1, updated_at = $2 \
                     WHERE id = $3 AND patient_id = $4 AND status = 'final' \
                     AND superseded_by IS NULL",
                )
                .bind(&amendment.id)
                .bind(now.millis())
                .bind(old_id)
                .bind(&amendment.patient_id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(crate::StoreError::VersionConflict { current: -1 });
                }
                Self::access_in(&mut tx, now, access).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn letter(
                &self,
                patient_id: &str,
                letter_id: &str,
            ) -> crate::Result<Option<crate::LetterRow>> {
                Self::letter_on(&self.pool, patient_id, letter_id).await
            }

            async fn letter_by_id(
                &self,
                letter_id: &str,
            ) -> crate::Result<Option<crate::LetterRow>> {
                Ok(sqlx::query_as(concat!(
                    crate::sql_clinical::LETTER_SELECT!(),
                    " WHERE l.id = $1"
                ))
                .bind(letter_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_letters(
                &self,
                patient_id: &str,
                statuses: &[&str],
                limit: i64,
                offset: i64,
            ) -> crate::Result<Vec<crate::LetterRow>> {
                let all = statuses.is_empty();
                let s = |i: usize| statuses.get(i).copied().unwrap_or("");
                Ok(sqlx::query_as(concat!(
                    crate::sql_clinical::LETTER_SELECT!(),
                    " WHERE l.patient_id = $1 AND ($2 OR l.status IN ($3, $4, $5)) \
                     ORDER BY l.created_at DESC, l.id DESC LIMIT $6 OFFSET $7"
                ))
                .bind(patient_id)
                .bind(all)
                .bind(s(0))
                .bind(s(1))
                .bind(s(2))
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn count_letters(&self, patient_id: &str) -> crate::Result<i64> {
                let (n,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM letters WHERE patient_id = $1")
                        .bind(patient_id)
                        .fetch_one(&self.pool)
                        .await?;
                Ok(n)
            }

            async fn record_access(
                &self,
                now: domain::Timestamp,
                access: &[crate::AccessEntry],
            ) -> crate::Result<()> {
                self.writes.access(now, access).await
            }

            async fn access_log_settled_up_to(&self) -> crate::Result<i64> {
                const MAX_ID: &str = "SELECT MAX(id) FROM access_log";
                let (max,): (Option<i64>,) =
                    if crate::Store::backend(self) == crate::Backend::Postgres {
                        let mut tx = self.pool.begin().await?;
                        sqlx::query("LOCK TABLE access_log IN SHARE MODE")
                            .execute(&mut *tx)
                            .await?;
                        let max = sqlx::query_as(MAX_ID).fetch_one(&mut *tx).await?;
                        tx.commit().await?;
                        max
                    } else {
                        sqlx::query_as(MAX_ID).fetch_one(&self.pool).await?
                    };
                Ok(max.unwrap_or(0))
            }

            async fn access_rows_after(
                &self,
                after_id: i64,
                limit: i64,
            ) -> crate::Result<Vec<crate::AccessRow>> {
                Ok(sqlx::query_as(
                    "SELECT id, at, user_id, username, role, action, resource_type, \
                     resource_id, patient_id, outcome FROM access_log \
                     WHERE id > $1 ORDER BY id ASC LIMIT $2",
                )
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn access_log(
                &self,
                patient_id: &str,
                limit: i64,
                before_id: Option<i64>,
            ) -> crate::Result<Vec<crate::AccessRow>> {
                Ok(sqlx::query_as(
                    "SELECT id, at, user_id, username, role, action, resource_type, \
                     resource_id, patient_id, outcome FROM access_log \
                     WHERE patient_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                )
                .bind(patient_id)
                .bind(before_id.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn link_patient_user(
                &self,
                user_id: &str,
                patient_id: Option<&str>,
                by: crate::ChangedBy,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<()> {
                let mut tx = self.begin_write_by(by).await?;
                let done = sqlx::query("UPDATE users SET patient_id = $1 WHERE id = $2")
                    .bind(patient_id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Err(crate::StoreError::NotFound);
                }
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn bulk_load(
                &self,
                patients: &[crate::PatientWrite],
                letters: &[crate::LetterWrite],
                recorded_by: &str,
                now: domain::Timestamp,
            ) -> crate::Result<()> {
                let mut tx = self.begin_data().await?;
                for p in patients {
                    Self::insert_patient_in(&mut tx, p, recorded_by, now).await?;
                }
                for l in letters {
                    Self::insert_letter_in(&mut tx, l, now).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn max_test_nhs_number(&self) -> crate::Result<Option<String>> {
                let (max,): (Option<String>,) = sqlx::query_as(
                    "SELECT MAX(nhs_number) FROM patients \
                     WHERE nhs_number >= '9990000000' AND nhs_number <= '9999999999'",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(max)
            }

            async fn create_api_token(
                &self,
                t: &crate::ApiTokenRow,
                now: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO api_tokens (id, user_id, name, token_hash, scope, created_at, \
                     expires_at, issued_role) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&t.id)
                .bind(&t.user_id)
                .bind(&t.name)
                .bind(&t.token_hash)
                .bind(&t.scope)
                .bind(t.created_at)
                .bind(t.expires_at)
                .bind(&t.issued_role)
                .execute(&mut *tx)
                .await?;
                self.append_in(&mut tx, now, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn api_token_by_hash(
                &self,
                token_hash: &str,
            ) -> crate::Result<Option<crate::ApiTokenRow>> {
                self.by_key(crate::clinical::API_TOKEN_SQL, token_hash)
                    .await
            }

            async fn touch_api_token(&self, id: &str, at: domain::Timestamp) -> crate::Result<()> {
                sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                    .bind(at.millis())
                    .bind(id)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn list_api_tokens(&self, user_id: &str) -> crate::Result<Vec<crate::ApiTokenRow>> {
                Ok(sqlx::query_as(
                    "SELECT id, user_id, name, token_hash, scope, created_at, expires_at, \
                     last_used_at, revoked_at, issued_role FROM api_tokens WHERE user_id = $1 \
                     ORDER BY created_at DESC",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn revoke_api_token(
                &self,
                user_id: &str,
                id: &str,
                at: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<()> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 \
                     AND revoked_at IS NULL",
                )
                .bind(at.millis())
                .bind(id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(crate::StoreError::NotFound);
                }
                self.append_in(&mut tx, at, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn revoke_all_api_tokens(
                &self,
                user_id: &str,
                by: crate::ChangedBy,
                at: domain::Timestamp,
                events: &[domain::NewSecurityEvent],
            ) -> crate::Result<u64> {
                let mut tx = self.begin_write_by(by).await?;
                let known: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE id = $1")
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await?;
                if known == 0 {
                    return Err(crate::StoreError::NotFound);
                }
                let revoked = Self::revoke_all_api_tokens_in(&mut tx, user_id, at).await?;
                self.append_in(&mut tx, at, events).await?;
                tx.commit().await?;
                Ok(revoked)
            }

            async fn linked_patient(&self, user_id: &str) -> crate::Result<Option<String>> {
                let row: Option<crate::records::LinkedPatientRow> = self
                    .by_key(crate::records::LINKED_PATIENT_SQL, user_id)
                    .await?;
                Ok(row.and_then(|r| r.patient_id))
            }
        }

        impl $store {
            /// A new letter (no access-log row) on `conn` (a transaction's).
            async fn insert_letter_in(
                conn: &mut <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Connection,
                l: &crate::LetterWrite,
                now: domain::Timestamp,
            ) -> crate::Result<()> {
                let args = Self::letter_args(l, now)?;
                sqlx::query_with(crate::sql_clinical::LETTER_INSERT!(), args)
                    .execute(conn)
                    .await?;
                Ok(())
            }

            /// One letter of one patient, read through `on` (the pool, or a
            /// transaction that just wrote it).
            async fn letter_on<'e, E>(
                on: E,
                patient_id: &str,
                letter_id: &str,
            ) -> crate::Result<Option<crate::LetterRow>>
            where
                E: sqlx::Executor<'e, Database = <$store as crate::sql::HasDb>::Db>,
            {
                Ok(sqlx::query_as(concat!(
                    crate::sql_clinical::LETTER_SELECT!(),
                    " WHERE l.patient_id = $1 AND l.id = $2"
                ))
                .bind(patient_id)
                .bind(letter_id)
                .fetch_optional(on)
                .await?)
            }

            /// The values of `LETTER_INSERT`'s placeholders `$1`…`$11`.
            fn letter_args(
                l: &crate::LetterWrite,
                now: domain::Timestamp,
            ) -> crate::Result<
                <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Arguments,
            > {
                use sqlx::Arguments as _;
                let mut a = <<<$store as crate::sql::HasDb>::Db as sqlx::Database>::Arguments>::default();
                let encode = |e| crate::StoreError::Database(sqlx::Error::Encode(e));
                a.add(&l.id).map_err(encode)?;
                a.add(&l.patient_id).map_err(encode)?;
                a.add(l.version).map_err(encode)?;
                a.add(&l.status).map_err(encode)?;
                a.add(&l.title).map_err(encode)?;
                a.add(&l.body).map_err(encode)?;
                a.add(&l.author_id).map_err(encode)?;
                a.add(now.millis()).map_err(encode)?;
                a.add(l.finalised_at).map_err(encode)?;
                a.add(&l.amends).map_err(encode)?;
                a.add(&l.error_reason).map_err(encode)?;
                Ok(a)
            }

            /// Appends the values of access-log rows (nine each, in
            /// `ACCESS_COLUMNS` order) to `a`.
            fn access_args(
                a: &mut <<$store as crate::sql::HasDb>::Db as sqlx::Database>::Arguments,
                rows: &[(domain::Timestamp, &crate::AccessEntry)],
            ) -> crate::Result<()> {
                use sqlx::Arguments as _;
                let encode = |e| crate::StoreError::Database(sqlx::Error::Encode(e));
                for (at, e) in rows {
                    a.add(at.millis()).map_err(encode)?;
                    a.add(&e.user_id).map_err(encode)?;
                    a.add(&e.username).map_err(encode)?;
                    a.add(&e.role).map_err(encode)?;
                    a.add(&e.action).map_err(encode)?;
                    a.add(&e.resource_type).map_err(encode)?;
                    a.add(&e.resource_id).map_err(encode)?;
                    a.add(&e.patient_id).map_err(encode)?;
                    a.add(&e.outcome).map_err(encode)?;
                }
                Ok(())
            }
        }
    };
}

/// A new letter; its placeholders are bound by `letter_args`. created_at
/// is strictly later than the patient's newest letter, so "newest first" is
/// exact even within one millisecond.
macro_rules! letter_insert {
    () => {
        "INSERT INTO letters (id, patient_id, version, status, title, body, \
         author_id, created_at, updated_at, finalised_at, amends, error_reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, \
         (SELECT CASE WHEN COALESCE(MAX(created_at), 0) >= $8 \
          THEN COALESCE(MAX(created_at), 0) + 1 ELSE $8 END \
          FROM letters WHERE patient_id = $2), \
         $8, $9, $10, $11)"
    };
}

/// The access log's columns, in the order `access_args` binds them.
pub(crate) const ACCESS_COLUMNS: &str = "access_log (at, user_id, username, role, action, \
     resource_type, resource_id, patient_id, outcome)";

/// The columns of a `LetterRow`, from letters `l` joined to users `u`.
macro_rules! letter_columns {
    () => {
        "l.id, l.patient_id, l.version, l.status, l.title, l.body, l.author_id, \
         u.username AS author_username, l.created_at, l.updated_at, l.finalised_at, l.amends, \
         l.superseded_by, l.error_reason"
    };
}

macro_rules! letter_select {
    () => {
        concat!(
            "SELECT ",
            crate::sql_clinical::LETTER_COLUMNS!(),
            " FROM letters l JOIN users u ON u.id = l.author_id"
        )
    };
}

pub(crate) use impl_clinical_store;
pub(crate) use letter_columns as LETTER_COLUMNS;
pub(crate) use letter_insert as LETTER_INSERT;
pub(crate) use letter_select as LETTER_SELECT;

/// The SQL of a patient search and its bound values, in order; the
/// offset is bound after them (its placeholder is the statement's last).
/// Built from fixed fragments only; every value is a bound parameter.
pub(crate) fn search_sql(q: &crate::PatientSearch) -> (String, Vec<String>) {
    const COLUMNS: &str = "p.id, p.version, p.nhs_number, p.display_name, \
         p.birth_date, p.gender, p.active, p.resource, p.created_at, p.updated_at";
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    let mut binds: Vec<String> = Vec::new();
    // With name terms, the longest (likely the rarest) drives an
    // ordered walk of its prefix rows; the others are checked
    // per row. Without, patients are walked in display order.
    // Words never hold whitespace (a space marks a pair key).
    let mut terms: Vec<String> = q
        .name_terms
        .iter()
        .flat_map(|t| t.split_whitespace())
        .take(4)
        .map(str::to_owned)
        .collect();
    terms.sort_unstable();
    terms.dedup();
    terms.sort_by_key(|t| std::cmp::Reverse(t.chars().count()));
    // When every term is one letter ("o s" for Ó Súilleabháin),
    // each letter alone matches a tenth of all patients and
    // their intersection may lie far along the walk: the row
    // kept for each pair of initials drives instead.
    let (driver, others) = match terms.as_slice() {
        [a, b, rest @ ..] if a.chars().count() == 1 => (Some(initials_key(a, b)), rest),
        [first, rest @ ..] => (Some(first.clone()), rest),
        [] => (None, &[][..]),
    };
    let (mut sql, order) = match driver {
        Some(driver) => {
            binds.push(driver);
            (
                format!(
                    "SELECT {COLUMNS} FROM patient_name_prefixes t \
                     JOIN patients p ON p.id = t.patient_id WHERE t.prefix = ${}",
                    next()
                ),
                "t.family_folded, t.given_folded, t.patient_id",
            )
        }
        None => (
            format!("SELECT {COLUMNS} FROM patients p WHERE 1 = 1"),
            "p.family_folded, p.given_folded, p.id",
        ),
    };
    if !q.ids.is_empty() {
        let marks: Vec<String> = q
            .ids
            .iter()
            .take(100)
            .map(|_| format!("${}", next()))
            .collect();
        sql.push_str(&format!(" AND p.id IN ({})", marks.join(", ")));
        binds.extend(q.ids.iter().take(100).cloned());
    }
    // Each other term is checked against the driving row's own
    // columns (its whole key), not the patient's: so the check
    // runs before the patient row is fetched, and a walk past
    // many non-matching rows reads only the prefix index.
    for term in others {
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM patient_name_prefixes x \
             WHERE x.prefix = ${} AND x.patient_id = t.patient_id \
             AND x.family_folded = t.family_folded \
             AND x.given_folded = t.given_folded)",
            next()
        ));
        binds.push(term.clone());
    }
    if let Some(f) = &q.family_prefix {
        let (a, b) = (next(), next());
        sql.push_str(&format!(
            " AND p.family_folded >= ${a} AND p.family_folded < ${b}"
        ));
        binds.push(f.clone());
        binds.push(prefix_end(f));
    }
    if let Some(g) = &q.given_prefix {
        sql.push_str(&format!(
            " AND (' ' || p.given_folded) LIKE ${} ESCAPE '\\'",
            next()
        ));
        binds.push(format!("% {}%", like_escape(g)));
    }
    if let Some((family, first_given)) = &q.same_name {
        let (a, b, c) = (next(), next(), next());
        sql.push_str(&format!(
            " AND p.family_folded = ${a} \
             AND (p.given_folded = ${b} OR p.given_folded LIKE ${c} ESCAPE '\\')"
        ));
        binds.push(family.clone());
        binds.push(first_given.clone());
        binds.push(format!("{} %", like_escape(first_given)));
    }
    if let Some(nhs) = &q.nhs_number {
        sql.push_str(&format!(" AND p.nhs_number = ${}", next()));
        binds.push(nhs.clone());
    }
    if q.without_nhs_number {
        sql.push_str(" AND p.nhs_number IS NULL");
    }
    if let Some(d) = &q.birth_date {
        sql.push_str(&format!(" AND p.birth_date = ${}", next()));
        binds.push(d.clone());
    }
    for (cmp, d) in q.birth_date_bounds.iter().take(4) {
        sql.push_str(&format!(" AND p.birth_date {} ${}", cmp.sql(), next()));
        binds.push(d.clone());
    }
    if let Some(g) = &q.gender {
        sql.push_str(&format!(" AND p.gender = ${}", next()));
        binds.push(g.clone());
    }
    if !q.include_inactive {
        sql.push_str(" AND p.active = TRUE");
    }
    // The page size is written into the statement, not bound:
    // SQLite plans with a bound LIMIT's value and so prepares the
    // statement again each time it is bound (a tenth of a search's
    // work). It is an integer, and there are few distinct sizes.
    sql.push_str(&format!(
        " ORDER BY {order} LIMIT {} OFFSET ${}",
        q.limit.max(0),
        next()
    ));
    (sql, binds)
}

/// Rows per multi-row INSERT (at most 9 values each: well under either
/// database's limit on bound values).
pub(crate) const ROWS_PER_INSERT: usize = 64;

/// `INSERT INTO {table_and_columns} VALUES (…), (…)`: `rows` rows of
/// `width` numbered placeholders each.
pub(crate) fn insert_sql(table_and_columns: &str, width: usize, rows: usize) -> String {
    insert_sql_from(table_and_columns, width, rows, 1)
}

/// [`insert_sql`] whose placeholders start at `$first` (for a statement
/// that binds other values before these).
pub(crate) fn insert_sql_from(
    table_and_columns: &str,
    width: usize,
    rows: usize,
    first: usize,
) -> String {
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let marks: Vec<String> = (0..width)
                .map(|i| format!("${}", first + r * width + i))
                .collect();
            format!("({})", marks.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {table_and_columns} VALUES {}",
        tuples.join(", ")
    )
}

/// The smallest string greater than every string starting with `prefix`
/// (for index-friendly prefix ranges).
pub(crate) fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(u32::from(last) + 1) {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    // Empty prefix: everything matches up to the highest code point.
    char::MAX.to_string()
}

/// `text` with the LIKE wildcards `%` and `_` (and the escape `\`) escaped,
/// so it matches only itself.
pub(crate) fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The keys name search looks up by equality, each once: every prefix (one
/// character and longer) of every non-empty name word, and for every two
/// different initials the pair (see [`initials_key`]). A word never holds a
/// space, so a pair never equals a prefix.
pub(crate) fn name_prefixes(tokens: &[String]) -> Vec<String> {
    let mut out: Vec<String> = tokens
        .iter()
        .flat_map(|t| {
            t.char_indices()
                .map(move |(i, c)| t[..i + c.len_utf8()].to_owned())
        })
        .collect();
    let mut initials: Vec<&str> = tokens
        .iter()
        .filter_map(|t| t.chars().next().map(|c| &t[..c.len_utf8()]))
        .collect();
    initials.sort_unstable();
    initials.dedup();
    for (i, a) in initials.iter().enumerate() {
        for b in &initials[i + 1..] {
            out.push(initials_key(a, b));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The key of a name with words starting `a` and `b` (two different
/// letters): the two in code-point order with a space between, `"o s"`.
/// Migration 0008 builds the same keys for names stored before it.
pub(crate) fn initials_key(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a} {b}")
    } else {
        format!("{b} {a}")
    }
}

#[cfg(test)]
mod tests {
    use super::name_prefixes;

    #[test]
    fn multi_row_inserts_number_every_placeholder_once() {
        assert_eq!(
            super::insert_sql("t (a, b)", 2, 3),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6)"
        );
        assert_eq!(
            super::insert_sql_from("t (a, b)", 2, 2, 12),
            "INSERT INTO t (a, b) VALUES ($12, $13), ($14, $15)"
        );
    }

    #[test]
    fn name_prefixes_are_every_leading_run_of_characters_once() {
        let words = [
            "smith".to_owned(),
            "sm".to_owned(),
            "zoë".to_owned(),
            String::new(),
        ];
        assert_eq!(
            name_prefixes(&words),
            ["s", "s z", "sm", "smi", "smit", "smith", "z", "zo", "zoë"]
        );
    }

    #[test]
    fn every_two_different_initials_make_one_pair_key_in_code_point_order() {
        let words = ["ó".to_owned(), "súil".to_owned(), "ann".to_owned()];
        let keys = name_prefixes(&words);
        let pairs: Vec<&String> = keys.iter().filter(|k| k.contains(' ')).collect();
        assert_eq!(pairs, ["a s", "a ó", "s ó"]);
        assert_eq!(super::initials_key("s", "o"), "o s");
        assert_eq!(super::initials_key("o", "s"), "o s");
    }
}
