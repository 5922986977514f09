//! Settings, layered: built-in defaults ← `vellum.toml` ← `VELLUM_*`
//! environment variables ← command-line flags. Secrets may come from files
//! (`VELLUM_DATABASE_URL_FILE`, …). Unknown keys are an error, wherever
//! they come from, so a typo never silently leaves a default in place.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Environment variables with the prefix that are not settings.
const NOT_SETTINGS: &[&str] = &[
    "VELLUM_CONFIG",
    "VELLUM_LOG",
    "VELLUM_TEST_DATABASE_URL",
    "VELLUM_BIN",
    // The conventional variable for an `env:VELLUM_KEYRING` key source.
    "VELLUM_KEYRING",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    #[serde(default)]
    pub database: DatabaseSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub alerts: AlertsSection,
    #[serde(default)]
    pub server: ServerSection,
    /// `VELLUM_KEY_SOURCE`, the same as `keys.source`.
    pub key_source: Option<String>,
    #[serde(default)]
    pub keys: KeysSection,
    #[serde(default)]
    pub backup: BackupSection,
}

/// `[backup]`: who backups are encrypted to, and `serve`'s schedule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// age X25519 public keys (`age1…`); a list, or one string with
    /// several separated by commas (handy in `VELLUM_BACKUP__RECIPIENTS`).
    pub recipients: Option<OneOrMany>,
    /// How often `serve` writes a backup: `30m`, `6h`, `1d` (off when unset).
    pub interval: Option<String>,
    /// Where scheduled backups go (default `<data dir>.backups`).
    pub dir: Option<PathBuf>,
    /// How many scheduled backups to keep (default 14).
    pub keep: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_list(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => s
                .split([',', ' ', '\n'])
                .filter(|r| !r.trim().is_empty())
                .map(|r| r.trim().to_owned())
                .collect(),
            OneOrMany::Many(v) => v,
        }
    }
}

/// `serve`'s backup schedule, resolved.
pub struct ScheduleSettings {
    pub every_ms: i64,
    pub dir: PathBuf,
    pub keep: usize,
}

/// `30m`, `6h`, `1d`, `90s` → milliseconds.
fn parse_interval(text: &str) -> Result<i64> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = num.parse().ok().filter(|n| *n > 0).with_context(|| {
        format!("backup.interval {text:?}: a positive number with s, m, h or d, e.g. 1d")
    })?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("backup.interval {text:?}: a positive number with s, m, h or d, e.g. 1d"),
    };
    let ms = n.saturating_mul(unit_ms);
    if ms < 60_000 {
        bail!("backup.interval {text:?} is shorter than a minute");
    }
    Ok(ms)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    /// `file:PATH`, `env:VAR` or `pkcs11:module=…;token=…` (default: the
    /// file `<data dir>.keyring`).
    pub source: Option<String>,
    /// The PKCS#11 token PIN, read from this file…
    pub pkcs11_pin_file: Option<PathBuf>,
    /// …or given here (`VELLUM_KEYS__PKCS11_PIN_FILE=/run/secrets/pin` reads
    /// a file into this, like every `_FILE` variable).
    pub pkcs11_pin: Option<String>,
    /// How often a running server re-reads the key source (default 30).
    pub reload_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    pub max_connections: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    pub idle_timeout_minutes: Option<i64>,
    pub absolute_timeout_hours: Option<i64>,
    pub max_failures_per_account: Option<i64>,
    pub max_failures_per_ip: Option<i64>,
    /// Roles that must use two-factor sign-in (default clinician, admin).
    pub require_totp_for: Option<Vec<String>>,
    /// The issuer name authenticator apps show (default Vellum).
    pub totp_issuer: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    pub webhook_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub max_body_bytes: Option<usize>,
    pub request_timeout_seconds: Option<u64>,
    pub trusted_proxies: Option<Vec<String>>,
}

/// Flags common to every command.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub key_source: Option<String>,
    pub upgrade_without_backup: bool,
}

/// The settings in force.
pub struct Settings {
    pub listen: String,
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database_url: SecretString,
    pub max_connections: u32,
    pub app: app::AppConfig,
    pub max_body_bytes: usize,
    pub request_timeout: std::time::Duration,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// As configured; `None` is the default keyring file.
    pub key_source: Option<String>,
    pub pkcs11_pin: Option<SecretString>,
    pub key_reload_seconds: u64,
    /// `backup.recipients` (validated: public keys only).
    pub backup_recipients: Option<crypto::BackupRecipients>,
    pub backup_schedule: Option<ScheduleSettings>,
    /// `--upgrade-without-backup`: migrate data without a recent backup.
    pub upgrade_without_backup: bool,
}

impl Settings {
    /// Where the key file lives: beside the data directory, never inside it.
    pub fn keyring_path(&self) -> PathBuf {
        let mut s = self.data_dir.as_os_str().to_owned();
        while s.len() > 1 && s.to_string_lossy().ends_with('/') {
            let t = s.to_string_lossy().trim_end_matches('/').to_owned();
            s = t.into();
        }
        s.push(".keyring");
        PathBuf::from(s)
    }

    pub fn load(flags: &Overrides) -> Result<Self> {
        let mut table = toml::Table::new();
        let file = flags
            .config
            .clone()
            .or_else(|| std::env::var_os("VELLUM_CONFIG").map(PathBuf::from));
        match file {
            Some(path) => merge(&mut table, read_file(&path)?),
            None if Path::new("vellum.toml").exists() => {
                merge(&mut table, read_file(Path::new("vellum.toml"))?);
            }
            None => {}
        }
        merge(&mut table, from_env(std::env::vars())?);
        let cfg: FileConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    anyhow::anyhow!(
                        "configuration (vellum.toml or VELLUM_* environment): {}",
                        e.message()
                    )
                })?;
        Self::resolve(cfg, flags)
    }

    fn resolve(cfg: FileConfig, flags: &Overrides) -> Result<Self> {
        let listen = flags
            .listen
            .clone()
            .or(cfg.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let public_url = flags
            .public_url
            .clone()
            .or(cfg.public_url)
            .unwrap_or_else(|| default_public_url(&listen));
        let public_url = public_url.trim_end_matches('/').to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("public_url must start with http:// or https:// (got {public_url:?})");
        }
        if public_url.matches('/').count() > 2 {
            bail!("public_url must be an origin without a path, e.g. https://vellum.example.org");
        }
        let data_dir = flags
            .data_dir
            .clone()
            .or(cfg.data_dir)
            .unwrap_or_else(|| PathBuf::from("./vellum-data"));
        let database_url = flags
            .database_url
            .clone()
            .or(cfg.database_url)
            .unwrap_or_else(|| format!("sqlite://{}/vellum.db", data_dir.display()));
        if store::Backend::of(&database_url).is_none() {
            bail!(
                "database_url must start with sqlite:// or postgres:// (got {})",
                store::redact_url(&database_url)
            );
        }
        let d = app::AppConfig::default();
        let minutes = |m: i64| m * 60_000;
        let app = app::AppConfig {
            idle_timeout_ms: cfg
                .auth
                .idle_timeout_minutes
                .map_or(d.idle_timeout_ms, minutes),
            absolute_timeout_ms: cfg
                .auth
                .absolute_timeout_hours
                .map_or(d.absolute_timeout_ms, |h| minutes(h * 60)),
            max_failures_per_account: cfg
                .auth
                .max_failures_per_account
                .unwrap_or(d.max_failures_per_account),
            max_failures_per_ip: cfg
                .auth
                .max_failures_per_ip
                .unwrap_or(d.max_failures_per_ip),
            alert_webhook_url: cfg.alerts.webhook_url,
            require_totp_for: match cfg.auth.require_totp_for {
                None => d.require_totp_for.clone(),
                Some(roles) => roles
                    .iter()
                    .map(|r| {
                        r.parse().map_err(|e: domain::ParseError| {
                            anyhow::anyhow!("auth.require_totp_for: {e}")
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            },
            totp_issuer: cfg
                .auth
                .totp_issuer
                .unwrap_or_else(|| d.totp_issuer.clone()),
            ..d
        };
        if app.idle_timeout_ms <= 0 || app.absolute_timeout_ms < app.idle_timeout_ms {
            bail!("auth timeouts must be positive, and the absolute timeout at least the idle one");
        }
        let request_timeout_seconds = cfg.server.request_timeout_seconds.unwrap_or(30);
        if !(1..=3600).contains(&request_timeout_seconds) {
            bail!(
                "server.request_timeout_seconds must be from 1 to 3600 (got {request_timeout_seconds})"
            );
        }
        let trusted_proxies = cfg
            .server
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|a| {
                a.parse()
                    .with_context(|| format!("server.trusted_proxies: {a:?} is not an IP address"))
            })
            .collect::<Result<Vec<_>>>()?;
        if cfg.key_source.is_some() && cfg.keys.source.is_some() {
            bail!(
                "set the key source once: key_source (VELLUM_KEY_SOURCE) or keys.source, not both"
            );
        }
        let recipients = cfg
            .backup
            .recipients
            .map(OneOrMany::into_list)
            .unwrap_or_default();
        let backup_recipients = if recipients.is_empty() {
            None
        } else {
            Some(crypto::BackupRecipients::parse(&recipients).map_err(|e| anyhow::anyhow!("{e}"))?)
        };
        let backup_schedule = match cfg.backup.interval {
            None => None,
            Some(text) => {
                if backup_recipients.is_none() {
                    bail!(
                        "backup.interval is set but backup.recipients is empty: scheduled backups need the age1… public key(s) to encrypt to"
                    );
                }
                let mut default_dir = data_dir.as_os_str().to_owned();
                default_dir.push(".backups");
                Some(ScheduleSettings {
                    every_ms: parse_interval(&text)?,
                    dir: cfg
                        .backup
                        .dir
                        .clone()
                        .unwrap_or_else(|| PathBuf::from(default_dir)),
                    keep: cfg.backup.keep.unwrap_or(14).max(1),
                })
            }
        };
        Ok(Self {
            upgrade_without_backup: flags.upgrade_without_backup,
            backup_recipients,
            backup_schedule,
            key_source: flags
                .key_source
                .clone()
                .or(cfg.key_source)
                .or(cfg.keys.source),
            pkcs11_pin: match (cfg.keys.pkcs11_pin, cfg.keys.pkcs11_pin_file) {
                (Some(_), Some(_)) => {
                    bail!("set the PKCS#11 PIN once: keys.pkcs11_pin or keys.pkcs11_pin_file")
                }
                (Some(pin), None) => Some(SecretString::from(pin)),
                (None, Some(path)) => Some(SecretString::from(
                    std::fs::read_to_string(&path)
                        .with_context(|| {
                            format!("reading the PKCS#11 PIN file {}", path.display())
                        })?
                        .trim_end_matches(['\n', '\r'])
                        .to_owned(),
                )),
                (None, None) => None,
            },
            key_reload_seconds: cfg.keys.reload_seconds.unwrap_or(30).max(1),
            trusted_proxies,
            listen,
            public_url,
            data_dir,
            database_url: SecretString::from(database_url),
            max_connections: cfg.database.max_connections.unwrap_or(10),
            app,
            max_body_bytes: cfg.server.max_body_bytes.unwrap_or(1024 * 1024),
            request_timeout: std::time::Duration::from_secs(request_timeout_seconds),
        })
    }

    pub fn database_url_redacted(&self) -> String {
        store::redact_url(self.database_url.expose_secret())
    }
}

fn default_public_url(listen: &str) -> String {
    let (host, port) = listen.rsplit_once(':').unwrap_or((listen, "8080"));
    let host = match host {
        "0.0.0.0" | "[::]" | "" => "127.0.0.1",
        h => h,
    };
    format!("http://{host}:{port}")
}

fn read_file(path: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading configuration file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// `VELLUM_AUTH__IDLE_TIMEOUT_MINUTES=30` → `auth.idle_timeout_minutes = 30`;
/// `VELLUM_DATABASE_URL_FILE=/run/secrets/db` reads the value from a file.
fn from_env(vars: impl Iterator<Item = (String, String)>) -> Result<toml::Table> {
    let mut table = toml::Table::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("VELLUM_") else {
            continue;
        };
        if NOT_SETTINGS.contains(&name.as_str()) {
            continue;
        }
        let mut key = rest.to_ascii_lowercase();
        let (value, from_file) = if let Some(k) = key.strip_suffix("_file") {
            let text = std::fs::read_to_string(&value)
                .with_context(|| format!("{name}: reading {value}"))?;
            key = k.to_owned();
            (text.trim_end_matches(['\n', '\r']).to_owned(), true)
        } else {
            (value, false)
        };
        // A file holds a secret: text, even when it looks like a number.
        let typed = if from_file {
            toml::Value::String(value)
        } else if let Ok(i) = value.parse::<i64>() {
            toml::Value::Integer(i)
        } else if let Ok(b) = value.parse::<bool>() {
            toml::Value::Boolean(b)
        } else {
            toml::Value::String(value)
        };
        let path: Vec<&str> = key.split("__").collect();
        let (last, parents) = path.split_last().context("empty setting name")?;
        let mut at = &mut table;
        for p in parents {
            let entry = at
                .entry((*p).to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(t) = entry else {
                bail!("{name}: {p} is not a section");
            };
            at = t;
        }
        at.insert((*last).to_owned(), typed);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> toml::Table {
        from_env(
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned())),
        )
        .unwrap()
    }

    #[test]
    fn environment_variables_nest_with_double_underscores() {
        let t = env(&[
            ("VELLUM_AUTH__IDLE_TIMEOUT_MINUTES", "30"),
            ("VELLUM_LISTEN", "0.0.0.0:9000"),
            ("PATH", "/bin"),
        ]);
        let cfg: FileConfig = toml::Value::Table(t).try_into().unwrap();
        assert_eq!(cfg.auth.idle_timeout_minutes, Some(30));
        assert_eq!(cfg.listen.as_deref(), Some("0.0.0.0:9000"));
    }

    #[test]
    fn unknown_keys_are_an_error() {
        let t = env(&[("VELLUM_LISTN", "x")]);
        assert!(toml::Value::Table(t).try_into::<FileConfig>().is_err());
        let file: toml::Table = toml::from_str("[auth]\nidle_timeout = 3").unwrap();
        assert!(toml::Value::Table(file).try_into::<FileConfig>().is_err());
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        std::fs::write(&p, "postgres://u:pw@db/vellum\n").unwrap();
        let t = env(&[("VELLUM_DATABASE_URL_FILE", p.to_str().unwrap())]);
        let cfg: FileConfig = toml::Value::Table(t).try_into().unwrap();
        assert_eq!(
            cfg.database_url.as_deref(),
            Some("postgres://u:pw@db/vellum")
        );
    }

    #[test]
    fn backup_intervals_read_as_durations_and_nonsense_is_refused() {
        assert_eq!(parse_interval("1d").unwrap(), 86_400_000);
        assert_eq!(parse_interval("30m").unwrap(), 1_800_000);
        assert_eq!(parse_interval("90s").unwrap(), 90_000);
        for bad in ["", "d", "0h", "5", "10s", "1w", "-1h"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backup_recipients_come_as_a_list_or_a_comma_separated_variable_and_secrets_are_refused() {
        let (_, r1) = crypto::generate_backup_identity("t");
        let (_, r2) = crypto::generate_backup_identity("t");
        let t = env(&[
            ("VELLUM_BACKUP__RECIPIENTS", &format!("{r1},{r2}")),
            ("VELLUM_BACKUP__INTERVAL", "1d"),
        ]);
        let cfg: FileConfig = toml::Value::Table(t).try_into().unwrap();
        let s = Settings::resolve(cfg, &Overrides::default()).unwrap();
        assert_eq!(s.backup_recipients.unwrap().to_strings(), vec![r1, r2]);
        let sched = s.backup_schedule.unwrap();
        assert_eq!(sched.every_ms, 86_400_000);
        assert_eq!(sched.dir, PathBuf::from("./vellum-data.backups"));

        let (secret, _) = crypto::generate_backup_identity("t");
        let line = secret.expose_secret().lines().last().unwrap().to_owned();
        let file: toml::Table =
            toml::from_str(&format!("[backup]\nrecipients = [{line:?}]")).unwrap();
        let cfg: FileConfig = toml::Value::Table(file).try_into().unwrap();
        let err = Settings::resolve(cfg, &Overrides::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("secret identity") && !err.contains(&line),
            "{err}"
        );

        let file: toml::Table = toml::from_str("[backup]\ninterval = \"1d\"").unwrap();
        let cfg: FileConfig = toml::Value::Table(file).try_into().unwrap();
        assert!(Settings::resolve(cfg, &Overrides::default()).is_err());
    }

    #[test]
    fn the_request_timeout_defaults_to_30_seconds_and_out_of_range_values_are_refused() {
        let s = Settings::resolve(FileConfig::default(), &Overrides::default()).unwrap();
        assert_eq!(s.request_timeout, std::time::Duration::from_secs(30));
        let t = env(&[("VELLUM_SERVER__REQUEST_TIMEOUT_SECONDS", "5")]);
        let cfg: FileConfig = toml::Value::Table(t).try_into().unwrap();
        let s = Settings::resolve(cfg, &Overrides::default()).unwrap();
        assert_eq!(s.request_timeout, std::time::Duration::from_secs(5));
        for bad in ["0", "3601"] {
            let t = env(&[("VELLUM_SERVER__REQUEST_TIMEOUT_SECONDS", bad)]);
            let cfg: FileConfig = toml::Value::Table(t).try_into().unwrap();
            let err = Settings::resolve(cfg, &Overrides::default())
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("server.request_timeout_seconds"), "{err}");
        }
    }

    #[test]
    fn defaults_derive_public_url_and_database_from_listen_and_data_dir() {
        let s = Settings::resolve(
            FileConfig::default(),
            &Overrides {
                listen: Some("0.0.0.0:9090".into()),
                data_dir: Some("/srv/v/".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(s.public_url, "http://127.0.0.1:9090");
        assert_eq!(s.database_url.expose_secret(), "sqlite:///srv/v//vellum.db");
        assert_eq!(s.keyring_path(), PathBuf::from("/srv/v.keyring"));
    }
}
