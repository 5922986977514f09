//! `vellum`: the one binary. Wires configuration → store → keys → app → web.

/// mimalloc gives freed memory back to the system. With glibc's allocator
/// every Argon2 hash (19 MiB) raised its threshold for using fresh mappings,
/// so the memory of each hash stayed with its thread's arena: a burst of
/// logins left the server at ~370 MB (with mimalloc ~100 MB). Its `secure`
/// hardening is off, as glibc's heap checks are gone: the code is Rust
/// without `unsafe` but for its C dependencies (SQLite).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backup;
mod config;
mod keys;
mod safety;
mod terminal;
mod wiring;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use app::{Actor, FirstPassword, RequestMeta};
use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret as _, SecretString};

use crate::config::{Overrides, Settings};

#[derive(Parser)]
#[command(
    name = "vellum",
    version,
    about = "Clinical records and correspondence server"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Configuration file (default: ./vellum.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (default ./vellum-data); the key file sits beside it as <DIR>.keyring.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database: sqlite://PATH or postgres://USER@HOST/DB (default: SQLite in the data directory).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Where the keyring is: file:PATH, env:VAR or pkcs11:module=…;token=… (default: file <DIR>.keyring).
    #[arg(long, global = true, value_name = "SOURCE")]
    key_source: Option<String>,
    /// Apply schema migrations to a database with data although no backup was taken in the last 24 hours.
    #[arg(long, global = true)]
    upgrade_without_backup: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// The origin users reach, e.g. https://vellum.example.org (default: from --listen).
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
    },
    /// Manage accounts from the command line.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The security log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Synthetic data for demonstrations and benchmarks.
    #[command(subcommand)]
    Demo(DemoCommand),
    /// The keyring: create, rotate, re-seal, retire, inspect.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Encrypted backups: create, verify, restore (also how to move between SQLite and PostgreSQL).
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// The clinical safety file: check the hazard log, write the safety case report.
    #[command(subcommand)]
    Safety(safety::SafetyCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a keyring at the key source (never over an existing one).
    Init,
    /// Add a new data key and make it primary; old keys still open old values.
    Rotate,
    /// Re-seal every value under the primary key, in batches, while servers run.
    Rewrap,
    /// Remove a data key; refused while any value is still sealed with it.
    Retire {
        /// The key id, e.g. k1.
        id: String,
    },
    /// Key ids, when created, which is primary, and how many values each seals.
    Status,
}

#[derive(Subcommand)]
enum DemoCommand {
    /// Add synthetic patients (test-range NHS numbers 999 000 0000–999 999 9999) with letters.
    Seed {
        #[arg(long, default_value_t = 100)]
        patients: u64,
        #[arg(long, default_value_t = 2)]
        letters_per_patient: u64,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an account; the password is read from standard input.
    CreateUser {
        #[arg(long)]
        username: String,
        /// clinician, admin or patient.
        #[arg(long)]
        role: String,
        /// Read the password from standard input (required: never from argv).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// The password is temporary: its holder must choose their own at
        /// the first sign-in before doing anything else. Use it whenever the
        /// account is for someone other than you.
        #[arg(long)]
        must_change_password: bool,
    },
    /// Deactivate an account; its sessions end at once. Nothing is deleted.
    DeactivateUser {
        #[arg(long)]
        username: String,
    },
    /// Give an account a new, temporary password (read from standard input)
    /// for someone who forgot theirs: its sessions end, and its holder
    /// chooses their own at the next sign-in.
    ResetPassword {
        #[arg(long)]
        username: String,
        /// Read the password from standard input (required: never from argv).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Revoke every API token of an account (a token that may be in other
    /// hands); its sessions are kept.
    RevokeTokens {
        #[arg(long)]
        username: String,
    },
    /// Give a staff account another role (clinician or admin); its sessions
    /// end and its API tokens are revoked.
    SetRole {
        #[arg(long)]
        username: String,
        /// clinician or admin.
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the security log's hash chain and the access log against its
    /// seals; report the first broken row or seal.
    Verify {
        /// A file of anchors (lines `vellum audit anchor` printed, kept
        /// outside the database): each must still be in the log as it was.
        #[arg(long)]
        anchors: Option<PathBuf>,
    },
    /// Seal the access-log rows written since the last seal (a running
    /// server does this every five minutes).
    Seal,
    /// Seal the access log, then print an anchor — the newest security-log
    /// row's number and hash — to keep outside the database.
    Anchor,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    wiring::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let mut flags = Overrides {
        config: cli.common.config,
        data_dir: cli.common.data_dir,
        database_url: cli.common.database_url,
        key_source: cli.common.key_source,
        upgrade_without_backup: cli.common.upgrade_without_backup,
        ..Overrides::default()
    };
    match cli.command {
        Command::Safety(cmd) => safety::run(cmd),
        Command::Serve { listen, public_url } => {
            flags.listen = listen;
            flags.public_url = public_url;
            let settings = Settings::load(&flags)?;
            wiring::serve(settings).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(AdminCommand::CreateUser {
            username,
            role,
            password_stdin: _,
            must_change_password,
        }) => {
            let settings = Settings::load(&flags)?;
            let role = role_arg(&role)?;
            let password = read_password_line()?;
            let app = wiring::open_app(&settings).await?;
            let first = if must_change_password {
                FirstPassword::Temporary
            } else {
                FirstPassword::AsGiven
            };
            let user = app
                .create_user_with(
                    Actor::Operator,
                    &username,
                    role,
                    password,
                    first,
                    &operator_meta(),
                )
                .await
                .map_err(wiring::explain)?;
            println!("created {} {} ({})", user.role, user.username, user.id);
            if must_change_password {
                println!(
                    "the password is temporary: {username} chooses their own at the first sign-in"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(AdminCommand::ResetPassword {
            username,
            password_stdin: _,
        }) => {
            let settings = Settings::load(&flags)?;
            let password = read_password_line()?;
            let app = wiring::open_app(&settings).await?;
            let user = app
                .reset_password(Actor::Operator, &username, password, &operator_meta())
                .await
                .map_err(wiring::explain)?;
            println!(
                "the password of {} ({}) was reset; their sessions have ended, and they choose \
                 their own at the next sign-in",
                user.username, user.id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(AdminCommand::RevokeTokens { username }) => {
            let settings = Settings::load(&flags)?;
            let app = wiring::open_app(&settings).await?;
            let (user, revoked) = app
                .revoke_api_tokens_of(Actor::Operator, &username, &operator_meta())
                .await
                .map_err(wiring::explain)?;
            println!(
                "revoked {revoked} API token(s) of {} ({})",
                user.username, user.id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(AdminCommand::SetRole { username, role }) => {
            let settings = Settings::load(&flags)?;
            let role = role_arg(&role)?;
            let app = wiring::open_app(&settings).await?;
            let user = app
                .change_role(Actor::Operator, &username, role, &operator_meta())
                .await
                .map_err(wiring::explain)?;
            println!(
                "the role of {} ({}) is now {}; their sessions have ended and their API tokens \
                 are revoked",
                user.username, user.id, user.role
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(AdminCommand::DeactivateUser { username }) => {
            let settings = Settings::load(&flags)?;
            let app = wiring::open_app(&settings).await?;
            let user = app
                .deactivate_user(Actor::Operator, &username, &operator_meta())
                .await
                .map_err(wiring::explain)?;
            println!(
                "deactivated {} ({}); their sessions have ended",
                user.username, user.id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(DemoCommand::Seed {
            patients,
            letters_per_patient,
        }) => {
            if letters_per_patient > 100 {
                bail!("--letters-per-patient must be at most 100");
            }
            let settings = Settings::load(&flags)?;
            let app = wiring::open_app(&settings).await?;
            let started = std::time::Instant::now();
            let report = app
                .seed_demo(patients, letters_per_patient, |done, total| {
                    progress_bar(done, total, "patients");
                })
                .await
                .map_err(wiring::explain)?;
            eprintln!();
            println!(
                "seeded {} patients and {} letters in {:.1} s",
                report.patients,
                report.letters,
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup(cmd) => {
            let settings = Settings::load(&flags)?;
            backup::run(cmd, &settings).await
        }
        Command::Keys(cmd) => {
            let settings = Settings::load(&flags)?;
            keys_command(cmd, &settings).await
        }
        Command::Audit(AuditCommand::Verify { anchors }) => {
            let settings = Settings::load(&flags)?;
            // Read before anything is opened: a file that cannot be read
            // is an error, never an empty list.
            let anchors = match anchors {
                Some(path) => read_anchors(&path)?,
                None => Vec::new(),
            };
            let app = wiring::open_app(&settings).await?;
            let report = app.verify_security_log().await.map_err(wiring::explain)?;
            let chain_intact = match &report.first_broken {
                None => {
                    println!("security log intact: {} rows verified", report.rows_checked);
                    true
                }
                Some((seq, reason)) => {
                    println!(
                        "security log BROKEN at row {seq}: {reason} ({} rows before it verified)",
                        report.rows_checked
                    );
                    false
                }
            };
            let access = app.verify_access_log().await.map_err(wiring::explain)?;
            for (seq, reason) in &access.broken {
                println!("access log ALTERED: the seal at security-log row {seq}: {reason}");
            }
            let access_intact = access.broken.is_empty();
            if access_intact {
                println!(
                    "access log intact: {} rows under {} seals; {} newer rows not yet sealed",
                    access.rows_sealed, access.seals, access.rows_unsealed
                );
            }
            let mut anchors_held = true;
            for anchor in &anchors {
                // A row at or past a broken link is not what it claims to
                // be, whatever its stored hash says.
                if let Some((broken, _)) = &report.first_broken
                    && anchor.seq >= *broken
                {
                    println!(
                        "anchor NOT VERIFIABLE: row {} lies at or past the broken row {broken}",
                        anchor.seq
                    );
                    anchors_held = false;
                    continue;
                }
                if let Err(reason) = app.check_anchor(anchor).await.map_err(wiring::explain)? {
                    println!("anchor BROKEN: {reason}");
                    anchors_held = false;
                }
            }
            if anchors_held && !anchors.is_empty() {
                let newest = anchors.iter().max_by_key(|a| a.seq);
                println!(
                    "anchors held: {} (the newest at row {})",
                    anchors.len(),
                    newest.map_or(0, |a| a.seq)
                );
            }
            Ok(if chain_intact && access_intact && anchors_held {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Audit(AuditCommand::Anchor) => {
            let settings = Settings::load(&flags)?;
            let app = wiring::open_app(&settings).await?;
            match app.anchor_security_log().await.map_err(wiring::explain)? {
                Some(anchor) => {
                    println!("{}", anchor.line());
                    eprintln!(
                        "keep this line outside the database (print it, mail it, or append it \
                         to write-once storage); `vellum audit verify --anchors FILE` checks \
                         that the security log still holds it"
                    );
                    Ok(ExitCode::SUCCESS)
                }
                None => bail!("the security log is empty: there is nothing to anchor yet"),
            }
        }
        Command::Audit(AuditCommand::Seal) => {
            let settings = Settings::load(&flags)?;
            let app = wiring::open_app(&settings).await?;
            let seals = app.seal_access_log().await.map_err(wiring::explain)?;
            for seal in &seals {
                println!(
                    "sealed {} access-log rows (ids after {} up to {}) into the security log",
                    seal.rows, seal.after_id, seal.up_to_id
                );
            }
            if seals.is_empty() {
                println!("nothing to seal: no access-log rows since the last seal");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn keys_command(cmd: KeysCommand, settings: &Settings) -> Result<ExitCode> {
    use domain::SecurityEventKind as Kind;
    let source = keys::KeySource::from_settings(settings)?;
    let now = || app::Clock::now(&app::SystemClock).millis();
    match cmd {
        KeysCommand::Init => {
            match source.load() {
                Ok(_) => bail!(
                    "a keyring already exists at {}; refusing to replace it",
                    source.describe()
                ),
                Err(crypto::KeyringError::Missing { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            source.create(&crypto::Keyring::generate(now()))?;
            eprintln!(
                "created a keyring at {}. Back it up apart from the database and its backups.",
                source.describe()
            );
        }
        KeysCommand::Rotate => {
            let app = wiring::open_app(settings).await?;
            let _lock = source.lock()?;
            let mut keyring = source.load()?;
            let id = keyring.rotate(now());
            source.replace(&keyring)?;
            app.record_key_event(Kind::KeyRotated, serde_json::json!({"primary": id}))
                .await
                .map_err(wiring::explain)?;
            eprintln!(
                "{id} is the new primary key. Running servers pick it up within a poll interval \
                 (or at once on SIGHUP). Then run `vellum keys rewrap`."
            );
        }
        KeysCommand::Rewrap => {
            let app = wiring::open_app(settings).await?;
            let primary = app.keyring().primary_id().to_owned();
            let report = app
                .rewrap(|n| eprint!("\rre-sealing: {n} values checked"))
                .await
                .map_err(wiring::explain)?;
            eprintln!();
            app.record_key_event(
                Kind::KeysRewrapped,
                serde_json::json!({"primary": primary, "resealed": report.resealed, "skipped": report.skipped}),
            )
            .await
            .map_err(wiring::explain)?;
            println!(
                "re-sealed {} values under {primary}; {} already were; {} changed meanwhile (run again to take them)",
                report.resealed, report.already_primary, report.skipped
            );
        }
        KeysCommand::Retire { id } => {
            let app = wiring::open_app(settings).await?;
            let in_use = app.key_use().await.map_err(wiring::explain)?;
            let n = in_use.by_key.get(&id).copied().unwrap_or(0);
            if n > 0 {
                bail!(
                    "{n} values are still sealed with {id}; run `vellum keys rewrap` first. Nothing was changed."
                );
            }
            let _lock = source.lock()?;
            let mut keyring = source.load()?;
            keyring.retire(&id)?;
            source.replace(&keyring)?;
            app.record_key_event(Kind::KeyRetired, serde_json::json!({"key": id}))
                .await
                .map_err(wiring::explain)?;
            eprintln!("retired {id}.");
        }
        KeysCommand::Status => {
            let app = wiring::open_app(settings).await?;
            let in_use = app.key_use().await.map_err(wiring::explain)?;
            let keyring = app.keyring();
            println!("key source: {}", source.describe());
            println!(
                "{:<8} {:<26} {:<8} {:>8}",
                "key", "created", "role", "values"
            );
            for k in keyring.keys() {
                println!(
                    "{:<8} {:<26} {:<8} {:>8}",
                    k.id,
                    domain::Timestamp(k.created_at).to_rfc3339(),
                    if k.primary { "primary" } else { "old" },
                    in_use.by_key.get(&k.id).copied().unwrap_or(0)
                );
            }
            for (id, n) in in_use.by_key.iter().filter(|(id, _)| !keyring.has_key(id)) {
                println!("{id:<8} {:<26} {:<8} {n:>8}", "-", "MISSING");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `[##########----------]  50%  5000/10000 rows` on standard error.
fn progress_bar(done: u64, total: u64, unit: &str) {
    use std::io::Write as _;
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    let filled = usize::try_from(pct / 5).unwrap_or(20);
    let bar: String = "#".repeat(filled) + &"-".repeat(20 - filled.min(20));
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r[{bar}] {pct:>3}%  {done}/{total} {unit}");
    let _ = err.flush();
}

/// One line from standard input, without its line ending.
/// A `--role` argument as a role, or why not.
fn role_arg(role: &str) -> Result<domain::Role> {
    role.parse()
        .map_err(|e: domain::ParseError| anyhow::anyhow!("{e}"))
}

/// Who the security log names for a command run at the server.
pub(crate) fn operator_meta() -> RequestMeta {
    RequestMeta {
        ip: "command line".to_owned(),
        ..RequestMeta::default()
    }
}

/// The anchors in a file of `vellum audit anchor` lines (other lines —
/// blank, comments — are skipped); an unreadable file, an unreadable
/// anchor line or a file with none is an error.
fn read_anchors(path: &std::path::Path) -> Result<Vec<app::Anchor>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the anchors file {}: {e}", path.display()))?;
    let mut anchors = Vec::new();
    for line in text.lines() {
        if let Some(anchor) =
            app::Anchor::parse(line).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        {
            anchors.push(anchor);
        }
    }
    if anchors.is_empty() {
        bail!(
            "{} holds no anchor line (`vellum-anchor v1 …`)",
            path.display()
        );
    }
    Ok(anchors)
}

fn read_password_line() -> Result<SecretString> {
    let pw = terminal::read_secret_line("Password (not shown)")?;
    if pw.expose_secret().is_empty() {
        bail!(
            "no password on standard input (pipe it in: printf '%s\\n' \"$PW\" | vellum admin … --password-stdin)"
        );
    }
    Ok(pw)
}
