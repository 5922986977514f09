//! `vellum-bench`: Vellum's throughput and latency against the machine's
//! ceiling. Starts `vellum serve` (SQLite by default, PostgreSQL with
//! `--database-url`) on a free loopback port, seeds synthetic patients,
//! signs a clinician in with two-factor sign-in, and drives each scenario
//! from its own keep-alive HTTP client — next to a bare one-route axum
//! server (the ceiling for HTTP) and a raw single-row INSERT loop (the
//! ceiling for durable writes). Prints figures; asserts nothing.

mod load;
mod setup;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use load::{Figures, HeaderValue, Http, Outcome, drive, process_usage};

#[derive(Parser, Clone)]
#[command(
    name = "vellum-bench",
    about = "Benchmarks Vellum against the machine's ceiling"
)]
pub struct Args {
    /// PostgreSQL database to use (must be empty or a bench database); default SQLite in a temporary folder.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Synthetic patients to seed (default 100000; 10000 with --quick).
    #[arg(long)]
    pub patients: Option<u64>,
    /// Seconds per scenario (default 10; 3 with --quick).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Every scenario for a few seconds at 10,000 patients (about two minutes).
    #[arg(long)]
    pub quick: bool,
    /// Also write the figures as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// SQLite only: a seeded database to start from, made (and kept here)
    /// on the first run with these --patients, copied on later runs — so
    /// repeated runs at 1,000,000 patients seed once.
    #[arg(long, value_name = "FILE")]
    pub seeded_db: Option<PathBuf>,
    /// Run only these scenarios (comma-separated; `bare` always runs), e.g.
    /// to profile one: `--only letter_create --seconds 30`.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub only: Vec<String>,
    /// The vellum binary (default: beside this one, e.g. target/release/vellum).
    #[arg(long, value_name = "FILE")]
    pub vellum: Option<PathBuf>,
}

/// Sends, reads the whole body (so the connection is reused), and checks
/// the status: for the sign-ins of `login_flood`, each from a pre-login
/// session of its own.
async fn expect(req: reqwest::RequestBuilder, want: u16) -> Outcome {
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let read = r.bytes().await.is_ok();
            if read && status == want {
                Outcome::Ok
            } else {
                Outcome::Error
            }
        }
        Err(_) => Outcome::Error,
    }
}

fn pick<T: Clone>(items: &[T]) -> T {
    let i = crypto::random::index_below(items.len() as u64) as usize;
    items[i].clone()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let patients = args
        .patients
        .unwrap_or(if args.quick { 10_000 } else { 100_000 });
    let seconds = args.seconds.unwrap_or(if args.quick { 3.0 } else { 10.0 });
    let c = args.connections.max(1);

    const SCENARIOS: [&str; 9] = [
        "bare",
        "health",
        "me",
        "patient_read",
        "patient_search",
        "fhir_search",
        "letter_create",
        "write_ceiling",
        "login_flood",
    ];
    if let Some(unknown) = args.only.iter().find(|n| !SCENARIOS.contains(&n.as_str())) {
        anyhow::bail!(
            "--only: no scenario {unknown:?}; the scenarios are {}",
            SCENARIOS.join(", ")
        );
    }
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|n| n == name);
    let env = setup::Environment::start(&args, patients).await?;
    let http = Http::new(&env.base, c)?;
    let bare = Http::new(&setup::bare_server().await?, c)?;
    let base = env.base.clone();
    let cookie = HeaderValue::from_str(&env.cookie).context("session cookie")?;
    let csrf = HeaderValue::from_str(&env.csrf).context("CSRF token")?;
    let mut results: Vec<Figures> = Vec::new();

    let measure = |name: &str| {
        eprintln!("▶ {name} ({c} connections, {seconds} s)");
        (process_usage(env.pid), Instant::now())
    };
    let finish = |mut f: Figures, before: (Option<(f64, u64)>, Instant), pid: u32| {
        if let (Some((_, t0)), Some((rss, t1))) = (before.0, process_usage(pid)) {
            f.rss_mb = Some(rss);
            let secs = before.1.elapsed().as_secs_f64();
            f.cpu_pct = Some((t1 - t0) as f64 / load::TICKS_PER_SEC / secs * 100.0);
        }
        f
    };

    // The ceiling: a one-route axum server in this process.
    {
        let h = bare.clone();
        let f = drive("bare", c, seconds, move |w, _| {
            let h = h.clone();
            async move { h.send(w, h.get("/", &[]), 200).await }
        })
        .await;
        results.push(f);
    }
    macro_rules! get_scenario {
        ($name:expr, $path:expr, $want:expr) => {{
            if wanted($name) {
                get_scenario!(@run $name, $path, $want);
            }
        }};
        (@run $name:expr, $path:expr, $want:expr) => {{
            let before = measure($name);
            let (h, cookie) = (http.clone(), cookie.clone());
            let path = Arc::new($path);
            let f = drive($name, c, seconds, move |w, _| {
                let h = h.clone();
                let request = h.get(&path(), &[("cookie", &cookie)]);
                async move { h.send(w, request, $want).await }
            })
            .await;
            results.push(finish(f, before, env.pid));
        }};
    }
    get_scenario!("health", || "/api/health".to_owned(), 200);
    get_scenario!("me", || "/api/auth/me".to_owned(), 200);
    {
        let ids = env.patient_ids.clone();
        get_scenario!(
            "patient_read",
            move || format!("/api/patients/{}", pick(&ids)),
            200
        );
    }
    {
        let p = env.prefixes.clone();
        get_scenario!(
            "patient_search",
            move || format!("/api/patients?q={}", pick(&p)),
            200
        );
    }
    {
        let p = env.prefixes.clone();
        get_scenario!(
            "fhir_search",
            move || format!("/fhir/R4/Patient?family={}&_count=20", pick(&p)),
            200
        );
    }

    // Durable writes: a letter (and its access-log row) per request.
    if wanted("letter_create") {
        let before = measure("letter_create");
        let (h, cookie, csrf, ids) = (
            http.clone(),
            cookie.clone(),
            csrf.clone(),
            env.patient_ids.clone(),
        );
        // The body's JSON, but for the title, once.
        let body = serde_json::to_string(setup::LETTER_BODY)?;
        let f = drive("letter_create", c, seconds, move |w, n| {
            let h = h.clone();
            let request = h.post_json(
                &format!("/api/patients/{}/letters", pick(&ids)),
                &[("cookie", &cookie), ("x-csrf-token", &csrf)],
                format!(r#"{{"title":"Bench letter {w}-{n}","body":{body}}}"#),
            );
            async move { h.send(w, request, 201).await }
        })
        .await;
        results.push(finish(f, before, env.pid));
    }

    // The ceiling for durable writes: raw single-row INSERTs, same database,
    // same durability, same concurrency, no HTTP.
    if wanted("write_ceiling") {
        eprintln!("▶ write_ceiling ({c} connections, {seconds} s)");
        let f = setup::write_ceiling(&env.database_url, c, seconds).await?;
        results.push(f);
    }

    // Logins saturating password hashing while `me` runs alongside.
    if wanted("login_flood") {
        let before = measure("login_flood");
        let flood = tokio::spawn({
            let (h, base) = (reqwest::Client::new(), base.clone());
            async move {
                drive("logins", 8, seconds, move |_, _| {
                    let (h, base) = (h.clone(), base.clone());
                    async move {
                        // Each sign-in from its own pre-login session, as
                        // separate people at their sign-in pages.
                        let Ok((cookie, csrf)) = setup::pre_login(&base).await else {
                            return Outcome::Error;
                        };
                        expect(
                            h.post(format!("{base}/api/auth/login"))
                                .header("cookie", cookie)
                                .header("x-csrf-token", csrf)
                                .json(&serde_json::json!({
                                    "username": setup::FLOOD_USER,
                                    "password": setup::PASSWORD
                                })),
                            200,
                        )
                        .await
                    }
                })
                .await
            }
        });
        let (h, cookie) = (http.clone(), cookie.clone());
        let mut f = drive("login_flood", c, seconds, move |w, _| {
            let h = h.clone();
            let request = h.get("/api/auth/me", &[("cookie", &cookie)]);
            async move { h.send(w, request, 200).await }
        })
        .await;
        let logins = flood.await.context("login flood")?;
        f.errors += logins.errors;
        f.note = format!(
            "me alongside {:.0} logins/s (login p99 {:.0} ms)",
            logins.rps, logins.p99_ms
        );
        results.push(finish(f, before, env.pid));
    }

    let bare_rps = results.first().map_or(0.0, |b| b.rps);
    for f in &mut results {
        f.ratio_to_bare = Some(f.rps / bare_rps.max(1e-9));
    }
    report(&results, &env, patients, seconds, c);
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "machine": setup::machine(),
            "database": env.backend,
            "durability": env.durability,
            "patients": patients,
            "seconds": seconds,
            "connections": c,
            "scenarios": results.iter().map(|f| serde_json::json!({
                "name": f.name,
                "rps": f.rps,
                "p50_ms": f.p50_ms,
                "p90_ms": f.p90_ms,
                "p99_ms": f.p99_ms,
                "max_ms": f.max_ms,
                "errors": f.errors,
                "requests": f.requests,
                "ratio_to_bare": f.ratio_to_bare,
                "server_rss_mb": f.rss_mb,
                "server_cpu_pct": f.cpu_pct,
                "note": f.note,
            })).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    env.stop().await;
    Ok(())
}

fn report(results: &[Figures], env: &setup::Environment, patients: u64, seconds: f64, c: usize) {
    println!(
        "\nvellum-bench — {} · {} ({}) · {patients} patients · {c} connections · {seconds} s each",
        setup::machine(),
        env.backend,
        env.durability
    );
    println!(
        "{:<15} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8} {:>7}",
        "scenario",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
        "× bare",
        "RSS MB",
        "CPU %"
    );
    for f in results {
        println!(
            "{:<15} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>7} {:>8.2} {:>8} {:>7}",
            f.name,
            f.rps,
            f.p50_ms,
            f.p90_ms,
            f.p99_ms,
            f.max_ms,
            f.errors,
            f.ratio_to_bare.unwrap_or(0.0),
            f.rss_mb.map_or("-".to_owned(), |m| format!("{m:.0}")),
            f.cpu_pct.map_or("-".to_owned(), |p| format!("{p:.0}")),
        );
        if !f.note.is_empty() {
            println!("{:<15} {}", "", f.note);
        }
    }
    let by = |n: &str| results.iter().find(|f| f.name == n);
    if let (Some(l), Some(w)) = (by("letter_create"), by("write_ceiling")) {
        println!(
            "\nletter_create = {:.0}% of the write ceiling ({:.0} vs {:.0} durable writes/s)",
            l.rps / w.rps.max(1e-9) * 100.0,
            l.rps,
            w.rps
        );
    }
}
