//! The server's key material, kept in a file apart from the database.
//!
//! The file holds one 256-bit root secret. Secrets for separate mechanisms
//! are derived from it with HKDF-SHA-256 under separate labels, so the
//! password pepper and the CSRF key are never equal and knowing one tells
//! nothing of the other. The file is created with mode 0600 and refused when
//! anyone but its owner may read it; it is never written into the database
//! or a backup.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::random;

const FORMAT: &str = "vellum-keyring/1";
const PEPPER_LABEL: &[u8] = b"vellum/password-pepper/v1";
const CSRF_LABEL: &[u8] = b"vellum/csrf-token-mac/v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("key file {path} not found")]
    Missing { path: PathBuf },
    #[error(
        "key file {path} may be read by other users (mode {mode:o}); run `chmod 600 {path}` and start again"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("key file {path} already exists; refusing to overwrite it")]
    Exists { path: PathBuf },
    #[error("key file {path} is not a Vellum key file: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    root_secret: String,
}

/// The loaded key material. Its secrets never print.
pub struct KeyMaterial {
    root: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaterial([REDACTED])")
    }
}

impl KeyMaterial {
    /// Fresh key material (not yet written anywhere).
    pub fn generate() -> Self {
        Self {
            root: SecretBox::new(Box::new(random::bytes::<32>())),
        }
    }

    /// Reads the key file at `path`, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyringError::Missing {
                    path: path.to_owned(),
                });
            }
            Err(e) => return Err(io(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyringError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let text = Zeroizing::new(fs::read_to_string(path).map_err(io)?);
        Self::from_json(&text).map_err(|reason| KeyringError::Malformed {
            path: path.to_owned(),
            reason,
        })
    }

    /// Writes this key material to a new file at `path` with mode 0600.
    pub fn create(&self, path: &Path) -> Result<(), KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io)?;
        }
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(KeyringError::Exists {
                    path: path.to_owned(),
                });
            }
            Err(e) => return Err(io(e)),
        };
        let json = self.to_json();
        file.write_all(json.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(())
    }

    fn to_json(&self) -> Zeroizing<String> {
        let file = KeyFile {
            format: FORMAT.to_owned(),
            root_secret: STANDARD.encode(self.root.expose_secret()),
        };
        Zeroizing::new(serde_json::to_string_pretty(&file).unwrap_or_default() + "\n")
    }

    fn from_json(text: &str) -> Result<Self, String> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if file.format != FORMAT {
            return Err(format!("unsupported format {:?}", file.format));
        }
        let raw = Zeroizing::new(
            STANDARD
                .decode(file.root_secret.as_bytes())
                .map_err(|_| "root_secret is not base64".to_owned())?,
        );
        let root: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| "root_secret must be 32 bytes".to_owned())?;
        Ok(Self {
            root: SecretBox::new(Box::new(root)),
        })
    }

    fn derive(&self, label: &[u8]) -> SecretBox<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(None, self.root.expose_secret());
        let mut out = Box::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA-256's output limit, so expand cannot fail.
        if hk.expand(label, out.as_mut()).is_err() {
            std::process::abort();
        }
        SecretBox::new(out)
    }

    /// The HMAC key (pepper) mixed into every password hash.
    pub fn password_pepper(&self) -> SecretBox<[u8; 32]> {
        self.derive(PEPPER_LABEL)
    }

    /// The key that MACs CSRF tokens before they are stored in a session.
    pub fn csrf_key(&self) -> SecretBox<[u8; 32]> {
        self.derive(CSRF_LABEL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pepper_and_csrf_key_are_separate_derivations() {
        let k = KeyMaterial::generate();
        assert_ne!(
            k.password_pepper().expose_secret(),
            k.csrf_key().expose_secret()
        );
        assert_eq!(
            k.password_pepper().expose_secret(),
            k.password_pepper().expose_secret()
        );
        assert_ne!(k.password_pepper().expose_secret(), k.root.expose_secret());
    }

    #[test]
    fn key_file_is_created_0600_and_reloads_the_same_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.keyring");
        let k = KeyMaterial::generate();
        k.create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = KeyMaterial::load(&path).unwrap();
        assert_eq!(
            again.csrf_key().expose_secret(),
            k.csrf_key().expose_secret()
        );
        assert!(matches!(k.create(&path), Err(KeyringError::Exists { .. })));
    }

    #[test]
    fn key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.keyring");
        KeyMaterial::generate().create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            KeyMaterial::load(&path),
            Err(KeyringError::TooOpen { .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        assert_eq!(
            format!("{:?}", KeyMaterial::generate()),
            "KeyMaterial([REDACTED])"
        );
    }
}
