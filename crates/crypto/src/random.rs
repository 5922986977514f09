//! The single source of random values (seed 002).
//!
//! Every token, id, salt and random index in Vellum comes from here, and here
//! everything comes from the operating system's CSPRNG. Other generators are
//! banned by `clippy.toml`, `deny.toml` and a test that scans the source.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

/// Fills `buf` from the OS CSPRNG. There is no fallback: if the OS cannot
/// give randomness, we abort rather than hand out a predictable value.
#[allow(clippy::disallowed_methods)] // the one sanctioned call
pub fn fill(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        // A server that cannot draw randomness must not continue.
        std::process::abort();
    }
}

/// `N` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    fill(&mut b);
    b
}

/// A URL-safe token carrying `n_bytes` random bytes (base64url, no padding).
pub fn token(n_bytes: usize) -> String {
    let mut b = vec![0u8; n_bytes];
    fill(&mut b);
    URL_SAFE_NO_PAD.encode(&b)
}

/// A 256-bit session token.
pub fn session_token() -> String {
    token(32)
}

/// A 256-bit CSRF token.
pub fn csrf_token() -> String {
    token(32)
}

/// A 256-bit single-use token for password resets and setup links.
pub fn password_reset_token() -> String {
    token(32)
}

/// A 256-bit API token for integrations, recognisable by its `vlm_` prefix.
pub fn api_token() -> String {
    format!("vlm_{}", token(32))
}

/// A uniformly distributed integer in `0..n` (rejection sampling: no modulo
/// bias). `n == 0` gives 0.
pub fn index_below(n: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    // The largest multiple of n that fits in u64; values at or above it are
    // redrawn so every residue is equally likely.
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let v = u64::from_be_bytes(bytes::<8>());
        if v < zone {
            return v % n;
        }
    }
}

/// A random (version 4) UUID.
pub fn uuid_v4() -> Uuid {
    uuid::Builder::from_random_bytes(bytes::<16>()).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tokens_carry_256_bits_and_do_not_repeat() {
        let t: HashSet<String> = (0..1000).map(|_| session_token()).collect();
        assert_eq!(t.len(), 1000);
        // 32 bytes in unpadded base64url is 43 characters.
        assert!(t.iter().all(|s| s.len() == 43));
    }

    #[test]
    fn index_below_stays_in_range_and_reaches_every_value() {
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let i = index_below(7);
            assert!(i < 7);
            seen[i as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 0));
        assert_eq!(index_below(0), 0);
        assert_eq!(index_below(1), 0);
    }

    #[test]
    fn uuids_are_version_4() {
        let u = uuid_v4();
        assert_eq!(u.get_version_num(), 4);
        assert_ne!(u, uuid_v4());
    }
}
