//! The bench's world: a `vellum serve` child on a seeded database, a
//! signed-in clinician, the bare ceiling server, the raw write ceiling.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::cookie::CookieStore as _;

use crate::Args;
use crate::load::{Figures, Outcome, drive};

pub const PASSWORD: &str = "Bench-quartz-harbour-91";
pub const CLINICIAN: &str = "bench.clinician";
pub const FLOOD_USER: &str = "bench.patient";
/// About the size of a short clinical letter.
pub const LETTER_BODY: &str = "Dear colleague, thank you for seeing this patient in clinic today. \
    The knee is much improved after physiotherapy; no further imaging is needed. \
    Please continue the current analgesia and review in six weeks. Yours sincerely.";

pub struct Environment {
    _home: tempfile::TempDir,
    child: Child,
    pub pid: u32,
    pub base: String,
    pub database_url: String,
    pub backend: &'static str,
    pub durability: String,
    /// `Cookie` header of the signed-in clinician, and its CSRF token.
    pub cookie: Arc<String>,
    pub csrf: Arc<String>,
    pub patient_ids: Arc<Vec<String>>,
    pub prefixes: Arc<Vec<String>>,
}

fn vellum_binary(args: &Args) -> Result<PathBuf> {
    if let Some(p) = &args.vellum {
        return Ok(p.clone());
    }
    let beside = std::env::current_exe()?
        .parent()
        .map(|d| d.join("vellum"))
        .context("locating the vellum binary")?;
    if beside.exists() {
        return Ok(beside);
    }
    bail!(
        "no vellum binary at {}: build it first (cargo build --release --bin vellum) or pass --vellum",
        beside.display()
    )
}

fn run(bin: &PathBuf, home: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Result<()> {
    use std::io::Write as _;
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(home)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("running vellum {args:?}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("vellum {args:?} failed ({status})");
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Environment {
    pub async fn start(args: &Args, patients: u64) -> Result<Self> {
        let bin = vellum_binary(args)?;
        let home = tempfile::tempdir()?;
        let h = home.path();
        let database_url = args
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}/data/vellum.db", h.display()));
        let location = match &args.database_url {
            Some(url) => format!("database_url = {url:?}\n"),
            None => format!("data_dir = {:?}\n", h.join("data").display().to_string()),
        };
        std::fs::write(
            h.join("vellum.toml"),
            format!(
                "{location}\
                 [database]\nmax_connections = {}\n\
                 [auth]\nmax_failures_per_account = 1000000\nmax_failures_per_ip = 1000000\n",
                std::env::var("BENCH_POOL")
                    .ok()
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(args.connections.clamp(4, 32))
            ),
        )?;
        let seed = || -> Result<()> {
            eprintln!("seeding {patients} synthetic patients …");
            run(
                &bin,
                h,
                &[
                    "demo",
                    "seed",
                    "--patients",
                    &patients.to_string(),
                    "--letters-per-patient",
                    "1",
                ],
                None,
            )?;
            eprintln!();
            Ok(())
        };
        match (&args.seeded_db, &args.database_url) {
            (Some(_), Some(_)) => bail!("--seeded-db is for SQLite; leave out --database-url"),
            (Some(kept), None) => {
                let db = h.join("data/vellum.db");
                std::fs::create_dir_all(h.join("data"))?;
                let name = kept.with_extension(format!("{patients}.db"));
                // The keyring the seed made goes with its database.
                let keys = kept.with_extension(format!("{patients}.keyring"));
                let keyring = h.join("data.keyring");
                if name.exists() {
                    eprintln!("copying the seeded database {} …", name.display());
                    std::fs::copy(&name, &db)
                        .with_context(|| format!("copying {}", name.display()))?;
                    // On disk before the server starts: otherwise its first
                    // checkpoint's fsync flushes the whole copy, and that
                    // stall would be measured as Vellum's.
                    std::fs::File::open(&db)?.sync_all()?;
                    if keys.exists() {
                        std::fs::copy(&keys, &keyring)?;
                    } else {
                        // Only the deactivated demo author signed nothing
                        // with it: a new keyring serves the bench's users.
                        run(&bin, h, &["keys", "init"], None)?;
                    }
                } else {
                    seed()?;
                    // One file: the write-ahead log checkpointed into it.
                    checkpoint(&database_url).await?;
                    std::fs::copy(&db, &name)
                        .with_context(|| format!("keeping a copy at {}", name.display()))?;
                    std::fs::copy(&keyring, &keys)?;
                    eprintln!("kept the seeded database at {}", name.display());
                }
            }
            (None, _) => seed()?,
        }
        // A seed kept by an older release is migrated here: the bench's
        // copy is synthetic and thrown away, so no backup is asked for.
        for (user, role) in [(CLINICIAN, "clinician"), (FLOOD_USER, "patient")] {
            run(
                &bin,
                h,
                &[
                    "--upgrade-without-backup",
                    "admin",
                    "create-user",
                    "--username",
                    user,
                    "--role",
                    role,
                    "--password-stdin",
                ],
                Some(&format!("{PASSWORD}\n")),
            )?;
        }
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(h.join("serve.log"))?;
        let mut child = Command::new(&bin)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--public-url",
                &base,
            ])
            .current_dir(h)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting vellum serve")?;
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{base}/api/health")).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline || child.try_wait()?.is_some() {
                bail!(
                    "vellum serve did not start (see its log in {})",
                    h.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pid = child.id();
        let (cookie, csrf) = sign_in_with_totp(&base).await?;
        let (patient_ids, prefixes) = sample(&database_url).await?;
        let (backend, durability) = durability(&database_url).await?;
        Ok(Self {
            _home: home,
            child,
            pid,
            base,
            database_url,
            backend,
            durability,
            cookie: Arc::new(cookie),
            csrf: Arc::new(csrf),
            patient_ids: Arc::new(patient_ids),
            prefixes: Arc::new(prefixes),
        })
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cookie_value(header: &str, name: &str) -> Option<String> {
    header
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.ends_with(name))
        .map(|(_, v)| v.to_owned())
}

/// The clinician signs in and enrols in two-factor sign-in (the default
/// policy), as a person would; returns the cookie header and CSRF token.
async fn sign_in_with_totp(base: &str) -> Result<(String, String)> {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let c = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .build()?;
    let url: reqwest::Url = base.parse()?;
    let header = |jar: &reqwest::cookie::Jar| {
        jar.cookies(&url)
            .and_then(|h| h.to_str().ok().map(str::to_owned))
            .unwrap_or_default()
    };
    let post = |path: &str, body: serde_json::Value| {
        let csrf = cookie_value(&header(&jar), "vellum-csrf").unwrap_or_default();
        c.post(format!("{base}{path}"))
            .header("x-csrf-token", csrf)
            .json(&body)
            .send()
    };
    c.get(format!("{base}/api/auth/csrf")).send().await?;
    let v: serde_json::Value = post(
        "/api/auth/login",
        serde_json::json!({"username": CLINICIAN, "password": PASSWORD}),
    )
    .await?
    .json()
    .await?;
    if v["status"] != "totp_enrolment_required" {
        bail!("unexpected sign-in answer {v}");
    }
    let v: serde_json::Value = post(
        "/api/account/totp/setup",
        serde_json::json!({"password": PASSWORD}),
    )
    .await?
    .json()
    .await?;
    let uri = v["otpauth_uri"].as_str().context("no otpauth URI")?;
    let b32 = uri
        .split("secret=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .context("no secret in the URI")?;
    let secret = crypto::totp::TotpSecret::from_base32(b32).context("bad secret")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let code = secret.code_at_step(crypto::totp::step_of(i64::try_from(now)?));
    let r = post(
        "/api/account/totp/enable",
        serde_json::json!({"code": code}),
    )
    .await?;
    if !r.status().is_success() {
        bail!("enabling two-factor sign-in answered {}", r.status());
    }
    let me = c.get(format!("{base}/api/auth/me")).send().await?;
    if !me.status().is_success() {
        bail!("not signed in after enrolment ({})", me.status());
    }
    let cookies = header(&jar);
    let csrf = cookie_value(&cookies, "vellum-csrf").context("no CSRF cookie")?;
    Ok((cookies, csrf))
}

/// A pre-login session with its CSRF token, as a sign-in page would hold.
pub async fn pre_login(base: &str) -> Result<(String, String)> {
    let r = reqwest::Client::new()
        .get(format!("{base}/api/auth/csrf"))
        .send()
        .await?;
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next().map(str::to_owned))
        .collect();
    let header = cookies.join("; ");
    let csrf = cookie_value(&header, "vellum-csrf").context("no CSRF cookie")?;
    Ok((header, csrf))
}

macro_rules! with_pool {
    ($url:expr, |$pool:ident| $body:expr) => {{
        if $url.starts_with("sqlite:") {
            let $pool = sqlx::SqlitePool::connect($url).await?;
            let out = $body;
            $pool.close().await;
            out
        } else {
            let $pool = sqlx::PgPool::connect($url).await?;
            let out = $body;
            $pool.close().await;
            out
        }
    }};
}

/// Moves everything in SQLite's write-ahead log into the database file.
async fn checkpoint(url: &str) -> Result<()> {
    let pool = sqlx::SqlitePool::connect(url).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

/// Patient ids to read and name prefixes to search for.
async fn sample(url: &str) -> Result<(Vec<String>, Vec<String>)> {
    let ids: Vec<String> = with_pool!(url, |pool| {
        sqlx::query_scalar("SELECT id FROM patients ORDER BY id LIMIT 100000")
            .fetch_all(&pool)
            .await?
    });
    let prefixes: Vec<String> = with_pool!(url, |pool| {
        sqlx::query_scalar(
            "SELECT DISTINCT substr(family_folded, 1, 3) FROM patients \
             WHERE length(family_folded) >= 3 LIMIT 200",
        )
        .fetch_all(&pool)
        .await?
    });
    if ids.is_empty() || prefixes.is_empty() {
        bail!("the seeded database holds no patients");
    }
    let mut all = prefixes.clone();
    all.extend(
        prefixes
            .iter()
            .map(|p| p.chars().take(2).collect::<String>()),
    );
    Ok((ids, all))
}

async fn durability(url: &str) -> Result<(&'static str, String)> {
    if url.starts_with("sqlite:") {
        return Ok((
            "SQLite",
            "WAL, synchronous=FULL: every commit is fsynced".to_owned(),
        ));
    }
    let (sync, fsync): (String, String) = with_pool!(url, |pool| {
        (
            sqlx::query_scalar::<_, String>("SHOW synchronous_commit")
                .fetch_one(&pool)
                .await?,
            sqlx::query_scalar::<_, String>("SHOW fsync")
                .fetch_one(&pool)
                .await?,
        )
    });
    Ok((
        "PostgreSQL",
        format!("synchronous_commit={sync}, fsync={fsync}"),
    ))
}

/// The bare ceiling: one static route, in this process.
pub async fn bare_server() -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(base)
}

/// Drives single-row INSERTs through `pool` (either backend) and removes
/// the scratch table afterwards.
macro_rules! insert_loop {
    ($pool:expr, $connections:expr, $seconds:expr) => {{
        let pool = $pool;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_write_ceiling (id TEXT PRIMARY KEY, \
             title TEXT NOT NULL, body TEXT NOT NULL, at BIGINT NOT NULL)",
        )
        .execute(&pool)
        .await?;
        let p = pool.clone();
        let f = drive("write_ceiling", $connections, $seconds, move |w, n| {
            let p = p.clone();
            async move {
                let r = sqlx::query(
                    "INSERT INTO bench_write_ceiling (id, title, body, at) VALUES ($1, $2, $3, $4)",
                )
                .bind(format!("{w}-{n}-{}", crypto::random::token(8)))
                .bind(format!("Bench letter {w}-{n}"))
                .bind(LETTER_BODY)
                .bind(0i64)
                .execute(&p)
                .await;
                if r.is_ok() {
                    Outcome::Ok
                } else {
                    Outcome::Error
                }
            }
        })
        .await;
        sqlx::query("DROP TABLE bench_write_ceiling")
            .execute(&pool)
            .await?;
        pool.close().await;
        f
    }};
}

/// Raw single-row INSERTs, each its own durable commit, into a scratch
/// table of the same database with the same settings and concurrency. On
/// SQLite the writers queue for one connection, as Vellum's own writes do
/// (SQLite has one writer; letting them contend for the file lock instead
/// would measure its busy handler's sleeps, not the disk).
pub async fn write_ceiling(url: &str, connections: usize, seconds: f64) -> Result<Figures> {
    use std::str::FromStr as _;
    let max = u32::try_from(connections).unwrap_or(16);
    let figures = if url.starts_with("sqlite:") {
        // The settings the store opens SQLite with.
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        insert_loop!(pool, connections, seconds)
    } else {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(max)
            .test_before_acquire(false)
            .connect(url)
            .await?;
        insert_loop!(pool, connections, seconds)
    };
    Ok(figures)
}

/// Cores, memory and CPU model, from /proc.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cores} cores, {mem_gib:.0} GiB, {model}")
}
