#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use domain::safety::HazardStatus;

use super::*;

const FIXTURE: &str = include_str!("../../tests/fixtures/safety/H001-fixture-hazard.toml");

/// A small workspace: one crate with the fixture's item and test, a README
/// with its section, and the fixture hazard (changed by `edit`).
fn workspace(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("crates/fixture/src")).unwrap();
    std::fs::create_dir_all(root.join("safety/hazards")).unwrap();
    // One line per file, so the workspace's own scan never reads these
    // string literals as tests.
    let lib = "pub fn fixture_control() {}\n#[cfg(test)]\nmod tests {\n    #[test]\n    #[ignore = \"reason\"]\n    fn fixture_control_holds() {}\n}\n";
    std::fs::write(root.join("crates/fixture/src/lib.rs"), lib).unwrap();
    std::fs::write(
        root.join("README.md"),
        "# Fixture\n\n```\n# Not a heading\n```\n\n## Fixture section\n",
    )
    .unwrap();
    std::fs::write(
        root.join("safety/hazards/H001-fixture-hazard.toml"),
        edit(FIXTURE),
    )
    .unwrap();
    dir
}

fn problems(root: &Path) -> Vec<String> {
    check(root)
        .problems
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_fixture_hazard_with_every_reference_present_passes_the_check() {
    let dir = workspace(str::to_owned);
    let outcome = check(dir.path());
    assert!(outcome.holds(), "{:?}", outcome.problems);
    assert_eq!(
        (
            outcome.hazards.len(),
            outcome.code_items,
            outcome.tests,
            outcome.sections
        ),
        (1, 1, 1, 1)
    );
}

#[test]
fn a_hazard_referencing_a_missing_test_fails_the_check_naming_file_hazard_and_test() {
    let dir = workspace(|t| {
        t.replace(
            "\"fixture_control_holds\"",
            "\"fixture_control_was_renamed\"",
        )
    });
    let found = problems(dir.path());
    assert_eq!(
        found,
        vec![
            "safety/hazards/H001-fixture-hazard.toml: H001: testing control 1, test \
             `fixture_control_was_renamed`: no #[test] or #[tokio::test] function of that name \
             under crates/"
                .to_owned()
        ]
    );
}

#[test]
fn a_function_of_the_name_that_is_not_a_test_does_not_count() {
    let dir = workspace(|t| t.replace("\"fixture_control_holds\"", "\"fixture_control\""));
    let found = problems(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("test `fixture_control`"), "{found:?}");
}

#[test]
fn a_missing_code_item_file_or_heading_fails_the_check_naming_each() {
    let dir = workspace(|t| {
        t.replace("item = \"fixture_control\"", "item = \"fixture_gone\"")
            .replace(
                "section = \"Fixture section\"",
                "section = \"Not a heading\"",
            )
    });
    let found = problems(dir.path());
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("H001: design control 1, item `fixture_gone` in crates/fixture/src/lib.rs: the file does not define that item"), "{found:?}");
    assert!(found[1].contains("training control 1, section \"Not a heading\" of README.md: the document has no heading of that name"), "{found:?}");

    let dir = workspace(|t| t.replace("crates/fixture/src/lib.rs", "crates/fixture/src/gone.rs"));
    assert!(problems(dir.path())[0].ends_with("in crates/fixture/src/gone.rs: no such file"));
    let dir = workspace(|t| t.replace("crates/fixture/src/lib.rs", "../outside.rs"));
    assert!(problems(dir.path())[0].contains("must be relative to the workspace root"));
}

#[test]
fn a_typed_risk_an_unknown_key_or_a_scale_typo_is_refused() {
    let dir = workspace(|t| {
        t.replace(
            "severity = \"Major\"\n\n[residual]",
            "severity = \"Major\"\nrisk = 4\n\n[residual]",
        )
    });
    let found = problems(dir.path());
    assert!(
        found[0].contains("H001: initial: risk is computed"),
        "{found:?}"
    );

    let dir = workspace(|t| t.replace("harm = ", "harms = "));
    let found = problems(dir.path());
    assert!(found[0].contains("unknown field `harms`"), "{found:?}");

    let dir = workspace(|t| {
        t.replace("likelihood = \"High\"", "likelihood = \"Likely\"")
            .replace("status = \"Closed\"", "status = \"Done\"")
    });
    let found = problems(dir.path());
    assert!(
        found
            .iter()
            .any(|p| p.contains("initial: likelihood \"Likely\" is not one of")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.contains("status: status \"Done\" is not one of")),
        "{found:?}"
    );
}

#[test]
fn status_and_score_rules_are_enforced_by_the_check() {
    let dir = workspace(|t| t.replace("status = \"Closed\"", "status = \"Open\""));
    assert!(problems(dir.path())[0].contains("an Open hazard must state its gaps"));
    let dir = workspace(|t| t.replace("likelihood = \"Very low\"", "likelihood = \"Very high\""));
    assert!(problems(dir.path())[0].contains("residual risk 5 is higher than initial risk 4"));
    let dir = workspace(|t| t.replace("date = \"2026-11-25\"", "date = 2026-02-30"));
    assert!(!problems(dir.path()).is_empty());
    let dir = workspace(|t| t.replace("date = \"2026-11-25\"", "date = 2026-11-26"));
    assert!(
        problems(dir.path()).is_empty(),
        "an unquoted TOML date is read too"
    );
}

#[test]
fn the_id_must_match_the_file_name_and_be_unique() {
    let dir = workspace(|t| t.replace("id = \"H001\"", "id = \"H002\""));
    assert!(problems(dir.path())[0].contains("the file name must be the id"));
    let dir = workspace(str::to_owned);
    std::fs::write(dir.path().join("safety/hazards/H001-again.toml"), FIXTURE).unwrap();
    let found = problems(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("the id is also used by"), "{found:?}");
}

#[test]
fn test_functions_are_found_past_other_attributes_and_only_when_marked() {
    let src = "#[test]\nfn a() {}\n#[tokio::test(flavor = \"multi_thread\")]\n/// doc\n#[ignore = \"x\"]\npub async fn b() {}\nfn c() {}\n#[cfg(test)]\nfn d() {}\n";
    assert_eq!(test_functions(src), vec!["a".to_owned(), "b".to_owned()]);
}

#[test]
fn items_are_found_by_their_definitions_not_by_mentions() {
    let rs = "// fn in_comment() {}\npub(crate) async fn run() {}\nstruct Keyring;\nimpl Keyring {\n    pub fn seal(&self) {}\n}\nfn user() { call_me(); }\n";
    assert!(defines_item("a.rs", rs, "run"));
    assert!(defines_item("a.rs", rs, "Keyring"));
    assert!(defines_item("a.rs", rs, "Keyring::seal"));
    assert!(!defines_item("a.rs", rs, "Keyring::open"));
    assert!(!defines_item("a.rs", rs, "in_comment"));
    assert!(!defines_item("a.rs", rs, "call_me"));
    let js = "export async function api(method) {}\nconst x = api();\n";
    assert!(defines_item("a.js", js, "api") && !defines_item("a.js", js, "method"));
    assert!(defines_item(
        "a.sql",
        "CREATE TRIGGER events_no_update BEFORE",
        "events_no_update"
    ));
    assert!(!defines_item(
        "a.sql",
        "-- events_no_update\n",
        "events_no_update"
    ));
}

#[test]
fn the_report_sorts_by_residual_risk_and_escapes_the_log() {
    let low = FIXTURE.to_owned();
    let high = FIXTURE
        .replace("id = \"H001\"", "id = \"H002\"")
        .replace(
            "name = \"Fixture hazard\"",
            "name = \"Second <script>alert(1)</script>\"",
        )
        .replace("likelihood = \"Very low\"", "likelihood = \"High\"");
    let (hazards, problems) = parse_log(&[
        ("safety/hazards/H001-a.toml".to_owned(), low),
        ("safety/hazards/H002-b.toml".to_owned(), high),
    ]);
    assert!(problems.is_empty(), "{problems:?}");
    let hazards: Vec<_> = hazards.into_iter().map(|(_, h)| h).collect();
    let md = report(&hazards, ReportFormat::Markdown);
    let log = &md[md.find("## Hazard log").unwrap()..];
    assert!(
        log.find("| H002 |").unwrap() < log.find("| H001 |").unwrap(),
        "highest residual first"
    );
    assert!(md.contains("| 4 | H002 |") && md.contains("| 2 | H001 |"));
    assert!(md.contains("## Clinical safety case summary"));
    assert!(md.contains("**Unacceptable residual risk (4 or 5)"));
    assert!(md.contains("`fixture_control` in `crates/fixture/src/lib.rs`"));
    let html = report(&hazards, ReportFormat::Html);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script>"), "the log's text is never markup");
    assert!(html.contains("&lt;script&gt;"));
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The real log: the three seed hazards are present, Closed or with
/// residual risk ≤ 2, and each of their testing controls names at least one
/// test that exists in this workspace now.
#[test]
fn the_three_seed_hazards_are_controlled_and_each_testing_control_has_a_real_test() {
    let root = repo_root();
    let outcome = check(&root);
    let workspace = Workspace::load(&root).unwrap();
    for (seed, words) in [("000", "CSRF"), ("002", "random"), ("003", "TOTP")] {
        let (file, h) = outcome
            .hazards
            .iter()
            .find(|(_, h)| h.seed.as_deref().is_some_and(|s| s.starts_with(seed)))
            .unwrap_or_else(|| panic!("no hazard answers seed report {seed}"));
        assert!(h.name.contains(words), "{file}: {}", h.name);
        assert!(
            h.status == HazardStatus::Closed || h.residual_risk().level() <= 2,
            "{file}: {:?}, residual risk {}",
            h.status,
            h.residual_risk()
        );
        assert!(!h.testing_controls.is_empty(), "{file}");
        for (i, t) in h.testing_controls.iter().enumerate() {
            assert!(
                t.tests.iter().any(|n| workspace.test_files(n).is_some()),
                "{file}: testing control {} names no existing test: {:?}",
                i + 1,
                t.tests
            );
        }
    }
}

/// The real safety file passes its own check: every code item, test and
/// document section it names exists (renaming a test without updating the
/// log fails here, and `vellum safety check` fails CI).
#[test]
fn the_real_safety_file_passes_the_check() {
    let outcome = check(&repo_root());
    assert!(
        outcome.hazards.len() >= 20,
        "{} hazards",
        outcome.hazards.len()
    );
    let problems: Vec<String> = outcome.problems.iter().map(ToString::to_string).collect();
    assert!(problems.is_empty(), "{problems:#?}");
}
