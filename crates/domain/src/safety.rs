//! The clinical safety file's vocabulary (DCB0129): likelihood, severity,
//! the risk matrix, hazard status and the hazard itself. Pure data and rules;
//! reading the files and checking their references is the app's job.

use std::fmt;

/// How likely the hazard is to lead to harm, DCB0129's five steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Likelihood {
    VeryLow,
    Low,
    Medium,
    High,
    VeryHigh,
}

impl Likelihood {
    /// Lowest first.
    pub const ALL: [Likelihood; 5] = [
        Likelihood::VeryLow,
        Likelihood::Low,
        Likelihood::Medium,
        Likelihood::High,
        Likelihood::VeryHigh,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Likelihood::VeryLow => "Very low",
            Likelihood::Low => "Low",
            Likelihood::Medium => "Medium",
            Likelihood::High => "High",
            Likelihood::VeryHigh => "Very high",
        }
    }

    /// One of the five names, as DCB0129 spells them (case does not matter).
    pub fn parse(raw: &str) -> Result<Self, String> {
        parse_name(raw, Self::ALL, Self::name, "likelihood", true)
    }
}

/// How bad the harm would be, DCB0129's five steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Minor,
    Significant,
    Considerable,
    Major,
    Catastrophic,
}

impl Severity {
    /// Least severe first.
    pub const ALL: [Severity; 5] = [
        Severity::Minor,
        Severity::Significant,
        Severity::Considerable,
        Severity::Major,
        Severity::Catastrophic,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Severity::Minor => "Minor",
            Severity::Significant => "Significant",
            Severity::Considerable => "Considerable",
            Severity::Major => "Major",
            Severity::Catastrophic => "Catastrophic",
        }
    }

    /// One of the five names (case does not matter).
    pub fn parse(raw: &str) -> Result<Self, String> {
        parse_name(raw, Self::ALL, Self::name, "severity", true)
    }
}

/// Finds `raw` among the names of `all`; the error lists every name.
fn parse_name<T: Copy, const N: usize>(
    raw: &str,
    all: [T; N],
    name: fn(T) -> &'static str,
    what: &str,
    ignore_case: bool,
) -> Result<T, String> {
    let raw_t = raw.trim();
    all.into_iter()
        .find(|v| {
            if ignore_case {
                name(*v).eq_ignore_ascii_case(raw_t)
            } else {
                name(*v) == raw_t
            }
        })
        .ok_or_else(|| {
            format!(
                "{what} {raw:?} is not one of {}",
                all.map(|v| format!("{:?}", name(v))).join(", ")
            )
        })
}

/// A risk level, 1 (lowest) to 5. Only [`risk`] makes one, so a risk is
/// always the matrix's answer, never typed by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Risk(u8);

impl Risk {
    pub fn level(self) -> u8 {
        self.0
    }

    /// What DCB0129 practice makes of the level.
    pub fn acceptability(self) -> &'static str {
        match self.0 {
            0 | 1 => "acceptable",
            2 => "acceptable where further reduction is impractical",
            3 => "undesirable: accepted only with the clinical safety officer's agreement",
            4 => "unacceptable: further controls are required",
            _ => "unacceptable",
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The DCB0129 risk matrix: rows likelihood (Very high first), columns
/// severity (Minor first).
const MATRIX: [[u8; 5]; 5] = [
    [3, 4, 4, 5, 5], // Very high
    [2, 3, 3, 4, 5], // High
    [2, 2, 3, 3, 4], // Medium
    [1, 2, 2, 3, 4], // Low
    [1, 1, 2, 2, 3], // Very low
];

/// The risk of a hazard with this likelihood and severity.
pub fn risk(likelihood: Likelihood, severity: Severity) -> Risk {
    let row = match likelihood {
        Likelihood::VeryHigh => MATRIX[0],
        Likelihood::High => MATRIX[1],
        Likelihood::Medium => MATRIX[2],
        Likelihood::Low => MATRIX[3],
        Likelihood::VeryLow => MATRIX[4],
    };
    let cell = match severity {
        Severity::Minor => row[0],
        Severity::Significant => row[1],
        Severity::Considerable => row[2],
        Severity::Major => row[3],
        Severity::Catastrophic => row[4],
    };
    Risk(cell)
}

/// A likelihood and a severity, before or after the controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    pub likelihood: Likelihood,
    pub severity: Severity,
}

impl Score {
    pub fn risk(self) -> Risk {
        risk(self.likelihood, self.severity)
    }
}

/// Where a hazard stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HazardStatus {
    /// Controls are missing or unproven; the gaps say which.
    Open,
    /// The manufacturer's controls are in place; what remains is the
    /// deploying organisation's to control (DCB0160).
    Transferred,
    /// Controlled, and every control is traced to code and tests.
    Closed,
}

impl HazardStatus {
    pub const ALL: [HazardStatus; 3] = [
        HazardStatus::Open,
        HazardStatus::Transferred,
        HazardStatus::Closed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HazardStatus::Open => "Open",
            HazardStatus::Transferred => "Transferred",
            HazardStatus::Closed => "Closed",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        parse_name(raw, Self::ALL, Self::name, "status", true)
    }
}

/// What kind of hazard it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HazardType {
    WrongPatientContext,
    IncorrectInformation,
    MissingInformation,
    UnauthorizedAccess,
    DataBreach,
    DataLoss,
    ServiceUnavailable,
}

impl HazardType {
    pub const ALL: [HazardType; 7] = [
        HazardType::WrongPatientContext,
        HazardType::IncorrectInformation,
        HazardType::MissingInformation,
        HazardType::UnauthorizedAccess,
        HazardType::DataBreach,
        HazardType::DataLoss,
        HazardType::ServiceUnavailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HazardType::WrongPatientContext => "WrongPatientContext",
            HazardType::IncorrectInformation => "IncorrectInformation",
            HazardType::MissingInformation => "MissingInformation",
            HazardType::UnauthorizedAccess => "UnauthorizedAccess",
            HazardType::DataBreach => "DataBreach",
            HazardType::DataLoss => "DataLoss",
            HazardType::ServiceUnavailable => "ServiceUnavailable",
        }
    }

    /// Exactly one of the names (they are identifiers, so case matters).
    pub fn parse(raw: &str) -> Result<Self, String> {
        parse_name(raw, Self::ALL, Self::name, "hazard type", false)
    }
}

/// A control implemented in code: what it does and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesignControl {
    pub text: String,
    /// The file, relative to the workspace root.
    pub path: String,
    /// The item defined there: `name` or `Type::method`.
    pub item: String,
}

/// A control proven by tests: what they prove and the test functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestingControl {
    pub text: String,
    pub tests: Vec<String>,
}

/// A training or business-process control: what people do, and the
/// section of the documentation that tells them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocControl {
    pub text: String,
    /// The document, relative to the workspace root (e.g. `README.md`).
    pub doc: String,
    /// The heading of the section, as written.
    pub section: String,
}

/// A calendar date, `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SafetyDate(String);

impl SafetyDate {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad = || format!("date {raw:?} is not a real YYYY-MM-DD date");
        let parts: Vec<&str> = raw.split('-').collect();
        let [y, m, d] = parts.as_slice() else {
            return Err(bad());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let num = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| s.parse::<u32>().ok())
                .flatten()
        };
        let (Some(y), Some(m), Some(d)) = (num(y), num(m), num(d)) else {
            return Err(bad());
        };
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days = match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(bad()),
        };
        if d == 0 || d > days {
            return Err(bad());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One entry of the hazard log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hazard {
    /// `H` and three digits, e.g. `H001`.
    pub id: String,
    pub name: String,
    pub description: String,
    pub causes: Vec<String>,
    pub effect: String,
    pub hazard: String,
    pub harm: String,
    pub hazard_types: Vec<HazardType>,
    /// The hazard report this entry answers, if it came from one.
    pub seed: Option<String>,
    pub initial: Score,
    pub design_controls: Vec<DesignControl>,
    pub testing_controls: Vec<TestingControl>,
    pub training_controls: Vec<DocControl>,
    pub business_controls: Vec<DocControl>,
    pub residual: Score,
    /// What is still missing; required while Open, forbidden once Closed.
    pub gaps: Vec<String>,
    pub status: HazardStatus,
    pub changed_on: SafetyDate,
    pub change_reason: String,
}

impl Hazard {
    pub fn initial_risk(&self) -> Risk {
        self.initial.risk()
    }

    pub fn residual_risk(&self) -> Risk {
        self.residual.risk()
    }

    /// The rules a hazard must keep whatever its references: each broken
    /// rule as a sentence.
    pub fn rule_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let id_ok = self
            .id
            .strip_prefix('H')
            .is_some_and(|n| n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()));
        if !id_ok {
            out.push(format!(
                "id {:?} must be H and three digits, e.g. H001",
                self.id
            ));
        }
        if self.residual_risk() > self.initial_risk() {
            out.push(format!(
                "residual risk {} is higher than initial risk {}: controls cannot add risk",
                self.residual_risk(),
                self.initial_risk()
            ));
        }
        if self.hazard_types.is_empty() {
            out.push("hazard_types must name at least one type".to_owned());
        }
        if self.causes.is_empty() {
            out.push("causes must list at least one cause".to_owned());
        }
        for (i, t) in self.testing_controls.iter().enumerate() {
            if t.tests.is_empty() {
                out.push(format!("testing control {} names no test function", i + 1));
            }
        }
        match self.status {
            HazardStatus::Open if self.gaps.is_empty() => {
                out.push("an Open hazard must state its gaps (what is missing)".to_owned());
            }
            HazardStatus::Closed => {
                if !self.gaps.is_empty() {
                    out.push(
                        "a Closed hazard cannot have gaps: make it Open, or remove the gaps"
                            .to_owned(),
                    );
                }
                if self.design_controls.is_empty() || self.testing_controls.is_empty() {
                    out.push(
                        "a Closed hazard needs at least one design control and one testing control"
                            .to_owned(),
                    );
                }
            }
            HazardStatus::Transferred
                if self.business_controls.is_empty() && self.training_controls.is_empty() =>
            {
                out.push(
                    "a Transferred hazard needs a training or business-process control saying who takes it on"
                        .to_owned(),
                );
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The matrix of the issue, written out row by row (Very high first,
    /// Minor first), compared with [`risk`] cell by cell.
    #[test]
    fn risk_matches_the_dcb0129_matrix_cell_by_cell() {
        let expected: [(&str, [u8; 5]); 5] = [
            ("Very high", [3, 4, 4, 5, 5]),
            ("High", [2, 3, 3, 4, 5]),
            ("Medium", [2, 2, 3, 3, 4]),
            ("Low", [1, 2, 2, 3, 4]),
            ("Very low", [1, 1, 2, 2, 3]),
        ];
        let columns = [
            "Minor",
            "Significant",
            "Considerable",
            "Major",
            "Catastrophic",
        ];
        let mut cells = 0;
        for (row, levels) in expected {
            let l = Likelihood::parse(row).unwrap();
            for (column, level) in columns.iter().zip(levels) {
                let s = Severity::parse(column).unwrap();
                assert_eq!(risk(l, s).level(), level, "{row} × {column}");
                cells += 1;
            }
        }
        assert_eq!(cells, 25);
    }

    #[test]
    fn scales_parse_their_names_only_and_say_what_is_allowed() {
        assert_eq!(
            Likelihood::parse("very HIGH").unwrap(),
            Likelihood::VeryHigh
        );
        assert_eq!(Severity::parse("Major").unwrap(), Severity::Major);
        assert_eq!(HazardStatus::parse("closed").unwrap(), HazardStatus::Closed);
        let e = Likelihood::parse("Likely").unwrap_err();
        assert!(
            e.contains("\"Likely\"") && e.contains("\"Very low\""),
            "{e}"
        );
        let e = Severity::parse("Severe").unwrap_err();
        assert!(e.contains("\"Catastrophic\""), "{e}");
        assert!(HazardType::parse("wrongpatientcontext").is_err());
        assert_eq!(
            HazardType::parse("DataBreach").unwrap(),
            HazardType::DataBreach
        );
    }

    #[test]
    fn dates_must_be_real_calendar_days() {
        assert!(SafetyDate::parse("2026-11-20").is_ok());
        assert!(SafetyDate::parse("2024-02-29").is_ok());
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-1-01",
            "20261120",
            "2026-11-31",
            "x",
        ] {
            assert!(SafetyDate::parse(bad).is_err(), "{bad}");
        }
    }

    fn hazard() -> Hazard {
        let score = |l, s| Score {
            likelihood: l,
            severity: s,
        };
        Hazard {
            id: "H001".to_owned(),
            name: "n".to_owned(),
            description: "d".to_owned(),
            causes: vec!["c".to_owned()],
            effect: "e".to_owned(),
            hazard: "h".to_owned(),
            harm: "harm".to_owned(),
            hazard_types: vec![HazardType::DataLoss],
            seed: None,
            initial: score(Likelihood::High, Severity::Major),
            design_controls: vec![DesignControl {
                text: "t".to_owned(),
                path: "p.rs".to_owned(),
                item: "f".to_owned(),
            }],
            testing_controls: vec![TestingControl {
                text: "t".to_owned(),
                tests: vec!["a_test".to_owned()],
            }],
            training_controls: vec![],
            business_controls: vec![],
            residual: score(Likelihood::VeryLow, Severity::Major),
            gaps: vec![],
            status: HazardStatus::Closed,
            changed_on: SafetyDate::parse("2026-11-20").unwrap(),
            change_reason: "r".to_owned(),
        }
    }

    #[test]
    fn a_well_formed_closed_hazard_breaks_no_rule() {
        assert_eq!(hazard().rule_problems(), Vec::<String>::new());
    }

    #[test]
    fn status_rules_open_needs_gaps_closed_needs_controls_and_none() {
        let mut h = hazard();
        h.status = HazardStatus::Open;
        assert!(h.rule_problems()[0].contains("must state its gaps"));
        let mut h = hazard();
        h.gaps = vec!["missing".to_owned()];
        assert!(h.rule_problems()[0].contains("cannot have gaps"));
        let mut h = hazard();
        h.testing_controls.clear();
        assert!(h.rule_problems()[0].contains("at least one design control"));
        let mut h = hazard();
        h.status = HazardStatus::Transferred;
        assert!(h.rule_problems()[0].contains("Transferred"));
    }

    #[test]
    fn residual_risk_above_initial_and_bad_ids_are_refused() {
        let mut h = hazard();
        h.residual = h.initial;
        h.initial = Score {
            likelihood: Likelihood::VeryLow,
            severity: Severity::Minor,
        };
        h.id = "HX1".to_owned();
        let problems = h.rule_problems();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("must be H and three digits"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("higher than initial risk"))
        );
    }
}
