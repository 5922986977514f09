//! Backups (seed 003 "backup test"): encrypted to offline keys with no
//! plaintext inside, checked before they touch a database, restored all or
//! nothing into an empty SQLite or PostgreSQL database, and working —
//! two-factor sign-in included — after the restore.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use app::{AppConfig, AppError, BackupManifest, BackupSchedule, RequestMeta, RestoreSummary};
use crypto::{BackupIdentity, BackupRecipients};
use domain::Role;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use store::{ConnectOptions, Store};

use crate::clinical::{create_patient, nhs};
use crate::harness::{Options, TestApp, TestDb};
use crate::totp::{enrol, event_kinds, has_base32_run, login_with_code, step};

const LETTER_TITLE: &str = "Backup-letter-4711";
const LETTER_BODY: &str = "Unmistakable-text-4711 about the patient's knee";
const FAMILY: &str = "Zwicky";

fn backup_keys() -> (Arc<BackupIdentity>, BackupRecipients) {
    let (identity, recipient) = crypto::generate_backup_identity("test");
    (
        Arc::new(BackupIdentity::parse(&identity).unwrap()),
        BackupRecipients::parse(&[recipient]).unwrap(),
    )
}

fn meta() -> RequestMeta {
    RequestMeta {
        ip: "test".to_owned(),
        ..RequestMeta::default()
    }
}

/// What `populate` made.
struct Fixture {
    secret: crypto::totp::TotpSecret,
    patient_id: String,
}

/// A clinician with two-factor sign-in on, a patient, a letter.
async fn populate(t: &TestApp) -> Fixture {
    t.create_user("clin", Role::Clinician).await;
    let c = t.client();
    assert_eq!(
        c.login("clin", crate::harness::PASSWORD).await.status(),
        200
    );
    let (secret, _) = enrol(t, &c).await;
    let p = create_patient(&c, FAMILY, &nhs(4711)).await;
    let patient_id = p["id"].as_str().unwrap().to_owned();
    let res = c
        .post(
            &format!("/api/patients/{patient_id}/letters"),
            json!({"title": LETTER_TITLE, "body": LETTER_BODY, "status": "final"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    Fixture { secret, patient_id }
}

async fn backup(
    store: &Arc<dyn Store>,
    r: &BackupRecipients,
    dir: &Path,
    name: &str,
) -> (PathBuf, BackupManifest) {
    let out = dir.join(name);
    let m = app::create_backup(
        store,
        r,
        &out,
        app::Clock::now(&app::SystemClock),
        &meta(),
        None,
    )
    .await
    .unwrap();
    (out, m)
}

async fn open(db: &TestDb) -> Arc<dyn Store> {
    store::open(ConnectOptions {
        url: db.url.clone(),
        max_connections: 3,
        chain: Arc::new(app::Sha256Chain),
    })
    .await
    .unwrap()
}

/// Both halves of a restore, as `vellum backup restore` runs them.
async fn restore(
    target: &Arc<dyn Store>,
    file: &Path,
    identity: &Arc<BackupIdentity>,
) -> Result<RestoreSummary, AppError> {
    let checked = app::check_backup_for_restore(file, identity.clone(), None).await?;
    app::restore_backup(
        target,
        file,
        identity.clone(),
        &checked,
        app::Clock::now(&app::SystemClock),
        &meta(),
        None,
    )
    .await
}

/// Every row of every table, in the backup's order.
async fn dump(store: &Arc<dyn Store>) -> BTreeMap<&'static str, Vec<Vec<store::Value>>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let s = store.clone();
    let export = tokio::spawn(async move { s.export(tx).await });
    let mut out: BTreeMap<&'static str, Vec<Vec<store::Value>>> = BTreeMap::new();
    let mut table = "";
    while let Some(item) = rx.recv().await {
        match item {
            store::ExportItem::Counts(_) => {}
            store::ExportItem::Table(t) => {
                table = t.name;
                out.insert(table, Vec::new());
            }
            store::ExportItem::Row(r) => out.get_mut(table).unwrap().push(r),
        }
    }
    export.await.unwrap().unwrap();
    out
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|b| char::from(*b)).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn backup_file_is_age_encrypted_and_holds_no_plaintext() {
    let t = TestApp::spawn().await;
    let f = populate(&t).await;
    let (_, r) = backup_keys();
    let dir = tempfile::tempdir().unwrap();
    let (file, m) = backup(&t.store, &r, dir.path(), "vellum.backup").await;
    let blob = std::fs::read(&file).unwrap();

    assert!(blob.starts_with(b"age-encryption.org/v1\n-> X25519 "));
    let secret_b32 = f.secret.base32();
    for needle in [
        FAMILY.as_bytes(),
        LETTER_TITLE.as_bytes(),
        LETTER_BODY.as_bytes(),
        f.patient_id.as_bytes(),
        secret_b32.expose_secret().as_bytes(),
        b"INSERT INTO",
        b"CREATE TABLE",
        b"security_events",
        b"vellum-backup",
        b"vlm1.",
        b"clinician",
    ] {
        assert!(
            !contains(&blob, needle),
            "the backup holds {:?} in plaintext",
            String::from_utf8_lossy(needle)
        );
    }
    assert!(
        !has_base32_run(&latin1(&blob)),
        "a base32 run of 32 in the backup"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "backup readable by others: {mode:o}");
    }
    // What it holds, for the record: every table, the sealed secret's key.
    assert_eq!(m.tables.len(), store::BACKUP_TABLES.len());
    assert_eq!(m.sealed_key_ids, vec![t.keys.primary_id().to_owned()]);
    assert!(event_kinds(&t).await.contains(&"backup_created".to_owned()));
    // Never over an existing file.
    let again = app::create_backup(
        &t.store,
        &r,
        &file,
        app::Clock::now(&app::SystemClock),
        &meta(),
        None,
    )
    .await;
    assert!(matches!(again, Err(AppError::Backup(m)) if m.contains("already exists")));
    assert_eq!(std::fs::read(&file).unwrap(), blob);
}

#[tokio::test]
async fn seed_003_backup_restores_into_an_empty_database_and_totp_login_works() {
    let opts = Options {
        config: AppConfig::default(), // clinicians must use two-factor sign-in
    };
    let t = TestApp::spawn_with(opts).await;
    let f = populate(&t).await;
    let (identity, r) = backup_keys();
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = backup(&t.store, &r, dir.path(), "vellum.backup").await;

    let db = Arc::new(TestDb::new().await);
    let target = open(&db).await;
    let summary = restore(&target, &file, &identity).await.unwrap();
    assert_eq!(
        summary.manifest.sealed_key_ids,
        vec![t.keys.primary_id().to_owned()]
    );

    // A server on the restored database, with the keyring (kept apart from
    // the backup), a little later.
    t.clock.advance_ms(30_000);
    let restored =
        TestApp::spawn_on(db, t.keys.clone(), t.clock.clone(), t.app.config().clone()).await;
    let code = f.secret.code_at_step(step(&restored));
    let (c, status) = login_with_code(&restored, "clin", &code).await;
    assert_eq!(status, 200, "TOTP sign-in on the restored database");
    assert_eq!(c.me_status().await, 200);
    let letters: Value = c
        .get(&format!("/api/patients/{}/letters", f.patient_id))
        .await
        .json()
        .await
        .unwrap();
    assert!(letters.to_string().contains(LETTER_TITLE), "{letters}");
    // The same code is still refused: the last step travelled with the backup.
    let (_, again) = login_with_code(&restored, "clin", &code).await;
    assert_eq!(again, 401);
    // The restored security log is whole and says it was restored.
    let chain = restored.app.verify_security_log().await.unwrap();
    assert!(chain.first_broken.is_none(), "{:?}", chain.first_broken);
    assert!(
        event_kinds(&restored)
            .await
            .contains(&"backup_restored".to_owned())
    );
}

#[tokio::test]
async fn wrong_identity_truncated_and_bit_flipped_backups_are_refused_and_the_target_stays_empty() {
    let t = TestApp::spawn().await;
    populate(&t).await;
    t.app.seed_demo(1_000, 2, |_, _| {}).await.unwrap();
    let (identity, r) = backup_keys();
    let (wrong, _) = backup_keys();
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = backup(&t.store, &r, dir.path(), "good.backup").await;
    let blob = std::fs::read(&file).unwrap();
    assert!(
        blob.len() > 3 * 65_536,
        "big enough to cut mid-stream: {}",
        blob.len()
    );

    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let truncated = write("truncated.backup", &blob[..blob.len() / 2]);
    let mut flipped_bytes = blob.clone();
    let middle = flipped_bytes.len() / 2;
    flipped_bytes[middle] ^= 0x10;
    let flipped = write("flipped.backup", &flipped_bytes);
    let mut last_flip = blob.clone();
    let end = last_flip.len() - 5;
    last_flip[end] ^= 0x01;
    let flipped_end = write("flipped-end.backup", &last_flip);
    let not_age = write("notes.txt", b"INSERT INTO patients VALUES ('x');\n");

    let db = TestDb::new().await;
    let target = open(&db).await;
    let cases: [(&Path, &Arc<BackupIdentity>, &str); 5] = [
        (&file, &wrong, "identity cannot open"),
        (&truncated, &identity, "damaged"),
        (&flipped, &identity, "damaged"),
        (&flipped_end, &identity, "damaged"),
        (&not_age, &identity, "not a Vellum backup"),
    ];
    for (path, id, says) in cases {
        let err = restore(&target, path, id).await.unwrap_err();
        assert!(
            matches!(&err, AppError::Backup(m) if m.contains(says)),
            "{}: {err}",
            path.display()
        );
        assert_eq!(target.first_nonempty_table().await.unwrap(), None);
    }
    // A file swapped for a damaged one between the check and the restore:
    // the second read fails and the transaction never commits.
    let checked = app::check_backup_for_restore(&file, identity.clone(), None)
        .await
        .unwrap();
    for bad in [&truncated, &flipped] {
        let err = app::restore_backup(
            &target,
            bad,
            identity.clone(),
            &checked,
            app::Clock::now(&app::SystemClock),
            &meta(),
            None,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, AppError::Backup(m) if m.contains("damaged")),
            "{err}"
        );
        assert_eq!(target.first_nonempty_table().await.unwrap(), None);
    }
    // Verifying touches no database and finds the good file whole.
    let m = app::verify_backup(&file, identity.clone(), None)
        .await
        .unwrap();
    assert!(m.total_rows() > 4_000);
    // And the good one still restores into the same target afterwards.
    restore(&target, &file, &identity).await.unwrap();
}

#[tokio::test]
async fn restore_refuses_a_database_that_is_not_empty() {
    let t = TestApp::spawn().await;
    populate(&t).await;
    let (identity, r) = backup_keys();
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = backup(&t.store, &r, dir.path(), "vellum.backup").await;
    let before = dump(&t.store).await;
    let err = restore(&t.store, &file, &identity).await.unwrap_err();
    assert!(
        matches!(&err, AppError::Conflict(m) if m.contains("not empty")),
        "{err}"
    );
    assert_eq!(dump(&t.store).await, before, "the target changed");
}

#[tokio::test]
async fn a_backup_taken_during_writes_restores_to_a_consistent_state() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("writer", Role::Clinician).await;
    let p = create_patient(&c, "Busy", &nhs(99)).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    t.app.seed_demo(1_500, 2, |_, _| {}).await.unwrap();

    // Letters keep arriving (each with its access-log row and in one
    // transaction) while the backup reads.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let (stop, written, pid) = (stop.clone(), written.clone(), pid.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let res = c
                    .post(
                        &format!("/api/patients/{pid}/letters"),
                        json!({"title": format!("during {n}"), "body": "written while backing up"}),
                    )
                    .await;
                assert_eq!(res.status(), 201);
                n += 1;
                written.store(n, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    while written.load(std::sync::atomic::Ordering::SeqCst) < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before = written.load(std::sync::atomic::Ordering::SeqCst);
    let (identity, r) = backup_keys();
    let dir = tempfile::tempdir().unwrap();
    let (file, m) = backup(&t.store, &r, dir.path(), "busy.backup").await;
    let after = written.load(std::sync::atomic::Ordering::SeqCst);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();

    let db = Arc::new(TestDb::new().await);
    let target = open(&db).await;
    restore(&target, &file, &identity).await.unwrap();
    let rows = dump(&target).await;
    let during: Vec<&Vec<store::Value>> = rows["letters"]
        .iter()
        .filter(|r| r[1] == store::Value::Text(pid.clone()))
        .collect();
    let n = during.len() as u64;
    assert!(before <= n && n <= after, "{before} <= {n} <= {after}");
    // Every restored letter has its access-log row, and no row lacks its letter.
    let letter_ids: std::collections::BTreeSet<&store::Value> =
        rows["letters"].iter().map(|r| &r[0]).collect();
    let logged: std::collections::BTreeSet<&store::Value> = rows["access_log"]
        .iter()
        .filter(|r| {
            r[5] == store::Value::Text("create".into())
                && r[6] == store::Value::Text("letter".into())
        })
        .map(|r| &r[7])
        .collect();
    let made_via_api: std::collections::BTreeSet<&store::Value> =
        during.iter().map(|r| &r[0]).collect();
    assert!(
        made_via_api.is_subset(&logged),
        "a letter without its access-log row"
    );
    assert!(
        logged.is_subset(&letter_ids),
        "an access-log row without its letter"
    );
    assert_eq!(
        rows["letters"].len() as i64,
        m.tables.iter().find(|t| t.name == "letters").unwrap().rows
    );
    // The restored security log verifies.
    let restored =
        TestApp::spawn_on(db, t.keys.clone(), t.clock.clone(), t.app.config().clone()).await;
    assert!(
        restored
            .app
            .verify_security_log()
            .await
            .unwrap()
            .first_broken
            .is_none()
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL (VELLUM_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres); CI runs it"]
async fn round_trip_sqlite_to_postgres_to_sqlite_gives_identical_records() {
    let pg_admin = TestDb::postgres_admin_url();
    let sqlite_a = Arc::new(TestDb::sqlite());
    let t = TestApp::spawn_on(
        sqlite_a,
        Arc::new(crypto::Keyring::generate(0)),
        Arc::new(app::ManualClock::starting_now()),
        Options::default().config,
    )
    .await;
    let f = populate(&t).await;
    t.app.seed_demo(300, 2, |_, _| {}).await.unwrap();
    // An amended letter: a row that refers to a later row of its own table.
    t.clock.advance_ms(30_000);
    let (c2, st) = login_with_code(&t, "clin", &f.secret.code_at_step(step(&t))).await;
    assert_eq!(st, 200);
    let letters: Value = c2
        .get(&format!("/api/patients/{}/letters", f.patient_id))
        .await
        .json()
        .await
        .unwrap();
    let first = letters["items"][0]["id"].as_str().unwrap().to_owned();
    let res = c2
        .post(
            &format!("/api/patients/{}/letters/{first}/amend", f.patient_id),
            json!({"title": "Corrected", "body": "Corrected text", "status": "final"}),
        )
        .await;
    assert_eq!(res.status(), 201, "amend");
    // The access log sealed: the seals must hold on each backend.
    assert!(!t.app.seal_access_log().await.unwrap().is_empty());

    let (identity, r) = backup_keys();
    let dir = tempfile::tempdir().unwrap();
    let (file_a, manifest_a) = backup(&t.store, &r, dir.path(), "a.backup").await;
    let source_rows = dump(&t.store).await;

    let pg = TestDb::postgres(&pg_admin).await;
    let pg_store = open(&pg).await;
    restore(&pg_store, &file_a, &identity).await.unwrap();
    let (file_b, manifest_b) = backup(&pg_store, &r, dir.path(), "b.backup").await;
    assert_eq!(manifest_b.source, "postgresql");

    let sqlite_b = TestDb::sqlite();
    let back = open(&sqlite_b).await;
    restore(&back, &file_b, &identity).await.unwrap();

    let on_pg = dump(&pg_store).await;
    let on_sqlite = dump(&back).await;
    for (table, rows) in &source_rows {
        let events = *table == "security_events";
        // The security log also gained the backup and restore events; the
        // rows it had at the first backup must be identical.
        let n = if events {
            usize::try_from(
                manifest_a
                    .tables
                    .iter()
                    .find(|t| t.name == *table)
                    .unwrap()
                    .rows,
            )
            .unwrap()
        } else {
            rows.len()
        };
        assert_eq!(
            &rows[..n],
            &on_pg[table][..n],
            "{table}: SQLite → PostgreSQL"
        );
        assert_eq!(
            &rows[..n],
            &on_sqlite[table][..n],
            "{table}: PostgreSQL → SQLite"
        );
        if !events {
            assert_eq!(rows.len(), on_pg[table].len(), "{table}");
            assert_eq!(rows.len(), on_sqlite[table].len(), "{table}");
        }
    }
    for (a, b) in manifest_a.tables.iter().zip(&manifest_b.tables) {
        if a.name != "security_events" {
            assert_eq!(a, b, "the same table digest from either backend");
        }
    }
    // The PostgreSQL copy keeps working: generated ids continue past the
    // restored ones, and the chain verifies on both.
    pg_store
        .append_events(
            app::Clock::now(&app::SystemClock),
            &[domain::NewSecurityEvent::new(
                domain::SecurityEventKind::Logout,
            )],
        )
        .await
        .unwrap();
    for s in [&pg_store, &back] {
        let pg_app = app::App::new(
            s.clone(),
            t.keys.clone(),
            t.clock.clone(),
            Options::default().config,
        )
        .unwrap();
        assert!(
            pg_app
                .verify_security_log()
                .await
                .unwrap()
                .first_broken
                .is_none()
        );
        let access = pg_app.verify_access_log().await.unwrap();
        assert_eq!(access.broken, [], "the access log's seals hold");
        assert!(access.seals >= 1 && access.rows_sealed > 0, "{access:?}");
    }
    pg_store.close().await;
}

#[tokio::test]
async fn scheduled_backups_are_logged_pruned_and_a_failure_raises_an_alert() {
    let t = TestApp::spawn().await;
    populate(&t).await;
    let sibling = t.spawn_sibling().await;
    let (identity, r) = backup_keys();
    let dir = tempfile::tempdir().unwrap();
    let schedule = BackupSchedule {
        recipients: r.clone(),
        dir: dir.path().join("backups"),
        every_ms: 3_600_000,
        keep: 2,
    };
    // Two servers due at once: one takes the backup.
    let (a, b) = tokio::join!(
        t.app.run_scheduled_backup(&schedule),
        sibling.app.run_scheduled_backup(&schedule)
    );
    let made: Vec<PathBuf> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(made.len(), 1, "exactly one server backs up");
    assert!(
        t.app
            .run_scheduled_backup(&schedule)
            .await
            .unwrap()
            .is_none(),
        "not due yet"
    );
    for _ in 0..3 {
        t.clock.advance_ms(3_600_000);
        assert!(
            t.app
                .run_scheduled_backup(&schedule)
                .await
                .unwrap()
                .is_some()
        );
    }
    let mut left: Vec<String> = std::fs::read_dir(&schedule.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left.len(), 2, "keep = 2: {left:?}");
    let newest = schedule.dir.join(left.last().unwrap());
    app::verify_backup(&newest, identity, None).await.unwrap();
    let kinds = event_kinds(&t).await;
    assert_eq!(kinds.iter().filter(|k| *k == "backup_created").count(), 4);

    // The folder cannot be made (a file is in the way): logged, recorded, alerted.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let broken = BackupSchedule {
        dir: blocker.join("backups"),
        ..schedule.clone()
    };
    t.clock.advance_ms(3_600_000);
    assert!(t.app.run_scheduled_backup(&broken).await.is_err());
    let alerts = t.store.list_alerts(10).await.unwrap();
    assert!(
        alerts.iter().any(|a| a.rule == app::BACKUP_ALERT_RULE),
        "{alerts:?}"
    );
    let kinds = event_kinds(&t).await;
    assert!(kinds.contains(&"backup_failed".to_owned()));
    assert!(kinds.contains(&"alert_raised".to_owned()));
    assert!(
        crate::harness::logs().contains("alert=\"backup_failed\"")
            || crate::harness::logs().contains("alert=backup_failed")
    );
}

#[tokio::test]
async fn a_backup_stopped_by_a_fault_is_a_recorded_failure_and_leaves_no_partial_file() {
    let t = TestApp::spawn().await;
    populate(&t).await;
    let (_, r) = backup_keys();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("faulty.backup");
    // A bug while the file is being written (here in the progress report).
    let bug: app::ProgressFn = Arc::new(|_| panic!("a bug while writing the backup"));
    let failed = app::create_backup(
        &t.store,
        &r,
        &out,
        app::Clock::now(&app::SystemClock),
        &meta(),
        Some(bug),
    )
    .await;
    let why = failed.err().unwrap().to_string();
    assert!(why.contains("the backup writer stopped"), "{why}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "no backup and no partial file"
    );
    assert!(event_kinds(&t).await.contains(&"backup_failed".to_owned()));
    // And the server goes on: the next backup is made.
    backup(&t.store, &r, dir.path(), "after.backup").await;
}

#[tokio::test]
async fn the_backup_covers_every_table_and_column_of_the_schema() {
    let db = TestDb::new().await;
    let s = open(&db).await;
    let sql = if db.is_postgres() {
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations' \
         ORDER BY table_name, ordinal_position"
    } else {
        "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations' \
         ORDER BY m.name, p.cid"
    };
    let live: Vec<(String, String)> = if db.is_postgres() {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    };
    let mut live_tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (t, c) in live {
        live_tables.entry(t).or_default().push(c);
    }
    let spec: BTreeMap<String, Vec<String>> = store::BACKUP_TABLES
        .iter()
        .map(|t| {
            (
                t.name.to_owned(),
                t.column_names().iter().map(|c| (*c).to_owned()).collect(),
            )
        })
        .collect();
    assert_eq!(
        live_tables, spec,
        "BACKUP_TABLES must list every table and column"
    );
    assert_eq!(
        s.schema_version().await.unwrap(),
        store::latest_schema_version()
    );
}
