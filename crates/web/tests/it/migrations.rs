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

async fn migrator_before_prefixes(backend: &str) -> sqlx::migrate::Migrator {
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
        .filter(|m| m.version <= BEFORE_PREFIXES)
        .cloned()
        .collect();
    assert_eq!(old.len() as i64, BEFORE_PREFIXES);
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

#[tokio::test]
async fn name_search_finds_patients_stored_before_the_prefix_index_existed() {
    let db = TestDb::new().await;
    /// Migrates `pool` up to release 5 and writes that release's rows.
    macro_rules! make_old {
        ($pool:expr, $backend:expr) => {{
            let pool = $pool;
            migrator_before_prefixes($backend)
                .await
                .run(&pool)
                .await
                .unwrap();
            for sql in OLD_ROWS {
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

    // Today's release opens it and applies the rest.
    let store = store::open(ConnectOptions {
        url: db.url.clone(),
        max_connections: 2,
        chain: Arc::new(Sha256Chain),
    })
    .await
    .unwrap();
    assert!(store.schema_version().await.unwrap() > BEFORE_PREFIXES);

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
