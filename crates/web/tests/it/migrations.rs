//! Upgrades keep what is stored: a database an older release made migrates
//! to today's schema with its records intact and findable.

use std::sync::Arc;

use app::Sha256Chain;
use store::{ConnectOptions, PatientSearch};

use crate::harness::TestDb;

/// The schema version releases before the name-prefix index left behind.
const BEFORE_PREFIXES: i64 = 5;

/// Rows as release 5 wrote them: three patients and their name words.
const OLD_ROWS: &[&str] = &[
    "INSERT INTO patients (id, version, nhs_number, family_folded, given_folded, display_name, \
     birth_date, gender, active, resource, created_at, updated_at) VALUES \
     ('p-ada', 1, NULL, 'smith', 'ada mary', 'SMITH, Ada Mary', '1950-01-02', 'female', TRUE, '{}', 1, 1), \
     ('p-bob', 1, NULL, 'smithson', 'bob', 'SMITHSON, Bob', '1960-03-04', 'male', TRUE, '{}', 1, 1), \
     ('p-lu', 1, NULL, 'øster', 'łucja', 'ØSTER, Łucja', '1970-05-06', 'female', TRUE, '{}', 1, 1)",
    "INSERT INTO patient_name_tokens (token, patient_id) VALUES \
     ('smith', 'p-ada'), ('ada', 'p-ada'), ('mary', 'p-ada'), \
     ('smithson', 'p-bob'), ('bob', 'p-bob'), ('øster', 'p-lu'), ('łucja', 'p-lu')",
];

/// The migrations of releases up to schema `version`.
async fn migrator_up_to(backend: &str, version: i64) -> sqlx::migrate::Migrator {
    let dir = format!(
        "{}/../store/migrations/{backend}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut m = sqlx::migrate::Migrator::new(std::path::Path::new(&dir))
        .await
        .unwrap();
    let old: Vec<_> = m
        .migrations
        .iter()
        .filter(|m| m.version <= version)
        .cloned()
        .collect();
    assert_eq!(old.len() as i64, version);
    m.migrations = old.into();
    m
}

async fn search(store: &dyn store::Store, terms: &[&str]) -> Vec<String> {
    let q = PatientSearch {
        name_terms: terms.iter().map(|t| (*t).to_owned()).collect(),
        limit: 20,
        ..PatientSearch::default()
    };
    store
        .search_patients(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// A database an older release left at schema `version` with `rows`,
/// opened by today's release (which applies the rest).
async fn opened_after(db: &TestDb, version: i64, rows: &[&'static str]) -> Arc<dyn store::Store> {
    /// Migrates `pool` up to `version` and writes that release's rows.
    macro_rules! make_old {
        ($pool:expr, $backend:expr) => {{
            let pool = $pool;
            migrator_up_to($backend, version)
                .await
                .run(&pool)
                .await
                .unwrap();
            for sql in rows {
                sqlx::query(*sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }};
    }
    if db.is_postgres() {
        make_old!(sqlx::PgPool::connect(&db.url).await.unwrap(), "postgres");
    } else {
        let opts = db
            .url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap();
        let pool = sqlx::SqlitePool::connect_with(opts.create_if_missing(true));
        make_old!(pool.await.unwrap(), "sqlite");
    }
    let store = store::open(ConnectOptions {
        url: db.url.clone(),
        max_connections: 2,
        chain: Arc::new(Sha256Chain),
    })
    .await
    .unwrap();
    assert!(store.schema_version().await.unwrap() > version);
    store
}

#[tokio::test]
async fn name_search_finds_patients_stored_before_the_prefix_index_existed() {
    let db = TestDb::new().await;
    let store = opened_after(&db, BEFORE_PREFIXES, OLD_ROWS).await;

    // Every prefix of every old name word finds its patient, in display order.
    assert_eq!(search(&*store, &["smith"]).await, ["p-ada", "p-bob"]);
    assert_eq!(search(&*store, &["s"]).await, ["p-ada", "p-bob"]);
    assert_eq!(search(&*store, &["smiths"]).await, ["p-bob"]);
    assert_eq!(search(&*store, &["ma"]).await, ["p-ada"]);
    assert_eq!(search(&*store, &["sm", "bo"]).await, ["p-bob"]);
    assert!(search(&*store, &["smithy"]).await.is_empty());
    assert!(search(&*store, &["ada", "bob"]).await.is_empty());
    // Every word one letter: the pairs of initials, built by migration 0008.
    assert_eq!(search(&*store, &["s", "a"]).await, ["p-ada"]);
    assert_eq!(search(&*store, &["m", "s", "a"]).await, ["p-ada"]);
    assert_eq!(search(&*store, &["b", "s"]).await, ["p-bob"]);
    assert_eq!(search(&*store, &["s", "s"]).await, ["p-ada", "p-bob"]);
    assert!(search(&*store, &["a", "b"]).await.is_empty());
    // Letters past ASCII: the migration's order is the search's.
    assert_eq!(search(&*store, &["ł", "ø"]).await, ["p-lu"]);
    assert_eq!(search(&*store, &["ø", "ł"]).await, ["p-lu"]);
    store.close().await;
}

/// The schema version releases before temporary passwords left behind.
const BEFORE_TEMPORARY_PASSWORDS: i64 = 8;

#[tokio::test]
async fn sessions_and_accounts_from_before_temporary_passwords_are_kept_as_they_were() {
    let db = TestDb::new().await;
    let rows = [
        "INSERT INTO users (id, username, role, password_hash, created_at, updated_at) VALUES \
         ('00000000-0000-4000-8000-000000000001', 'alice', 'clinician', 'h', 1, 1)",
        "INSERT INTO sessions (token_hash, user_id, csrf_tag, created_at, last_seen_at, stage) \
         VALUES ('t-full', '00000000-0000-4000-8000-000000000001', 'c1', 1, 2, 'full'), \
         ('t-totp', '00000000-0000-4000-8000-000000000001', 'c2', 1, 2, 'totp'), \
         ('t-pre', NULL, 'c3', 1, 2, 'full')",
    ];
    let store = opened_after(&db, BEFORE_TEMPORARY_PASSWORDS, &rows).await;
    let alice = domain::Username::parse("alice").unwrap();
    let rec = store.user_by_username(&alice).await.unwrap().unwrap();
    assert!(
        !rec.must_change_password,
        "existing passwords are their holders' own"
    );
    for (hash, stage) in [
        ("t-full", store::SessionStage::Full),
        ("t-totp", store::SessionStage::Totp),
        ("t-pre", store::SessionStage::Full),
    ] {
        let (session, _) = store.session(hash).await.unwrap().unwrap();
        assert_eq!(session.stage, stage, "{hash}");
        assert_eq!(session.last_seen_at.millis(), 2);
    }
    // The rebuilt table takes the new stage.
    let password_stage = store::SessionRecord {
        token_hash: "t-password".into(),
        user_id: Some(rec.user.id),
        csrf_tag: "c".into(),
        created_at: domain::Timestamp(3),
        last_seen_at: domain::Timestamp(3),
        stage: store::SessionStage::Password,
        issued_role: Some(domain::Role::Clinician),
    };
    store.insert_session(&password_stage).await.unwrap();
    let (read, _) = store.session("t-password").await.unwrap().unwrap();
    assert_eq!(read, password_stage);
    store.close().await;
}

/// The schema version releases before role-bound credentials left behind.
const BEFORE_ROLE_BOUND_CREDENTIALS: i64 = 9;

#[tokio::test]
async fn sessions_and_tokens_from_before_role_binding_take_their_accounts_role_and_keep_working() {
    let db = TestDb::new().await;
    let rows = [
        "INSERT INTO users (id, username, role, password_hash, created_at, updated_at) VALUES \
         ('00000000-0000-4000-8000-000000000001', 'alice', 'clinician', 'h', 1, 1), \
         ('00000000-0000-4000-8000-000000000002', 'root', 'admin', 'h', 1, 1)",
        "INSERT INTO sessions (token_hash, user_id, csrf_tag, created_at, last_seen_at, stage) \
         VALUES ('t-alice', '00000000-0000-4000-8000-000000000001', 'c1', 1, 2, 'full'), \
         ('t-root', '00000000-0000-4000-8000-000000000002', 'c2', 1, 2, 'totp'), \
         ('t-pre', NULL, 'c3', 1, 2, 'full')",
        "INSERT INTO api_tokens (id, user_id, name, token_hash, scope, created_at, expires_at) \
         VALUES ('k-alice', '00000000-0000-4000-8000-000000000001', 'lab', 'h-alice', 'read', 1, 9), \
         ('k-root', '00000000-0000-4000-8000-000000000002', 'ops', 'h-root', 'read', 1, 9)",
    ];
    let store = opened_after(&db, BEFORE_ROLE_BOUND_CREDENTIALS, &rows).await;
    for (hash, role) in [
        ("t-alice", Some(domain::Role::Clinician)),
        ("t-root", Some(domain::Role::Admin)),
        ("t-pre", None),
    ] {
        let (session, user) = store.session(hash).await.unwrap().unwrap();
        assert_eq!(session.issued_role, role, "{hash}");
        assert_eq!(user.map(|u| u.role), role, "{hash}: the account's own role");
    }
    for (hash, role) in [("h-alice", "clinician"), ("h-root", "admin")] {
        let token = store.api_token_by_hash(hash).await.unwrap().unwrap();
        assert_eq!(token.issued_role, role, "{hash}");
    }
    store.close().await;
}
