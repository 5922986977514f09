//! Starting a server for a test, and a browser-like client.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use app::{Actor, App, AppConfig, ManualClock, RequestMeta, Sha256Chain};
use crypto::Keyring;
use domain::Role;
use reqwest::cookie::CookieStore as _;
use reqwest::header::HeaderMap;
use secrecy::SecretString;
use store::{ConnectOptions, Store};
use tokio::net::TcpListener;
use web::{AppState, WebConfig};

pub const PASSWORD: &str = "Quartz-harbour-91-lantern";

/// A database for one test: a SQLite file in a temporary directory, or a
/// fresh PostgreSQL database that is dropped when the test ends.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

impl TestDb {
    /// The suite's database: PostgreSQL when `VELLUM_TEST_DATABASE_URL` is
    /// set, SQLite otherwise.
    pub async fn new() -> Self {
        match std::env::var("VELLUM_TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => Self::postgres(&admin_url).await,
            _ => Self::sqlite(),
        }
    }

    /// The server PostgreSQL-only tests use: `VELLUM_TEST_DATABASE_URL`,
    /// else the local one.
    pub fn postgres_admin_url() -> String {
        std::env::var("VELLUM_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
    }

    /// A new PostgreSQL database on the server `admin_url` reaches.
    pub async fn postgres(admin_url: &str) -> Self {
        let name = format!(
            "vellum_test_{}",
            crypto::random::token(9)
                .to_lowercase()
                .replace(['-', '_'], "x")
        );
        let admin = sqlx::PgPool::connect(admin_url)
            .await
            .expect("PostgreSQL is unreachable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        TestDb {
            url: format!("{base}/{name}"),
            _dir: None,
            pg_drop: Some((admin_url.to_owned(), name)),
        }
    }

    /// A new SQLite file in a temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/vellum.db", dir.path().display());
        TestDb {
            url,
            _dir: Some(dir),
            pg_drop: None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg_drop.is_some()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg_drop.take() {
            // Drop the database from a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&admin)
                        .await;
                        admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// A running server and handles on its insides.
pub struct TestApp {
    pub base: String,
    pub app: Arc<App>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub db: Arc<TestDb>,
    pub keys: Arc<Keyring>,
}

pub struct Options {
    pub config: AppConfig,
}

impl Default for Options {
    /// The production defaults except the two-factor policy, which is off
    /// so tests of other controls sign in with a password alone; the tests
    /// in `totp.rs` turn it on.
    fn default() -> Self {
        Self {
            config: AppConfig {
                require_totp_for: Vec::new(),
                ..AppConfig::default()
            },
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(opts: Options) -> Self {
        let db = Arc::new(TestDb::new().await);
        Self::spawn_on(
            db,
            Arc::new(Keyring::generate(0)),
            Arc::new(ManualClock::starting_now()),
            opts.config,
        )
        .await
    }

    /// A second server on the same database and keys (as in a cluster).
    pub async fn spawn_sibling(&self) -> Self {
        Self::spawn_on(
            self.db.clone(),
            self.keys.clone(),
            self.clock.clone(),
            self.app.config().clone(),
        )
        .await
    }

    /// A server on a given database, keys and clock.
    pub async fn spawn_on(
        db: Arc<TestDb>,
        keys: Arc<Keyring>,
        clock: Arc<ManualClock>,
        config: AppConfig,
    ) -> Self {
        capture_logs();
        let store = store::open(ConnectOptions {
            url: db.url.clone(),
            max_connections: 5,
            chain: Arc::new(Sha256Chain),
        })
        .await
        .unwrap();
        let app = Arc::new(App::new(store.clone(), keys.clone(), clock.clone(), config).unwrap());
        let base = serve(app.clone(), None, Duration::from_secs(30)).await;
        TestApp {
            base,
            app,
            store,
            clock,
            db,
            keys,
        }
    }

    /// Another address serving this same server with its own request
    /// timeout (the same public origin, so the same cookies and CSRF
    /// token work there); its base URL.
    pub async fn serve_with_request_timeout(&self, request_timeout: Duration) -> String {
        serve(self.app.clone(), Some(self.base.clone()), request_timeout).await
    }

    pub async fn create_user(&self, username: &str, role: Role) {
        self.app
            .create_user(
                Actor::Operator,
                username,
                role,
                SecretString::from(PASSWORD),
                &RequestMeta::default(),
            )
            .await
            .unwrap();
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base, None)
    }

    /// A client whose connections come from another loopback address.
    pub fn client_from(&self, ip: &str) -> Client {
        Client::new(&self.base, Some(ip.parse().unwrap()))
    }

    /// A signed-in client for a new user of `role`.
    pub async fn signed_in(&self, username: &str, role: Role) -> Client {
        self.create_user(username, role).await;
        let c = self.client();
        let res = c.login(username, PASSWORD).await;
        assert_eq!(res.status(), 200, "login as {username}");
        c
    }
}

/// Serves `app` on a new loopback address (its public origin, unless
/// `public_origin` is given); returns its base URL.
async fn serve(app: Arc<App>, public_origin: Option<String>, request_timeout: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState {
        app,
        web: Arc::new(WebConfig {
            public_origin: public_origin.unwrap_or_else(|| base.clone()),
            max_body_bytes: 64 * 1024,
            request_timeout,
            trusted_proxies: vec!["127.0.0.9".parse().unwrap()],
        }),
    };
    tokio::spawn(web::serve(listener, state, std::future::pending()));
    base
}

/// A client that keeps cookies like a browser and can echo the CSRF cookie.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub jar: Arc<reqwest::cookie::Jar>,
}

impl Client {
    fn new(base: &str, local: Option<IpAddr>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let mut b = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ip) = local {
            b = b.local_address(ip);
        }
        Client {
            base: base.to_owned(),
            http: b.build().unwrap(),
            jar,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        let url: reqwest::Url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .unwrap()
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }

    pub fn session_cookie(&self) -> Option<String> {
        self.cookie("vellum-session")
    }

    pub fn csrf_cookie(&self) -> Option<String> {
        self.cookie("vellum-csrf")
    }

    /// Replaces a cookie's value (as an attacker or a stale tab would).
    pub fn set_cookie(&self, name: &str, value: &str) {
        let url: reqwest::Url = self.base.parse().unwrap();
        self.jar
            .add_cookie_str(&format!("{name}={value}; Path=/"), &url);
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// A state-changing request carrying the CSRF cookie's value in the header.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut headers = HeaderMap::new();
        if let Some(t) = self.csrf_cookie() {
            headers.insert("x-csrf-token", t.parse().unwrap());
        }
        self.send_with(method, path, body, headers).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn send_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        headers: HeaderMap,
    ) -> reqwest::Response {
        let mut req = self.http.request(method, self.url(path)).headers(headers);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    /// GET /api/auth/csrf then POST /api/auth/login with the token.
    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        let r = self.get("/api/auth/csrf").await;
        assert_eq!(r.status(), 200);
        self.post(
            "/api/auth/login",
            serde_json::json!({"username": username, "password": password}),
        )
        .await
    }

    pub async fn me_status(&self) -> u16 {
        self.get("/api/auth/me").await.status().as_u16()
    }
}

/// The problem document of a response: (status, title, whole body).
pub async fn problem(res: reqwest::Response) -> (u16, String, serde_json::Value) {
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
    assert!(
        ct.starts_with("application/problem+json"),
        "content type {ct}, body {body}"
    );
    let title = body["title"].as_str().unwrap_or_default().to_owned();
    (status, title, body)
}

/// Every log line any test's server wrote, captured once per test binary.
pub fn logs() -> String {
    let buf = LOGS
        .get()
        .map(|b| b.lock().unwrap().clone())
        .unwrap_or_default();
    String::from_utf8_lossy(&buf).into_owned()
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(buf.clone());
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(web::logging::Redacting(move || sink.clone()))
            .try_init();
        buf
    });
}
