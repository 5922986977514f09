//! `vellum`: the one binary. Wires configuration → store → keys → app → web.

mod config;
mod wiring;

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use app::{Actor, RequestMeta};
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

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
    },
    /// Deactivate an account; its sessions end at once. Nothing is deleted.
    DeactivateUser {
        #[arg(long)]
        username: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the security log's hash chain and report the first broken row.
    Verify,
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
        ..Overrides::default()
    };
    match cli.command {
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
        }) => {
            let settings = Settings::load(&flags)?;
            let role = role
                .parse()
                .map_err(|e: domain::ParseError| anyhow::anyhow!("{e}"))?;
            let password = read_password_line()?;
            let app = wiring::open_app(&settings).await?;
            let meta = RequestMeta {
                ip: "command line".to_owned(),
                ..RequestMeta::default()
            };
            let user = app
                .create_user(Actor::Operator, &username, role, password, &meta)
                .await
                .map_err(wiring::explain)?;
            println!("created {} {} ({})", user.role, user.username, user.id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(AdminCommand::DeactivateUser { username }) => {
            let settings = Settings::load(&flags)?;
            let app = wiring::open_app(&settings).await?;
            let meta = RequestMeta {
                ip: "command line".to_owned(),
                ..RequestMeta::default()
            };
            let user = app
                .deactivate_user(Actor::Operator, &username, &meta)
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
                .seed_demo(patients, letters_per_patient, progress_bar)
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
        Command::Audit(AuditCommand::Verify) => {
            let settings = Settings::load(&flags)?;
            let app = wiring::open_app(&settings).await?;
            let report = app.verify_security_log().await.map_err(wiring::explain)?;
            match report.first_broken {
                None => {
                    println!("security log intact: {} rows verified", report.rows_checked);
                    Ok(ExitCode::SUCCESS)
                }
                Some((seq, reason)) => {
                    println!(
                        "security log BROKEN at row {seq}: {reason} ({} rows before it verified)",
                        report.rows_checked
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// `[##########----------]  50%  5000/10000` on standard error.
fn progress_bar(done: u64, total: u64) {
    use std::io::Write as _;
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    let filled = usize::try_from(pct / 5).unwrap_or(20);
    let bar: String = "#".repeat(filled) + &"-".repeat(20 - filled.min(20));
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r[{bar}] {pct:>3}%  {done}/{total} patients");
    let _ = err.flush();
}

/// One line from standard input, without its line ending.
fn read_password_line() -> Result<SecretString> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let pw = line.trim_end_matches(['\n', '\r']).to_owned();
    if pw.is_empty() {
        bail!(
            "no password on standard input (pipe it in: printf '%s\\n' \"$PW\" | vellum admin create-user … --password-stdin)"
        );
    }
    Ok(SecretString::from(pw))
}
