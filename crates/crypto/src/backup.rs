//! Backup encryption with age (X25519): the server holds only recipients
//! (public keys) and can make backups it cannot read; restoring needs the
//! identity (the private key), which is kept offline.
//!
//! This key pair is separate from the keyring on purpose: a stolen backup
//! is useless without the backup identity, and the sealed TOTP secrets
//! inside it stay sealed under the keyring's data keys, which are never in a
//! backup either.

use std::io::{BufRead, Read, Write};
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use thiserror::Error;

/// What went wrong with backup encryption, in words for an operator.
#[derive(Debug, Error)]
pub enum BackupCryptoError {
    #[error("{0}")]
    Recipient(String),
    #[error("{0}")]
    Identity(String),
    /// Not an age file at all, or the start of one is damaged.
    #[error("not a Vellum backup: it does not start with a valid age header ({0})")]
    NotAge(String),
    /// The identity given is not one the backup was encrypted to.
    #[error(
        "this identity cannot open the backup: it was encrypted to other recipients (use the \
         backup identity whose public key was in backup.recipients when it was made)"
    )]
    WrongIdentity,
    #[error("encrypting the backup: {0}")]
    Encrypt(String),
}

/// The public keys a backup is encrypted to (`age1…`). Any one of their
/// identities can restore it.
#[derive(Clone, Debug)]
pub struct BackupRecipients(Vec<age::x25519::Recipient>);

impl BackupRecipients {
    /// Parses `age1…` recipients. Refuses an empty list, and refuses an
    /// identity (`AGE-SECRET-KEY-1…`) given where a recipient belongs — the
    /// server must never hold the key that reads its backups — without
    /// echoing it.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Self, BackupCryptoError> {
        let mut out = Vec::with_capacity(list.len());
        for (i, r) in list.iter().enumerate() {
            let r = r.as_ref().trim();
            if r.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
                return Err(BackupCryptoError::Recipient(format!(
                    "backup recipient {} is a secret identity (AGE-SECRET-KEY-…), not a public \
                     key: give the server only the age1… public key and keep the identity \
                     offline",
                    i + 1
                )));
            }
            let parsed = age::x25519::Recipient::from_str(r).map_err(|e| {
                BackupCryptoError::Recipient(format!(
                    "backup recipient {:?} is not an age X25519 public key (age1…): {e}",
                    shorten(r)
                ))
            })?;
            out.push(parsed);
        }
        if out.is_empty() {
            return Err(BackupCryptoError::Recipient(
                "no backup recipients: set backup.recipients (age1… public keys) or pass \
                 --recipient"
                    .to_owned(),
            ));
        }
        Ok(Self(out))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The recipients as text (public: safe to print and log).
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// Wraps `output` so what is written to it is encrypted to every
    /// recipient. Call [`BackupWriter::finish`] at the end: without it the
    /// file is truncated and will not decrypt.
    pub fn encrypt_to<W: Write>(&self, output: W) -> Result<BackupWriter<W>, BackupCryptoError> {
        let encryptor =
            age::Encryptor::with_recipients(self.0.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| BackupCryptoError::Encrypt(e.to_string()))?;
        let inner = encryptor
            .wrap_output(output)
            .map_err(|e| BackupCryptoError::Encrypt(e.to_string()))?;
        Ok(BackupWriter(inner))
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(12).collect::<String>() + if s.chars().count() > 12 { "…" } else { "" }
}

/// The encrypting writer of a backup.
pub struct BackupWriter<W: Write>(age::stream::StreamWriter<W>);

impl<W: Write> BackupWriter<W> {
    /// Writes the last chunk and returns the inner writer.
    pub fn finish(self) -> std::io::Result<W> {
        self.0.finish()
    }
}

impl<W: Write> Write for BackupWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The private key that opens backups. Loaded only where a backup is
/// verified or restored, never by a server.
pub struct BackupIdentity(Vec<age::x25519::Identity>);

impl std::fmt::Debug for BackupIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupIdentity([REDACTED])")
    }
}

impl BackupIdentity {
    /// Reads an identity file as `age-keygen` (or `vellum backup keygen`)
    /// writes it: `AGE-SECRET-KEY-1…` lines, `#` comments allowed.
    pub fn from_file(path: &std::path::Path) -> Result<Self, BackupCryptoError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            BackupCryptoError::Identity(format!(
                "cannot read the backup identity {}: {e}",
                path.display()
            ))
        })?;
        Self::parse(&SecretString::from(text))
    }

    pub fn parse(text: &SecretString) -> Result<Self, BackupCryptoError> {
        let mut ids = Vec::new();
        for (n, line) in text.expose_secret().lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = age::x25519::Identity::from_str(line).map_err(|_| {
                BackupCryptoError::Identity(format!(
                    "line {} of the backup identity file is not an age identity \
                     (AGE-SECRET-KEY-1…)",
                    n + 1
                ))
            })?;
            ids.push(id);
        }
        if ids.is_empty() {
            return Err(BackupCryptoError::Identity(
                "the backup identity file holds no identity (AGE-SECRET-KEY-1… line)".to_owned(),
            ));
        }
        Ok(Self(ids))
    }

    /// Opens an encrypted backup. Fails at once when the file is not age or
    /// this identity is not among its recipients; later reads fail when the
    /// file was truncated or altered (every 64 KiB chunk is authenticated
    /// and the last one is marked).
    pub fn decrypt<R: BufRead>(&self, input: R) -> Result<impl Read + use<R>, BackupCryptoError> {
        let decryptor = age::Decryptor::new_buffered(input)
            .map_err(|e| BackupCryptoError::NotAge(e.to_string()))?;
        decryptor
            .decrypt(self.0.iter().map(|i| i as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => BackupCryptoError::WrongIdentity,
                other => BackupCryptoError::NotAge(other.to_string()),
            })
    }
}

/// A new backup key pair: the identity file's text (secret; store it
/// offline) and its recipient (public; put it in `backup.recipients`).
pub fn generate_backup_identity(created: &str) -> (SecretString, String) {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let text = format!(
        "# created: {created}\n# public key: {recipient}\n{}\n",
        id.to_string().expose_secret()
    );
    (SecretString::from(text), recipient)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn pair() -> (BackupIdentity, BackupRecipients) {
        let (text, recipient) = generate_backup_identity("test");
        (
            BackupIdentity::parse(&text).unwrap(),
            BackupRecipients::parse(&[recipient]).unwrap(),
        )
    }

    fn encrypt(r: &BackupRecipients, data: &[u8]) -> Vec<u8> {
        let mut w = r.encrypt_to(Vec::new()).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn a_backup_opens_with_its_identity_and_not_with_another() {
        let (id, r) = pair();
        let (other, _) = pair();
        let data = b"every table".repeat(10_000);
        let blob = encrypt(&r, &data);
        assert!(blob.starts_with(b"age-encryption.org/v1"));
        let mut back = Vec::new();
        id.decrypt(&blob[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert!(matches!(
            other.decrypt(&blob[..]).map(|_| ()),
            Err(BackupCryptoError::WrongIdentity)
        ));
    }

    #[test]
    fn truncated_and_altered_backups_fail_to_read() {
        let (id, r) = pair();
        let blob = encrypt(&r, &b"x".repeat(200_000));
        let mut out = Vec::new();
        let cut = &blob[..blob.len() - 70_000];
        assert!(id.decrypt(cut).unwrap().read_to_end(&mut out).is_err());
        let mut flipped = blob.clone();
        let n = flipped.len() - 1000;
        flipped[n] ^= 0x01;
        out.clear();
        assert!(
            id.decrypt(&flipped[..])
                .unwrap()
                .read_to_end(&mut out)
                .is_err()
        );
    }

    #[test]
    fn a_secret_identity_is_refused_as_a_recipient_without_echoing_it() {
        let (text, _) = generate_backup_identity("test");
        let secret_line = text
            .expose_secret()
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .unwrap()
            .to_owned();
        let err = BackupRecipients::parse(std::slice::from_ref(&secret_line)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("secret identity"), "{msg}");
        assert!(!msg.contains(&secret_line[16..]), "{msg}");
        assert!(BackupRecipients::parse::<String>(&[]).is_err());
        assert!(BackupRecipients::parse(&["age1nope"]).is_err());
    }

    #[test]
    fn identity_debug_is_redacted() {
        let (id, _) = pair();
        assert_eq!(format!("{id:?}"), "BackupIdentity([REDACTED])");
    }
}
