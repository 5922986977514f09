//! The only crate that touches randomness or cryptographic primitives.
//!
//! - [`random`]: every random value in Vellum (tokens, ids, salts, indices).
//! - [`digest`]: SHA-256, token hashing and constant-time comparison.
//! - [`keyring`]: the server's key material, loaded at start-up from a file
//!   kept apart from the database, and the secrets derived from it.
//! - [`password`]: Argon2id with a pepper, and the password strength policy.
//! - [`backup`]: age (X25519) encryption of backups to offline keys.
//! - [`pkcs11`]: a [`KeyWrapper`] that wraps the keyring's secrets with a key
//!   kept on a PKCS#11 token.

pub mod avatar;
pub mod backup;
pub mod digest;
pub mod keyring;
pub mod password;
pub mod pkcs11;
pub mod random;
pub mod redact;
pub mod totp;

pub use backup::{
    BackupCryptoError, BackupIdentity, BackupRecipients, BackupWriter, generate_backup_identity,
};
pub use digest::{Sha256Stream, constant_time_eq, hmac_sha256_hex, sha256_hex, token_hash};
pub use keyring::{KeyInfo, KeyWrapper, Keyring, KeyringError, SealError, sealed_key_id};
pub use password::{PasswordError, PasswordHasher, check_password_strength};
pub use pkcs11::{Pkcs11Config, Pkcs11Wrapper};
