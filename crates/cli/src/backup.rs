//! `vellum backup create|verify|restore|keygen`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use app::{BackupManifest, BackupProgress, Clock as _, ProgressFn, SystemClock};
use clap::Subcommand;
use crypto::{BackupIdentity, BackupRecipients};
use secrecy::ExposeSecret;

use crate::config::Settings;
use crate::keys::KeySource;
use crate::wiring;

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Write an encrypted backup of every table while servers keep serving.
    Create {
        /// The backup file to write (never over an existing file).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// An age public key (age1…) to encrypt to; repeatable. Default: backup.recipients.
        #[arg(long = "recipient", value_name = "AGE1…")]
        recipients: Vec<String>,
    },
    /// Decrypt a backup and check every table against its manifest; touches no database.
    Verify {
        file: PathBuf,
        /// The backup identity file (AGE-SECRET-KEY-1…), kept offline.
        #[arg(long, value_name = "KEYFILE")]
        identity: PathBuf,
    },
    /// Restore a backup into an EMPTY database (--data-dir or --database-url), all or nothing.
    Restore {
        file: PathBuf,
        /// The backup identity file (AGE-SECRET-KEY-1…), kept offline.
        #[arg(long, value_name = "KEYFILE")]
        identity: PathBuf,
    },
    /// Make a backup key pair: the identity file (keep it offline) and its public key.
    Keygen {
        /// Where to write the identity file (mode 0600, never over an existing file).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

fn progress(unit: &'static str) -> ProgressFn {
    Arc::new(move |p: &BackupProgress| crate::progress_bar(p.rows_done, p.rows_total, unit))
}

fn load_identity(path: &Path) -> Result<Arc<BackupIdentity>> {
    Ok(Arc::new(
        BackupIdentity::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?,
    ))
}

pub async fn run(cmd: BackupCommand, settings: &Settings) -> Result<ExitCode> {
    match cmd {
        BackupCommand::Create { out, recipients } => {
            let recipients = if recipients.is_empty() {
                settings.backup_recipients.clone().context(
                    "no backup recipients: pass --recipient age1… or set backup.recipients",
                )?
            } else {
                BackupRecipients::parse(&recipients).map_err(|e| anyhow::anyhow!("{e}"))?
            };
            let store = wiring::open_store(settings).await?;
            eprintln!(
                "backing up {} to {} (encrypted to {} recipient(s))",
                settings.database_url_redacted(),
                out.display(),
                recipients.len()
            );
            let manifest = app::create_backup(
                &store,
                &recipients,
                &out,
                SystemClock.now(),
                &crate::operator_meta(),
                Some(progress("rows")),
            )
            .await
            .map_err(wiring::explain)?;
            eprintln!();
            let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            println!(
                "wrote {} ({bytes} bytes): {} tables, {} rows, schema version {}",
                out.display(),
                manifest.tables.len(),
                manifest.total_rows(),
                manifest.schema_version
            );
            say_keys(&manifest);
            store.close().await;
        }
        BackupCommand::Verify { file, identity } => {
            let identity = load_identity(&identity)?;
            let manifest = app::verify_backup(&file, identity, Some(progress("rows")))
                .await
                .map_err(wiring::explain)?;
            eprintln!();
            println!(
                "{} is intact: every table matches its manifest.",
                file.display()
            );
            describe(&manifest);
        }
        BackupCommand::Restore { file, identity } => {
            restore(&file, &identity, settings).await?;
        }
        BackupCommand::Keygen { out } => {
            let (text, recipient) =
                crypto::generate_backup_identity(&SystemClock.now().to_rfc3339());
            write_private_file(&out, text.expose_secret().as_bytes())?;
            println!("{recipient}");
            eprintln!(
                "wrote the backup identity to {} (mode 0600). Its public key is above: put it in \
                 backup.recipients. Move the identity file OFF this server (offline storage, two \
                 copies); the server needs only the public key to make backups.",
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn restore(file: &Path, identity: &Path, settings: &Settings) -> Result<()> {
    let identity = load_identity(identity)?;
    eprintln!("checking {} …", file.display());
    let checked = app::check_backup_for_restore(file, identity.clone(), Some(progress("rows")))
        .await
        .map_err(wiring::explain)?;
    eprintln!();
    let target = settings.database_url_redacted();
    // A SQLite file this restore creates is removed again if it fails.
    let created_file =
        store::sqlite_file(settings.database_url.expose_secret()).filter(|p| !p.exists());
    eprintln!(
        "restoring {} rows from the backup made {} ({}) into {target} …",
        checked.total_rows(),
        checked.created_at,
        checked.source
    );
    let store = wiring::open_store(settings).await?;
    let result = app::restore_backup(
        &store,
        file,
        identity,
        &checked,
        SystemClock.now(),
        &crate::operator_meta(),
        Some(progress("rows")),
    )
    .await;
    eprintln!();
    store.close().await;
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            if let Some(path) = created_file {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.as_os_str().to_owned();
                    p.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(p));
                }
            }
            return Err(wiring::explain(e).context(format!("restore into {target} failed")));
        }
    };
    println!(
        "restored {} rows into {target}: {} tables, from the backup made {} on {}.",
        summary.rows,
        summary.manifest.tables.len(),
        summary.manifest.created_at,
        summary.manifest.source
    );
    say_keys(&summary.manifest);
    if !summary.manifest.sealed_key_ids.is_empty() {
        match KeySource::from_settings(settings).and_then(|s| {
            let described = s.describe();
            s.load()
                .map(|k| (k, described))
                .map_err(anyhow::Error::from)
        }) {
            Ok((keyring, at)) => {
                let lacking: Vec<&String> = summary
                    .manifest
                    .sealed_key_ids
                    .iter()
                    .filter(|id| !keyring.has_key(id))
                    .collect();
                if lacking.is_empty() {
                    println!("the keyring at {at} holds them.");
                } else {
                    println!(
                        "WARNING: the keyring at {at} lacks {}: give the server the keyring (or \
                         its backup) that holds them, or those users cannot sign in.",
                        lacking
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
            Err(_) => println!(
                "no keyring is configured here yet: start the server with the keyring (or its \
                 backup) that holds them, e.g. --key-source file:/path/to/keyring."
            ),
        }
    }
    Ok(())
}

fn say_keys(m: &BackupManifest) {
    if m.sealed_key_ids.is_empty() {
        println!("no sealed values: no keyring key is needed to use this data.");
    } else {
        println!(
            "sealed two-factor secrets need keyring key(s) {}. The keyring is never in a backup: \
             keep its own backup, apart from this one.",
            m.sealed_key_ids.join(", ")
        );
    }
}

fn describe(m: &BackupManifest) {
    let ours = store::latest_schema_version();
    println!("format:          {}", m.format);
    println!(
        "schema version:  {}{}",
        m.schema_version,
        if m.schema_version == ours {
            " (this Vellum restores it)".to_owned()
        } else {
            format!(" (this Vellum has {ours}: restore with the release that made it)")
        }
    );
    println!("created:         {}", m.created_at);
    println!("source:          {}", m.source);
    println!("{:<22} {:>10}  sha256", "table", "rows");
    for t in &m.tables {
        println!("{:<22} {:>10}  {}", t.name, t.rows, t.sha256);
    }
    say_keys(m);
}

fn write_private_file(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        bail!("{} already exists; refusing to replace it", path.display());
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}
