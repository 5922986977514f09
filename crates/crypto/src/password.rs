//! Password hashing (Argon2id with a pepper) and the strength policy.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::random;

/// The shortest password we accept.
pub const MIN_LENGTH: usize = 12;
/// The longest: Argon2 time grows with input, so the edge caps it.
pub const MAX_LENGTH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed")]
    Hashing,
}

/// Hashes and verifies passwords with Argon2id (m = 19 MiB, t = 2, p = 1) and
/// a secret pepper that lives in the key file, never beside the hashes.
pub struct PasswordHasher {
    pepper: SecretBox<[u8; 32]>,
    params: Params,
    /// A hash of a random password, verified against for unknown usernames
    /// so that timing does not tell which usernames exist.
    dummy: String,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHasher([REDACTED])")
    }
}

impl PasswordHasher {
    pub fn new(pepper: SecretBox<[u8; 32]>) -> Result<Self, PasswordError> {
        let params = Params::new(19 * 1024, 2, 1, None).map_err(|_| PasswordError::Hashing)?;
        let mut hasher = Self {
            pepper,
            params,
            dummy: String::new(),
        };
        let dummy_pw = SecretString::from(random::token(24));
        hasher.dummy = hasher.hash(&dummy_pw)?;
        Ok(hasher)
    }

    fn argon(&self) -> Result<Argon2<'_>, PasswordError> {
        Argon2::new_with_secret(
            self.pepper.expose_secret(),
            Algorithm::Argon2id,
            Version::V0x13,
            self.params.clone(),
        )
        .map_err(|_| PasswordError::Hashing)
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) with a fresh salt.
    /// CPU-heavy: call it off the async runtime.
    pub fn hash(&self, password: &SecretString) -> Result<String, PasswordError> {
        let salt = random::bytes::<16>();
        self.argon()?
            .hash_password_with_salt(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| PasswordError::Hashing)
    }

    /// Whether `password` matches `phc`. A malformed hash never matches.
    pub fn verify(&self, password: &SecretString, phc: &str) -> bool {
        let Ok(argon) = self.argon() else {
            return false;
        };
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        argon
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok()
    }

    /// Does the work of a verification and always answers false.
    pub fn verify_dummy(&self, password: &SecretString) -> bool {
        let _ = self.verify(password, &self.dummy);
        false
    }
}

/// Refuses short, overlong and guessable passwords, with a reason the user
/// can act on. `context` holds words the password must not lean on (the
/// username, the product name).
pub fn check_password_strength(password: &SecretString, context: &[&str]) -> Result<(), String> {
    let pw = password.expose_secret();
    let len = pw.chars().count();
    if len < MIN_LENGTH {
        return Err(format!("must be at least {MIN_LENGTH} characters long"));
    }
    if len > MAX_LENGTH {
        return Err(format!("must be at most {MAX_LENGTH} characters long"));
    }
    let entropy = zxcvbn::zxcvbn(pw, context);
    if u8::from(entropy.score()) >= 3 {
        return Ok(());
    }
    let mut reason = String::from("is too easy to guess");
    if let Some(fb) = entropy.feedback() {
        if let Some(w) = fb.warning() {
            reason.push_str(&format!(": {w}"));
        }
        let tips: Vec<String> = fb.suggestions().iter().map(|s| s.to_string()).collect();
        if !tips.is_empty() {
            reason.push_str(&format!(". {}", tips.join(" ")));
        }
    }
    if !reason.ends_with('.') {
        reason.push('.');
    }
    reason.push_str(" A few unrelated words make a strong password that is easy to remember.");
    Err(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(SecretBox::new(Box::new(random::bytes::<32>()))).unwrap()
    }

    #[test]
    fn hashes_are_argon2id_with_the_required_cost_and_verify() {
        let h = hasher();
        let pw = SecretString::from("correct horse battery staple");
        let phc = h.hash(&pw).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(h.verify(&pw, &phc));
        assert!(!h.verify(&SecretString::from("wrong horse battery staple"), &phc));
        assert_ne!(phc, h.hash(&pw).unwrap(), "each hash has its own salt");
    }

    #[test]
    fn a_hash_made_with_another_pepper_does_not_verify() {
        let pw = SecretString::from("correct horse battery staple");
        let phc = hasher().hash(&pw).unwrap();
        assert!(!hasher().verify(&pw, &phc));
    }

    #[test]
    fn weak_and_short_passwords_are_refused_with_a_reason() {
        let short = check_password_strength(&SecretString::from("Tr0ub4dor&3"), &[]);
        assert!(short.unwrap_err().contains("at least 12"));
        let common = check_password_strength(&SecretString::from("password1234"), &[]);
        assert!(common.unwrap_err().contains("too easy to guess"));
        let own_name = check_password_strength(&SecretString::from("alicealicealice"), &["alice"]);
        assert!(own_name.is_err());
        assert!(
            check_password_strength(&SecretString::from("Vellum-check-Quartz-91-Harbour"), &[])
                .is_ok()
        );
    }
}
