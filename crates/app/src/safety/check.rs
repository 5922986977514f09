//! `vellum safety check`: the hazard log against the workspace it describes.

use std::path::Path;

use domain::safety::Hazard;

use super::{SafetyProblem, Workspace, defines_item, headings, parse_log, read_hazard_files};

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckOutcome {
    /// The hazards that parsed (whatever their references), with their files.
    pub hazards: Vec<(String, Hazard)>,
    /// Every problem; the check holds when there are none.
    pub problems: Vec<SafetyProblem>,
    /// References verified: code items, test functions, document sections.
    pub code_items: usize,
    pub tests: usize,
    pub sections: usize,
}

impl CheckOutcome {
    pub fn holds(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the hazard log of the workspace at `root` (normally the current
/// directory): reads and parses every hazard file, recomputes risk, and
/// verifies every reference against the files found there now.
pub fn check(root: &Path) -> CheckOutcome {
    let files = match read_hazard_files(root) {
        Ok(f) => f,
        Err(problems) => {
            return CheckOutcome {
                problems,
                ..CheckOutcome::default()
            };
        }
    };
    let workspace = match Workspace::load(root) {
        Ok(w) => w,
        Err(why) => {
            return CheckOutcome {
                problems: vec![SafetyProblem::new("crates", None, why)],
                ..CheckOutcome::default()
            };
        }
    };
    let (hazards, mut problems) = parse_log(&files);
    let mut outcome = check_hazards(&hazards, &workspace);
    problems.append(&mut outcome.problems);
    outcome.problems = problems;
    outcome.hazards = hazards;
    outcome
}

/// Checks the references of parsed hazards (with their files, for the
/// messages) against `workspace`.
pub fn check_hazards(hazards: &[(String, Hazard)], workspace: &Workspace) -> CheckOutcome {
    let mut out = CheckOutcome::default();
    for (file, h) in hazards {
        let problem =
            |reference: String, why: &str| SafetyProblem::new(file, Some(&h.id), why).at(reference);
        for (i, d) in h.design_controls.iter().enumerate() {
            let reference = format!("design control {}, item `{}` in {}", i + 1, d.item, d.path);
            match workspace.read(&d.path) {
                Err(why) => out.problems.push(problem(reference, &why)),
                Ok(text) if !defines_item(&d.path, &text, &d.item) => out
                    .problems
                    .push(problem(reference, "the file does not define that item")),
                Ok(_) => out.code_items += 1,
            }
        }
        for (i, t) in h.testing_controls.iter().enumerate() {
            for name in &t.tests {
                if workspace.test_files(name).is_some() {
                    out.tests += 1;
                } else {
                    out.problems.push(problem(
                        format!("testing control {}, test `{name}`", i + 1),
                        "no #[test] or #[tokio::test] function of that name under crates/",
                    ));
                }
            }
        }
        let docs = (h.training_controls.iter().enumerate())
            .map(|(i, c)| ("training", i, c))
            .chain(
                (h.business_controls.iter().enumerate()).map(|(i, c)| ("business-process", i, c)),
            );
        for (kind, i, c) in docs {
            let reference = format!(
                "{kind} control {}, section \"{}\" of {}",
                i + 1,
                c.section,
                c.doc
            );
            if !c.doc.ends_with(".md") {
                out.problems
                    .push(problem(reference, "the document must be Markdown (.md)"));
                continue;
            }
            match workspace.read(&c.doc) {
                Err(why) => out.problems.push(problem(reference, &why)),
                Ok(text) if !headings(&text).iter().any(|s| s == &c.section) => out.problems.push(
                    problem(reference, "the document has no heading of that name"),
                ),
                Ok(_) => out.sections += 1,
            }
        }
    }
    out
}
