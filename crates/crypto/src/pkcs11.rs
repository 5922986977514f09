//! A [`KeyWrapper`] backed by a PKCS#11 token (an HSM; SoftHSM2 in tests).
//!
//! The keyring's secrets are wrapped with AES-256-GCM by a key that lives on
//! the token and never leaves it (`CKA_SENSITIVE`, not `CKA_EXTRACTABLE`):
//! the encryption runs on the token, so the keyring file holds only
//! ciphertext and a stolen copy of it is useless without the token and its
//! PIN. A wrapped secret is `iv ‖ ciphertext ‖ tag` (12-byte IV from
//! [`crate::random`], the project's only source of randomness; 128-bit tag).
//!
//! The key source is written `pkcs11:module=<path>;token=<label>;key=<label>`;
//! [`Pkcs11Config::parse`] reads the part after `pkcs11:`. The PIN is passed
//! apart from it (the CLI reads it from a file) and is never printed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::keyring::{KeyWrapper, KeyringError};
use crate::random;

/// The key label used when the key source names none.
pub const DEFAULT_KEY_LABEL: &str = "vellum-keyring-wrap";

const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;
const TAG_LEN: usize = 16;
/// A PKCS#11 token label is at most 32 bytes.
const MAX_TOKEN_LABEL: usize = 32;

/// Where the wrapping key lives: the PKCS#11 module, the token and the key's
/// label on it, and the user PIN. `Debug` never shows the PIN.
pub struct Pkcs11Config {
    /// Absolute path of the PKCS#11 module (shared library) to load.
    pub module: PathBuf,
    /// The label of the token that holds the wrapping key.
    pub token_label: String,
    /// The `CKA_LABEL` of the AES wrapping key on that token.
    pub key_label: String,
    /// The token's user PIN.
    pub pin: SecretString,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .field("pin", &"[REDACTED]")
            .finish()
    }
}

fn config_error(message: impl std::fmt::Display) -> KeyringError {
    KeyringError::Wrapping(format!("PKCS#11 key source: {message}"))
}

impl Pkcs11Config {
    /// Parses the key-source text after `pkcs11:`:
    /// `module=/usr/lib/softhsm/libsofthsm2.so;token=vellum;key=vellum-wrap`.
    ///
    /// `module` (an absolute path) and `token` are required; `key` defaults to
    /// [`DEFAULT_KEY_LABEL`]. An unknown or repeated field is an error that
    /// names it. The PIN comes separately and is never part of this text.
    pub fn parse(spec: &str, pin: SecretString) -> Result<Self, KeyringError> {
        let mut module: Option<PathBuf> = None;
        let mut token: Option<String> = None;
        let mut key: Option<String> = None;
        for part in spec.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let Some((name, value)) = part.split_once('=') else {
                return Err(config_error(format!("expected name=value, found {part:?}")));
            };
            let (name, value) = (name.trim(), value.trim());
            let slot = match name {
                "module" => {
                    if module.is_some() {
                        return Err(config_error("field \"module\" is given twice"));
                    }
                    module = Some(PathBuf::from(value));
                    continue;
                }
                "token" => &mut token,
                "key" => &mut key,
                other => {
                    return Err(config_error(format!(
                        "unknown field {other:?} (expected module, token or key)"
                    )));
                }
            };
            if slot.is_some() {
                return Err(config_error(format!("field {name:?} is given twice")));
            }
            if value.is_empty() {
                return Err(config_error(format!("field {name:?} is empty")));
            }
            *slot = Some(value.to_owned());
        }
        let module = module.ok_or_else(|| config_error("field \"module\" is missing"))?;
        if !module.is_absolute() {
            return Err(config_error(format!(
                "module {} must be an absolute path",
                module.display()
            )));
        }
        let token_label = token.ok_or_else(|| config_error("field \"token\" is missing"))?;
        if token_label.len() > MAX_TOKEN_LABEL {
            return Err(config_error(format!(
                "token label {token_label:?} is longer than {MAX_TOKEN_LABEL} bytes"
            )));
        }
        Ok(Self {
            module,
            token_label,
            key_label: key.unwrap_or_else(|| DEFAULT_KEY_LABEL.to_owned()),
            pin,
        })
    }
}

/// Wraps keyring secrets with an AES-256 key held on a PKCS#11 token.
pub struct Pkcs11Wrapper {
    session: Mutex<Session>,
    key: ObjectHandle,
    token_label: String,
    key_label: String,
}

impl std::fmt::Debug for Pkcs11Wrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Wrapper")
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .finish_non_exhaustive()
    }
}

/// `what` failed, with the token's reason. cryptoki's errors carry return
/// codes and function names, never a PIN or key bytes.
fn p11(what: &str, e: P11Error) -> KeyringError {
    match e {
        P11Error::Pkcs11(rv, function) => {
            KeyringError::Wrapping(format!("{what}: {function} returned {rv:?}"))
        }
        other => KeyringError::Wrapping(format!("{what}: {other}")),
    }
}

/// One loaded, initialised context per module for the whole process. A
/// module is initialised once (`C_Initialize` again would fail) and kept
/// loaded: unloading it under another wrapper's open session would break it.
fn context(module: &Path) -> Result<Pkcs11, KeyringError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts = CONTEXTS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .map_err(|_| KeyringError::Wrapping("PKCS#11 module table is poisoned".to_owned()))?;
    if let Some(ctx) = contexts.get(module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module)
        .map_err(|e| p11(&format!("loading PKCS#11 module {}", module.display()), e))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Another part of this process (another library) got there first.
        Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(p11(
                &format!("initialising PKCS#11 module {}", module.display()),
                e,
            ));
        }
    }
    contexts.insert(module.to_owned(), ctx.clone());
    Ok(ctx)
}

fn attr_bool(attrs: &[Attribute], wanted: AttributeType) -> Option<bool> {
    attrs.iter().find_map(|a| match (a, wanted) {
        (Attribute::Sensitive(v), AttributeType::Sensitive)
        | (Attribute::Extractable(v), AttributeType::Extractable)
        | (Attribute::Encrypt(v), AttributeType::Encrypt)
        | (Attribute::Decrypt(v), AttributeType::Decrypt) => Some(*v),
        _ => None,
    })
}

impl Pkcs11Wrapper {
    /// Loads the module, opens a read/write session on the token labelled
    /// `cfg.token_label`, logs in as the user and finds the AES key labelled
    /// `cfg.key_label`. When that key is missing it is generated on the token
    /// (256-bit, sensitive, never extractable) if `create_key_if_missing`,
    /// and is an error otherwise. An existing key that is extractable or not
    /// sensitive is refused: the wrapping key must never leave the token.
    ///
    /// The PKCS#11 log-in state is shared by every session of a process on a
    /// token: if this process is already logged in to it (another wrapper is
    /// open), the token does not check the PIN again.
    pub fn open(cfg: &Pkcs11Config, create_key_if_missing: bool) -> Result<Self, KeyringError> {
        let ctx = context(&cfg.module)?;
        let token = &cfg.token_label;
        let slots = ctx
            .get_slots_with_initialized_token()
            .map_err(|e| p11("listing PKCS#11 slots", e))?;
        let mut matching = Vec::new();
        for slot in slots {
            let info = ctx
                .get_token_info(slot)
                .map_err(|e| p11("reading PKCS#11 token information", e))?;
            if info.label() == token.as_str() {
                matching.push(slot);
            }
        }
        let slot = match matching.as_slice() {
            [slot] => *slot,
            [] => {
                return Err(KeyringError::Wrapping(format!(
                    "no PKCS#11 token labelled {token:?} in module {}",
                    cfg.module.display()
                )));
            }
            _ => {
                return Err(KeyringError::Wrapping(format!(
                    "{} PKCS#11 tokens are labelled {token:?}; the label must name one token",
                    matching.len()
                )));
            }
        };
        let session = ctx
            .open_rw_session(slot)
            .map_err(|e| p11(&format!("opening a session on token {token:?}"), e))?;
        match session.login(UserType::User, Some(&cfg.pin)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(P11Error::Pkcs11(
                RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
                _,
            )) => {
                return Err(KeyringError::Wrapping(format!(
                    "log-in to PKCS#11 token {token:?} refused: the PIN is incorrect"
                )));
            }
            Err(P11Error::Pkcs11(RvError::PinLocked, _)) => {
                return Err(KeyringError::Wrapping(format!(
                    "log-in to PKCS#11 token {token:?} refused: the user PIN is locked"
                )));
            }
            Err(e) => return Err(p11(&format!("logging in to token {token:?}"), e)),
        }

        let key_label = &cfg.key_label;
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(key_label.as_bytes().to_vec()),
        ];
        let found = session.find_objects(&template).map_err(|e| {
            p11(
                &format!("searching token {token:?} for key {key_label:?}"),
                e,
            )
        })?;
        let key = match found.as_slice() {
            [key] => *key,
            [] if create_key_if_missing => session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::AES),
                        Attribute::ValueLen(32.into()),
                        Attribute::Label(key_label.as_bytes().to_vec()),
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::Wrap(false),
                        Attribute::Unwrap(false),
                        Attribute::Sign(false),
                        Attribute::Verify(false),
                        Attribute::Derive(false),
                    ],
                )
                .map_err(|e| {
                    p11(
                        &format!("generating AES key {key_label:?} on token {token:?}"),
                        e,
                    )
                })?,
            [] => {
                return Err(KeyringError::Wrapping(format!(
                    "key label {key_label:?} was not found on PKCS#11 token {token:?}"
                )));
            }
            _ => {
                return Err(KeyringError::Wrapping(format!(
                    "{} AES keys on PKCS#11 token {token:?} are labelled {key_label:?}; the label must name one key",
                    found.len()
                )));
            }
        };

        let wanted = [
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::Encrypt,
            AttributeType::Decrypt,
        ];
        let attrs = session.get_attributes(key, &wanted).map_err(|e| {
            p11(
                &format!("reading the attributes of key {key_label:?} on token {token:?}"),
                e,
            )
        })?;
        let is = |t| attr_bool(&attrs, t);
        if is(AttributeType::Sensitive) != Some(true)
            || is(AttributeType::Extractable) != Some(false)
        {
            return Err(KeyringError::Wrapping(format!(
                "key {key_label:?} on PKCS#11 token {token:?} may leave the token \
                 (it must be sensitive and not extractable); refusing to wrap with it"
            )));
        }
        if is(AttributeType::Encrypt) != Some(true) || is(AttributeType::Decrypt) != Some(true) {
            return Err(KeyringError::Wrapping(format!(
                "key {key_label:?} on PKCS#11 token {token:?} is not allowed to encrypt and decrypt"
            )));
        }

        Ok(Self {
            session: Mutex::new(session),
            key,
            token_label: token.clone(),
            key_label: key_label.clone(),
        })
    }

    fn session(&self) -> Result<std::sync::MutexGuard<'_, Session>, KeyringError> {
        self.session
            .lock()
            .map_err(|_| KeyringError::Wrapping("the PKCS#11 session is poisoned".to_owned()))
    }
}

impl KeyWrapper for Pkcs11Wrapper {
    fn name(&self) -> &'static str {
        "pkcs11"
    }

    fn wrap(&self, key: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let mut iv = random::bytes::<IV_LEN>();
        let sealed = {
            let params = GcmParams::new(&mut iv, &[], TAG_BITS.into())
                .map_err(|e| p11("AES-GCM parameters", e))?;
            self.session()?
                .encrypt(&Mechanism::AesGcm(params), self.key, key)
                .map_err(|e| {
                    p11(
                        &format!(
                            "wrapping with key {:?} on token {:?}",
                            self.key_label, self.token_label
                        ),
                        e,
                    )
                })?
        };
        let mut out = Vec::with_capacity(IV_LEN + sealed.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn unwrap_key(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
        if wrapped.len() < IV_LEN + TAG_LEN {
            return Err(KeyringError::Wrapping(
                "a wrapped key is too short to be AES-GCM output".to_owned(),
            ));
        }
        let (iv, sealed) = wrapped.split_at(IV_LEN);
        let mut iv: [u8; IV_LEN] = iv
            .try_into()
            .map_err(|_| KeyringError::Wrapping("bad AES-GCM IV".to_owned()))?;
        let params = GcmParams::new(&mut iv, &[], TAG_BITS.into())
            .map_err(|e| p11("AES-GCM parameters", e))?;
        let result = self
            .session()?
            .decrypt(&Mechanism::AesGcm(params), self.key, sealed);
        match result {
            Ok(plain) => Ok(Zeroizing::new(plain)),
            // A failed GCM tag check is CKR_ENCRYPTED_DATA_INVALID by the
            // standard; SoftHSM2 reports it as CKR_GENERAL_ERROR.
            Err(P11Error::Pkcs11(
                rv @ (RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::GeneralError),
                _,
            )) => Err(KeyringError::Wrapping(format!(
                "a wrapped key does not open with key {:?} on token {:?} ({rv:?}): \
                 it was altered, or wrapped by another key",
                self.key_label, self.token_label
            ))),
            Err(e) => Err(p11(
                &format!(
                    "unwrapping with key {:?} on token {:?}",
                    self.key_label, self.token_label
                ),
                e,
            )),
        }
    }
}
