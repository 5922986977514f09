//! Patient demographics: a FHIR R4 `Patient`, parsed into types that cannot
//! hold an invalid NHS number, gender or birth date.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

use crate::ParseError;
use crate::time::civil_from_days;

/// The FHIR identifier system of NHS numbers.
pub const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// The identifier system Vellum uses for a local medical record number.
pub const MRN_SYSTEM: &str = "urn:vellum:mrn";

/// A problem with one field of a resource, named by its FHIR path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn ferr(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// A patient's id: a random UUID, never sequential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PatientId(pub Uuid);

impl fmt::Display for PatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for PatientId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(PatientId)
            .map_err(|_| ParseError::new("id", "is not a valid patient id"))
    }
}

/// A ten-digit NHS number that passes the modulus-11 check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Accepts `9434765919`, `943 476 5919` or `943-476-5919`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let digits: String = raw
            .trim()
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .collect();
        if digits.len() != 10 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err("must be 10 digits".to_owned());
        }
        let d: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
        let sum: u32 = d
            .iter()
            .take(9)
            .zip((2..=10).rev())
            .map(|(x, w)| x * w)
            .sum();
        let check = match 11 - (sum % 11) {
            11 => 0,
            10 => return Err("is not a valid NHS number (fails the checksum)".to_owned()),
            c => c,
        };
        if d.get(9) != Some(&check) {
            return Err("is not a valid NHS number (fails the checksum)".to_owned());
        }
        Ok(Self(digits))
    }

    /// The ten digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Grouped 3-3-4 for people: `943 476 5919`.
    pub fn formatted(&self) -> String {
        let s = &self.0;
        format!(
            "{} {} {}",
            s.get(0..3).unwrap_or(""),
            s.get(3..6).unwrap_or(""),
            s.get(6..10).unwrap_or("")
        )
    }
}

/// FHIR administrative gender: exactly these four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    Male,
    Female,
    Other,
    Unknown,
}

impl Gender {
    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Male => "male",
            Gender::Female => "female",
            Gender::Other => "other",
            Gender::Unknown => "unknown",
        }
    }
}

impl FromStr for Gender {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "male" => Ok(Gender::Male),
            "female" => Ok(Gender::Female),
            "other" => Ok(Gender::Other),
            "unknown" => Ok(Gender::Unknown),
            _ => Err("must be one of male, female, other, unknown".to_owned()),
        }
    }
}

/// A FHIR `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`. Ordered by its
/// earliest possible day.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct BirthDate(String);

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

impl BirthDate {
    /// Parses a FHIR date and refuses one after `today`.
    pub fn parse(raw: &str, today: &BirthDate) -> Result<Self, String> {
        let d = Self::parse_any(raw)?;
        if d.key() > today.key() {
            return Err("must not be in the future".to_owned());
        }
        Ok(d)
    }

    fn parse_any(raw: &str) -> Result<Self, String> {
        let bad = || "must be a date as YYYY-MM-DD (or YYYY-MM, or YYYY)".to_owned();
        let parts: Vec<&str> = raw.split('-').collect();
        let num = |s: &str, len: usize| -> Result<i64, String> {
            if s.len() == len && s.chars().all(|c| c.is_ascii_digit()) {
                s.parse().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        match parts.as_slice() {
            [y] => {
                num(y, 4)?;
            }
            [y, m] => {
                num(y, 4)?;
                if !(1..=12).contains(&num(m, 2)?) {
                    return Err(bad());
                }
            }
            [y, m, d] => {
                let (y, m, d) = (num(y, 4)?, num(m, 2)?, num(d, 2)?);
                if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
                    return Err("is not a real calendar date".to_owned());
                }
            }
            _ => return Err(bad()),
        }
        Ok(Self(raw.to_owned()))
    }

    /// The UTC date of a Unix time in milliseconds.
    pub fn from_unix_millis(ms: i64) -> Self {
        let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
        Self(format!("{y:04}-{m:02}-{d:02}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `YYYY-MM-DD` with missing parts as the earliest value, for ordering.
    fn key(&self) -> String {
        match self.0.len() {
            4 => format!("{}-01-01", self.0),
            7 => format!("{}-01", self.0),
            _ => self.0.clone(),
        }
    }
}

/// The official name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HumanName {
    pub family: String,
    pub given: Vec<String>,
    pub prefix: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    pub use_: Option<String>,
    pub line: Vec<String>,
    pub city: Option<String>,
    pub district: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactPoint {
    pub system: String,
    pub value: String,
    pub use_: Option<String>,
}

/// Everything Vellum keeps about a patient's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Demographics {
    pub nhs_number: Option<NhsNumber>,
    pub mrn: Option<String>,
    pub name: HumanName,
    pub birth_date: Option<BirthDate>,
    pub gender: Option<Gender>,
    pub address: Vec<Address>,
    pub telecom: Vec<ContactPoint>,
    pub active: bool,
}

const MAX_TEXT: usize = 200;

/// Reads a FHIR resource, collecting every problem with its path.
struct Reader<'a> {
    errors: Vec<FieldError>,
    obj: &'a Map<String, Value>,
}

impl<'a> Reader<'a> {
    fn text(&mut self, v: Option<&Value>, path: &str) -> Option<String> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let t = s.trim();
                if t.is_empty() {
                    self.errors.push(ferr(path, "must not be empty"));
                    None
                } else if t.chars().count() > MAX_TEXT {
                    self.errors
                        .push(ferr(path, format!("must be at most {MAX_TEXT} characters")));
                    None
                } else if t.chars().any(char::is_control) {
                    self.errors
                        .push(ferr(path, "must not contain control characters"));
                    None
                } else {
                    Some(t.to_owned())
                }
            }
            Some(_) => {
                self.errors.push(ferr(path, "must be a string"));
                None
            }
        }
    }

    fn array(&mut self, v: Option<&'a Value>, path: &str, max: usize) -> Vec<&'a Value> {
        match v {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if a.len() <= max => a.iter().collect(),
            Some(Value::Array(_)) => {
                self.errors
                    .push(ferr(path, format!("must have at most {max} entries")));
                Vec::new()
            }
            Some(_) => {
                self.errors.push(ferr(path, "must be an array"));
                Vec::new()
            }
        }
    }

    fn texts(&mut self, v: Option<&'a Value>, path: &str, max: usize) -> Vec<String> {
        self.array(v, path, max)
            .into_iter()
            .enumerate()
            .filter_map(|(i, x)| self.text(Some(x), &format!("{path}[{i}]")))
            .collect()
    }

    fn code(&mut self, v: Option<&Value>, path: &str, allowed: &[&str]) -> Option<String> {
        let t = self.text(v, path)?;
        if allowed.contains(&t.as_str()) {
            Some(t)
        } else {
            self.errors
                .push(ferr(path, format!("must be one of {}", allowed.join(", "))));
            None
        }
    }
}

impl Demographics {
    /// Parses a FHIR R4 Patient. Elements Vellum does not keep (`id`,
    /// `meta`, `text`, extensions) are ignored; everything else must be
    /// valid, and every problem is reported with its path.
    pub fn from_fhir(resource: &Value, today: &BirthDate) -> Result<Demographics, Vec<FieldError>> {
        let Some(obj) = resource.as_object() else {
            return Err(vec![ferr(
                "resourceType",
                "the body must be a FHIR Patient resource (a JSON object)",
            )]);
        };
        let mut r = Reader {
            errors: Vec::new(),
            obj,
        };
        if obj.get("resourceType").and_then(Value::as_str) != Some("Patient") {
            r.errors.push(ferr("resourceType", "must be \"Patient\""));
        }

        let mut nhs_number = None;
        let mut mrn = None;
        for (i, ident) in r
            .array(obj.get("identifier"), "identifier", 10)
            .into_iter()
            .enumerate()
        {
            let system = ident.get("system").and_then(Value::as_str).unwrap_or("");
            let value = r.text(ident.get("value"), &format!("identifier[{i}].value"));
            match (system, value) {
                (NHS_SYSTEM, Some(v)) => match NhsNumber::parse(&v) {
                    Ok(n) if nhs_number.is_none() => nhs_number = Some(n),
                    Ok(_) => r.errors.push(ferr(
                        format!("identifier[{i}]"),
                        "a patient has at most one NHS number",
                    )),
                    Err(m) => r.errors.push(ferr(format!("identifier[{i}].value"), m)),
                },
                (NHS_SYSTEM, None) => {}
                (_, Some(v)) if mrn.is_none() => mrn = Some(v),
                _ => {}
            }
        }

        let names = r.array(obj.get("name"), "name", 10);
        let chosen = names
            .iter()
            .position(|n| n.get("use").and_then(Value::as_str) == Some("official"))
            .or(if names.is_empty() { None } else { Some(0) });
        let name = match chosen.and_then(|i| names.get(i).map(|n| (i, *n))) {
            None => {
                r.errors
                    .push(ferr("name", "the patient's official name is required"));
                None
            }
            Some((i, n)) => {
                let family = r.text(n.get("family"), &format!("name[{i}].family"));
                if family.is_none() && n.get("family").is_none() {
                    r.errors
                        .push(ferr(format!("name[{i}].family"), "is required"));
                }
                let given = r.texts(n.get("given"), &format!("name[{i}].given"), 5);
                let prefix = r.texts(n.get("prefix"), &format!("name[{i}].prefix"), 5);
                family.map(|family| HumanName {
                    family,
                    given,
                    prefix,
                })
            }
        };

        let birth_date = match r.text(obj.get("birthDate"), "birthDate") {
            Some(s) => match BirthDate::parse(&s, today) {
                Ok(d) => Some(d),
                Err(m) => {
                    r.errors.push(ferr("birthDate", m));
                    None
                }
            },
            None => None,
        };
        let gender = r
            .code(
                obj.get("gender"),
                "gender",
                &["male", "female", "other", "unknown"],
            )
            .and_then(|g| g.parse().ok());

        let mut address = Vec::new();
        for (i, a) in r
            .array(obj.get("address"), "address", 5)
            .into_iter()
            .enumerate()
        {
            let p = format!("address[{i}]");
            address.push(Address {
                use_: r.code(
                    a.get("use"),
                    &format!("{p}.use"),
                    &["home", "work", "temp", "old", "billing"],
                ),
                line: r.texts(a.get("line"), &format!("{p}.line"), 5),
                city: r.text(a.get("city"), &format!("{p}.city")),
                district: r.text(a.get("district"), &format!("{p}.district")),
                postal_code: r.text(a.get("postalCode"), &format!("{p}.postalCode")),
                country: r.text(a.get("country"), &format!("{p}.country")),
            });
        }
        let mut telecom = Vec::new();
        for (i, t) in r
            .array(obj.get("telecom"), "telecom", 10)
            .into_iter()
            .enumerate()
        {
            let p = format!("telecom[{i}]");
            let system = r.code(
                t.get("system"),
                &format!("{p}.system"),
                &["phone", "fax", "email", "pager", "url", "sms", "other"],
            );
            let value = r.text(t.get("value"), &format!("{p}.value"));
            let use_ = r.code(
                t.get("use"),
                &format!("{p}.use"),
                &["home", "work", "temp", "old", "mobile"],
            );
            if let (Some(system), Some(value)) = (system, value) {
                telecom.push(ContactPoint {
                    system,
                    value,
                    use_,
                });
            } else if t.get("system").is_none() || t.get("value").is_none() {
                r.errors.push(ferr(p, "needs both system and value"));
            }
        }
        let active = match obj.get("active") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                r.errors.push(ferr("active", "must be true or false"));
                true
            }
        };
        let _ = r.obj;
        match (name, r.errors.is_empty()) {
            (Some(name), true) => Ok(Demographics {
                nhs_number,
                mrn,
                name,
                birth_date,
                gender,
                address,
                telecom,
                active,
            }),
            _ => Err(r.errors),
        }
    }

    /// The FHIR R4 Patient for this version. Absent elements are left out.
    pub fn to_fhir(&self, id: PatientId, version_id: i64, last_updated: &str) -> Value {
        let mut o = Map::new();
        o.insert("resourceType".into(), json!("Patient"));
        o.insert("id".into(), json!(id.to_string()));
        o.insert(
            "meta".into(),
            json!({"versionId": version_id.to_string(), "lastUpdated": last_updated}),
        );
        let mut ids = Vec::new();
        if let Some(n) = &self.nhs_number {
            ids.push(json!({"system": NHS_SYSTEM, "value": n.as_str()}));
        }
        if let Some(m) = &self.mrn {
            ids.push(json!({"system": MRN_SYSTEM, "value": m}));
        }
        if !ids.is_empty() {
            o.insert("identifier".into(), Value::Array(ids));
        }
        o.insert("active".into(), json!(self.active));
        let mut name = Map::new();
        name.insert("use".into(), json!("official"));
        name.insert("family".into(), json!(self.name.family));
        if !self.name.given.is_empty() {
            name.insert("given".into(), json!(self.name.given));
        }
        if !self.name.prefix.is_empty() {
            name.insert("prefix".into(), json!(self.name.prefix));
        }
        o.insert("name".into(), Value::Array(vec![Value::Object(name)]));
        if !self.telecom.is_empty() {
            let t: Vec<Value> = self
                .telecom
                .iter()
                .map(|c| {
                    let mut m = Map::new();
                    m.insert("system".into(), json!(c.system));
                    m.insert("value".into(), json!(c.value));
                    if let Some(u) = &c.use_ {
                        m.insert("use".into(), json!(u));
                    }
                    Value::Object(m)
                })
                .collect();
            o.insert("telecom".into(), Value::Array(t));
        }
        if let Some(g) = self.gender {
            o.insert("gender".into(), json!(g.as_str()));
        }
        if let Some(b) = &self.birth_date {
            o.insert("birthDate".into(), json!(b.as_str()));
        }
        if !self.address.is_empty() {
            let a: Vec<Value> = self
                .address
                .iter()
                .map(|a| {
                    let mut m = Map::new();
                    let mut put = |k: &str, v: &Option<String>| {
                        if let Some(v) = v {
                            m.insert(k.into(), json!(v));
                        }
                    };
                    put("use", &a.use_);
                    put("city", &a.city);
                    put("district", &a.district);
                    put("postalCode", &a.postal_code);
                    put("country", &a.country);
                    if !a.line.is_empty() {
                        m.insert("line".into(), json!(a.line));
                    }
                    Value::Object(m)
                })
                .collect();
            o.insert("address".into(), Value::Array(a));
        }
        Value::Object(o)
    }

    /// `SMITH, John Paul (Dr)`.
    pub fn display_name(&self) -> String {
        let mut s = self.name.family.to_uppercase();
        if !self.name.given.is_empty() {
            s.push_str(", ");
            s.push_str(&self.name.given.join(" "));
        }
        if !self.name.prefix.is_empty() {
            s.push_str(&format!(" ({})", self.name.prefix.join(" ")));
        }
        s
    }
}

/// Lowercase without accents, for search: `Zoë Ångström` → `zoe angstrom`.
pub fn fold_for_search(s: &str) -> String {
    s.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> BirthDate {
        BirthDate::parse_any("2026-11-24").unwrap()
    }

    #[test]
    fn nhs_numbers_are_checked_with_modulus_11() {
        assert_eq!(
            NhsNumber::parse("943 476 5919").unwrap().as_str(),
            "9434765919"
        );
        assert_eq!(
            NhsNumber::parse("943-476-5919").unwrap().formatted(),
            "943 476 5919"
        );
        assert!(
            NhsNumber::parse("9434765918")
                .unwrap_err()
                .contains("checksum")
        );
        assert!(
            NhsNumber::parse("94347659")
                .unwrap_err()
                .contains("10 digits")
        );
        assert!(NhsNumber::parse("94347659AB").is_err());
        // 999 000 0018 is in the test range and valid; …0010 is not.
        assert!(NhsNumber::parse("9990000018").is_ok());
        assert!(NhsNumber::parse("9990000010").is_err());
    }

    #[test]
    fn genders_are_the_four_fhir_codes_only() {
        for g in ["male", "female", "other", "unknown"] {
            assert_eq!(g.parse::<Gender>().unwrap().as_str(), g);
        }
        assert!("Male".parse::<Gender>().is_err());
        assert!("x".parse::<Gender>().is_err());
    }

    #[test]
    fn birth_dates_are_real_and_not_in_the_future() {
        let t = today();
        assert!(BirthDate::parse("2024-02-29", &t).is_ok());
        assert!(BirthDate::parse("2023-02-29", &t).is_err());
        assert!(BirthDate::parse("1980", &t).is_ok());
        assert!(BirthDate::parse("1980-13", &t).is_err());
        assert_eq!(
            BirthDate::parse("2026-11-25", &t).unwrap_err(),
            "must not be in the future"
        );
        assert!(BirthDate::parse("2026-11-24", &t).is_ok());
        assert!(BirthDate::parse("24/02/1980", &t).is_err());
        assert_eq!(
            BirthDate::from_unix_millis(1_709_210_096_789).as_str(),
            "2024-02-29"
        );
    }

    fn sample() -> Value {
        json!({
            "resourceType": "Patient",
            "identifier": [
                {"system": NHS_SYSTEM, "value": "943 476 5919"},
                {"system": "https://example.org/mrn", "value": "MRN-1"}
            ],
            "name": [{"use": "usual", "family": "Nick"}, {"use": "official", "family": "Ångström", "given": ["Zoë", "Ann"], "prefix": ["Dr"]}],
            "birthDate": "1970-01-01",
            "gender": "female",
            "address": [{"use": "home", "line": ["1 High St"], "city": "Leeds", "postalCode": "LS1 1AA"}],
            "telecom": [{"system": "phone", "value": "0113 000 0000", "use": "mobile"}]
        })
    }

    #[test]
    fn fhir_patient_parses_and_round_trips() {
        let d = Demographics::from_fhir(&sample(), &today()).unwrap();
        assert_eq!(d.name.family, "Ångström");
        assert_eq!(d.mrn.as_deref(), Some("MRN-1"));
        assert_eq!(d.display_name(), "ÅNGSTRÖM, Zoë Ann (Dr)");
        assert!(d.active);
        let id = PatientId(Uuid::nil());
        let back = d.to_fhir(id, 3, "2026-11-24T00:00:00.000Z");
        assert_eq!(back["meta"]["versionId"], "3");
        assert!(back.get("extension").is_none());
        let again = Demographics::from_fhir(&back, &today()).unwrap();
        assert_eq!(again.nhs_number, d.nhs_number);
        assert_eq!(again.name, d.name);
        assert_eq!(again.address, d.address);
        assert_eq!(again.telecom, d.telecom);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut bad = sample();
        bad["identifier"][0]["value"] = json!("9434765918");
        bad["gender"] = json!("robot");
        bad["birthDate"] = json!("2999-01-01");
        bad["telecom"][0]["system"] = json!("pigeon");
        let errs = Demographics::from_fhir(&bad, &today()).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "identifier[0].value",
                "birthDate",
                "gender",
                "telecom[0].system"
            ]
        );
        let none =
            Demographics::from_fhir(&json!({"resourceType": "Patient"}), &today()).unwrap_err();
        assert_eq!(none[0].field, "name");
        let wrong = Demographics::from_fhir(
            &json!({"resourceType": "Observation", "name": [{"family": "x"}]}),
            &today(),
        )
        .unwrap_err();
        assert_eq!(wrong[0].field, "resourceType");
    }

    #[test]
    fn search_folding_drops_case_and_accents() {
        assert_eq!(fold_for_search("Zoë Ångström"), "zoe angstrom");
        assert_eq!(fold_for_search("O'BRIEN"), "o'brien");
    }
}
