//! Opening the store, loading the keys, building the app, serving.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use app::{App, AppError, Clock as _, Sha256Chain, SystemClock};
use crypto::{Keyring, KeyringError};
use secrecy::ExposeSecret;
use store::{ConnectOptions, Store};
use tracing_subscriber::EnvFilter;

use crate::config::Settings;
use crate::keys::KeySource;

/// Logs go to standard error, every line through the secret redactor
/// (`web::logging::Redacting`); `VELLUM_LOG` sets the filter (default `info`).
pub fn init_logging() {
    let filter = EnvFilter::try_from_env("VELLUM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(web::logging::Redacting(std::io::stderr))
        .try_init();
    web::logging::report_panics_in_the_log();
}

/// Turns a use-case error into a message for the operator.
pub fn explain(e: AppError) -> anyhow::Error {
    match e {
        AppError::Invalid { field, message } => anyhow::anyhow!("{field} {message}"),
        AppError::Conflict(what) => anyhow::anyhow!("{what}"),
        AppError::NotFound => anyhow::anyhow!("not found"),
        other => anyhow::anyhow!("{other}"),
    }
}

/// Opens the database and applies pending migrations — after
/// [`app::check_upgrade`] allowed it (no migration of data without a
/// recent backup). A SQLite file's folder is made private if missing.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>> {
    let url = settings.database_url.expose_secret();
    if let Some(state) = store::inspect(url)
        .await
        .with_context(|| format!("reading the database {}", settings.database_url_redacted()))?
    {
        app::check_upgrade(&state, SystemClock.now(), settings.upgrade_without_backup)
            .map_err(explain)?;
    }
    if let Some(dir) = store::sqlite_file(url)
        .as_deref()
        .and_then(std::path::Path::parent)
    {
        create_private_dir(dir)?;
    }
    store::open(ConnectOptions {
        url: settings.database_url.expose_secret().to_owned(),
        max_connections: settings.max_connections,
        chain: Arc::new(Sha256Chain),
    })
    .await
    .with_context(|| format!("opening the database {}", settings.database_url_redacted()))
}

fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    Ok(())
}

/// Loads the keyring from the key source. Creates one only in the
/// zero-setup case — the default key file, an empty database — and says
/// loudly where it is. Refuses to go on when stored values need keys the
/// keyring lacks: it never makes a fresh key over existing data.
async fn load_keys(store: &Arc<dyn Store>, source: &KeySource) -> Result<Arc<Keyring>> {
    let keys = match source.load() {
        Ok(k) => k,
        Err(KeyringError::Missing { .. }) => {
            let empty = store.count_users().await? == 0;
            match source {
                KeySource::File {
                    path,
                    default: true,
                } if empty => {
                    let keys = Keyring::generate(SystemClock.now().millis());
                    keys.create(path, None)?;
                    tracing::warn!(
                        path = %path.display(),
                        "created a new keyring file (mode 0600). BACK IT UP apart from the \
                         database and its backups: without it no password can be verified \
                         and no two-factor secret can be opened"
                    );
                    keys
                }
                _ if empty => bail!(
                    "no keyring at the key source ({}). Create one with `vellum keys init`.",
                    source.describe()
                ),
                _ => bail!(
                    "no keyring at the key source ({}), but the database has accounts. Restore \
                     the keyring from its backup; a new key would lock every account out.",
                    source.describe()
                ),
            }
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("loading the keyring from {}", source.describe()));
        }
    };
    Ok(Arc::new(keys))
}

/// Opens the store and the keyring and builds the app; refuses to start if
/// sealed values need keys the keyring does not hold.
pub async fn open_app(settings: &Settings) -> Result<Arc<App>> {
    let source = KeySource::from_settings(settings)?;
    let store = open_store(settings).await?;
    let keys = load_keys(&store, &source).await?;
    let source = Arc::new(source);
    let loader_source = source.clone();
    let app = App::new(
        store,
        keys.clone(),
        Arc::new(SystemClock),
        settings.app.clone(),
    )
    .map_err(explain)?
    .with_key_loader(Arc::new(move || {
        loader_source.load().map_err(|e| e.to_string())
    }));
    let missing = app.missing_keys(&keys).await.map_err(explain)?;
    if !missing.is_empty() {
        bail!(
            "the database holds values sealed with key(s) {} that the keyring from {} cannot \
             open (it lacks them, or it is another keyring). Use the right key source (or \
             restore the keyring from its backup); nothing was changed.",
            missing.join(", "),
            source.describe()
        );
    }
    Ok(Arc::new(app))
}

/// Re-reads the key source on SIGHUP and every `every`, and swaps in a
/// rotated keyring without a restart.
fn watch_keys(app: Arc<App>, source: KeySource, every: Duration) {
    tokio::spawn(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            match hup.as_mut() {
                Some(h) => {
                    tokio::select! {
                        _ = tick.tick() => {},
                        _ = h.recv() => tracing::info!("SIGHUP: re-reading the key source"),
                    }
                }
                None => {
                    tick.tick().await;
                }
            }
            app::background::guarded("re-reading the key source", async {
                match source.load() {
                    Ok(k) => match app.reload_keyring(k).await {
                        Ok(true) => tracing::info!(
                            primary = %app.keyring().primary_id(),
                            "keyring reloaded"
                        ),
                        Ok(false) => {}
                        Err(e) => tracing::error!(error = %e, "keyring reload refused"),
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "re-reading the key source failed; keeping the keyring in use")
                    }
                }
            })
            .await;
        }
    });
}

/// Takes a backup whenever one is due. Every server sharing the database
/// runs this; the database lets one of them take each round.
fn schedule_backups(app: Arc<App>, schedule: app::BackupSchedule) {
    tracing::info!(
        dir = %schedule.dir.display(),
        every_minutes = schedule.every_ms / 60_000,
        keep = schedule.keep,
        recipients = schedule.recipients.len(),
        "scheduled backups on"
    );
    let check_every =
        Duration::from_millis(u64::try_from(schedule.every_ms.min(60_000)).unwrap_or(60_000));
    let schedule = Arc::new(schedule);
    tokio::spawn(app::background::every(
        "scheduled backup",
        check_every,
        move || {
            let (app, schedule) = (app.clone(), schedule.clone());
            async move {
                if let Err(e) = app.run_scheduled_backup(&schedule).await {
                    tracing::error!(error = %e, "scheduled backup failed");
                }
            }
        },
    ));
}

pub async fn serve(settings: Settings) -> Result<()> {
    let app = open_app(&settings).await?;
    tracing::info!(database = %settings.database_url_redacted(), "database ready");
    if settings.public_url.starts_with("http://") {
        tracing::warn!(
            public_url = %settings.public_url,
            "serving over plain HTTP: cookies lose their Secure flag and __Host- prefix. \
             Use this only for development; put Vellum behind HTTPS in production"
        );
    }
    if let Some(link) = app.issue_setup_link().await.map_err(explain)? {
        println!(
            "\nNo accounts exist yet. Within {} minutes, open this one-time link to create the \
             first administrator:\n\n    {}/setup/{}\n",
            link.expires_in_minutes,
            settings.public_url,
            link.token.expose_secret()
        );
    }
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    tracing::info!(listen = %settings.listen, public_url = %settings.public_url, "Vellum is serving");

    watch_keys(
        app.clone(),
        KeySource::from_settings(&settings)?,
        Duration::from_secs(settings.key_reload_seconds),
    );
    if let (Some(schedule), Some(recipients)) =
        (&settings.backup_schedule, &settings.backup_recipients)
    {
        schedule_backups(
            app.clone(),
            app::BackupSchedule {
                recipients: recipients.clone(),
                dir: schedule.dir.clone(),
                every_ms: schedule.every_ms,
                keep: schedule.keep,
            },
        );
    }
    // The first seal one period after the start, not at once: a server
    // starting on a large database begins by serving.
    let sealer = app.clone();
    let seal_every = Duration::from_millis(u64::try_from(app::SEAL_EVERY_MS).unwrap_or(300_000));
    tokio::spawn(async move {
        tokio::time::sleep(seal_every).await;
        app::background::every("sealing the access log", seal_every, move || {
            let sealer = sealer.clone();
            async move {
                if let Err(e) = sealer.seal_access_log_round().await {
                    // ERROR: the runbook alerts on it; unsealed rows wait.
                    tracing::error!(error = %e, "sealing the access log failed");
                }
            }
        })
        .await;
    });
    let janitor = app.clone();
    tokio::spawn(app::background::every(
        "purging expired sessions",
        Duration::from_secs(300),
        move || {
            let janitor = janitor.clone();
            async move {
                if let Err(e) = janitor.purge_expired().await {
                    tracing::warn!(error = %e, "purging expired sessions failed");
                }
            }
        },
    ));

    let state = web::AppState {
        app,
        web: Arc::new(web::WebConfig {
            public_origin: settings.public_url.clone(),
            max_body_bytes: settings.max_body_bytes,
            request_timeout: settings.request_timeout,
            trusted_proxies: settings.trusted_proxies.clone(),
        }),
    };
    web::serve(listener, state, shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
