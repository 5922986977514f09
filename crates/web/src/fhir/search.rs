//! FHIR search parameters: parsed strictly. An unknown parameter, modifier
//! or prefix is refused rather than ignored, because a filter silently
//! dropped widens the result — the wrong patient in a list.

use domain::patient::{BirthDate, Gender, NhsNumber};
use store::{Cmp, PatientSearch};

use super::bad_request;
use crate::Problem;

/// A supported search parameter, as the CapabilityStatement lists it.
pub(crate) struct Param {
    pub name: &'static str,
    pub kind: &'static str,
    pub doc: &'static str,
}

pub(crate) const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

pub(crate) const PATIENT_PARAMS: &[Param] = &[
    Param {
        name: "_id",
        kind: "token",
        doc: "One id, or several separated by commas.",
    },
    Param {
        name: "identifier",
        kind: "token",
        doc: "The NHS number, as https://fhir.nhs.uk/Id/nhs-number|<number> or the number alone.",
    },
    Param {
        name: "name",
        kind: "string",
        doc: "Every word must start one of the patient's names; case and accents are ignored.",
    },
    Param {
        name: "family",
        kind: "string",
        doc: "Start of the family name; case and accents are ignored.",
    },
    Param {
        name: "given",
        kind: "string",
        doc: "Start of a given name; case and accents are ignored.",
    },
    Param {
        name: "birthdate",
        kind: "date",
        doc: "YYYY, YYYY-MM or YYYY-MM-DD with the prefix eq (default), ge, gt, le or lt; \
              may be repeated (all must hold).",
    },
    Param {
        name: "gender",
        kind: "token",
        doc: "male, female, other or unknown.",
    },
];

pub(crate) const DOCUMENT_PARAMS: &[Param] = &[
    Param {
        name: "patient",
        kind: "reference",
        doc: "The patient's id or Patient/<id>; patient or subject is required.",
    },
    Param {
        name: "subject",
        kind: "reference",
        doc: "Patient/<id> (or the id alone).",
    },
];

/// Parameters every search takes besides its own.
const RESULT_PARAMS: &[&str] = &["_count", "_page", "_format"];

/// Default and largest page sizes.
pub(crate) const DEFAULT_COUNT: i64 = 20;

/// The parsed query string, in order.
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(crate) fn parse(raw: Option<&str>, supported: &[Param]) -> Result<Self, Problem> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|_| bad_request("The query string cannot be read."))?;
        for (k, _) in &pairs {
            if let Some((name, modifier)) = k.split_once(':') {
                return Err(bad_request(format!(
                    "The modifier :{modifier} on {name} is not supported."
                )));
            }
            if !RESULT_PARAMS.contains(&k.as_str()) && !supported.iter().any(|p| p.name == k) {
                let names: Vec<&str> = supported.iter().map(|p| p.name).collect();
                return Err(bad_request(format!(
                    "Unknown search parameter {k}. Supported: {}, _count.",
                    names.join(", ")
                )));
            }
        }
        Ok(Self { pairs })
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a parameter that may appear once.
    fn one(&self, name: &str) -> Result<Option<&str>, Problem> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(bad_request(format!("{name} may be given only once.")));
        }
        match first {
            Some(v) if v.trim().is_empty() => {
                Err(bad_request(format!("{name} must not be empty.")))
            }
            v => Ok(v.map(str::trim)),
        }
    }

    /// `_count`: 1 to 100, default 20 (larger asks are served 100).
    pub(crate) fn count(&self) -> Result<i64, Problem> {
        match self.one("_count")? {
            None => Ok(DEFAULT_COUNT),
            Some(c) => match c.parse::<i64>() {
                Ok(n) if n >= 1 => Ok(n.min(app::MAX_PAGE_SIZE)),
                _ => Err(bad_request("_count must be a whole number from 1 to 100.")),
            },
        }
    }

    /// `_page`: which page (from 1), as the `next` link gives it.
    pub(crate) fn page(&self) -> Result<u32, Problem> {
        match self.one("_page")? {
            None => Ok(1),
            Some(p) => p
                .parse::<u32>()
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| bad_request("_page must be a whole number from 1.")),
        }
    }

    /// The query string for another page of the same search.
    pub(crate) fn with_page(&self, page: u32) -> String {
        let mut pairs: Vec<(&str, String)> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "_page")
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        pairs.push(("_page", page.to_string()));
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    /// The Patient search these parameters ask for.
    pub(crate) fn patient_search(&self) -> Result<PatientSearch, Problem> {
        let mut s = PatientSearch {
            // FHIR search finds deactivated patients too; `active` is in
            // the resource.
            include_inactive: true,
            limit: self.count()?,
            ..PatientSearch::default()
        };
        if let Some(ids) = self.one("_id")? {
            s.ids = ids.split(',').map(|i| i.trim().to_owned()).collect();
            if s.ids.len() > 100 {
                return Err(bad_request("_id takes at most 100 ids."));
            }
        }
        if let Some(identifier) = self.one("identifier")? {
            let value = match identifier.split_once('|') {
                Some((system, value)) if system.is_empty() || system == NHS_SYSTEM => value,
                Some((system, _)) => {
                    return Err(bad_request(format!(
                        "identifier system {system} is not searchable; use {NHS_SYSTEM}|<number>."
                    )));
                }
                None => identifier,
            };
            // A number that fails the checksum matches nobody.
            s.nhs_number = Some(
                NhsNumber::parse(value)
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_else(|_| value.to_owned()),
            );
        }
        if let Some(name) = self.one("name")? {
            s.name_terms = name
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
        }
        s.family_prefix = self.one("family")?.map(str::to_owned);
        s.given_prefix = self.one("given")?.map(str::to_owned);
        if let Some(g) = self.one("gender")? {
            let gender: Gender = g
                .parse()
                .map_err(|_| bad_request("gender must be male, female, other or unknown."))?;
            s.gender = Some(gender.as_str().to_owned());
        }
        for value in self.all("birthdate") {
            s.birth_date_bounds.extend(birthdate_bounds(value.trim())?);
        }
        if s.birth_date_bounds.len() > 4 {
            return Err(bad_request("birthdate may be given at most twice."));
        }
        Ok(s)
    }

    /// The patient a DocumentReference search is about.
    pub(crate) fn document_patient(&self) -> Result<String, Problem> {
        let patient = self.one("patient")?;
        let subject = self.one("subject")?;
        let reference = match (patient, subject) {
            (Some(p), Some(s)) if strip_patient(p) != strip_patient(s) => {
                return Err(bad_request("patient and subject name different patients."));
            }
            (Some(r), _) | (None, Some(r)) => r,
            (None, None) => {
                return Err(bad_request(
                    "Say whose letters: DocumentReference?patient=<id> (or subject=Patient/<id>).",
                ));
            }
        };
        let id = strip_patient(reference);
        if id.is_empty() || id.contains('/') {
            return Err(bad_request(format!(
                "{reference} is not a patient reference; use <id> or Patient/<id>."
            )));
        }
        Ok(id.to_owned())
    }
}

fn strip_patient(r: &str) -> &str {
    r.strip_prefix("Patient/").unwrap_or(r)
}

/// `birthdate=[prefix]date` as bounds on the stored `YYYY[-MM[-DD]]` text.
/// A date is the period it covers: `eq1980` is 1980-01-01 to 1980-12-31.
/// The lower bound is the value as given, which sorts before every longer
/// date inside it, so a stored partial date (`1980`) is found too.
fn birthdate_bounds(value: &str) -> Result<Vec<(Cmp, String)>, Problem> {
    let (prefix, date) = match value.get(..2) {
        Some(p) if p.chars().all(|c| c.is_ascii_alphabetic()) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let d = BirthDate::parse_search(date).map_err(|_| {
        bad_request(format!(
            "birthdate {value} is not a date; use YYYY, YYYY-MM or YYYY-MM-DD after an optional \
             prefix eq, ge, gt, le or lt."
        ))
    })?;
    let (first, last) = (d.as_str().to_owned(), d.last_day());
    Ok(match prefix {
        "eq" => vec![(Cmp::Ge, first), (Cmp::Le, last)],
        "ge" => vec![(Cmp::Ge, first)],
        "gt" => vec![(Cmp::Gt, last)],
        "le" => vec![(Cmp::Le, last)],
        "lt" => vec![(Cmp::Lt, first)],
        other => {
            return Err(bad_request(format!(
                "The birthdate prefix {other} is not supported; use eq, ge, gt, le or lt."
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Result<Query, Problem> {
        Query::parse(Some(raw), PATIENT_PARAMS)
    }

    #[test]
    fn unknown_parameters_and_modifiers_are_refused() {
        assert!(q("family=Smith").is_ok());
        assert!(q("famly=Smith").is_err());
        assert!(q("family:exact=Smith").is_err());
        assert!(q("_count=5&_page=2&_format=json").is_ok());
    }

    #[test]
    fn birthdate_prefixes_become_bounds() {
        let b = |v: &str| birthdate_bounds(v).unwrap();
        assert_eq!(
            b("1980"),
            [(Cmp::Ge, "1980".into()), (Cmp::Le, "1980-12-31".into())]
        );
        assert_eq!(b("ge1980-05"), [(Cmp::Ge, "1980-05".into())]);
        assert_eq!(b("gt1980-05"), [(Cmp::Gt, "1980-05-31".into())]);
        assert_eq!(b("lt1980-05-06"), [(Cmp::Lt, "1980-05-06".into())]);
        assert!(birthdate_bounds("ap1980").is_err());
        assert!(birthdate_bounds("1980-13-01").is_err());
    }

    #[test]
    fn identifier_takes_only_the_nhs_system() {
        let s = q("identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919")
            .unwrap()
            .patient_search()
            .unwrap();
        assert_eq!(s.nhs_number.as_deref(), Some("9434765919"));
        assert!(
            q("identifier=urn:other|1")
                .unwrap()
                .patient_search()
                .is_err()
        );
    }

    #[test]
    fn count_is_bounded_and_next_pages_keep_the_filters() {
        assert_eq!(q("_count=500").unwrap().count().unwrap(), 100);
        assert!(q("_count=0").unwrap().count().is_err());
        let next = q("family=O%27Brien&_page=2").unwrap().with_page(3);
        assert_eq!(next, "family=O%27Brien&_page=3");
    }

    #[test]
    fn document_searches_name_one_patient() {
        let d = |raw: &str| {
            Query::parse(Some(raw), DOCUMENT_PARAMS)
                .unwrap()
                .document_patient()
        };
        assert_eq!(d("patient=abc").unwrap(), "abc");
        assert_eq!(d("subject=Patient/abc").unwrap(), "abc");
        assert!(d("subject=Group/abc").is_err());
        assert!(d("_count=3").is_err());
        assert!(d("patient=abc&subject=Patient/def").is_err());
    }
}
