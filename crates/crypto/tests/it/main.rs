//! Integration tests of the crypto crate, in one binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod avatar;
mod pkcs11;
mod randomness_scan;
mod totp;
