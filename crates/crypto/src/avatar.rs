//! The avatar gradient (seed 002): a deterministic hash of the patient id,
//! never a random draw, so one patient always shows the same colours.

use sha2::{Digest, Sha256};

/// How many gradients the UI defines.
pub const GRADIENTS: u8 = 30;

/// The first 8 bytes of SHA-256 of the id's canonical text (lowercase,
/// hyphenated, as UTF-8), read as a big-endian u64, modulo 30.
pub fn gradient_index(patient_id_text: &str) -> u8 {
    let digest = Sha256::digest(patient_id_text.as_bytes());
    let mut first = [0u8; 8];
    for (to, from) in first.iter_mut().zip(digest.iter()) {
        *to = *from;
    }
    // The remainder is below 30, so it always fits in a u8.
    u8::try_from(u64::from_be_bytes(first) % u64::from(GRADIENTS)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_values_computed_independently() {
        // python3 -c "import hashlib;print(int.from_bytes(hashlib.sha256(b'<id>').digest()[:8],'big')%30)"
        for (id, want) in [
            ("00000000-0000-4000-8000-000000000000", 18),
            ("5b1f8e2c-3f4a-4d6e-9a7b-1c2d3e4f5a6b", 8),
            ("f47ac10b-58cc-4372-a567-0e02b2c3d479", 1),
            ("ffffffff-ffff-4fff-bfff-ffffffffffff", 10),
        ] {
            assert_eq!(gradient_index(id), want, "{id}");
            assert!(gradient_index(id) < GRADIENTS);
        }
    }
}
