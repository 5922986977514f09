//! Masking secrets in text bound for a log line.
//!
//! [`redact`] replaces anything shaped like a secret with `[REDACTED]`:
//!
//! - a run of 32 or more base32 characters `[A-Z2-7]`, with any `=` padding
//!   that follows it (a TOTP secret);
//! - an `otpauth://` URI, up to the next whitespace, quote or backslash;
//! - an API token: `vlm_` and the base64url characters after it;
//! - a run of 40 or more base64url characters `[A-Za-z0-9_-]` (session,
//!   CSRF and reset tokens are 43);
//! - a recovery code: exactly `[a-z2-7]{5}-[a-z2-7]{5}`, standing alone;
//! - the value of a field or key named like a secret ([`is_secret_key`]:
//!   `password`, `code`, `token`, `secret`, `totp`, `pin`, … in any case),
//!   written `name=value`, `name: value`, `"name":"value"`,
//!   `name="value"` or `\"name\":\"value\"` (inside a JSON string). The
//!   value is masked whatever its shape, so a six-digit TOTP code is masked
//!   as `code=123456` while other six-digit numbers survive. A quoted value
//!   keeps its quotes (`"password":"[REDACTED]"`), so JSON stays JSON.
//!
//! The scan is hand-written and linear in the length of the text: every
//! byte is looked at a bounded number of times. Only ASCII bytes ever start
//! or end a masked span, so the text stays valid UTF-8; should a slice ever
//! fall off a character boundary, that part is masked rather than copied
//! (fail closed). Text with nothing to mask is returned borrowed.
//!
//! Known limits, by design of a shape-based filter: an unquoted value
//! (`password=…` written with `%`) is masked up to the next whitespace, so a
//! secret containing a space is only partly masked when logged unquoted;
//! quoted (`?`, Debug, JSON) values are masked whole. Ordinary hyphenated
//! words of exactly five and five lowercase letters (`hello-world`) are
//! masked as if they were recovery codes, and identifiers of 40 or more
//! characters as if they were tokens.

use std::borrow::Cow;

/// What a masked span is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// A base32 run at least this long is taken for a TOTP secret.
const MIN_BASE32: usize = 32;
/// A base64url run at least this long is taken for a token.
const MIN_TOKEN: usize = 40;

const OTPAUTH: &[u8] = b"otpauth://";
const API_PREFIX: &[u8] = b"vlm_";

/// Key names whose value is a secret, compared case-insensitively with `-`
/// read as `_`.
const SECRET_KEYS: &[&str] = &[
    "password",
    "new_password",
    "current_password",
    "confirm_password",
    "passphrase",
    "code",
    "recovery_code",
    "totp_code",
    "otp",
    "token",
    "csrf_token",
    "secret",
    "totp",
    "pin",
];

/// Suffixes that make any key secret (`api_token`, `totp_secret`,
/// `x-csrf-token`). `code` and `pin` are not among them: `status_code` and
/// `postal_code` are not secrets.
const SECRET_SUFFIXES: &[&str] = &[
    "_password",
    "_passphrase",
    "_token",
    "_secret",
    "_totp",
    "_recovery_code",
];

/// `text` with every secret-shaped part replaced by `[REDACTED]`; borrowed
/// when nothing matched.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut r = Redactor {
        text,
        bytes: text.as_bytes(),
        out: None,
        copied: 0,
    };
    r.run();
    r.finish()
}

/// Whether a field or key of this name holds a secret (case-insensitive;
/// `-` and `_` are the same).
pub fn is_secret_key(name: &str) -> bool {
    let name = name.as_bytes();
    SECRET_KEYS.iter().any(|k| key_eq(name, k.as_bytes()))
        || SECRET_SUFFIXES.iter().any(|s| {
            let s = s.as_bytes();
            name.len() > s.len() && key_eq(&name[name.len() - s.len()..], s)
        })
}

/// `name` equals the lowercase `key`, ignoring case and reading `-` as `_`.
fn key_eq(name: &[u8], key: &[u8]) -> bool {
    name.len() == key.len()
        && name.iter().zip(key).all(|(&n, &k)| {
            let n = if n == b'-' {
                b'_'
            } else {
                n.to_ascii_lowercase()
            };
            n == k
        })
}

struct Redactor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    /// The output, created at the first mask.
    out: Option<String>,
    /// `text[..copied]` has been dealt with (copied or masked).
    copied: usize,
}

impl<'a> Redactor<'a> {
    fn run(&mut self) {
        let b = self.bytes;
        let mut i = 0;
        while i < b.len() {
            if is_b64url(b[i]) {
                i = self.word(i);
            } else {
                i += 1;
            }
        }
    }

    /// Handles the maximal base64url run starting at `start` and whatever
    /// secret follows it; returns where scanning resumes.
    fn word(&mut self, start: usize) -> usize {
        let b = self.bytes;
        let end = run_end(b, start, is_b64url);
        let word = &b[start..end];

        // A word ending in `otpauth` followed by `://`: the URI (and, if
        // the word is as long as a token, the whole word with it).
        if word.len() >= 7
            && word[word.len() - 7..].eq_ignore_ascii_case(&OTPAUTH[..7])
            && b[end..].starts_with(&OTPAUTH[7..])
        {
            let uri_end = run_end(b, end, |c| {
                !(c.is_ascii_whitespace() || c == b'"' || c == b'\'' || c == b'\\')
            });
            let uri_start = if word.len() >= MIN_TOKEN {
                start
            } else {
                end - 7
            };
            self.mask(uri_start, uri_end);
            return uri_end;
        }

        // A token: any long base64url run.
        if word.len() >= MIN_TOKEN {
            self.mask(start, end);
            return end;
        }

        // `name=value`, `name: value`, `"name":"value"`, …
        if let Some(resume) = self.key_value(start, end) {
            return resume;
        }

        // A recovery code, standing alone.
        if is_recovery_code(word) {
            self.mask(start, end);
            return end;
        }

        // Inside the word: an API token, or a base32 secret.
        let api = find(word, API_PREFIX)
            .map(|p| start + p)
            .filter(|&p| p + API_PREFIX.len() < end);
        let scan_to = api.unwrap_or(end);
        let mut j = start;
        while j < scan_to {
            if is_base32(b[j]) {
                let k = run_end(&b[..scan_to], j, is_base32);
                if k - j >= MIN_BASE32 {
                    let padded = if k == end {
                        run_end(b, k, |c| c == b'=')
                    } else {
                        k
                    };
                    self.mask(j, padded);
                    if padded > end {
                        return padded;
                    }
                }
                j = k;
            } else {
                j += 1;
            }
        }
        if let Some(p) = api {
            self.mask(p, end);
        }
        end
    }

    /// If `text[start..end]` is a secret key followed by a separator, masks
    /// the value and returns where scanning resumes.
    fn key_value(&mut self, start: usize, end: usize) -> Option<usize> {
        let b = self.bytes;
        let name = self.text.get(start..end)?;
        if !is_secret_key(name) {
            return None;
        }
        // An optional closing quote of a quoted key: `"name"` or `\"name\"`.
        let mut i = end;
        if b[i..].starts_with(b"\\\"") {
            i += 2;
        } else if b.get(i) == Some(&b'"') || b.get(i) == Some(&b'\'') {
            i += 1;
        }
        match b.get(i) {
            // `name=value`, but not `name==value`; nothing between.
            Some(b'=') if b.get(i + 1) != Some(&b'=') => i += 1,
            // `name: value`, but not a path (`a::token::b`, `token::x`);
            // spaces may follow.
            Some(b':') if b.get(i + 1) != Some(&b':') && (start == 0 || b[start - 1] != b':') => {
                i += 1;
                while matches!(b.get(i), Some(b' ' | b'\t')) {
                    i += 1;
                }
            }
            _ => return None,
        }
        Some(self.value(i))
    }

    /// Masks the value starting at `i`; returns where it ends.
    fn value(&mut self, i: usize) -> usize {
        let b = self.bytes;
        let rest = &b[i..];
        if rest.starts_with(REDACTED.as_bytes()) {
            // Already masked (e.g. secrecy's Debug): leave it.
            return i + REDACTED.len();
        }
        if rest.starts_with(b"\\\"") {
            // `\"value\"`: a quoted value inside a JSON string.
            let (inner_end, close) = escaped_quoted_end(b, i + 2);
            self.mask(i + 2, inner_end);
            return close;
        }
        match rest.first() {
            Some(&q @ (b'"' | b'\'')) => {
                let (inner_end, close) = quoted_end(b, i + 1, q);
                self.mask(i + 1, inner_end);
                close
            }
            _ => {
                let end = unquoted_end(b, i);
                if end > i && !already_masked(&b[i..end]) {
                    self.mask(i, end);
                }
                end
            }
        }
    }

    /// Replaces `text[from..to]` with `[REDACTED]`.
    fn mask(&mut self, from: usize, to: usize) {
        if from >= to || from < self.copied {
            return;
        }
        let out = self
            .out
            .get_or_insert_with(|| String::with_capacity(self.text.len()));
        push_slice(out, self.text, self.copied, from);
        out.push_str(REDACTED);
        self.copied = to;
    }

    fn finish(self) -> Cow<'a, str> {
        match self.out {
            None => Cow::Borrowed(self.text),
            Some(mut out) => {
                push_slice(&mut out, self.text, self.copied, self.text.len());
                Cow::Owned(out)
            }
        }
    }
}

/// Copies `text[from..to]`; masks it instead if that is not a slice of
/// whole characters (cannot happen: spans start and end at ASCII bytes).
fn push_slice(out: &mut String, text: &str, from: usize, to: usize) {
    if from < to {
        match text.get(from..to) {
            Some(s) => out.push_str(s),
            None => out.push_str(REDACTED),
        }
    }
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

fn is_base32(c: u8) -> bool {
    c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c)
}

fn is_lower_base32(c: u8) -> bool {
    c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c)
}

/// `xxxxx-xxxxx` in lowercase base32.
fn is_recovery_code(word: &[u8]) -> bool {
    word.len() == 11
        && word[5] == b'-'
        && word[..5].iter().all(|&c| is_lower_base32(c))
        && word[6..].iter().all(|&c| is_lower_base32(c))
}

/// The first index at or after `from` whose byte fails `keep`.
fn run_end(b: &[u8], from: usize, keep: impl Fn(u8) -> bool) -> usize {
    b[from..]
        .iter()
        .position(|&c| !keep(c))
        .map_or(b.len(), |p| from + p)
}

/// Where `needle` first occurs in `hay` (needle is short; linear).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// For a value opened by quote `q` just before `from`: the end of its
/// content and the index after its closing quote. Backslash escapes are
/// skipped; an unclosed value runs to the end of the text.
fn quoted_end(b: &[u8], from: usize, q: u8) -> (usize, usize) {
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == q => return (i, i + 1),
            _ => i += 1,
        }
    }
    (b.len(), b.len())
}

/// For a value opened by `\"` inside a JSON string: the text is read as
/// JSON-unescaped (`\\` is `\`, `\"` is `"`) and the value ends at the
/// first unescaped `"` of that reading. Returns the end of the content and
/// the index after the closing `\"`.
fn escaped_quoted_end(b: &[u8], from: usize) -> (usize, usize) {
    let mut i = from;
    let mut escaped = false;
    while i < b.len() {
        // One character of the unescaped reading, and its width here.
        let (c, w) = if b[i] == b'\\' && i + 1 < b.len() {
            (b[i + 1], 2)
        } else {
            (b[i], 1)
        };
        if escaped {
            escaped = false;
        } else if c == b'\\' {
            escaped = true;
        } else if c == b'"' {
            return (i, i + w);
        }
        i += w;
    }
    (b.len(), b.len())
}

/// The end of an unquoted value: the next whitespace or delimiter. A quote
/// right after `(` (Debug's `Some("…")`) is read through to its close, and
/// so is a `[REDACTED]` already in the value.
fn unquoted_end(b: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'"' if i > from && b[i - 1] == b'(' => i = quoted_end(b, i + 1, b'"').1,
            b'[' if b[i..].starts_with(REDACTED.as_bytes()) => i += REDACTED.len(),
            c if c.is_ascii_whitespace() => return i,
            b'"' | b'&' | b',' | b';' | b'}' | b']' | b')' => return i,
            _ => i += 1,
        }
    }
    b.len()
}

/// An unquoted value that only wraps an existing mask, as secrecy's Debug
/// prints it: `SecretBox<str>([REDACTED]` (the `)` ends the value).
fn already_masked(value: &[u8]) -> bool {
    let tail = b"([REDACTED]";
    value.starts_with(b"Secret")
        && value.ends_with(tail)
        && value[..value.len() - tail.len()]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'<' | b'>' | b':'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const B32: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"; // 32
    const SESSION: &str = "q3X9_vT-2mN8kLpR5sYwZ0aBcDeFgHiJ4uV6xY7zA1b"; // 43
    const API: &str = "vlm_q3X9_vT-2mN8kLpR5sYwZ0aBcDeFgHiJ4uV6xY7zA1b";

    fn r(s: &str) -> String {
        redact(s).into_owned()
    }

    fn unchanged(s: &str) {
        assert!(
            matches!(redact(s), Cow::Borrowed(_)),
            "should pass unchanged: {s:?}, got {:?}",
            redact(s)
        );
    }

    // --- ordinary lines survive -----------------------------------------

    #[test]
    fn redact_leaves_ordinary_log_lines_alone() {
        for line in [
            "",
            "hello",
            "2026-03-14T09:26:53.589793Z  INFO vellum_web::middleware: request method=GET uri=/patients/0b6c2f8e-9a1d-4c3b-8e7f-1a2b3c4d5e6f status=200 latency_ms=12",
            "2026-03-14T09:26:53.589793Z ERROR vellum_app::alerts: alert raised alert=\"csrf_failures_per_ip\" subject=127.0.0.1 count=6",
            "patient nhs_number=943 476 5919 nhs=9434765919 loaded",
            "opening the database sqlite:///var/lib/vellum/vellum.db",
            "served /static/app.css in 123456 us, 654321 bytes, at 1710408413",
            "user_id=0b6c2f8e-9a1d-4c3b-8e7f-1a2b3c4d5e6f role=clinician",
            "{\"timestamp\":\"2026-03-14T09:26:53Z\",\"level\":\"INFO\",\"fields\":{\"message\":\"ok\",\"status\":200}}",
            "status_code=200 error_code=E42 postal_code=SW1A token_count=3 token_hash_prefix=ab12",
            "vellum_app::token: issued token id 17",
            "a::code::b and token::issue",
            "UPPER CASE WORDS ARE FINE AND SO IS ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "non-ASCII: Zoë Ångström — naïve café ✓",
            "see Authorization: Bearer vlm_… in the docs",
            "a secret is kept in secrecy, the token in a cookie",
            "x == y, code == 3",
            "x-request-id: 0b6c2f8e-9a1d-4c3b-8e7f-1a2b3c4d5e6f",
        ] {
            unchanged(line);
        }
    }

    // --- shapes -----------------------------------------------------------

    #[test]
    fn redact_masks_base32_totp_secrets() {
        assert_eq!(
            r(&format!("new secret {B32} made")),
            "new secret [REDACTED] made"
        );
        assert_eq!(r(&format!("{B32}====")), "[REDACTED]");
        assert_eq!(r(&format!("x{B32}y")), "x[REDACTED]y");
        // 31 is not enough on its own…
        unchanged(&B32[..31]);
        // …but after `secret=` 16 are.
        assert_eq!(r("secret=JBSWY3DPEHPK3PXP&x=1"), "secret=[REDACTED]&x=1");
        assert_eq!(r("SECRET=JBSWY3DPEHPK3PXP"), "SECRET=[REDACTED]");
    }

    #[test]
    fn redact_masks_otpauth_uris() {
        let uri = format!("otpauth://totp/Vellum:alice?secret={B32}&issuer=Vellum");
        assert_eq!(r(&format!("uri {uri} end")), "uri [REDACTED] end");
        assert_eq!(r(&format!("uri=\"{uri}\"")), "uri=\"[REDACTED]\"");
        assert_eq!(r(&format!("'{uri}'")), "'[REDACTED]'");
        assert_eq!(
            r(&format!("{{\"message\":\"uri {uri}\"}}")),
            "{\"message\":\"uri [REDACTED]\"}"
        );
        assert_eq!(r("OTPAUTH://TOTP/x?secret=AB"), "[REDACTED]");
        assert_eq!(r("link:otpauth://hotp/x"), "link:[REDACTED]");
    }

    #[test]
    fn redact_masks_api_tokens() {
        assert_eq!(r(&format!("Bearer {API}")), "Bearer [REDACTED]");
        assert_eq!(r("short vlm_abc.def"), "short [REDACTED].def");
        assert_eq!(r("Bearer%20vlm_abc123"), "Bearer%20[REDACTED]");
        // Glued to a long run: the whole run goes.
        assert_eq!(r(&format!("Bearer%20{API}")), "Bearer%[REDACTED]");
        unchanged("vlm_ alone");
    }

    #[test]
    fn redact_masks_session_and_csrf_tokens() {
        assert_eq!(
            r(&format!("cookie vellum_session={SESSION}; path=/")),
            "cookie vellum_session=[REDACTED]; path=/"
        );
        assert_eq!(
            r(&format!("__Host-vellum_csrf={SESSION}")),
            "__Host-vellum_csrf=[REDACTED]"
        );
        assert_eq!(r(&format!("x {SESSION}")), "x [REDACTED]");
        // 40 is the threshold.
        assert_eq!(r(&"a".repeat(40)), "[REDACTED]");
        unchanged(&"a".repeat(39));
    }

    #[test]
    fn redact_masks_recovery_codes() {
        assert_eq!(r("used k7m2q-x4bnz today"), "used [REDACTED] today");
        assert_eq!(
            r("codes [\"k7m2q-x4bnz\",\"aaaaa-22222\"]"),
            "codes [\"[REDACTED]\",\"[REDACTED]\"]"
        );
        // Not the shape: wrong lengths, uppercase, digits outside 2-7.
        unchanged("k7m2q-x4bn k7m2q-x4bnzz K7M2Q-X4BNZ k7m2q-x4b9z 12345-67890");
    }

    #[test]
    fn redact_masks_secret_field_values_in_every_form() {
        assert_eq!(
            r("login password=hunter2 user=alice"),
            "login password=[REDACTED] user=alice"
        );
        assert_eq!(
            r("login password=\"hunter 2\" user=alice"),
            "login password=\"[REDACTED]\" user=alice"
        );
        assert_eq!(
            r("Form { password: \"hunter2\", user: \"alice\" }"),
            "Form { password: \"[REDACTED]\", user: \"alice\" }"
        );
        assert_eq!(r("password: hunter2"), "password: [REDACTED]");
        assert_eq!(
            r("{\"password\":\"hunter2\",\"user\":\"alice\"}"),
            "{\"password\":\"[REDACTED]\",\"user\":\"alice\"}"
        );
        assert_eq!(
            r("{\"password\": \"hunter2\"}"),
            "{\"password\": \"[REDACTED]\"}"
        );
        assert_eq!(r("PassWord=hunter2"), "PassWord=[REDACTED]");
        for key in [
            "new_password",
            "current_password",
            "code",
            "recovery_code",
            "token",
            "csrf_token",
            "secret",
            "totp",
            "pin",
            "CSRF-Token",
            "x-csrf-token",
            "api_token",
            "totp_secret",
        ] {
            assert_eq!(
                r(&format!("{key}=s3cr3t!x")),
                format!("{key}=[REDACTED]"),
                "{key}"
            );
            assert_eq!(
                r(&format!("\"{key}\":\"s3cr3t!x\"")),
                format!("\"{key}\":\"[REDACTED]\""),
                "{key}"
            );
        }
    }

    #[test]
    fn redact_masks_form_bodies_and_queries() {
        assert_eq!(
            r("body username=alice&password=hunter2&csrf_token=abc&next=/home"),
            "body username=alice&password=[REDACTED]&csrf_token=[REDACTED]&next=/home"
        );
        assert_eq!(
            r("GET /login/2fa?code=123456&x=1"),
            "GET /login/2fa?code=[REDACTED]&x=1"
        );
    }

    #[test]
    fn redact_masks_six_digit_codes_only_as_secret_values() {
        assert_eq!(
            r("totp ok code=123456 at=1710408413"),
            "totp ok code=[REDACTED] at=1710408413"
        );
        assert_eq!(
            r("{\"code\":123456,\"n\":654321}"),
            "{\"code\":[REDACTED],\"n\":654321}"
        );
        assert_eq!(r("Submit { code: 123456 }"), "Submit { code: [REDACTED] }");
        assert_eq!(r("pin=4821"), "pin=[REDACTED]");
        unchanged("count=123456 took 654321ns at 12:34:56 on 2026-03-14 id=100200");
    }

    #[test]
    fn redact_masks_escaped_values_inside_json_strings() {
        assert_eq!(
            r(r#"{"message":"login password=\"hunter2\" user=alice"}"#),
            r#"{"message":"login password=\"[REDACTED]\" user=alice"}"#
        );
        // A quote inside the Debug value: `\\\"` is an escaped quote.
        assert_eq!(
            r(r#"{"message":"password=\"a\\\"b\" ok"}"#),
            r#"{"message":"password=\"[REDACTED]\" ok"}"#
        );
        assert_eq!(
            r(r#"{"message":"{\"code\":\"123456\"}"}"#),
            r#"{"message":"{\"code\":\"[REDACTED]\"}"}"#
        );
    }

    #[test]
    fn redact_handles_escapes_some_and_unclosed_values() {
        assert_eq!(r(r#"password="a\"b c" ok"#), r#"password="[REDACTED]" ok"#);
        assert_eq!(
            r(r#"password: Some("hunter 2"), ok"#),
            "password: [REDACTED]), ok"
        );
        assert_eq!(r("password: Some(123456) ok"), "password: [REDACTED]) ok");
        assert_eq!(r("password=\"never closed"), "password=\"[REDACTED]");
        assert_eq!(r("password='hunter2' ok"), "password='[REDACTED]' ok");
        assert_eq!(r("token=\u{e9}t\u{e9} ok"), "token=[REDACTED] ok");
        unchanged("password= user=alice");
    }

    #[test]
    fn redact_is_idempotent_and_leaves_secrecy_output() {
        unchanged("password: SecretBox<str>([REDACTED])");
        unchanged("token=[REDACTED] code=[REDACTED]");
        unchanged("Login { password: SecretBox<str>([REDACTED]), user: \"alice\" }");
        // A wrapper that is not only a type name is still masked.
        assert_eq!(r("password=hunter2([REDACTED])"), "password=[REDACTED])");
        assert_eq!(r("password=Hunter2([REDACTED])"), "password=[REDACTED])");
        for line in [
            format!("password=hunter2 {B32} {SESSION} {API} k7m2q-x4bnz"),
            "{\"password\":\"x\",\"code\":123456}".to_owned(),
            format!("otpauth://totp/a?secret={B32}"),
        ] {
            let once = r(&line);
            assert_eq!(r(&once), once);
        }
    }

    #[test]
    fn redact_masks_everything_in_one_line() {
        let line = format!(
            "2026-03-14T09:26:53Z INFO enrol user=alice uri=otpauth://totp/V:alice?secret={B32} \
             secret={B32} token={API} session={SESSION} recovery=k7m2q-x4bnz code=123456 status=200"
        );
        let out = r(&line);
        for s in [B32, API, SESSION, "k7m2q-x4bnz", "123456", "otpauth"] {
            assert!(!out.contains(s), "{s} left in {out}");
        }
        assert!(out.starts_with("2026-03-14T09:26:53Z INFO enrol user=alice uri="));
        assert!(out.ends_with("code=[REDACTED] status=200"));
    }

    #[test]
    fn redact_is_linear_on_hostile_input() {
        // Long stretches of near-misses must not go quadratic.
        let pieces = [
            "password ",
            "password: ",
            "code=1 ",
            "a-b ",
            "vlm_ ",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ23456 ",
            "otpauth:/ ",
            "\\\" ",
            "x=Some( ",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ",
        ];
        let start = std::time::Instant::now();
        for p in pieces {
            let hostile = p.repeat(20_000);
            let _ = redact(&hostile);
        }
        let _ = redact(&("password=\"".to_owned() + &"\\\\".repeat(100_000)));
        let _ = redact(&("password=\\\"".to_owned() + &"\\\\".repeat(100_000)));
        let _ = redact(&"password=".repeat(100_000));
        assert!(start.elapsed() < std::time::Duration::from_secs(3));
    }

    #[test]
    fn redact_keeps_utf8_valid_around_masks() {
        let line = format!("Zoë {SESSION}é password=motdepasse✓ k7m2q-x4bnz—ok");
        assert_eq!(
            r(&line),
            "Zoë [REDACTED]é password=[REDACTED] [REDACTED]—ok"
        );
    }

    #[test]
    fn is_secret_key_matches_names_not_lookalikes() {
        for k in [
            "password",
            "PASSWORD",
            "csrf-token",
            "session_token",
            "recovery_code",
            "totp_code",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "status_code",
            "postal_code",
            "token_count",
            "spin",
            "pinned",
            "codes",
            "user",
            "",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
