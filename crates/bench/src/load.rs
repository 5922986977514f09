//! Driving load: C keep-alive connections, each sending one request after
//! another for S seconds, every latency kept.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one request ended as.
pub enum Outcome {
    Ok,
    Error,
}

/// The figures of one scenario.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub name: String,
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The Vellum server's resident memory after the scenario (MB).
    pub rss_mb: Option<f64>,
    /// The Vellum server's CPU use during the scenario (% of one core).
    pub cpu_pct: Option<f64>,
    pub ratio_to_bare: Option<f64>,
    pub note: String,
}

/// Runs `op` from `connections` tasks for `seconds`; `op(worker, n)` sends
/// one request.
pub async fn drive<F, Fut>(name: &str, connections: usize, seconds: f64, op: F) -> Figures
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let op = Arc::new(op);
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..connections {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut errors = 0u64;
            let mut n = 0u64;
            while Instant::now() < until {
                let t = Instant::now();
                if let Outcome::Error = op(w, n).await {
                    errors += 1;
                }
                lat.push(t.elapsed());
                n += 1;
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((lat, e)) = t.await {
            all.extend(lat);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    summarise(name, all, errors, elapsed)
}

pub fn summarise(name: &str, mut lat: Vec<Duration>, errors: u64, elapsed: f64) -> Figures {
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat[i.min(lat.len() - 1)].as_secs_f64() * 1000.0
    };
    Figures {
        name: name.to_owned(),
        requests: lat.len() as u64,
        errors,
        rps: lat.len() as f64 / elapsed.max(1e-9),
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        ..Figures::default()
    }
}

/// Resident memory (MB) and CPU ticks (user + system) of a process.
pub fn process_usage(pid: u32) -> Option<(f64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((rss_kb / 1024.0, utime + stime))
}

/// Clock ticks per second for /proc CPU figures (the usual Linux value).
pub const TICKS_PER_SEC: f64 = 100.0;
