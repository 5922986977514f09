//! Seed 002 (insecure random number generation), code audit test.
//!
//! `crypto::random` (crates/crypto/src/random.rs) is the only source of
//! random values in Vellum. This scan reads every non-test Rust source file of
//! the workspace and fails, listing `file:line`, on any other generator:
//! rand, fastrand, oorandom, seeded generators, `Uuid::new_v4`, or a direct
//! `getrandom` call. clippy.toml and deny.toml enforce the same rule at the
//! level of paths and crates; this scan also catches what those miss (a
//! crate that is not a dependency yet, a macro, a `use` that clippy would
//! only see once it is called).

use std::fmt;
use std::path::{Path, PathBuf};

/// The one file allowed to draw randomness, relative to the workspace root.
const SANCTIONED: &str = "crates/crypto/src/random.rs";

/// What a banned use looks like on one line of code.
struct Rule {
    needle: &'static str,
    /// The character before the match must not be part of an identifier
    /// (so `operand::random` is not `rand::random`).
    word_start: bool,
    /// The character after the match must not be a letter or digit (so
    /// `use random_x` is not `use rand`, while `use rand_core` still is).
    word_end: bool,
}

const fn rule(needle: &'static str, word_start: bool, word_end: bool) -> Rule {
    Rule {
        needle,
        word_start,
        word_end,
    }
}

const RULES: &[Rule] = &[
    rule("thread_rng", false, false),
    rule("rand::random", true, false),
    rule("rand::rng()", true, false),
    rule("rand::rngs", true, false),
    rule("SmallRng", false, false),
    rule("StdRng", false, false),
    rule("ThreadRng", false, false),
    rule("OsRng", false, false),
    rule("seed_from_u64", false, false),
    rule("from_seed", false, false),
    rule("fastrand::", true, false),
    rule("oorandom", true, false),
    rule("Uuid::new_v4", false, false),
    rule("getrandom::", true, false),
    rule("use rand", true, true),
    rule("extern crate rand", true, true),
];

/// One banned use: where it is and which patterns it matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub line: usize,
    pub patterns: Vec<&'static str>,
    pub code: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} in `{}`",
            self.path,
            self.line,
            self.patterns.join(", "),
            self.code
        )
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The part of `line` before a trailing `//` comment, ignoring `//` inside a
/// string literal (as in a URL). When unsure it keeps more of the line, so it
/// can only over-report, never hide code.
fn code_part(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

fn matches(code: &str, rule: &Rule) -> bool {
    code.match_indices(rule.needle).any(|(at, m)| {
        let before_ok =
            !rule.word_start || !code[..at].chars().next_back().is_some_and(is_ident_char);
        let after_ok = !rule.word_end
            || !code[at + m.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric());
        before_ok && after_ok
    })
}

/// Every banned generator use in `text` (the contents of the file at
/// `path`), one finding per line, with 1-based line numbers. Lines that are
/// comments or doc comments (trimmed start `//`) are skipped, and so is a
/// trailing `//` comment.
pub fn scan(path: &str, text: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let code = code_part(line);
        let patterns: Vec<&'static str> = RULES
            .iter()
            .filter(|r| matches(code, r))
            .map(|r| r.needle)
            .collect();
        if !patterns.is_empty() {
            findings.push(Finding {
                path: path.to_owned(),
                line: i + 1,
                patterns,
                code: line.trim().to_owned(),
            });
        }
    }
    findings
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "tests") {
                continue;
            }
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The workspace's non-test Rust sources, as paths relative to the root:
/// `crates/*/src/**/*.rs` and `crates/*/build.rs`, minus anything under a
/// `tests` directory.
fn workspace_sources(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/ directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    crates.sort();
    for krate in crates {
        let src = krate.join("src");
        if src.is_dir() {
            collect_rs(&src, &mut files);
        }
        let build = krate.join("build.rs");
        if build.is_file() {
            files.push(build);
        }
    }
    files
        .iter()
        .map(|p| {
            p.strip_prefix(root)
                .expect("under the workspace root")
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect()
}

#[test]
fn no_random_generator_outside_crypto_random() {
    let root = workspace_root();
    let files = workspace_sources(&root);
    // Guard against a scan that passes because it read nothing.
    assert!(
        files.iter().any(|f| f == "crates/crypto/src/lib.rs"),
        "the scan did not find the workspace sources under {}",
        root.display()
    );
    assert!(files.len() >= 10, "only {} files found", files.len());

    // The exemption must name a real file that really draws randomness: if
    // random.rs moves, this test must be updated rather than go quiet.
    let sanctioned = std::fs::read_to_string(root.join(SANCTIONED)).expect("random.rs");
    assert!(
        scan(SANCTIONED, &sanctioned)
            .iter()
            .any(|f| f.patterns.contains(&"getrandom::")),
        "{SANCTIONED} no longer calls getrandom: update the exemption"
    );

    let mut findings = Vec::new();
    for file in files.iter().filter(|f| f.as_str() != SANCTIONED) {
        let text = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
        findings.extend(scan(file, &text));
    }
    assert!(
        findings.is_empty(),
        "random values must come from crypto::random ({SANCTIONED}) only (seed 002); \
         banned generator use found:\n{}",
        findings
            .iter()
            .map(|f| format!("  {f}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn scanner_flags_banned_generators_in_a_fixture() {
    let path = "crates/crypto/tests/fixtures/banned_rng.rs.txt";
    let text = include_str!("../fixtures/banned_rng.rs.txt");
    let findings = scan(path, text);
    let flagged = |line: usize, pattern: &str| {
        findings
            .iter()
            .any(|f| f.line == line && f.path == path && f.patterns.contains(&pattern))
    };

    let expected: &[(usize, &str)] = &[
        (4, "use rand"),
        (5, "use rand"),
        (8, "thread_rng"),
        (9, "SmallRng"),
        (9, "seed_from_u64"),
        (10, "fastrand::"),
        (11, "Uuid::new_v4"),
        (12, "rand::random"),
        (13, "OsRng"),
        (15, "getrandom::"),
        (16, "oorandom"),
        (17, "StdRng"),
        (17, "from_seed"),
        (18, "rand::rng()"),
        // A `//` inside a string literal does not hide the code after it.
        (19, "ThreadRng"),
        (19, "rand::rng()"),
    ];
    for &(line, pattern) in expected {
        assert!(
            flagged(line, pattern),
            "line {line} should be flagged for `{pattern}`; findings:\n{findings:#?}"
        );
    }

    // Exactly those lines, and no comment or doc line (1 to 3).
    let mut lines: Vec<usize> = findings.iter().map(|f| f.line).collect();
    lines.dedup();
    assert_eq!(lines, vec![4, 5, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18, 19]);

    // The report names the file and line.
    let first = findings[0].to_string();
    assert!(
        first.starts_with("crates/crypto/tests/fixtures/banned_rng.rs.txt:4:"),
        "{first}"
    );
}

#[test]
fn scanner_passes_clean_code() {
    let clean = r#"
//! Avatars: colour from crypto::random, never rand::thread_rng().
use crypto::random;
use vellum_crypto::random::{index_below, session_token};

/// Picks a gradient; see `Uuid::new_v4` for why we do not use uuid's own RNG.
fn gradient(n: u64) -> u64 {
    let operand::random = 1; // an identifier that merely ends in "rand"
    let t = session_token(); // not fastrand::u32() nor getrandom::fill
    let id = crypto::random::uuid_v4();
    let url = "https://example.org/rand";
    let randomness = random::index_below(n);
    index_below(n)
}
"#;
    let findings = scan("clean.rs", clean);
    assert!(findings.is_empty(), "false positives: {findings:#?}");
}
