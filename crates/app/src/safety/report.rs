//! The safety case report: the hazard log sorted by residual risk, each
//! hazard's controls with their evidence, counts by status and risk, and the
//! clinical safety case summary. Written once, as Markdown; the HTML is that
//! Markdown rendered, with any raw HTML in the log shown as text.

use std::fmt::Write as _;

use domain::safety::{DocControl, Hazard, HazardStatus, Likelihood, Risk, Score, Severity, risk};

/// The report's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Markdown,
    Html,
}

impl std::str::FromStr for ReportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "md" | "markdown" => Ok(Self::Markdown),
            "html" => Ok(Self::Html),
            other => Err(format!("report format {other:?} is not md or html")),
        }
    }
}

/// The whole report, as a document of its own.
pub fn report(hazards: &[Hazard], format: ReportFormat) -> String {
    let md = markdown(hazards);
    match format {
        ReportFormat::Markdown => md,
        ReportFormat::Html => format!(
            "<!DOCTYPE html>\n<html lang=\"en-GB\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>Vellum clinical safety case report</title>\n</head>\n<body>\n{}</body>\n</html>\n",
            to_html(&md)
        ),
    }
}

/// The report as an HTML fragment, for a page of the web application.
pub fn html_fragment(hazards: &[Hazard]) -> String {
    to_html(&markdown(hazards))
}

fn to_html(md: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser, html};
    let parser = Parser::new_ext(md, Options::ENABLE_TABLES).map(|e| match e {
        Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
        other => other,
    });
    let mut out = String::with_capacity(md.len() * 2);
    html::push_html(&mut out, parser);
    out
}

/// Highest residual risk first; then highest initial risk; then id.
fn sorted(hazards: &[Hazard]) -> Vec<&Hazard> {
    let mut v: Vec<&Hazard> = hazards.iter().collect();
    v.sort_by(|a, b| {
        (b.residual_risk(), b.initial_risk())
            .cmp(&(a.residual_risk(), a.initial_risk()))
            .then_with(|| a.id.cmp(&b.id))
    });
    v
}

/// Text for one table cell or line: no line breaks, no stray `|`, and no
/// Markdown or HTML meaning in `<`, `*`, `_`, `#` or brackets. Backticks
/// stay, so `code` in the log reads as code (its content is escaped too).
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.split_whitespace().collect::<Vec<_>>().join(" ").chars() {
        match c {
            '|' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn score(s: Score) -> String {
    format!(
        "{} × {} = {}",
        s.likelihood.name(),
        s.severity.name(),
        s.risk()
    )
}

fn count<'a>(hazards: impl Iterator<Item = &'a Hazard>, f: impl Fn(&Hazard) -> bool) -> usize {
    hazards.filter(|h| f(h)).count()
}

fn markdown(hazards: &[Hazard]) -> String {
    let log = sorted(hazards);
    let mut md = String::new();
    let last = hazards
        .iter()
        .map(|h| h.changed_on.as_str())
        .max()
        .unwrap_or("never");
    let _ = writeln!(md, "# Vellum clinical safety case report\n");
    let _ = writeln!(
        md,
        "Made by `vellum safety report` from the hazard log in `safety/hazards/`: {} hazards, \
         last changed {last}. Every risk below is computed from its likelihood and severity by \
         the DCB0129 risk matrix; none is typed by hand.\n",
        hazards.len()
    );
    case_summary(&mut md, &log);
    summary(&mut md, hazards);
    let _ = writeln!(md, "## Hazard log\n");
    let _ = writeln!(
        md,
        "Sorted by residual risk, highest first.\n\n\
         | Residual risk | ID | Hazard | Status | Initial (likelihood × severity = risk) | Residual (likelihood × severity = risk) | Last change |\n\
         |---|---|---|---|---|---|---|"
    );
    for h in &log {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            h.residual_risk(),
            h.id,
            cell(&h.name),
            h.status.name(),
            score(h.initial),
            score(h.residual),
            h.changed_on.as_str()
        );
    }
    md.push('\n');
    let _ = writeln!(md, "## Hazards and their controls\n");
    for h in &log {
        hazard(&mut md, h);
    }
    matrix(&mut md);
    md
}

fn case_summary(md: &mut String, log: &[&Hazard]) {
    let n = log.len();
    let by = |s: HazardStatus| count(log.iter().copied(), |h| h.status == s);
    let unacceptable: Vec<&&Hazard> = log
        .iter()
        .filter(|h| h.residual_risk().level() >= 4)
        .collect();
    let undesirable: Vec<&&Hazard> = log
        .iter()
        .filter(|h| h.residual_risk().level() == 3)
        .collect();
    let _ = writeln!(md, "## Clinical safety case summary\n");
    let _ = writeln!(
        md,
        "**Scope.** Vellum is a clinical records and correspondence server: clinicians keep \
         patient demographics (FHIR R4 Patient) and write clinical letters, patients read their \
         own final letters, administrators manage accounts, and other systems use the FHIR R4 \
         API. This is the manufacturer's safety case (DCB0129). The deploying organisation \
         makes its own (DCB0160), taking on the training and business-process controls below \
         and every hazard marked Transferred.\n"
    );
    let _ = writeln!(
        md,
        "**Method.** Each hazard is described by its causes, effect and harm, and scored before \
         controls (initial) and after them (residual). Every design control names the code item \
         that implements it, every testing control names the test functions that prove it, and \
         every training or business-process control names the section of the documentation \
         that carries it. `vellum safety check` runs in CI and fails when any of those no \
         longer exists, so the log cannot silently drift from the code.\n"
    );
    let _ = writeln!(
        md,
        "**Findings.** {n} hazards: {} Closed, {} Transferred, {} Open. The three hazards \
         reported at the start of the project (missing CSRF protection, insecure random \
         number generation, TOTP secrets not encrypted at rest) are answered by the entries \
         marked with their seed report below.\n",
        by(HazardStatus::Closed),
        by(HazardStatus::Transferred),
        by(HazardStatus::Open)
    );
    let list = |md: &mut String, hs: &[&&Hazard]| {
        for h in hs {
            let _ = writeln!(
                md,
                "- {} {} — residual risk {} ({}), {}",
                h.id,
                cell(&h.name),
                h.residual_risk(),
                score(h.residual),
                h.status.name()
            );
        }
        md.push('\n');
    };
    if unacceptable.is_empty() {
        let _ = writeln!(
            md,
            "No hazard has an unacceptable residual risk (4 or 5).\n"
        );
    } else {
        let _ = writeln!(
            md,
            "**Unacceptable residual risk (4 or 5): further controls are required before release.**\n"
        );
        list(md, &unacceptable);
    }
    if undesirable.is_empty() {
        let _ = writeln!(md, "No hazard has an undesirable residual risk (3).\n");
    } else {
        let _ = writeln!(
            md,
            "Undesirable residual risk (3), accepted only with the clinical safety officer's \
             agreement and the deploying organisation's controls:\n"
        );
        list(md, &undesirable);
    }
    let open: Vec<&&Hazard> = log
        .iter()
        .filter(|h| h.status == HazardStatus::Open)
        .collect();
    if !open.is_empty() {
        let _ = writeln!(md, "Open hazards and what is still missing:\n");
        for h in open {
            for g in &h.gaps {
                let _ = writeln!(md, "- {} {}: {}", h.id, cell(&h.name), cell(g));
            }
        }
        md.push('\n');
    }
    let conclusion = if unacceptable.is_empty() {
        "On this evidence no residual risk is unacceptable. The hazards above that remain Open \
         or Transferred are tracked here until closed or taken on by the deploying organisation."
    } else {
        "On this evidence Vellum is not ready for clinical use: the hazards with unacceptable \
         residual risk need further controls first."
    };
    let _ = writeln!(md, "**Conclusion.** {conclusion}\n");
}

fn summary(md: &mut String, hazards: &[Hazard]) {
    let _ = writeln!(md, "## Summary\n\n| Status | Hazards |\n|---|---|");
    for s in HazardStatus::ALL {
        let _ = writeln!(
            md,
            "| {} | {} |",
            s.name(),
            count(hazards.iter(), |h| h.status == s)
        );
    }
    let _ = writeln!(md, "| All | {} |\n", hazards.len());
    let _ = writeln!(
        md,
        "| Risk | Initial | Residual | What it means |\n|---|---|---|---|"
    );
    for level in (1..=5u8).rev() {
        let meaning = acceptability(level);
        let _ = writeln!(
            md,
            "| {level} | {} | {} | {meaning} |",
            count(hazards.iter(), |h| h.initial_risk().level() == level),
            count(hazards.iter(), |h| h.residual_risk().level() == level),
        );
    }
    md.push('\n');
}

/// What a risk level means (every level 1–5 is a cell of the matrix).
fn acceptability(level: u8) -> &'static str {
    Likelihood::ALL
        .into_iter()
        .flat_map(|l| Severity::ALL.map(|s| risk(l, s)))
        .find(|r: &Risk| r.level() == level)
        .map_or("", |r| r.acceptability())
}

fn doc_line(md: &mut String, c: &DocControl) {
    let _ = writeln!(
        md,
        "- {} — see {} § {}",
        cell(&c.text),
        cell(&c.doc),
        cell(&c.section)
    );
}

fn hazard(md: &mut String, h: &Hazard) {
    let _ = writeln!(md, "### {} {}\n", h.id, cell(&h.name));
    let seed = h
        .seed
        .as_deref()
        .map(|s| format!(" · **Seed report:** {}", cell(s)))
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "**Status:** {} · **Initial risk:** {} · **Residual risk:** {} — {}{seed}\n",
        h.status.name(),
        score(h.initial),
        score(h.residual),
        h.residual_risk().acceptability()
    );
    let types: Vec<&str> = h.hazard_types.iter().map(|t| t.name()).collect();
    let _ = writeln!(md, "{}\n", cell(&h.description));
    let _ = writeln!(md, "**Causes:**\n");
    for c in &h.causes {
        let _ = writeln!(md, "- {}", cell(c));
    }
    let _ = writeln!(
        md,
        "\n**Effect:** {}\n\n**Hazard:** {}\n\n**Harm:** {}\n\n**Hazard types:** {}\n",
        cell(&h.effect),
        cell(&h.hazard),
        cell(&h.harm),
        types.join(", ")
    );
    if !h.design_controls.is_empty() {
        let _ = writeln!(
            md,
            "**Design controls** (evidence: the code that implements each):\n"
        );
        for d in &h.design_controls {
            let _ = writeln!(md, "- {} — `{}` in `{}`", cell(&d.text), d.item, d.path);
        }
        md.push('\n');
    }
    if !h.testing_controls.is_empty() {
        let _ = writeln!(
            md,
            "**Testing controls** (evidence: the tests that prove each):\n"
        );
        for t in &h.testing_controls {
            let tests: Vec<String> = t.tests.iter().map(|n| format!("`{n}`")).collect();
            let _ = writeln!(md, "- {} — {}", cell(&t.text), tests.join(", "));
        }
        md.push('\n');
    }
    if !h.training_controls.is_empty() {
        let _ = writeln!(md, "**Training controls:**\n");
        for c in &h.training_controls {
            doc_line(md, c);
        }
        md.push('\n');
    }
    if !h.business_controls.is_empty() {
        let _ = writeln!(md, "**Business-process controls:**\n");
        for c in &h.business_controls {
            doc_line(md, c);
        }
        md.push('\n');
    }
    if !h.gaps.is_empty() {
        let _ = writeln!(md, "**Gaps (why it is not closed):**\n");
        for g in &h.gaps {
            let _ = writeln!(md, "- {}", cell(g));
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "**Last change:** {} — {}\n",
        h.changed_on.as_str(),
        cell(&h.change_reason)
    );
}

fn matrix(md: &mut String) {
    let _ = writeln!(md, "## Risk matrix (DCB0129)\n");
    let head: Vec<&str> = Severity::ALL.iter().map(|s| s.name()).collect();
    let _ = writeln!(md, "| Likelihood \\ Severity | {} |", head.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(head.len()));
    for l in Likelihood::ALL.into_iter().rev() {
        let cells: Vec<String> = Severity::ALL
            .iter()
            .map(|s| risk(l, *s).to_string())
            .collect();
        let _ = writeln!(md, "| {} | {} |", l.name(), cells.join(" | "));
    }
    md.push('\n');
}
