//! Pooled database connections: the pool skips the ping before each query,
//! so it must still find out about connections the database dropped.

use std::sync::Arc;
use std::time::Duration;

use app::Sha256Chain;
use store::ConnectOptions;

use crate::harness::TestDb;

#[tokio::test]
#[ignore = "needs PostgreSQL (VELLUM_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres); CI runs it"]
async fn connections_postgresql_dropped_while_idle_are_replaced_before_use() {
    let admin_url = TestDb::postgres_admin_url();
    let db = TestDb::postgres(&admin_url).await;
    let store = store::open(ConnectOptions {
        url: db.url.clone(),
        max_connections: 3,
        chain: Arc::new(Sha256Chain),
    })
    .await
    .unwrap();
    // Several connections open and back in the pool.
    let (a, b, c) = tokio::join!(
        store.count_users(),
        store.count_users(),
        store.count_users()
    );
    assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (0, 0, 0));
    // The database ends every session on it, as a restart or a firewall
    // would, while the pool's connections sit idle.
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    let name = db.url.rsplit_once('/').unwrap().1.to_owned();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND backend_type = 'client backend' \
         AND pid <> pg_backend_pid()",
    )
    .bind(&name)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(!ended.is_empty(), "the store's connections were ended");
    admin.close().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Every query still succeeds: each idle connection was checked before
    // use and replaced.
    for _ in 0..6 {
        assert_eq!(store.count_users().await.unwrap(), 0);
    }
    store.close().await;
}
