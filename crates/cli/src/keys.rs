//! Key sources: where the keyring is loaded from and written back to.
//!
//! - `file:PATH` — a keyring file, mode 0600, outside the data directory.
//!   The default is `<data dir>.keyring`, beside (never inside) it.
//! - `env:VAR` — the keyring's JSON in an environment variable, for secret
//!   managers that inject the environment. Vellum cannot write it back:
//!   `keys init`/`rotate`/`retire` print the new keyring for the operator.
//! - `pkcs11:module=…;token=…[;key=…][;file=PATH]` — the keyring file (by
//!   default `<data dir>.keyring`) holds every secret wrapped by an AES key
//!   that never leaves the PKCS#11 token; the PIN is read from
//!   `keys.pkcs11_pin_file`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use crypto::pkcs11::{Pkcs11Config, Pkcs11Wrapper};
use crypto::{KeyWrapper, Keyring, KeyringError};

use crate::config::Settings;

pub enum KeySource {
    File { path: PathBuf, default: bool },
    Env { var: String },
    Pkcs11 { config: Pkcs11Config, path: PathBuf },
}

impl KeySource {
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let Some(spec) = settings.key_source.as_deref() else {
            return Ok(KeySource::File {
                path: settings.keyring_path(),
                default: true,
            });
        };
        if let Some(path) = spec.strip_prefix("file:") {
            if path.is_empty() {
                bail!("key source file: needs a path, e.g. file:/etc/vellum/keyring");
            }
            return Ok(KeySource::File {
                path: PathBuf::from(path),
                default: false,
            });
        }
        if let Some(var) = spec.strip_prefix("env:") {
            if var.is_empty() {
                bail!("key source env: needs a variable name, e.g. env:VELLUM_KEYRING");
            }
            return Ok(KeySource::Env {
                var: var.to_owned(),
            });
        }
        if let Some(rest) = spec.strip_prefix("pkcs11:") {
            let mut path = settings.keyring_path();
            let mut fields = Vec::new();
            for part in rest.split(';').filter(|p| !p.is_empty()) {
                match part.strip_prefix("file=") {
                    Some(p) => path = PathBuf::from(p),
                    None => fields.push(part),
                }
            }
            let pin = settings.pkcs11_pin.clone().context(
                "a pkcs11: key source needs the token PIN: set keys.pkcs11_pin_file (or \
                 VELLUM_KEYS__PKCS11_PIN_FILE=/path/to/pin)",
            )?;
            let config = Pkcs11Config::parse(&fields.join(";"), pin)?;
            return Ok(KeySource::Pkcs11 { config, path });
        }
        bail!("key source must be file:PATH, env:VAR or pkcs11:…; got {spec:?}")
    }

    /// For messages: where the keyring is, never what is in it.
    pub fn describe(&self) -> String {
        match self {
            KeySource::File { path, .. } => format!("file {}", path.display()),
            KeySource::Env { var } => format!("environment variable {var}"),
            KeySource::Pkcs11 { config, path } => format!(
                "keyring file {} wrapped by PKCS#11 token {:?}",
                path.display(),
                config.token_label
            ),
        }
    }

    fn wrapper(&self, create_key: bool) -> Result<Option<Pkcs11Wrapper>, KeyringError> {
        match self {
            KeySource::Pkcs11 { config, .. } => Ok(Some(Pkcs11Wrapper::open(config, create_key)?)),
            _ => Ok(None),
        }
    }

    /// Loads the keyring; `Missing` when there is none yet.
    pub fn load(&self) -> Result<Keyring, KeyringError> {
        match self {
            KeySource::File { path, .. } => Keyring::load(path, None),
            KeySource::Env { var } => match std::env::var(var) {
                Ok(text) => {
                    let text = zeroize::Zeroizing::new(text);
                    Keyring::from_text(&text, None)
                }
                Err(_) => Err(KeyringError::Missing {
                    path: PathBuf::from(format!("${var}")),
                }),
            },
            KeySource::Pkcs11 { path, .. } => {
                // No file is "no keyring yet", whatever the token holds.
                if !path.exists() {
                    return Err(KeyringError::Missing { path: path.clone() });
                }
                let w = self.wrapper(false)?;
                Keyring::load(path, w.as_ref().map(|w| w as &dyn KeyWrapper))
            }
        }
    }

    /// Stores a new keyring where none is (never over an existing one).
    pub fn create(&self, keyring: &Keyring) -> Result<()> {
        match self {
            KeySource::File { path, .. } => Ok(keyring.create(path, None)?),
            KeySource::Env { var } => {
                print_for_env(var, keyring)?;
                Ok(())
            }
            KeySource::Pkcs11 { path, .. } => {
                let w = self.wrapper(true)?;
                Ok(keyring.create(path, w.as_ref().map(|w| w as &dyn KeyWrapper))?)
            }
        }
    }

    /// Holds the keyring file against other `vellum keys` commands while it
    /// is read, changed and written back, so two rotations at once can never
    /// both write a `k2` and lose one. The lock is released when the
    /// returned file is dropped (or the process ends, even by a crash).
    pub fn lock(&self) -> Result<Option<std::fs::File>> {
        let path = match self {
            KeySource::File { path, .. } | KeySource::Pkcs11 { path, .. } => path,
            KeySource::Env { .. } => return Ok(None),
        };
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&lock_path)
                .with_context(|| format!("opening {}", PathBuf::from(&lock_path).display()))?
        };
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another `vellum keys` command is changing the keyring at {}; try again when it \
                 has finished. Nothing was changed.",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", PathBuf::from(&lock_path).display()))
            }
        }
    }

    /// Replaces the keyring (after rotate or retire), atomically.
    pub fn replace(&self, keyring: &Keyring) -> Result<()> {
        match self {
            KeySource::File { path, .. } => Ok(keyring.replace(path, None)?),
            KeySource::Env { var } => {
                print_for_env(var, keyring)?;
                Ok(())
            }
            KeySource::Pkcs11 { path, .. } => {
                let w = self.wrapper(false)?;
                Ok(keyring.replace(path, w.as_ref().map(|w| w as &dyn KeyWrapper))?)
            }
        }
    }
}

/// Vellum cannot change another process's environment: the new keyring
/// goes to standard output for the operator to store in the secret manager.
fn print_for_env(var: &str, keyring: &Keyring) -> Result<()> {
    let text = keyring.to_text(None)?;
    eprintln!(
        "The keyring comes from ${var}, which Vellum cannot change. Store the JSON below as the \
         new value of {var} in your secret manager, then RESTART every server (a running \
         process cannot see a changed environment) before `keys rewrap` or `keys retire`:"
    );
    println!("{}", text.as_str());
    Ok(())
}
