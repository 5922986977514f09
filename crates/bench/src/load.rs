//! Driving load: C keep-alive connections, each sending one request after
//! another for S seconds, every latency kept; and the HTTP client they
//! send with.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
pub use hyper::header::HeaderValue;

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

/// The HTTP client the scenarios are driven with: one keep-alive HTTP/1.1
/// connection per worker, each request built by the scenario and sent as
/// it is. It does no more per request than send, read the answer and
/// check its status — no URL parsing, pool lookup or header merging, as a
/// general-purpose client does — so what it costs the machine (which the
/// server under test shares) is as little as the write ceiling's database
/// client costs it.
pub struct Http {
    addr: std::net::SocketAddr,
    host: HeaderValue,
    /// Worker `w`'s connection, opened when first needed and again after
    /// one fails.
    slots: Box<[tokio::sync::Mutex<Option<Connection>>]>,
}

/// One worker's open connection.
type Connection = SendRequest<Full<Bytes>>;

/// A request for [`Http::send`]: method, path (with query) and headers.
pub type Request = hyper::Request<Full<Bytes>>;

impl Http {
    /// A client of the server at `base` (`http://HOST:PORT`) for
    /// `workers` workers.
    pub fn new(base: &str, workers: usize) -> anyhow::Result<Arc<Self>> {
        let authority = base
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("not an http:// address: {base}"))?;
        Ok(Arc::new(Self {
            addr: authority.parse()?,
            host: HeaderValue::from_str(authority)?,
            slots: (0..workers)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
        }))
    }

    /// A GET of `path` with `headers`.
    pub fn get(&self, path: &str, headers: &[(&'static str, &HeaderValue)]) -> Request {
        self.request(hyper::Method::GET, path, headers, Bytes::new())
    }

    /// A POST of the JSON `body` to `path` with `headers`.
    pub fn post_json(
        &self,
        path: &str,
        headers: &[(&'static str, &HeaderValue)],
        body: String,
    ) -> Request {
        let mut r = self.request(hyper::Method::POST, path, headers, Bytes::from(body));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }

    fn request(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&'static str, &HeaderValue)],
        body: Bytes,
    ) -> Request {
        let mut r = hyper::Request::new(Full::new(body));
        *r.method_mut() = method;
        // A path that is not a valid URI is sent as `/`, and its answer
        // (not the one wanted) counts as an error.
        *r.uri_mut() = path.parse().unwrap_or_default();
        let h = r.headers_mut();
        h.insert(hyper::header::HOST, self.host.clone());
        for (name, value) in headers {
            h.insert(*name, (*value).clone());
        }
        r
    }

    /// Sends `request` on worker `w`'s connection and reads the whole
    /// answer: Ok if its status is `want`.
    pub async fn send(&self, w: usize, request: Request, want: u16) -> Outcome {
        let Some(slot) = self.slots.get(w) else {
            return Outcome::Error;
        };
        let mut slot = slot.lock().await;
        let sender = match slot.as_mut() {
            // One the server closed while it sat idle is replaced before
            // the request is sent, not counted as a failed request.
            Some(sender) if !sender.is_closed() => sender,
            _ => match self.connect().await {
                Ok(sender) => slot.insert(sender),
                Err(_) => return Outcome::Error,
            },
        };
        let answer = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            response.into_body().collect().await?;
            Ok::<u16, hyper::Error>(status)
        };
        match answer.await {
            Ok(status) if status == want => Outcome::Ok,
            Ok(_) => Outcome::Error,
            Err(_) => {
                // A new connection for the next request.
                *slot = None;
                Outcome::Error
            }
        }
    }

    async fn connect(&self) -> anyhow::Result<Connection> {
        let stream = tokio::net::TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }
}
