//! TOTP against independent references: the RFC 6238 vectors (in the unit
//! tests) and Python's `pyotp`; and the secrets' entropy (seed 002).

use std::collections::HashSet;
use std::process::Command;

use secrecy::ExposeSecret;
use vellum_crypto::totp::{TotpSecret, step_of};

#[test]
fn ten_thousand_generated_secrets_are_all_distinct_and_160_bits() {
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let s = TotpSecret::generate();
        let b32 = s.base32();
        assert_eq!(b32.expose_secret().len(), 32);
        assert!(seen.insert(s.expose_bytes().to_vec()), "a repeated secret");
    }
    // Every bit position takes both values across the sample (no stuck bits).
    let mut ones = [0u32; 160];
    for bytes in &seen {
        for (i, one) in ones.iter_mut().enumerate() {
            *one += u32::from((bytes[i / 8] >> (7 - i % 8)) & 1);
        }
    }
    for (i, n) in ones.iter().enumerate() {
        assert!(
            (4_700..=5_300).contains(n),
            "bit {i} was 1 in {n} of 10,000"
        );
    }
}

#[test]
#[ignore = "needs python3 with pyotp (CI installs it): run with --include-ignored"]
fn codes_match_pyotp_an_independent_implementation() {
    let mut cases = Vec::new();
    for i in 0..50i64 {
        let s = TotpSecret::generate();
        let t = 1_000_000_000 + i * 7_777_777;
        cases.push((
            s.base32().expose_secret().to_owned(),
            t,
            s.code_at_step(step_of(t)),
        ));
    }
    let script = "import sys, pyotp\n\
                  for line in sys.stdin:\n    \
                  secret, t = line.split()\n    \
                  print(pyotp.TOTP(secret).at(int(t)))\n";
    let input: String = cases.iter().map(|(s, t, _)| format!("{s} {t}\n")).collect();
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "pyotp failed: is it installed?");
    let theirs: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let ours: Vec<String> = cases.into_iter().map(|(_, _, c)| c).collect();
    assert_eq!(ours, theirs);
}
