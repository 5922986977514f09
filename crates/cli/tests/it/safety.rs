//! `vellum safety check|report` on a small workspace built around the
//! fixture hazard.

use std::path::Path;

use super::vellum;

const FIXTURE: &str = include_str!("../../../app/tests/fixtures/safety/H001-fixture-hazard.toml");

fn fixture_workspace(root: &Path, hazard: &str) {
    std::fs::create_dir_all(root.join("crates/fixture/src")).unwrap();
    std::fs::create_dir_all(root.join("safety/hazards")).unwrap();
    let lib = "pub fn fixture_control() {}\n#[test]\nfn fixture_control_holds() {}\n";
    std::fs::write(root.join("crates/fixture/src/lib.rs"), lib).unwrap();
    std::fs::write(root.join("README.md"), "## Fixture section\n").unwrap();
    std::fs::write(root.join("safety/hazards/H001-fixture.toml"), hazard).unwrap();
}

#[test]
fn safety_check_reads_the_current_directory_and_fails_when_a_test_is_renamed() {
    let dir = tempfile::tempdir().unwrap();
    fixture_workspace(dir.path(), FIXTURE);
    let (code, out, err) = vellum(dir.path(), &["safety", "check"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("safety file holds: 1 hazards"), "{out}");

    let broken = FIXTURE.replace("\"fixture_control_holds\"", "\"fixture_control_renamed\"");
    fixture_workspace(dir.path(), &broken);
    let (code, _, err) = vellum(dir.path(), &["safety", "check"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "safety/hazards/H001-fixture.toml: H001: testing control 1, test `fixture_control_renamed`"
        ),
        "{err}"
    );
}

#[test]
fn safety_report_writes_markdown_or_html_and_refuses_a_log_that_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    fixture_workspace(dir.path(), FIXTURE);
    for (format, first) in [
        ("md", "# Vellum clinical safety case report"),
        ("html", "<!DOCTYPE html>"),
    ] {
        let out = dir.path().join(format!("report.{format}"));
        let (code, _, err) = vellum(
            dir.path(),
            &[
                "safety",
                "report",
                "--format",
                format,
                "--out",
                out.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(code, 0, "{err}");
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with(first), "{format}: {}", &text[..60]);
        assert!(text.contains("Fixture hazard"));
    }
    let (code, _, err) = vellum(
        dir.path(),
        &["safety", "report", "--format", "pdf", "--out", "x"],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("\"pdf\" is not md or html"), "{err}");

    fixture_workspace(
        dir.path(),
        &FIXTURE.replace("severity = \"Major\"", "severity = \"Huge\""),
    );
    let (code, _, err) = vellum(dir.path(), &["safety", "report", "--out", "r.md"], None);
    assert_eq!(code, 1);
    assert!(err.contains("severity \"Huge\" is not one of"), "{err}");
    assert!(!dir.path().join("r.md").exists(), "nothing written");
}
