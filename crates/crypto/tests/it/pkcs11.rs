//! Seed 003 (secrets at rest): the keyring's secrets wrapped by a key held on
//! a PKCS#11 token, tested against a real SoftHSM2 token.
//!
//! SoftHSM2 reads its configuration (where its tokens live) from
//! `SOFTHSM2_CONF` once, when the module is initialised, and a module is
//! initialised once per process. The workspace forbids `unsafe` (so no
//! `std::env::set_var`), and tests run in parallel threads; so each SoftHSM2
//! test makes its own tokens in its own temporary directory and then runs its
//! body in a child process — this same test binary, filtered to this one test
//! — with `SOFTHSM2_CONF` set in the child's environment only.
//!
//! The tests that need SoftHSM2 are ignored by default: run them with
//! `cargo test -p vellum-crypto --test it pkcs11 -- --include-ignored`.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use secrecy::{ExposeSecret, SecretString};
use vellum_crypto::pkcs11::DEFAULT_KEY_LABEL;
use vellum_crypto::{KeyWrapper, Keyring, KeyringError, Pkcs11Config, Pkcs11Wrapper};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "1234";
const SO_PIN: &str = "5678";
/// Set in the child process that runs a test's body.
const CHILD_ENV: &str = "VELLUM_TEST_SOFTHSM_CHILD";

/// The directory of the child's SoftHSM2 tokens (holds its keyring files too).
fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(CHILD_ENV).expect("only called in the child"))
}

/// Runs `body` against fresh SoftHSM2 tokens labelled `labels` (user PIN
/// [`PIN`]): in the parent, makes the tokens and re-runs this test in a child
/// process whose `SOFTHSM2_CONF` points at them; in that child, runs `body`.
fn with_softhsm(test: &str, labels: &[&str], body: impl FnOnce()) {
    if std::env::var_os(CHILD_ENV).is_some() {
        body();
        return;
    }
    assert!(
        Path::new(MODULE).exists(),
        "{MODULE} is missing: install SoftHSM2 (apt-get install softhsm2)"
    );
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .unwrap();
    for label in labels {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", PIN, "--so-pin", SO_PIN])
            .output()
            .expect("softhsm2-util (install SoftHSM2: apt-get install softhsm2)");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token {label}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The test's name as libtest knows it: the module path without the crate.
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    let name = format!("{module}::{test}");
    let out = Command::new(std::env::current_exe().unwrap())
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD_ENV, dir.path())
        .args([
            name.as_str(),
            "--exact",
            "--include-ignored",
            "--test-threads=1",
        ])
        .args(["--nocapture"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} failed in its SoftHSM2 child process:\n{stdout}\n{stderr}"
    );
}

fn config(token: &str, key: &str, pin: &str) -> Pkcs11Config {
    Pkcs11Config::parse(
        &format!("module={MODULE};token={token};key={key}"),
        SecretString::from(pin),
    )
    .unwrap()
}

fn open_err(cfg: &Pkcs11Config, create: bool) -> String {
    match Pkcs11Wrapper::open(cfg, create) {
        Ok(w) => panic!("opened, but should have been refused: {w:?}"),
        Err(KeyringError::Wrapping(m)) => m,
        Err(other) => panic!("not a wrapping error: {other:?}"),
    }
}

/// The base64 secret strings of a keyring file's JSON.
fn secrets(text: &str) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    let mut out = vec![json["root_secret"].as_str().unwrap().to_owned()];
    for key in json["keys"].as_array().unwrap() {
        out.push(key["secret"].as_str().unwrap().to_owned());
    }
    out
}

// ----- Pkcs11Config::parse (no token needed) -----

#[test]
fn config_parses_module_token_and_key() {
    let cfg = Pkcs11Config::parse(
        "module=/usr/lib/softhsm/libsofthsm2.so;token=vellum;key=vellum-wrap",
        SecretString::from("s3cret-pin"),
    )
    .unwrap();
    assert_eq!(cfg.module, PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
    assert_eq!(cfg.token_label, "vellum");
    assert_eq!(cfg.key_label, "vellum-wrap");
    assert_eq!(cfg.pin.expose_secret(), "s3cret-pin");
}

#[test]
fn config_key_label_defaults_and_field_order_does_not_matter() {
    let cfg = Pkcs11Config::parse(
        " token = vellum hsm ; module=/opt/hsm/lib.so; ",
        SecretString::from("p"),
    )
    .unwrap();
    assert_eq!(cfg.module, PathBuf::from("/opt/hsm/lib.so"));
    assert_eq!(cfg.token_label, "vellum hsm");
    assert_eq!(cfg.key_label, DEFAULT_KEY_LABEL);
    assert_eq!(DEFAULT_KEY_LABEL, "vellum-keyring-wrap");
}

#[test]
fn config_refuses_unknown_repeated_missing_or_empty_fields_naming_them() {
    let err = |spec: &str| {
        Pkcs11Config::parse(spec, SecretString::from("p"))
            .unwrap_err()
            .to_string()
    };
    let cases = [
        ("module=/m.so;token=t;slot=3", "unknown field \"slot\""),
        ("module=/m.so;token=t;pin=1234", "unknown field \"pin\""),
        ("module=/m.so;token=t;token=u", "\"token\" is given twice"),
        (
            "module=/m.so;module=/n.so;token=t",
            "\"module\" is given twice",
        ),
        ("token=t", "\"module\" is missing"),
        ("module=/m.so", "\"token\" is missing"),
        ("module=/m.so;token=t;key=", "\"key\" is empty"),
        ("module=/m.so;token=", "\"token\" is empty"),
        ("module=/m.so;token", "name=value"),
        ("module=libsofthsm2.so;token=t", "absolute path"),
        ("", "\"module\" is missing"),
    ];
    for (spec, expected) in cases {
        let e = err(spec);
        assert!(e.contains(expected), "{spec:?}: {e}");
    }
    let e = err(&format!("module=/m.so;token={}", "x".repeat(33)));
    assert!(e.contains("longer than 32 bytes"), "{e}");
}

#[test]
fn config_debug_never_shows_the_pin() {
    let cfg =
        Pkcs11Config::parse("module=/m.so;token=t", SecretString::from("s3cret-pin")).unwrap();
    let shown = format!("{cfg:?}");
    assert!(!shown.contains("s3cret-pin"), "{shown}");
    assert!(shown.contains("[REDACTED]"), "{shown}");
    assert!(shown.contains("token_label: \"t\""), "{shown}");
}

// ----- Against a SoftHSM2 token -----

#[test]
#[ignore = "needs softhsm2: run with --include-ignored"]
fn keyring_wrapped_by_a_pkcs11_token_round_trips() {
    with_softhsm(
        "keyring_wrapped_by_a_pkcs11_token_round_trips",
        &["vellum-rt"],
        || {
            let path = child_dir().join("data.keyring");
            let cfg = config("vellum-rt", "vellum-wrap", PIN);
            let keyring = Keyring::generate(0);
            let sealed = keyring
                .seal(b"JBSWY3DPEHPK3PXP", "users.totp_secret:u1")
                .unwrap();
            {
                let wrapper = Pkcs11Wrapper::open(&cfg, true).unwrap();
                assert_eq!(wrapper.name(), "pkcs11");
                keyring.create(&path, Some(&wrapper)).unwrap();
            } // session closed, as when the server stops

            // As after a restart: a new session, and the key must already exist.
            let wrapper = Pkcs11Wrapper::open(&cfg, false).unwrap();
            let again = Keyring::load(&path, Some(&wrapper)).unwrap();
            assert_eq!(
                again
                    .open(&sealed, "users.totp_secret:u1")
                    .unwrap()
                    .as_slice(),
                b"JBSWY3DPEHPK3PXP"
            );
            assert_eq!(
                again.password_pepper().expose_secret(),
                keyring.password_pepper().expose_secret()
            );
            assert_eq!(again.keys(), keyring.keys());

            // Without the token the file does not load.
            let e = Keyring::load(&path, None).unwrap_err().to_string();
            assert!(e.contains("wrapped by \"pkcs11\""), "{e}");

            // A fresh IV every time; an altered or truncated blob is refused.
            let secret = [7u8; 32];
            let a = wrapper.wrap(&secret).unwrap();
            let b = wrapper.wrap(&secret).unwrap();
            assert_eq!(a.len(), 12 + 32 + 16, "iv ‖ ciphertext ‖ tag");
            assert_ne!(a, b, "a fresh IV for every wrap");
            assert_ne!(a[..12], b[..12]);
            assert_eq!(wrapper.unwrap_key(&a).unwrap().as_slice(), &secret);
            for at in [0, 12, a.len() - 1] {
                let mut altered = a.clone();
                altered[at] ^= 1;
                let e = wrapper.unwrap_key(&altered).unwrap_err().to_string();
                assert!(e.contains("altered"), "byte {at}: {e}");
            }
            assert!(wrapper.unwrap_key(&a[..27]).is_err());
            assert!(wrapper.unwrap_key(&[]).is_err());
        },
    );
}

#[test]
#[ignore = "needs softhsm2: run with --include-ignored"]
fn keyring_file_never_contains_an_unwrapped_key() {
    with_softhsm(
        "keyring_file_never_contains_an_unwrapped_key",
        &["vellum-file"],
        || {
            let path = child_dir().join("data.keyring");
            let wrapper = Pkcs11Wrapper::open(&config("vellum-file", "wrap", PIN), true).unwrap();
            let mut keyring = Keyring::generate(0);
            keyring.rotate(1); // two data keys and the root secret
            keyring.create(&path, Some(&wrapper)).unwrap();

            let file = std::fs::read(&path).unwrap();
            let text = std::str::from_utf8(&file).unwrap();
            let json: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(json["wrapping"], "pkcs11");

            let plain = keyring.to_text(None).unwrap();
            let unwrapped = secrets(&plain);
            let wrapped = secrets(text);
            assert_eq!(unwrapped.len(), 3);
            assert_eq!(wrapped.len(), 3);
            let found = |needle: &[u8]| file.windows(needle.len()).any(|w| w == needle);
            for secret in &unwrapped {
                assert!(
                    !found(secret.as_bytes()),
                    "an unwrapped secret is in the key file"
                );
                let raw = STANDARD.decode(secret).unwrap();
                assert_eq!(raw.len(), 32);
                assert!(!found(&raw), "raw key bytes are in the key file");
            }
            for (w, u) in wrapped.iter().zip(&unwrapped) {
                let blob = STANDARD.decode(w).unwrap();
                assert_eq!(blob.len(), 12 + 32 + 16, "iv ‖ ciphertext ‖ tag");
                assert_eq!(
                    wrapper.unwrap_key(&blob).unwrap().as_slice(),
                    STANDARD.decode(u).unwrap().as_slice(),
                    "each wrapped secret unwraps to its own key"
                );
            }
        },
    );
}

#[test]
#[ignore = "needs softhsm2: run with --include-ignored"]
fn a_wrong_pin_or_missing_key_label_is_refused_with_a_clear_error() {
    with_softhsm(
        "a_wrong_pin_or_missing_key_label_is_refused_with_a_clear_error",
        &["vellum-err"],
        || {
            // A wrong PIN, even when asked to create the key: refused, and
            // neither PIN is in the message.
            let wrong = "9876-not-the-pin";
            let e = open_err(&config("vellum-err", "wrap", wrong), true);
            assert!(e.contains("PIN is incorrect"), "{e}");
            assert!(e.contains("vellum-err"), "names the token: {e}");
            assert!(!e.contains(wrong) && !e.contains(PIN), "{e}");
            let shown = format!("{:?}", KeyringError::Wrapping(e));
            assert!(!shown.contains(wrong), "{shown}");

            // The right PIN, but no key with that label and no permission to
            // make one.
            let e = open_err(&config("vellum-err", "no-such-key", PIN), false);
            assert!(
                e.contains(
                    "key label \"no-such-key\" was not found on PKCS#11 token \"vellum-err\""
                ),
                "{e}"
            );
            assert!(!e.contains(PIN), "{e}");

            // A token label that matches no token.
            let e = open_err(&config("no-such-token", "wrap", PIN), true);
            assert!(
                e.contains("no PKCS#11 token labelled \"no-such-token\""),
                "{e}"
            );

            // A module that is not there.
            let cfg = Pkcs11Config::parse(
                "module=/nonexistent/libpkcs11.so;token=vellum-err",
                SecretString::from(PIN),
            )
            .unwrap();
            let e = open_err(&cfg, true);
            assert!(
                e.contains("loading PKCS#11 module /nonexistent/libpkcs11.so"),
                "{e}"
            );
            assert!(!e.contains(PIN), "{e}");
        },
    );
}

#[test]
#[ignore = "needs softhsm2: run with --include-ignored"]
fn the_wrapping_key_is_not_extractable() {
    with_softhsm(
        "the_wrapping_key_is_not_extractable",
        &["vellum-attr"],
        || {
            drop(
                Pkcs11Wrapper::open(&config("vellum-attr", DEFAULT_KEY_LABEL, PIN), true).unwrap(),
            );

            // Look at the key with cryptoki directly, not through the wrapper.
            let ctx = Pkcs11::new(MODULE).unwrap();
            match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
                Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
                Err(e) => panic!("{e}"),
            }
            let slot = ctx
                .get_slots_with_initialized_token()
                .unwrap()
                .into_iter()
                .find(|s| ctx.get_token_info(*s).unwrap().label() == "vellum-attr")
                .unwrap();
            let session = ctx.open_ro_session(slot).unwrap();
            session
                .login(UserType::User, Some(&SecretString::from(PIN)))
                .unwrap();
            let keys = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::Label(DEFAULT_KEY_LABEL.as_bytes().to_vec()),
                ])
                .unwrap();
            assert_eq!(keys.len(), 1, "exactly one wrapping key");
            let attrs = session
                .get_attributes(
                    keys[0],
                    &[
                        AttributeType::KeyType,
                        AttributeType::ValueLen,
                        AttributeType::Token,
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::AlwaysSensitive,
                        AttributeType::NeverExtractable,
                    ],
                )
                .unwrap();
            let has = |a: &Attribute| attrs.contains(a);
            assert!(has(&Attribute::KeyType(KeyType::AES)), "{attrs:?}");
            assert!(has(&Attribute::ValueLen(32.into())), "256-bit: {attrs:?}");
            assert!(has(&Attribute::Token(true)), "kept on the token: {attrs:?}");
            assert!(has(&Attribute::Sensitive(true)), "{attrs:?}");
            assert!(has(&Attribute::Extractable(false)), "{attrs:?}");
            assert!(has(&Attribute::AlwaysSensitive(true)), "{attrs:?}");
            assert!(has(&Attribute::NeverExtractable(true)), "{attrs:?}");

            // Its value cannot be read out.
            let value = session.get_attributes(keys[0], &[AttributeType::Value]);
            assert!(
                !matches!(&value, Ok(v) if v.iter().any(|a| matches!(a, Attribute::Value(_)))),
                "the key's value was readable"
            );
        },
    );
}

#[test]
#[ignore = "needs softhsm2: run with --include-ignored"]
fn a_key_wrapped_by_one_token_does_not_unwrap_on_another() {
    with_softhsm(
        "a_key_wrapped_by_one_token_does_not_unwrap_on_another",
        &["vellum-a", "vellum-b"],
        || {
            let a = Pkcs11Wrapper::open(&config("vellum-a", "wrap", PIN), true).unwrap();
            let b = Pkcs11Wrapper::open(&config("vellum-b", "wrap", PIN), true).unwrap();
            let blob = a.wrap(&[1u8; 32]).unwrap();
            assert_eq!(a.unwrap_key(&blob).unwrap().as_slice(), &[1u8; 32]);
            let e = b.unwrap_key(&blob).unwrap_err().to_string();
            assert!(e.contains("wrapped by another key"), "{e}");

            let path = child_dir().join("data.keyring");
            Keyring::generate(0).create(&path, Some(&a)).unwrap();
            assert!(Keyring::load(&path, Some(&b)).is_err());
            assert!(Keyring::load(&path, Some(&a)).is_ok());
        },
    );
}
