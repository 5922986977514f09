//! The keyring: the server's key material, kept apart from the database.
//!
//! It holds one 256-bit root secret and versioned 256-bit data keys, one of
//! them primary. Secrets for separate mechanisms are derived from the root
//! with HKDF-SHA-256 under separate labels, so the password pepper and the
//! CSRF key are never equal and knowing one tells nothing of the other. The
//! data keys seal secrets at rest (TOTP secrets): AES-256-GCM with a fresh
//! random 96-bit nonce, the key id in the envelope and the value's place as
//! associated data, so rotation never loses a value and a value copied to
//! another row fails to open.
//!
//! A keyring file is created with mode 0600 and refused when anyone but its
//! owner may read it; with a [`KeyWrapper`] (a PKCS#11 token) every secret in
//! it is stored wrapped by a key that never leaves the token. It is never
//! written into the database or a backup.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::random;

const FORMAT: &str = "vellum-keyring/2";
const PEPPER_LABEL: &[u8] = b"vellum/password-pepper/v1";
const CSRF_LABEL: &[u8] = b"vellum/csrf-token-mac/v1";
const RECOVERY_LABEL: &[u8] = b"vellum/recovery-code-mac/v1";
const SEAL_PREFIX: &str = "vlm1.";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

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
    #[error("the keyring is not valid: {0}")]
    Invalid(String),
    #[error("key wrapping: {0}")]
    Wrapping(String),
    #[error("{0}")]
    Refused(String),
}

/// Why a sealed value did not open.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("not a sealed value")]
    Malformed,
    #[error("sealed with key {0}, which this keyring does not hold")]
    UnknownKey(String),
    #[error("the value does not open: tampered with, or moved from another place")]
    Tampered,
}

/// Wraps and unwraps key bytes with a key kept elsewhere (an HSM), so the
/// keyring's secrets never sit unwrapped on disk.
pub trait KeyWrapper: Send + Sync {
    /// Recorded in the file, so a file wrapped by one thing is never read as
    /// another.
    fn name(&self) -> &'static str;
    fn wrap(&self, key: &[u8]) -> Result<Vec<u8>, KeyringError>;
    fn unwrap_key(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyringError>;
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    /// `none`, or the name of the [`KeyWrapper`] that wrapped every secret.
    wrapping: String,
    root_secret: String,
    primary: String,
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    created_at: i64,
    secret: String,
}

struct DataKey {
    id: String,
    created_at: i64,
    secret: SecretBox<[u8; 32]>,
}

/// A data key as `vellum keys status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: String,
    pub created_at: i64,
    pub primary: bool,
}

/// The key id in a sealed value's envelope `vlm1.<key-id>.<…>`.
pub fn sealed_key_id(sealed: &str) -> Option<&str> {
    let rest = sealed.strip_prefix(SEAL_PREFIX)?;
    let (id, _) = rest.split_once('.')?;
    Some(id)
}

/// The loaded keyring. Its secrets never print.
pub struct Keyring {
    root: SecretBox<[u8; 32]>,
    keys: Vec<DataKey>,
    primary: String,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring([REDACTED])")
    }
}

fn secret32(bytes: &[u8], what: &str) -> Result<SecretBox<[u8; 32]>, String> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("{what} must be 32 bytes"))?;
    Ok(SecretBox::new(Box::new(arr)))
}

impl Keyring {
    /// A fresh keyring (not yet written anywhere): a root secret and one data
    /// key, `k1`, primary.
    pub fn generate(now_ms: i64) -> Self {
        Self {
            root: SecretBox::new(Box::new(random::bytes::<32>())),
            keys: vec![DataKey {
                id: "k1".to_owned(),
                created_at: now_ms,
                secret: SecretBox::new(Box::new(random::bytes::<32>())),
            }],
            primary: "k1".to_owned(),
        }
    }

    /// Reads the key file at `path`, refusing one that group or others can read.
    pub fn load(path: &Path, wrapper: Option<&dyn KeyWrapper>) -> Result<Self, KeyringError> {
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
        Self::from_text(&text, wrapper).map_err(|e| match e {
            KeyringError::Invalid(reason) => KeyringError::Malformed {
                path: path.to_owned(),
                reason,
            },
            other => other,
        })
    }

    /// Writes this keyring to a new file at `path` with mode 0600.
    pub fn create(
        &self,
        path: &Path,
        wrapper: Option<&dyn KeyWrapper>,
    ) -> Result<(), KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io)?;
        }
        let text = self.to_text(wrapper)?;
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
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(())
    }

    /// Replaces the key file at `path` with this keyring, atomically: a
    /// crash leaves the old file or the new one, never half of either.
    pub fn replace(
        &self,
        path: &Path,
        wrapper: Option<&dyn KeyWrapper>,
    ) -> Result<(), KeyringError> {
        let io = |source| KeyringError::Io {
            path: path.to_owned(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let _ = fs::remove_file(&tmp);
        self.create(&tmp, wrapper)?;
        fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }

    /// The keyring as text (JSON), secrets wrapped when there is a wrapper.
    pub fn to_text(
        &self,
        wrapper: Option<&dyn KeyWrapper>,
    ) -> Result<Zeroizing<String>, KeyringError> {
        let enc = |bytes: &[u8]| -> Result<String, KeyringError> {
            match wrapper {
                None => Ok(STANDARD.encode(bytes)),
                Some(w) => Ok(STANDARD.encode(w.wrap(bytes)?)),
            }
        };
        let file = KeyFile {
            format: FORMAT.to_owned(),
            wrapping: wrapper.map_or("none", |w| w.name()).to_owned(),
            root_secret: enc(self.root.expose_secret())?,
            primary: self.primary.clone(),
            keys: self
                .keys
                .iter()
                .map(|k| {
                    Ok(KeyEntry {
                        id: k.id.clone(),
                        created_at: k.created_at,
                        secret: enc(k.secret.expose_secret())?,
                    })
                })
                .collect::<Result<_, KeyringError>>()?,
        };
        let json = serde_json::to_string_pretty(&file)
            .map_err(|e| KeyringError::Invalid(e.to_string()))?;
        Ok(Zeroizing::new(json + "\n"))
    }

    /// Reads a keyring from its text (a file's or an environment variable's).
    pub fn from_text(text: &str, wrapper: Option<&dyn KeyWrapper>) -> Result<Self, KeyringError> {
        let invalid = |m: String| KeyringError::Invalid(m);
        let file: KeyFile = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if file.format != FORMAT {
            return Err(invalid(format!("unsupported format {:?}", file.format)));
        }
        let expected = wrapper.map_or("none", |w| w.name());
        if file.wrapping != expected {
            return Err(invalid(format!(
                "its secrets are wrapped by {:?}, but the key source is {:?}",
                file.wrapping, expected
            )));
        }
        let dec = |b64: &str, what: &str| -> Result<SecretBox<[u8; 32]>, KeyringError> {
            let raw = Zeroizing::new(
                STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|_| invalid(format!("{what} is not base64")))?,
            );
            let plain = match wrapper {
                None => raw,
                Some(w) => w.unwrap_key(&raw)?,
            };
            secret32(&plain, what).map_err(invalid)
        };
        let root = dec(&file.root_secret, "root_secret")?;
        let mut keys = Vec::with_capacity(file.keys.len());
        for k in &file.keys {
            if !valid_key_id(&k.id) || keys.iter().any(|d: &DataKey| d.id == k.id) {
                return Err(invalid(format!("bad or repeated key id {:?}", k.id)));
            }
            keys.push(DataKey {
                id: k.id.clone(),
                created_at: k.created_at,
                secret: dec(&k.secret, &format!("key {}", k.id))?,
            });
        }
        if !keys.iter().any(|k| k.id == file.primary) {
            return Err(invalid(format!(
                "primary key {:?} is not in the file",
                file.primary
            )));
        }
        Ok(Self {
            root,
            keys,
            primary: file.primary,
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

    /// The key that MACs two-factor recovery codes before they are stored.
    pub fn recovery_code_key(&self) -> SecretBox<[u8; 32]> {
        self.derive(RECOVERY_LABEL)
    }

    /// Whether `other` has the same root secret (so the same pepper and CSRF
    /// key): a reloaded keyring must, or every password would stop working.
    pub fn same_root(&self, other: &Keyring) -> bool {
        crate::constant_time_eq(self.root.expose_secret(), other.root.expose_secret())
    }

    /// The primary data key's id: new values are sealed under it.
    pub fn primary_id(&self) -> &str {
        &self.primary
    }

    /// Every data key, oldest first.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.keys
            .iter()
            .map(|k| KeyInfo {
                id: k.id.clone(),
                created_at: k.created_at,
                primary: k.id == self.primary,
            })
            .collect()
    }

    /// Whether this keyring holds the key with this id.
    pub fn has_key(&self, id: &str) -> bool {
        self.keys.iter().any(|k| k.id == id)
    }

    /// Adds a new data key and makes it primary; the old keys stay, so
    /// everything sealed under them still opens. Returns the new id.
    pub fn rotate(&mut self, now_ms: i64) -> String {
        let next = self
            .keys
            .iter()
            .filter_map(|k| k.id.strip_prefix('k')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let id = format!("k{next}");
        self.keys.push(DataKey {
            id: id.clone(),
            created_at: now_ms,
            secret: SecretBox::new(Box::new(random::bytes::<32>())),
        });
        self.primary = id.clone();
        id
    }

    /// Removes a data key. The caller must first make sure no value is
    /// sealed under it; the primary key can never be retired.
    pub fn retire(&mut self, id: &str) -> Result<(), KeyringError> {
        if id == self.primary {
            return Err(KeyringError::Refused(format!(
                "{id} is the primary key; rotate first so another key is primary"
            )));
        }
        let before = self.keys.len();
        self.keys.retain(|k| k.id != id);
        if self.keys.len() == before {
            return Err(KeyringError::Refused(format!("there is no key {id}")));
        }
        Ok(())
    }

    fn cipher(&self, id: &str) -> Option<Aes256Gcm> {
        let key = self.keys.iter().find(|k| k.id == id)?;
        Aes256Gcm::new_from_slice(key.secret.expose_secret()).ok()
    }

    /// Seals `plaintext` under the primary key, bound to `aad` (the value's
    /// place, e.g. `users.totp_secret:<user id>`):
    /// `vlm1.<key-id>.<base64url(nonce ‖ ciphertext ‖ tag)>`.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Result<String, SealError> {
        let cipher = self
            .cipher(&self.primary)
            .ok_or_else(|| SealError::UnknownKey(self.primary.clone()))?;
        let nonce: [u8; NONCE_LEN] = random::bytes::<NONCE_LEN>();
        let ct = cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Malformed)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        Ok(format!(
            "{SEAL_PREFIX}{}.{}",
            self.primary,
            URL_SAFE_NO_PAD.encode(blob)
        ))
    }

    /// Opens a sealed value; fails unless it was sealed by a key this
    /// keyring holds, for this same `aad`, and is unaltered.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let id = sealed_key_id(sealed).ok_or(SealError::Malformed)?;
        let b64 = &sealed[SEAL_PREFIX.len() + id.len() + 1..];
        let blob = URL_SAFE_NO_PAD
            .decode(b64.as_bytes())
            .map_err(|_| SealError::Malformed)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let cipher = self
            .cipher(id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        cipher
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Tampered)
    }
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::generate(0)
    }

    #[test]
    fn pepper_and_csrf_key_are_separate_derivations() {
        let k = keyring();
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
        let k = keyring();
        k.create(&path, None).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = Keyring::load(&path, None).unwrap();
        assert_eq!(
            again.csrf_key().expose_secret(),
            k.csrf_key().expose_secret()
        );
        let sealed = k.seal(b"secret", "here").unwrap();
        assert_eq!(again.open(&sealed, "here").unwrap().as_slice(), b"secret");
        assert!(matches!(
            k.create(&path, None),
            Err(KeyringError::Exists { .. })
        ));
    }

    #[test]
    fn key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.keyring");
        keyring().create(&path, None).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Keyring::load(&path, None),
            Err(KeyringError::TooOpen { .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        assert_eq!(format!("{:?}", keyring()), "Keyring([REDACTED])");
    }

    #[test]
    fn sealed_values_carry_the_key_id_and_open_only_in_their_place() {
        let k = keyring();
        let sealed = k.seal(b"JBSWY3DPEHPK3PXP", "users.totp_secret:u1").unwrap();
        assert!(sealed.starts_with("vlm1.k1."), "{sealed}");
        assert_eq!(sealed_key_id(&sealed), Some("k1"));
        assert_eq!(
            k.open(&sealed, "users.totp_secret:u1").unwrap().as_slice(),
            b"JBSWY3DPEHPK3PXP"
        );
        assert_eq!(
            k.open(&sealed, "users.totp_secret:u2"),
            Err(SealError::Tampered),
            "a value moved to another row does not open"
        );
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            k.open(
                std::str::from_utf8(&flipped).unwrap(),
                "users.totp_secret:u1"
            ),
            Err(SealError::Tampered)
        );
        assert_ne!(
            sealed,
            k.seal(b"JBSWY3DPEHPK3PXP", "users.totp_secret:u1").unwrap(),
            "fresh nonce"
        );
        assert_eq!(
            keyring().open(&sealed, "users.totp_secret:u1"),
            Err(SealError::Tampered),
            "another keyring's k1"
        );
        assert_eq!(k.open("vlm1.k9.AAAA", "x"), Err(SealError::Malformed));
        assert_eq!(k.open("plain", "x"), Err(SealError::Malformed));
    }

    #[test]
    fn rotation_keeps_old_keys_until_retired() {
        let mut k = keyring();
        let old = k.seal(b"v", "a").unwrap();
        assert_eq!(k.rotate(5), "k2");
        let new = k.seal(b"v", "a").unwrap();
        assert_eq!(sealed_key_id(&new), Some("k2"));
        assert_eq!(k.open(&old, "a").unwrap().as_slice(), b"v");
        assert!(k.retire("k2").is_err(), "the primary cannot be retired");
        k.retire("k1").unwrap();
        assert_eq!(k.open(&old, "a"), Err(SealError::UnknownKey("k1".into())));
        assert!(k.retire("k1").is_err());
        assert_eq!(k.rotate(6), "k3");
        let text = k.to_text(None).unwrap();
        let back = Keyring::from_text(&text, None).unwrap();
        assert_eq!(back.keys(), k.keys());
        assert_eq!(back.primary_id(), "k3");
    }

    #[test]
    fn replace_is_atomic_and_keeps_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.keyring");
        let mut k = keyring();
        k.create(&path, None).unwrap();
        k.rotate(1);
        k.replace(&path, None).unwrap();
        let again = Keyring::load(&path, None).unwrap();
        assert_eq!(again.primary_id(), "k2");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
