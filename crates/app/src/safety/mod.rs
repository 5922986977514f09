//! The clinical safety file: the hazard log in `safety/hazards/` (one TOML
//! file per hazard), checked against the workspace it describes, and the
//! safety case report made from it.
//!
//! - [`parse_log`] reads hazard files (name and text) into
//!   [`domain::safety::Hazard`]s; risk is always computed, never read.
//! - [`check`] runs over a checkout: every hazard file parses and keeps the
//!   rules, every design control's item is defined in its file, every
//!   testing control's tests exist as test functions, every training or
//!   business-process control names a heading of its document.
//! - [`report`] renders the log as Markdown or HTML.

mod check;
mod parse;
mod report;
mod workspace;

use std::fmt;

pub use check::{CheckOutcome, check, check_hazards};
pub use parse::{HAZARD_DIR, parse_hazard, parse_log, read_hazard_files};
pub use report::{ReportFormat, html_fragment, report};
pub use workspace::{Workspace, defines_item, headings, test_functions};

/// One thing wrong with the safety file, precise enough to fix: the file,
/// the hazard, the reference and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyProblem {
    /// The hazard file (or folder), relative to the workspace root.
    pub file: String,
    /// The hazard's id, once known.
    pub hazard: Option<String>,
    /// Which part or reference, e.g. "testing control 2, test `foo`".
    pub reference: Option<String>,
    pub why: String,
}

impl SafetyProblem {
    pub(crate) fn new(file: &str, hazard: Option<&str>, why: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            hazard: hazard.map(str::to_owned),
            reference: None,
            why: why.into(),
        }
    }

    pub(crate) fn at(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }
}

impl fmt::Display for SafetyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(h) = &self.hazard {
            write!(f, ": {h}")?;
        }
        if let Some(r) = &self.reference {
            write!(f, ": {r}")?;
        }
        write!(f, ": {}", self.why)
    }
}

#[cfg(test)]
mod tests;
