//! Log lines never carry a secret: the harness captures logs through the
//! same redacting writer as production (`web::logging::Redacting`), so a
//! secret logged by mistake must come out masked.

use crate::harness::{PASSWORD, TestApp, logs};

const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE32_LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";

/// `n` random characters of `alphabet` (32 letters).
fn random_chars(alphabet: &[u8], n: usize) -> String {
    let mut b = vec![0u8; n];
    crypto::random::fill(&mut b);
    b.iter()
        .map(|&x| char::from(alphabet[usize::from(x) % alphabet.len()]))
        .collect()
}

/// The one captured line carrying `label`.
fn line_with(all: &str, label: &str) -> String {
    let found: Vec<&str> = all.lines().filter(|l| l.contains(label)).collect();
    assert_eq!(found.len(), 1, "one line with {label:?} in:\n{all}");
    found[0].to_owned()
}

#[tokio::test]
async fn log_lines_never_carry_secrets_even_when_code_logs_them() {
    // Starting a server installs the harness's log capture.
    let _t = TestApp::spawn().await;

    let totp_secret = random_chars(BASE32, 32);
    let otpauth = format!(
        "otpauth://totp/Vellum:alice?secret={}&issuer=Vellum",
        random_chars(BASE32, 32)
    );
    let api_token = crypto::random::api_token();
    let session = crypto::random::session_token();
    let csrf = crypto::random::csrf_token();
    let recovery = format!(
        "{}-{}",
        random_chars(BASE32_LOWER, 5),
        random_chars(BASE32_LOWER, 5)
    );
    let code = format!("{:06}", crypto::random::index_below(900_000) + 100_000);
    let patient = crypto::random::uuid_v4().to_string();

    // Code that logs what it should not, in the shapes tracing prints.
    tracing::info!(password = ?PASSWORD, user = "alice", "logs-it-01 sign-in attempt");
    tracing::info!(new_password = %PASSWORD, "logs-it-02 password changed");
    tracing::info!("logs-it-03 enrolment uri {otpauth} shown");
    tracing::info!("logs-it-04 generated {totp_secret} for alice");
    tracing::info!(authorization = %format!("Bearer {api_token}"), "logs-it-05 api call");
    tracing::info!("logs-it-06 cookie vellum_session={session}; path=/");
    tracing::info!(csrf_token = %csrf, "logs-it-07 form checked");
    tracing::info!("logs-it-08 recovery code {recovery} used by alice");
    tracing::info!(code = %code, attempts = 1, "logs-it-09 second factor checked");
    tracing::info!("logs-it-10 raw body username=alice&password={PASSWORD}&code={code}&next=/home");
    // An ordinary line, which must pass unchanged.
    tracing::info!(
        status = 200,
        count = 654_321,
        patient = %patient,
        path = "/patients/search",
        "logs-it-11 ordinary request at 2026-03-14T09:26:53Z"
    );

    let all = logs();

    // No secret anywhere in the captured logs.
    for secret in [
        PASSWORD,
        totp_secret.as_str(),
        otpauth.as_str(),
        "otpauth://",
        api_token.as_str(),
        session.as_str(),
        csrf.as_str(),
        recovery.as_str(),
    ] {
        assert!(!all.contains(secret), "{secret:?} reached the logs:\n{all}");
    }

    // Each line keeps its text around the mask.
    let expect = [
        (
            "logs-it-01",
            vec![
                "sign-in attempt",
                "password=",
                "[REDACTED]",
                "user=\"alice\"",
            ],
        ),
        (
            "logs-it-02",
            vec!["password changed", "new_password=[REDACTED]"],
        ),
        ("logs-it-03", vec!["enrolment uri [REDACTED] shown"]),
        ("logs-it-04", vec!["generated [REDACTED] for alice"]),
        (
            "logs-it-05",
            vec!["api call", "authorization=Bearer [REDACTED]"],
        ),
        (
            "logs-it-06",
            vec!["cookie vellum_session=[REDACTED]; path=/"],
        ),
        ("logs-it-07", vec!["form checked", "csrf_token=[REDACTED]"]),
        ("logs-it-08", vec!["recovery code [REDACTED] used by alice"]),
        (
            "logs-it-09",
            vec!["second factor checked", "code=[REDACTED]", "attempts=1"],
        ),
        (
            "logs-it-10",
            vec!["raw body username=alice&password=[REDACTED]&code=[REDACTED]&next=/home"],
        ),
    ];
    for (label, parts) in expect {
        let line = line_with(&all, label);
        for part in parts {
            assert!(line.contains(part), "{part:?} missing from {line:?}");
        }
    }
    // The six-digit code is masked where it is a code, on its own lines.
    for label in ["logs-it-09", "logs-it-10"] {
        let line = line_with(&all, label);
        assert!(!line.contains(&code), "code {code} in {line:?}");
    }

    // The ordinary line comes through whole: numbers, UUID, path, time.
    let line = line_with(&all, "logs-it-11");
    for part in [
        "logs-it-11 ordinary request at 2026-03-14T09:26:53Z",
        "status=200",
        "count=654321",
        &format!("patient={patient}"),
        "path=\"/patients/search\"",
    ] {
        assert!(line.contains(part), "{part:?} missing from {line:?}");
    }
    assert!(!line.contains("[REDACTED]"), "{line:?}");
}
