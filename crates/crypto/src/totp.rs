//! TOTP (RFC 6238): HMAC-SHA-1, 6 digits, 30-second steps; recovery codes.
//!
//! A code is accepted for the current step or one step either side, never
//! more; the comparison takes constant time; and the caller keeps the last
//! accepted step so a code — or any earlier one — is never accepted twice.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha1::Sha1;

use crate::random;

pub const DIGITS: u32 = 6;
pub const PERIOD_SECS: i64 = 30;
/// 160-bit secrets, as RFC 4226 recommends: 32 base32 characters.
pub const SECRET_BYTES: usize = 20;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A TOTP secret. Never printed.
pub struct TotpSecret(SecretBox<[u8; SECRET_BYTES]>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret([REDACTED])")
    }
}

/// Why a code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRejected {
    /// Not the code of any step in the window (or not six digits).
    Wrong,
    /// The code of a step at or before the last accepted one.
    Replayed,
}

impl TotpSecret {
    /// A new secret from `crypto::random`.
    pub fn generate() -> Self {
        Self(SecretBox::new(Box::new(random::bytes::<SECRET_BYTES>())))
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; SECRET_BYTES] = bytes.try_into().ok()?;
        Some(Self(SecretBox::new(Box::new(arr))))
    }

    /// From the base32 text an authenticator app shows (case, spaces and
    /// padding ignored); `None` unless it is 160 bits.
    pub fn from_base32(text: &str) -> Option<Self> {
        let mut bits: u64 = 0;
        let mut n = 0;
        let mut out = Vec::with_capacity(SECRET_BYTES);
        for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
            let c = c.to_ascii_uppercase();
            let v = BASE32.iter().position(|&b| char::from(b) == c)?;
            bits = (bits << 5) | v as u64;
            n += 5;
            if n >= 8 {
                n -= 8;
                out.push(((bits >> n) & 0xff) as u8);
            }
        }
        Self::from_bytes(&out)
    }

    pub fn expose_bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// Base32 (RFC 4648, no padding): what authenticator apps take.
    pub fn base32(&self) -> SecretString {
        SecretString::from(base32_encode(self.0.expose_secret()))
    }

    /// The code for a time step.
    pub fn code_at_step(&self, step: i64) -> String {
        hotp(self.0.expose_secret(), step)
    }

    /// Checks `code` at `unix_secs` against steps −1, 0 and +1. Returns the
    /// step it matched, or why not: a match at or before `last_step` is a
    /// replay. Every candidate is compared, in constant time.
    pub fn verify(
        &self,
        code: &str,
        unix_secs: i64,
        last_step: Option<i64>,
    ) -> Result<i64, CodeRejected> {
        let code = code.trim();
        let six_digits = code.len() == DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit());
        let now = step_of(unix_secs);
        let mut matched = None;
        for step in [now - 1, now, now + 1] {
            let expected = self.code_at_step(step);
            let same = crate::constant_time_eq(expected.as_bytes(), code.as_bytes());
            if same && six_digits && matched.is_none() {
                matched = Some(step);
            }
        }
        match matched {
            None => Err(CodeRejected::Wrong),
            Some(step) if last_step.is_some_and(|last| step <= last) => Err(CodeRejected::Replayed),
            Some(step) => Ok(step),
        }
    }

    /// The `otpauth://` URI an authenticator app scans.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> SecretString {
        let issuer_enc = percent_encode(issuer);
        SecretString::from(format!(
            "otpauth://totp/{issuer_enc}:{}?secret={}&issuer={issuer_enc}&algorithm=SHA1&digits={DIGITS}&period={PERIOD_SECS}",
            percent_encode(account),
            base32_encode(self.0.expose_secret()),
        ))
    }
}

/// The time step of a Unix time.
pub fn step_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(PERIOD_SECS)
}

/// HOTP (RFC 4226) with HMAC-SHA-1 and six digits.
fn hotp(key: &[u8], counter: i64) -> String {
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let bin = (u32::from(digest[offset] & 0x7f) << 24)
        | (u32::from(digest[offset + 1]) << 16)
        | (u32::from(digest[offset + 2]) << 8)
        | u32::from(digest[offset + 3]);
    format!("{:06}", bin % 10u32.pow(DIGITS))
}

/// RFC 4648 base32 without padding.
pub fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in data {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A recovery code: ten lowercase base32 characters as `xxxxx-xxxxx`
/// (50 bits from `crypto::random`), stored only as a keyed MAC.
pub fn recovery_code() -> SecretString {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut s = String::with_capacity(11);
    for i in 0..10 {
        if i == 5 {
            s.push('-');
        }
        let idx = usize::try_from(random::index_below(32)).unwrap_or(0);
        s.push(char::from(ALPHABET[idx]));
    }
    SecretString::from(s)
}

/// A recovery code as typed, normalised: lowercase, no spaces, the dash in
/// place, so `ABCDE FGHIJ` and `abcde-fghij` are the same code.
pub fn normalise_recovery_code(typed: &str) -> String {
    let raw: String = typed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if raw.len() == 10 {
        format!("{}-{}", &raw[..5], &raw[5..])
    } else {
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (the 20-byte ASCII key), truncated to 6
    /// digits (the RFC lists 8).
    #[test]
    fn rfc6238_sha1_test_vectors() {
        let s = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        for (t, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(s.code_at_step(step_of(t)), eight[2..], "T={t}");
        }
    }

    #[test]
    fn window_is_one_step_either_side_and_replays_are_refused() {
        let s = TotpSecret::generate();
        let t = 1_700_000_000;
        let now = step_of(t);
        assert_eq!(s.verify(&s.code_at_step(now), t, None), Ok(now));
        assert_eq!(s.verify(&s.code_at_step(now - 1), t, None), Ok(now - 1));
        assert_eq!(s.verify(&s.code_at_step(now + 1), t, None), Ok(now + 1));
        assert_eq!(
            s.verify(&s.code_at_step(now - 2), t, None),
            Err(CodeRejected::Wrong),
            "two steps ago is too old"
        );
        assert_eq!(
            s.verify(&s.code_at_step(now), t, Some(now)),
            Err(CodeRejected::Replayed)
        );
        assert_eq!(
            s.verify(&s.code_at_step(now - 1), t, Some(now)),
            Err(CodeRejected::Replayed),
            "an earlier step after a later one"
        );
        assert_eq!(s.verify("12345", t, None), Err(CodeRejected::Wrong));
        assert_eq!(s.verify("abcdef", t, None), Err(CodeRejected::Wrong));
    }

    #[test]
    fn secrets_are_160_bits_as_32_base32_characters() {
        let b = TotpSecret::generate().base32();
        assert_eq!(b.expose_secret().len(), 32);
        assert!(b.expose_secret().bytes().all(|c| BASE32.contains(&c)));
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        let s = TotpSecret::generate();
        let again = TotpSecret::from_base32(&s.base32().expose_secret().to_lowercase()).unwrap();
        assert_eq!(again.expose_bytes(), s.expose_bytes());
    }

    #[test]
    fn otpauth_uri_names_issuer_account_and_parameters() {
        let s = TotpSecret::from_bytes(&[0u8; 20]).unwrap();
        let uri = s.otpauth_uri("Vellum Clinic", "dr smith");
        assert_eq!(
            uri.expose_secret(),
            "otpauth://totp/Vellum%20Clinic:dr%20smith?secret=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&issuer=Vellum%20Clinic&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn recovery_codes_have_their_shape_and_normalise() {
        let c = recovery_code();
        let c = c.expose_secret();
        assert_eq!(c.len(), 11);
        assert_eq!(&c[5..6], "-");
        assert_eq!(
            normalise_recovery_code(&c.to_uppercase().replace('-', " ")),
            c
        );
    }
}
