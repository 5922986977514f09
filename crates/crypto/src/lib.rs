//! The only crate that touches randomness or cryptographic primitives.
//!
//! - [`random`]: every random value in Vellum (tokens, ids, salts, indices).
//! - [`digest`]: SHA-256, token hashing and constant-time comparison.
//! - [`keyring`]: the server's key material, loaded at start-up from a file
//!   kept apart from the database, and the secrets derived from it.
//! - [`password`]: Argon2id with a pepper, and the password strength policy.

pub mod avatar;
pub mod digest;
pub mod keyring;
pub mod password;
pub mod random;

pub use digest::{constant_time_eq, hmac_sha256_hex, sha256_hex, token_hash};
pub use keyring::{KeyMaterial, KeyringError};
pub use password::{PasswordError, PasswordHasher, check_password_strength};
