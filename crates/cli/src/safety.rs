//! `vellum safety check|report`: the clinical safety file of the workspace
//! in the current directory (or `--root`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use app::safety::{self, ReportFormat};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum SafetyCommand {
    /// Check the hazard log: every file parses, risks are recomputed, every
    /// referenced code item, test function and document section exists.
    Check {
        /// The workspace root (default: the current directory).
        #[arg(long, value_name = "DIR", default_value = ".")]
        root: PathBuf,
    },
    /// Write the safety case report: the hazard log sorted by residual risk.
    Report {
        /// md or html.
        #[arg(long, value_name = "FORMAT", default_value = "md")]
        format: ReportFormat,
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The workspace root (default: the current directory).
        #[arg(long, value_name = "DIR", default_value = ".")]
        root: PathBuf,
    },
}

pub fn run(cmd: SafetyCommand) -> Result<ExitCode> {
    match cmd {
        SafetyCommand::Check { root } => {
            let outcome = safety::check(&root);
            if outcome.holds() {
                println!(
                    "safety file holds: {} hazards; {} code items, {} test references and {} document sections found",
                    outcome.hazards.len(),
                    outcome.code_items,
                    outcome.tests,
                    outcome.sections
                );
                return Ok(ExitCode::SUCCESS);
            }
            for p in &outcome.problems {
                eprintln!("{p}");
            }
            eprintln!(
                "safety file BROKEN: {} problem(s) in {} hazard(s) read",
                outcome.problems.len(),
                outcome.hazards.len()
            );
            Ok(ExitCode::FAILURE)
        }
        SafetyCommand::Report { format, out, root } => {
            let files = safety::read_hazard_files(&root).map_err(problems)?;
            let (hazards, found) = safety::parse_log(&files);
            if !found.is_empty() {
                return Err(problems(found));
            }
            let hazards: Vec<_> = hazards.into_iter().map(|(_, h)| h).collect();
            std::fs::write(&out, safety::report(&hazards, format))
                .with_context(|| format!("writing the report to {}", out.display()))?;
            eprintln!(
                "wrote the safety case report ({} hazards) to {}",
                hazards.len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn problems(found: Vec<safety::SafetyProblem>) -> anyhow::Error {
    let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
    anyhow::anyhow!(
        "the hazard log does not parse (run `vellum safety check`):\n{}",
        lines.join("\n")
    )
}
