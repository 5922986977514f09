//! Hazard files (TOML) into hazards. Unknown keys are errors, so a typo
//! never silently drops a control; a `risk` key is refused, because risk is
//! computed from likelihood and severity.

use std::path::Path;

use domain::safety::{
    DesignControl, DocControl, Hazard, HazardStatus, HazardType, Likelihood, SafetyDate, Score,
    Severity, TestingControl,
};
use serde::Deserialize;

use super::SafetyProblem;

/// Where the hazard files live, relative to the workspace root.
pub const HAZARD_DIR: &str = "safety/hazards";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHazard {
    id: String,
    name: String,
    description: String,
    causes: Vec<String>,
    effect: String,
    hazard: String,
    harm: String,
    hazard_types: Vec<String>,
    #[serde(default)]
    seed: Option<String>,
    initial: RawScore,
    residual: RawScore,
    status: String,
    #[serde(default)]
    gaps: Vec<String>,
    last_change: RawChange,
    #[serde(default)]
    design_controls: Vec<RawDesign>,
    #[serde(default)]
    testing_controls: Vec<RawTesting>,
    #[serde(default)]
    training_controls: Vec<RawDoc>,
    #[serde(default)]
    business_controls: Vec<RawDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScore {
    likelihood: String,
    severity: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChange {
    date: toml::Value,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDesign {
    text: String,
    path: String,
    item: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTesting {
    text: String,
    tests: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoc {
    text: String,
    doc: String,
    section: String,
}

/// Refuses a hand-typed risk anywhere a score is.
fn typed_risk(table: &toml::Table) -> Option<&'static str> {
    if table.contains_key("risk") {
        return Some("risk");
    }
    ["initial", "residual"].into_iter().find(|part| {
        table
            .get(*part)
            .and_then(toml::Value::as_table)
            .is_some_and(|t| t.contains_key("risk"))
    })
}

/// One hazard file. `file` is its path relative to the workspace root (for
/// messages and the id check); every problem is reported, not just the first.
pub fn parse_hazard(file: &str, text: &str) -> Result<Hazard, Vec<SafetyProblem>> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        vec![SafetyProblem::new(
            file,
            None,
            format!("not valid TOML: {}", e.to_string().trim()),
        )]
    })?;
    let early_id = table
        .get("id")
        .and_then(toml::Value::as_str)
        .map(str::to_owned);
    if let Some(place) = typed_risk(&table) {
        let why = "risk is computed from likelihood and severity by the DCB0129 matrix; \
                   do not write it";
        return Err(vec![
            SafetyProblem::new(file, early_id.as_deref(), why).at(place),
        ]);
    }
    let raw: RawHazard = toml::Value::Table(table).try_into().map_err(|e| {
        vec![SafetyProblem::new(
            file,
            early_id.as_deref(),
            e.to_string().trim().to_owned(),
        )]
    })?;
    let id = raw.id.clone();
    let mut problems = Vec::new();
    let mut problem = |reference: &str, why: String| {
        problems.push(SafetyProblem::new(file, Some(&id), why).at(reference));
    };
    let mut score = |part: &str, s: &RawScore| {
        let l = Likelihood::parse(&s.likelihood).map_err(|e| problem(part, e));
        let v = Severity::parse(&s.severity).map_err(|e| problem(part, e));
        Some(Score {
            likelihood: l.ok()?,
            severity: v.ok()?,
        })
    };
    let initial = score("initial", &raw.initial);
    let residual = score("residual", &raw.residual);
    let status = HazardStatus::parse(&raw.status).map_err(|e| problem("status", e));
    let mut types = Vec::new();
    for t in &raw.hazard_types {
        match HazardType::parse(t) {
            Ok(t) => types.push(t),
            Err(e) => problem("hazard_types", e),
        }
    }
    let date_text = match &raw.last_change.date {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let date = SafetyDate::parse(&date_text).map_err(|e| problem("last_change.date", e));
    for (name, value) in [
        ("name", &raw.name),
        ("description", &raw.description),
        ("effect", &raw.effect),
        ("hazard", &raw.hazard),
        ("harm", &raw.harm),
        ("last_change.reason", &raw.last_change.reason),
    ] {
        if value.trim().is_empty() {
            problem(name, "must not be empty".to_owned());
        }
    }
    let stem = Path::new(file)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(file);
    if !stem.starts_with(&format!("{id}-")) || !stem.ends_with(".toml") {
        problem(
            "id",
            format!(
                "the file name must be the id, a dash and a short name, e.g. {id}-wrong-patient.toml"
            ),
        );
    }
    let (Some(initial), Some(residual), Ok(status), Ok(changed_on)) =
        (initial, residual, status, date)
    else {
        return Err(problems);
    };
    let hazard = Hazard {
        id: raw.id,
        name: raw.name,
        description: raw.description,
        causes: raw.causes,
        effect: raw.effect,
        hazard: raw.hazard,
        harm: raw.harm,
        hazard_types: types,
        seed: raw.seed,
        initial,
        design_controls: raw
            .design_controls
            .into_iter()
            .map(|d| DesignControl {
                text: d.text,
                path: d.path,
                item: d.item,
            })
            .collect(),
        testing_controls: raw
            .testing_controls
            .into_iter()
            .map(|t| TestingControl {
                text: t.text,
                tests: t.tests,
            })
            .collect(),
        training_controls: raw.training_controls.into_iter().map(doc).collect(),
        business_controls: raw.business_controls.into_iter().map(doc).collect(),
        residual,
        gaps: raw.gaps,
        status,
        changed_on,
        change_reason: raw.last_change.reason,
    };
    for rule in hazard.rule_problems() {
        problems.push(SafetyProblem::new(file, Some(&hazard.id), rule));
    }
    if problems.is_empty() {
        Ok(hazard)
    } else {
        Err(problems)
    }
}

fn doc(d: RawDoc) -> DocControl {
    DocControl {
        text: d.text,
        doc: d.doc,
        section: d.section,
    }
}

/// Every hazard file (name relative to the workspace root, text). Returns
/// the hazards that parsed, in file order, each with its file, and every
/// problem; ids must be unique across the log.
pub fn parse_log(files: &[(String, String)]) -> (Vec<(String, Hazard)>, Vec<SafetyProblem>) {
    let mut hazards = Vec::new();
    let mut problems = Vec::new();
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    if files.is_empty() {
        problems.push(SafetyProblem::new(
            HAZARD_DIR,
            None,
            "the hazard log is empty: no hazard files found",
        ));
    }
    for (name, text) in files {
        match parse_hazard(name, text) {
            Ok(h) => {
                if let Some(other) = seen.insert(h.id.clone(), name.clone()) {
                    problems.push(
                        SafetyProblem::new(
                            name,
                            Some(&h.id),
                            format!("the id is also used by {other}"),
                        )
                        .at("id"),
                    );
                }
                hazards.push((name.clone(), h));
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    (hazards, problems)
}

/// Reads `safety/hazards/*` under `root`, sorted by file name. Hidden files
/// are skipped; any other file must be a `.toml` hazard file.
pub fn read_hazard_files(root: &Path) -> Result<Vec<(String, String)>, Vec<SafetyProblem>> {
    let dir = root.join(HAZARD_DIR);
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        vec![SafetyProblem::new(
            HAZARD_DIR,
            None,
            format!("cannot read the hazard folder (run from the workspace root?): {e}"),
        )]
    })?;
    let mut names = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| vec![SafetyProblem::new(HAZARD_DIR, None, e.to_string())])?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if !name.ends_with(".toml") {
            problems.push(SafetyProblem::new(
                &format!("{HAZARD_DIR}/{name}"),
                None,
                "hazard files are TOML: name it <id>-<short-name>.toml",
            ));
            continue;
        }
        names.push(name);
    }
    names.sort();
    let mut files = Vec::new();
    for name in names {
        let rel = format!("{HAZARD_DIR}/{name}");
        match std::fs::read_to_string(dir.join(&name)) {
            Ok(text) => files.push((rel, text)),
            Err(e) => problems.push(SafetyProblem::new(&rel, None, format!("cannot read: {e}"))),
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(problems)
    }
}
