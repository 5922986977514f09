//! `vellum backup` from the outside: a key pair from `keygen`, a backup
//! made with only the public key, checked and restored with the identity;
//! bad files and non-empty targets refused with the target left as it was.

use super::{create_user, vellum};

/// `vellum --data-dir DATA ARGS…` in `home`.
fn on(home: &std::path::Path, data: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--data-dir", data];
    all.extend_from_slice(args);
    vellum(home, &all, None)
}

#[test]
fn backup_commands_make_check_and_restore_a_backup_and_refuse_what_they_must() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    create_user(h, &["--data-dir", "live"], "alice", "admin");
    let (code, _, err) = on(h, "live", &["demo", "seed", "--patients", "50"]);
    assert_eq!(code, 0, "{err}");

    let (code, recipient, err) = vellum(h, &["backup", "keygen", "--out", "backup.key"], None);
    assert_eq!(code, 0, "{err}");
    let recipient = recipient.trim().to_owned();
    assert!(recipient.starts_with("age1"), "{recipient}");
    assert!(err.contains("OFF this server"), "{err}");
    // keygen never replaces an identity.
    let (code, _, _) = vellum(h, &["backup", "keygen", "--out", "backup.key"], None);
    assert_ne!(code, 0);

    // Without recipients there is nothing to encrypt to.
    let (code, _, err) = on(h, "live", &["backup", "create", "--out", "x.backup"]);
    assert_ne!(code, 0);
    assert!(err.contains("no backup recipients"), "{err}");
    assert!(!h.join("x.backup").exists());

    // The recipient from the configuration; progress on standard error.
    std::fs::write(
        h.join("vellum.toml"),
        format!("[backup]\nrecipients = [\"{recipient}\"]\n"),
    )
    .unwrap();
    let (code, out, err) = on(h, "live", &["backup", "create", "--out", "one.backup"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("wrote one.backup") && out.contains("15 tables"),
        "{out}"
    );
    assert!(err.contains("100%"), "a progress bar: {err}");
    assert!(
        std::fs::read(h.join("one.backup"))
            .unwrap()
            .starts_with(b"age-encryption.org/v1")
    );

    let (code, out, err) = vellum(
        h,
        &["backup", "verify", "one.backup", "--identity", "backup.key"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("is intact") && out.contains("patients") && out.contains("50"),
        "{out}"
    );

    // A wrong identity and a truncated file: refused, and no database made.
    vellum(h, &["backup", "keygen", "--out", "other.key"], None);
    let (code, _, err) = on(
        h,
        "bad",
        &["backup", "restore", "one.backup", "--identity", "other.key"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("cannot open the backup"), "{err}");
    let blob = std::fs::read(h.join("one.backup")).unwrap();
    std::fs::write(h.join("cut.backup"), &blob[..blob.len() - 40]).unwrap();
    let (code, _, err) = on(
        h,
        "bad",
        &[
            "backup",
            "restore",
            "cut.backup",
            "--identity",
            "backup.key",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("damaged") || err.contains("truncated"),
        "{err}"
    );
    assert!(
        !h.join("bad/vellum.db").exists(),
        "a refused restore made a database"
    );

    // A good restore; then the same target is no longer empty.
    let (code, out, err) = on(
        h,
        "restored",
        &[
            "backup",
            "restore",
            "one.backup",
            "--identity",
            "backup.key",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored") && out.contains("rows"), "{out}");
    let (code, _, err) = on(
        h,
        "restored",
        &[
            "backup",
            "restore",
            "one.backup",
            "--identity",
            "backup.key",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("not empty"), "{err}");
    // The restored data opens with the original keyring and its log verifies.
    let (code, out, err) = on(
        h,
        "restored",
        &["--key-source", "file:live.keyring", "audit", "verify"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("security log intact"), "{out}");
    // The backup never overwrites a file.
    let (code, _, err) = on(h, "live", &["backup", "create", "--out", "one.backup"]);
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(h.join("one.backup")).unwrap(), blob);
}

#[test]
fn a_server_refuses_a_secret_key_where_backup_recipients_belong() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (code, _, _) = vellum(h, &["backup", "keygen", "--out", "backup.key"], None);
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(h.join("backup.key")).unwrap();
    let secret = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    std::fs::write(
        h.join("vellum.toml"),
        format!("[backup]\nrecipients = [\"{secret}\"]\ninterval = \"1d\"\n"),
    )
    .unwrap();
    let (code, out, err) = vellum(h, &["serve", "--listen", "127.0.0.1:0"], None);
    assert_ne!(code, 0);
    assert!(err.contains("secret identity"), "{err}");
    assert!(
        !err.contains(&secret[16..]) && !out.contains(&secret[16..]),
        "the secret was echoed"
    );
}

/// Makes the database look as if an older release last opened it: the
/// newest migration undone.
async fn roll_back_newest_migration(db: &std::path::Path) {
    let url = format!("sqlite://{}", db.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let latest: i64 = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(latest, 10, "update this test when a migration is added");
    // 0010 added a column to `sessions` and one to `api_tokens`.
    for undo in [
        "ALTER TABLE sessions DROP COLUMN issued_role",
        "ALTER TABLE api_tokens DROP COLUMN issued_role",
        "DELETE FROM _sqlx_migrations WHERE version = 10",
    ] {
        sqlx::query(undo).execute(&pool).await.unwrap();
    }
    pool.close().await;
}

#[tokio::test]
async fn an_upgrade_migrates_data_only_after_a_recent_backup() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // Without a backup: refused, nothing changed.
    create_user(h, &["--data-dir", "old"], "alice", "admin");
    roll_back_newest_migration(&h.join("old/vellum.db")).await;
    let (code, _, err) = on(h, "old", &["audit", "verify"]);
    assert_ne!(code, 0);
    assert!(err.contains("no backup from the last 24 hours"), "{err}");
    let (code, _, err) = on(h, "old", &["audit", "verify"]);
    assert_ne!(code, 0, "still refused: nothing was migrated ({err})");
    // The operator's explicit word migrates it.
    let (code, out, err) = on(h, "old", &["--upgrade-without-backup", "audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = on(h, "old", &["audit", "verify"]);
    assert_eq!(code, 0, "up to date now: {err}");

    // With a backup taken in the last 24 hours the upgrade goes ahead.
    let (_, recipient, _) = vellum(h, &["backup", "keygen", "--out", "k"], None);
    create_user(h, &["--data-dir", "backed"], "alice", "admin");
    let (code, _, err) = on(
        h,
        "backed",
        &[
            "backup",
            "create",
            "--out",
            "b.backup",
            "--recipient",
            recipient.trim(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    roll_back_newest_migration(&h.join("backed/vellum.db")).await;
    let (code, out, err) = on(h, "backed", &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}
