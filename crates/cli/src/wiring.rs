//! Opening the store, loading the keys, building the app, serving.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use app::{App, AppError, Sha256Chain, SystemClock};
use crypto::{KeyMaterial, KeyringError};
use secrecy::ExposeSecret;
use store::{ConnectOptions, Store};
use tracing_subscriber::EnvFilter;

use crate::config::Settings;

/// Logs go to standard error; `VELLUM_LOG` sets the filter (default `info`).
pub fn init_logging() {
    let filter = EnvFilter::try_from_env("VELLUM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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

async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>> {
    if store::Backend::of(settings.database_url.expose_secret()) == Some(store::Backend::Sqlite) {
        create_private_dir(&settings.data_dir)?;
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

/// Loads the key file; creates it only when the database has no accounts
/// yet. With accounts and no key file, refuses: a new key would make every
/// password unverifiable.
async fn load_keys(settings: &Settings, store: &Arc<dyn Store>) -> Result<KeyMaterial> {
    let path = settings.keyring_path();
    match KeyMaterial::load(&path) {
        Ok(k) => Ok(k),
        Err(KeyringError::Missing { .. }) => {
            if store.count_users().await? > 0 {
                bail!(
                    "the key file {} is missing, but the database has accounts. Restore the key \
                     file from its backup; a new key would lock every account out.",
                    path.display()
                );
            }
            let keys = KeyMaterial::generate();
            keys.create(&path)?;
            tracing::warn!(
                path = %path.display(),
                "created a new key file (mode 0600). BACK IT UP apart from the database: \
                 without it no password can be verified"
            );
            Ok(keys)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn open_app(settings: &Settings) -> Result<Arc<App>> {
    let store = open_store(settings).await?;
    let keys = load_keys(settings, &store).await?;
    let app =
        App::new(store, &keys, Arc::new(SystemClock), settings.app.clone()).map_err(explain)?;
    Ok(Arc::new(app))
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

    let janitor = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            if let Err(e) = janitor.purge_expired().await {
                tracing::warn!(error = %e, "purging expired sessions failed");
            }
        }
    });

    let state = web::AppState {
        app,
        web: Arc::new(web::WebConfig {
            public_origin: settings.public_url.clone(),
            max_body_bytes: settings.max_body_bytes,
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
