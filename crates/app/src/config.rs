/// Policies the use cases follow. Defaults are the safe ones.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// A session unused this long ends (default 15 minutes).
    pub idle_timeout_ms: i64,
    /// A session ends this long after login whatever its use (default 12 h).
    pub absolute_timeout_ms: i64,
    /// Failed logins are counted over this window (default 15 minutes)…
    pub login_window_ms: i64,
    /// …and at this many for one account, further attempts get 429.
    pub max_failures_per_account: i64,
    /// …or at this many from one IP address.
    pub max_failures_per_ip: i64,
    /// More than this many CSRF failures from one IP…
    pub csrf_alert_threshold: i64,
    /// …within this window raise one alert (default 1 hour).
    pub csrf_alert_window_ms: i64,
    /// Alerts are POSTed here as JSON when set.
    pub alert_webhook_url: Option<String>,
    /// How long a first-run setup link stays valid (default 1 hour).
    pub setup_link_ttl_ms: i64,
    /// These roles must use two-factor sign-in: at their next login they
    /// enrol before anything else (default clinician and admin).
    pub require_totp_for: Vec<domain::Role>,
    /// The issuer shown in authenticator apps (default `Vellum`).
    pub totp_issuer: String,
}

const MINUTE: i64 = 60_000;

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 15 * MINUTE,
            absolute_timeout_ms: 12 * 60 * MINUTE,
            login_window_ms: 15 * MINUTE,
            max_failures_per_account: 10,
            max_failures_per_ip: 10,
            csrf_alert_threshold: 10,
            csrf_alert_window_ms: 60 * MINUTE,
            alert_webhook_url: None,
            setup_link_ttl_ms: 60 * MINUTE,
            require_totp_for: vec![domain::Role::Clinician, domain::Role::Admin],
            totp_issuer: "Vellum".to_owned(),
        }
    }
}
