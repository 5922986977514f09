//! Patient demographics: a FHIR R4 `Patient`, parsed into types that cannot
//! hold an invalid NHS number, gender or birth date.

use std::cmp::Ordering;
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

/// A problem with one field of a resource, named by its FHIR path
/// (`identifier[0].value`, `name[0].family`, `telecom[1].system`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<ParseError> for FieldError {
    fn from(e: ParseError) -> Self {
        Self::new(e.field, e.message)
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
        Uuid::parse_str(s.trim())
            .map(PatientId)
            .map_err(|_| ParseError::new("id", "is not a valid patient id"))
    }
}

/// A ten-digit NHS number that passes the modulus-11 check. Serialized as
/// its ten digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Accepts `9434765919`, `943 476 5919` or `943-476-5919` (spaces and
    /// dashes between the digits are ignored).
    ///
    /// The check: the first nine digits weighted 10 down to 2 and summed;
    /// the check digit is `11 - (sum % 11)`, where 11 means 0 and 10 means
    /// the number is not valid.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let digits: String = raw
            .trim()
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .collect();
        if digits.len() != 10 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(ParseError::new("nhs_number", "must be 10 digits"));
        }
        let checksum = || ParseError::new("nhs_number", "fails the NHS number checksum");
        let d: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
        let sum: u32 = d
            .iter()
            .take(9)
            .zip((2..=10).rev())
            .map(|(x, w)| x * w)
            .sum();
        let check = match 11 - (sum % 11) {
            11 => 0,
            10 => return Err(checksum()),
            c => c,
        };
        if d.get(9) != Some(&check) {
            return Err(checksum());
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

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// FHIR administrative gender: exactly these four codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    Male,
    Female,
    Other,
    Unknown,
}

impl Gender {
    pub const ALL: [Gender; 4] = [Gender::Male, Gender::Female, Gender::Other, Gender::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Male => "male",
            Gender::Female => "female",
            Gender::Other => "other",
            Gender::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Gender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Gender {
    type Err = ParseError;
    /// The FHIR codes, which are case-sensitive: `Male` is refused.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "male" => Ok(Gender::Male),
            "female" => Ok(Gender::Female),
            "other" => Ok(Gender::Other),
            "unknown" => Ok(Gender::Unknown),
            _ => Err(ParseError::new(
                "gender",
                "must be one of male, female, other, unknown",
            )),
        }
    }
}

/// A FHIR `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, kept as given.
///
/// Ordered by its earliest possible day, then by precision, so `2024` <
/// `2024-01` < `2024-01-01` < `2024-01-02`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct BirthDate(String);

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days from 1970-01-01 to 0001-01-01 and to 9999-12-31: the range of a
/// four-digit FHIR year.
const FIRST_DAY: i64 = -719_162;
const LAST_DAY: i64 = 2_932_896;
const MS_PER_DAY: i64 = 86_400_000;

impl BirthDate {
    /// Parses a FHIR date and refuses one after `today`. A partial date is
    /// in the future only if it starts after `today` (`2026-11` is fine on
    /// 2026-11-24).
    pub fn parse(raw: &str, today: &BirthDate) -> Result<Self, ParseError> {
        let d = Self::parse_any(raw)?;
        if d.key() > today.key() {
            return Err(ParseError::new("birthDate", "must not be in the future"));
        }
        Ok(d)
    }

    fn parse_any(raw: &str) -> Result<Self, ParseError> {
        let bad = || {
            ParseError::new(
                "birthDate",
                "must be a date as YYYY-MM-DD (or YYYY-MM, or YYYY)",
            )
        };
        let unreal = || ParseError::new("birthDate", "is not a real calendar date");
        let num = |s: &str, len: usize| -> Result<i64, ParseError> {
            if s.len() == len && s.chars().all(|c| c.is_ascii_digit()) {
                s.parse().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        let parts: Vec<&str> = raw.split('-').collect();
        let year = |y: &str| -> Result<i64, ParseError> {
            match num(y, 4)? {
                0 => Err(unreal()),
                y => Ok(y),
            }
        };
        match parts.as_slice() {
            [y] => {
                year(y)?;
            }
            [y, m] => {
                year(y)?;
                if !(1..=12).contains(&num(m, 2)?) {
                    return Err(unreal());
                }
            }
            [y, m, d] => {
                let (y, m, d) = (year(y)?, num(m, 2)?, num(d, 2)?);
                if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
                    return Err(unreal());
                }
            }
            _ => return Err(bad()),
        }
        Ok(Self(raw.to_owned()))
    }

    /// Parses a date given as a search value (`YYYY`, `YYYY-MM` or
    /// `YYYY-MM-DD`); unlike [`BirthDate::parse`] a future date is allowed.
    pub fn parse_search(raw: &str) -> Result<Self, ParseError> {
        Self::parse_any(raw)
    }

    /// The last day this date covers as `YYYY-MM-DD`: `1980` → `1980-12-31`,
    /// `1980-02` → `1980-02-29`, a full date itself.
    pub fn last_day(&self) -> String {
        let parts: Vec<i64> = self.0.split('-').filter_map(|p| p.parse().ok()).collect();
        match parts.as_slice() {
            [y] => format!("{y:04}-12-31"),
            [y, m] => format!("{y:04}-{m:02}-{:02}", days_in_month(*y, *m)),
            _ => self.0.clone(),
        }
    }

    /// A full date from its parts; refuses a day that does not exist.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Result<Self, ParseError> {
        if !(1..=9999).contains(&year) {
            return Err(ParseError::new("birthDate", "is not a real calendar date"));
        }
        Self::parse_any(&format!("{year:04}-{month:02}-{day:02}"))
    }

    /// The UTC date of a Unix time in milliseconds, e.g. to compute "today".
    /// Clamped to 0001-01-01 ..= 9999-12-31.
    pub fn from_unix_millis(ms: i64) -> Self {
        let days = ms.div_euclid(MS_PER_DAY).clamp(FIRST_DAY, LAST_DAY);
        let (y, m, d) = civil_from_days(days);
        Self(format!("{y:04}-{m:02}-{d:02}"))
    }

    /// The date as given: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
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

impl Ord for BirthDate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key()
            .cmp(&other.key())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for BirthDate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for BirthDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The official name. Family is required; each part is at most 100
/// characters; at most 5 given names and 5 prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HumanName {
    pub family: String,
    pub given: Vec<String>,
    pub prefix: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    pub line: Vec<String>,
    pub city: Option<String>,
    pub district: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    /// home | work | temp | old | billing
    pub use_: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactPoint {
    /// phone | fax | email | pager | url | sms | other
    pub system: String,
    pub value: String,
    /// home | work | temp | old | mobile
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
const MAX_NAME_PART: usize = 100;
const MAX_NAME_PARTS: usize = 5;
const MAX_IDENTIFIERS: usize = 10;
const MAX_NAMES: usize = 10;
const MAX_ADDRESSES: usize = 5;
const MAX_ADDRESS_LINES: usize = 5;
const MAX_TELECOM: usize = 10;

const ADDRESS_USES: &[&str] = &["home", "work", "temp", "old", "billing"];
const TELECOM_SYSTEMS: &[&str] = &["phone", "fax", "email", "pager", "url", "sms", "other"];
const TELECOM_USES: &[&str] = &["home", "work", "temp", "old", "mobile"];

fn absent(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

/// Reads parts of a FHIR resource, collecting every problem with its path.
#[derive(Default)]
struct Reader {
    errors: Vec<FieldError>,
}

impl Reader {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// An optional string: trimmed, non-empty, at most `max` characters,
    /// one line.
    fn text(&mut self, v: Option<&Value>, path: &str, max: usize) -> Option<String> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let t = s.trim();
                if t.is_empty() {
                    self.push(path, "must not be empty");
                    None
                } else if t.chars().count() > max {
                    self.push(path, format!("must be at most {max} characters"));
                    None
                } else if t.chars().any(char::is_control) {
                    self.push(path, "must not contain control characters");
                    None
                } else {
                    Some(t.to_owned())
                }
            }
            Some(_) => {
                self.push(path, "must be a string");
                None
            }
        }
    }

    /// Like [`Reader::text`], but absence is a problem too.
    fn required_text(&mut self, v: Option<&Value>, path: &str, max: usize) -> Option<String> {
        if absent(v) {
            self.push(path, "is required");
            return None;
        }
        self.text(v, path, max)
    }

    fn array<'v>(&mut self, v: Option<&'v Value>, path: &str, max: usize) -> Vec<&'v Value> {
        match v {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if a.len() <= max => a.iter().collect(),
            Some(Value::Array(_)) => {
                self.push(path, format!("must have at most {max} entries"));
                Vec::new()
            }
            Some(_) => {
                self.push(path, "must be an array");
                Vec::new()
            }
        }
    }

    fn texts(
        &mut self,
        v: Option<&Value>,
        path: &str,
        max_len: usize,
        max_items: usize,
    ) -> Vec<String> {
        self.array(v, path, max_items)
            .into_iter()
            .enumerate()
            .filter_map(|(i, x)| self.text(Some(x), &format!("{path}[{i}]"), max_len))
            .collect()
    }

    fn object<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        let o = v.as_object();
        if o.is_none() {
            self.push(path, "must be an object");
        }
        o
    }

    fn code(&mut self, v: Option<&Value>, path: &str, allowed: &[&str]) -> Option<String> {
        let t = self.text(v, path, MAX_TEXT)?;
        if allowed.contains(&t.as_str()) {
            Some(t)
        } else {
            self.push(path, format!("must be one of {}", allowed.join(", ")));
            None
        }
    }

    fn identifiers(&mut self, obj: &Map<String, Value>) -> (Option<NhsNumber>, Option<String>) {
        let mut nhs_number = None;
        // The first MRN under our own system wins; else the first under any
        // other non-NHS system.
        let mut own_mrn = None;
        let mut other_mrn = None;
        let entries = self.array(obj.get("identifier"), "identifier", MAX_IDENTIFIERS);
        for (i, ident) in entries.into_iter().enumerate() {
            let p = format!("identifier[{i}]");
            let Some(ident) = self.object(ident, &p) else {
                continue;
            };
            let system = self.text(ident.get("system"), &format!("{p}.system"), MAX_TEXT);
            let value_path = format!("{p}.value");
            let Some(value) = self.required_text(ident.get("value"), &value_path, MAX_TEXT) else {
                continue;
            };
            match system.as_deref() {
                Some(NHS_SYSTEM) => match NhsNumber::parse(&value) {
                    Ok(n) if nhs_number.is_none() => nhs_number = Some(n),
                    Ok(_) => self.push(p, "a patient has at most one NHS number"),
                    Err(e) => self.push(value_path, e.message),
                },
                Some(MRN_SYSTEM) => {
                    own_mrn.get_or_insert(value);
                }
                _ => {
                    other_mrn.get_or_insert(value);
                }
            }
        }
        (nhs_number, own_mrn.or(other_mrn))
    }

    fn name(&mut self, obj: &Map<String, Value>) -> Option<HumanName> {
        let names = self.array(obj.get("name"), "name", MAX_NAMES);
        let chosen = names
            .iter()
            .position(|n| n.get("use").and_then(Value::as_str) == Some("official"))
            .unwrap_or(0);
        let Some(n) = names.get(chosen) else {
            // A wrong type or too many entries is already reported.
            let raw = obj.get("name");
            if absent(raw) || raw.and_then(Value::as_array).is_some_and(Vec::is_empty) {
                self.push("name", "the patient's official name is required");
            }
            return None;
        };
        let p = format!("name[{chosen}]");
        let n = self.object(n, &p)?;
        let family = self.required_text(n.get("family"), &format!("{p}.family"), MAX_NAME_PART);
        let given = self.texts(
            n.get("given"),
            &format!("{p}.given"),
            MAX_NAME_PART,
            MAX_NAME_PARTS,
        );
        let prefix = self.texts(
            n.get("prefix"),
            &format!("{p}.prefix"),
            MAX_NAME_PART,
            MAX_NAME_PARTS,
        );
        family.map(|family| HumanName {
            family,
            given,
            prefix,
        })
    }

    fn address(&mut self, obj: &Map<String, Value>) -> Vec<Address> {
        let mut out = Vec::new();
        let entries = self.array(obj.get("address"), "address", MAX_ADDRESSES);
        for (i, a) in entries.into_iter().enumerate() {
            let p = format!("address[{i}]");
            let Some(a) = self.object(a, &p) else {
                continue;
            };
            let parts = ["line", "city", "district", "postalCode", "country"];
            if parts.iter().all(|k| absent(a.get(*k))) {
                self.push(
                    &p,
                    "must have at least one of line, city, district, postalCode, country",
                );
                continue;
            }
            out.push(Address {
                line: self.texts(
                    a.get("line"),
                    &format!("{p}.line"),
                    MAX_TEXT,
                    MAX_ADDRESS_LINES,
                ),
                city: self.text(a.get("city"), &format!("{p}.city"), MAX_TEXT),
                district: self.text(a.get("district"), &format!("{p}.district"), MAX_TEXT),
                postal_code: self.text(a.get("postalCode"), &format!("{p}.postalCode"), MAX_TEXT),
                country: self.text(a.get("country"), &format!("{p}.country"), MAX_TEXT),
                use_: self.code(a.get("use"), &format!("{p}.use"), ADDRESS_USES),
            });
        }
        out
    }

    fn telecom(&mut self, obj: &Map<String, Value>) -> Vec<ContactPoint> {
        let mut out = Vec::new();
        let entries = self.array(obj.get("telecom"), "telecom", MAX_TELECOM);
        for (i, t) in entries.into_iter().enumerate() {
            let p = format!("telecom[{i}]");
            let Some(t) = self.object(t, &p) else {
                continue;
            };
            let system_path = format!("{p}.system");
            let system = if absent(t.get("system")) {
                self.push(&system_path, "is required");
                None
            } else {
                self.code(t.get("system"), &system_path, TELECOM_SYSTEMS)
            };
            let value = self.required_text(t.get("value"), &format!("{p}.value"), MAX_TEXT);
            let use_ = self.code(t.get("use"), &format!("{p}.use"), TELECOM_USES);
            if let (Some(system), Some(value)) = (system, value) {
                out.push(ContactPoint {
                    system,
                    value,
                    use_,
                });
            }
        }
        out
    }
}

impl Demographics {
    /// Parses a FHIR R4 Patient. Elements Vellum does not keep (`id`,
    /// `meta`, `text`, extensions, …) are ignored; everything else must be
    /// valid, and every problem is reported with its FHIR path.
    ///
    /// Identifiers: the NHS system gives the NHS number (at most one); any
    /// other system gives the MRN (the first under `urn:vellum:mrn`, else
    /// the first under any other system). Name: the `official` one, else the
    /// first. `active` defaults to true.
    pub fn from_fhir(resource: &Value, today: &BirthDate) -> Result<Demographics, Vec<FieldError>> {
        let Some(obj) = resource.as_object() else {
            return Err(vec![FieldError::new(
                "resourceType",
                "the body must be a FHIR Patient resource (a JSON object)",
            )]);
        };
        let mut r = Reader::default();
        if obj.get("resourceType").and_then(Value::as_str) != Some("Patient") {
            r.push("resourceType", "must be \"Patient\"");
        }

        let (nhs_number, mrn) = r.identifiers(obj);
        let name = r.name(obj);
        let birth_date = r
            .text(obj.get("birthDate"), "birthDate", MAX_TEXT)
            .and_then(|s| match BirthDate::parse(&s, today) {
                Ok(d) => Some(d),
                Err(e) => {
                    r.push("birthDate", e.message);
                    None
                }
            });
        let gender =
            r.text(obj.get("gender"), "gender", MAX_TEXT)
                .and_then(|g| match g.parse::<Gender>() {
                    Ok(g) => Some(g),
                    Err(e) => {
                        r.push("gender", e.message);
                        None
                    }
                });
        let address = r.address(obj);
        let telecom = r.telecom(obj);
        let active = match obj.get("active") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                r.push("active", "must be true or false");
                true
            }
        };

        match name {
            Some(name) if r.errors.is_empty() => Ok(Demographics {
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

    /// The FHIR R4 Patient for this version. Absent elements are left out:
    /// never `null`, never an empty array.
    pub fn to_fhir(&self, id: PatientId, version_id: i64, last_updated_rfc3339: &str) -> Value {
        let mut o = Map::new();
        o.insert("resourceType".into(), json!("Patient"));
        o.insert("id".into(), json!(id.to_string()));
        o.insert(
            "meta".into(),
            json!({"versionId": version_id.to_string(), "lastUpdated": last_updated_rfc3339}),
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
        put_list(&mut name, "given", &self.name.given);
        put_list(&mut name, "prefix", &self.name.prefix);
        o.insert("name".into(), Value::Array(vec![Value::Object(name)]));

        if !self.telecom.is_empty() {
            let t = self.telecom.iter().map(|c| {
                let mut m = Map::new();
                m.insert("system".into(), json!(c.system));
                m.insert("value".into(), json!(c.value));
                put_opt(&mut m, "use", &c.use_);
                Value::Object(m)
            });
            o.insert("telecom".into(), Value::Array(t.collect()));
        }
        if let Some(g) = self.gender {
            o.insert("gender".into(), json!(g.as_str()));
        }
        if let Some(b) = &self.birth_date {
            o.insert("birthDate".into(), json!(b.as_str()));
        }
        if !self.address.is_empty() {
            let a = self.address.iter().map(|a| {
                let mut m = Map::new();
                put_opt(&mut m, "use", &a.use_);
                put_list(&mut m, "line", &a.line);
                put_opt(&mut m, "city", &a.city);
                put_opt(&mut m, "district", &a.district);
                put_opt(&mut m, "postalCode", &a.postal_code);
                put_opt(&mut m, "country", &a.country);
                Value::Object(m)
            });
            o.insert("address".into(), Value::Array(a.collect()));
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
            s.push_str(" (");
            s.push_str(&self.name.prefix.join(" "));
            s.push(')');
        }
        s
    }
}

fn put_opt(m: &mut Map<String, Value>, key: &str, v: &Option<String>) {
    if let Some(v) = v {
        m.insert(key.into(), json!(v));
    }
}

fn put_list(m: &mut Map<String, Value>, key: &str, v: &[String]) {
    if !v.is_empty() {
        m.insert(key.into(), json!(v));
    }
}

/// Lowercase without accents, for search: `Zoë Ångström` → `zoe angstrom`.
/// Decomposes (NFD), drops combining marks, then lowercases.
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
        BirthDate::from_ymd(2026, 11, 24).unwrap()
    }

    fn nhs(s: &str) -> Result<NhsNumber, String> {
        NhsNumber::parse(s).map_err(|e| e.message)
    }

    #[test]
    fn nhs_numbers_are_checked_with_modulus_11() {
        for ok in ["9434765919", "943 476 5919", "943-476-5919", " 9434765919 "] {
            let n = nhs(ok).unwrap();
            assert_eq!(n.as_str(), "9434765919");
            assert_eq!(n.formatted(), "943 476 5919");
            assert_eq!(n.to_string(), "9434765919");
        }
        assert_eq!(
            nhs("9434765918").unwrap_err(),
            "fails the NHS number checksum"
        );
        assert_eq!(nhs("94347659").unwrap_err(), "must be 10 digits");
        assert_eq!(nhs("94347659191").unwrap_err(), "must be 10 digits");
        assert_eq!(nhs("94347659AB").unwrap_err(), "must be 10 digits");
        assert_eq!(
            nhs("９４３４７６５９１９").unwrap_err(),
            "must be 10 digits"
        );
        assert_eq!(NhsNumber::parse("1").unwrap_err().field, "nhs_number");
        // Test range (999 000 0000–999 999 9999), check digits computed
        // independently: 999000001 → 8; 999000005 → 11 → 0; 999000000 → 10,
        // so no number starting 999000000 is valid.
        assert!(nhs("9990000018").is_ok());
        assert!(nhs("9990000010").is_err());
        assert!(nhs("9990000050").is_ok());
        assert!(nhs("9990000059").is_err());
        for check in 0..=9 {
            assert!(nhs(&format!("999000000{check}")).is_err());
        }
        assert_eq!(
            serde_json::to_value(nhs("943 476 5919").unwrap()).unwrap(),
            json!("9434765919")
        );
    }

    #[test]
    fn genders_are_the_four_fhir_codes_only() {
        for g in Gender::ALL {
            assert_eq!(g.as_str().parse::<Gender>(), Ok(g));
        }
        let e = "Male".parse::<Gender>().unwrap_err();
        assert_eq!(e.field, "gender");
        assert_eq!(e.message, "must be one of male, female, other, unknown");
        assert!("x".parse::<Gender>().is_err());
        assert!("".parse::<Gender>().is_err());
    }

    #[test]
    fn birth_dates_are_real_and_not_in_the_future() {
        let t = today();
        let p = |s: &str| BirthDate::parse(s, &t).map_err(|e| e.message);
        assert_eq!(p("2024-02-29").unwrap().as_str(), "2024-02-29");
        assert!(p("2000-02-29").is_ok());
        assert_eq!(p("2023-02-29").unwrap_err(), "is not a real calendar date");
        assert!(p("1900-02-29").is_err());
        assert!(p("2023-04-31").is_err());
        assert!(p("2023-00-10").is_err());
        assert!(p("0000").is_err());
        assert_eq!(p("1980").unwrap().as_str(), "1980");
        assert_eq!(p("1980-07").unwrap().as_str(), "1980-07");
        assert!(p("1980-13").is_err());
        assert!(p("1980-7").is_err());
        assert!(p("80-07-01").is_err());
        assert!(p("24/02/1980").is_err());
        assert!(p("1980-07-01T00:00:00Z").is_err());
        assert!(p("").is_err());
        assert_eq!(p("2026-11-25").unwrap_err(), "must not be in the future");
        assert_eq!(p("2027").unwrap_err(), "must not be in the future");
        assert_eq!(p("2026-12").unwrap_err(), "must not be in the future");
        assert!(p("2026-11-24").is_ok());
        assert!(p("2026-11").is_ok());
        assert!(p("2026").is_ok());
        assert_eq!(
            BirthDate::parse("2999-01-01", &t).unwrap_err().field,
            "birthDate"
        );
    }

    #[test]
    fn birth_dates_from_parts_and_timestamps() {
        assert_eq!(
            BirthDate::from_ymd(2024, 2, 29).unwrap().as_str(),
            "2024-02-29"
        );
        assert_eq!(BirthDate::from_ymd(7, 1, 2).unwrap().as_str(), "0007-01-02");
        assert!(BirthDate::from_ymd(2023, 2, 29).is_err());
        assert!(BirthDate::from_ymd(2023, 13, 1).is_err());
        assert!(BirthDate::from_ymd(0, 1, 1).is_err());
        assert!(BirthDate::from_ymd(10_000, 1, 1).is_err());
        let at = |ms| BirthDate::from_unix_millis(ms).as_str().to_owned();
        assert_eq!(at(0), "1970-01-01");
        assert_eq!(at(-1), "1969-12-31");
        // Values from Python's datetime.
        assert_eq!(at(-43_200_000), "1969-12-31");
        assert_eq!(at(951_868_799_999), "2000-02-29");
        assert_eq!(at(951_868_800_000), "2000-03-01");
        assert_eq!(at(1_709_210_096_789), "2024-02-29");
        assert_eq!(at(i64::MIN), "0001-01-01");
        assert_eq!(at(i64::MAX), "9999-12-31");
    }

    #[test]
    fn search_dates_cover_their_whole_period() {
        let last = |s: &str| BirthDate::parse_search(s).unwrap().last_day();
        assert_eq!(last("1980"), "1980-12-31");
        assert_eq!(last("1980-02"), "1980-02-29");
        assert_eq!(last("1981-02"), "1981-02-28");
        assert_eq!(last("1980-04"), "1980-04-30");
        assert_eq!(last("1980-05-06"), "1980-05-06");
        assert!(
            BirthDate::parse_search("2999-01-01").is_ok(),
            "future dates are valid search values"
        );
        assert!(BirthDate::parse_search("1980-13").is_err());
    }

    #[test]
    fn birth_dates_order_by_earliest_day_then_precision() {
        let t = today();
        let d = |s: &str| BirthDate::parse(s, &t).unwrap();
        let mut v = [
            d("2024-01-02"),
            d("2024-01-01"),
            d("2024"),
            d("2023-12-31"),
            d("2024-01"),
        ];
        v.sort();
        let got: Vec<&str> = v.iter().map(BirthDate::as_str).collect();
        assert_eq!(
            got,
            ["2023-12-31", "2024", "2024-01", "2024-01-01", "2024-01-02"]
        );
        assert!(d("2024") < d("2024-01-01"));
        assert_eq!(d("2024").cmp(&d("2024")), Ordering::Equal);
        assert!(BirthDate::from_ymd(2026, 11, 25).unwrap() > t);
    }

    #[test]
    fn ids_print_lowercase_hyphenated() {
        let id: PatientId = "5B1F8E2C-3F4A-4D6E-9A7B-1C2D3E4F5A6B".parse().unwrap();
        assert_eq!(id.to_string(), "5b1f8e2c-3f4a-4d6e-9a7b-1c2d3e4f5a6b");
        assert_eq!(
            serde_json::to_value(id).unwrap(),
            json!("5b1f8e2c-3f4a-4d6e-9a7b-1c2d3e4f5a6b")
        );
        let e = "42".parse::<PatientId>().unwrap_err();
        assert_eq!(e.field, "id");
    }

    fn sample() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "ignored",
            "meta": {"versionId": "9"},
            "text": {"status": "generated", "div": "<div/>"},
            "identifier": [
                {"system": NHS_SYSTEM, "value": "943 476 5919"},
                {"system": "https://example.org/mrn", "value": "MRN-1"}
            ],
            "name": [
                {"use": "usual", "family": "Nick"},
                {"use": "official", "family": " Ångström ", "given": ["Zoë", "Ann"], "prefix": ["Dr"]}
            ],
            "birthDate": "1970-01-01",
            "gender": "female",
            "address": [{"use": "home", "line": ["1 High St"], "city": "Leeds", "postalCode": "LS1 1AA"}],
            "telecom": [
                {"system": "phone", "value": "0113 000 0000", "use": "mobile"},
                {"system": "email", "value": "zoe@example.org"}
            ]
        })
    }

    #[test]
    fn fhir_patient_parses() {
        let d = Demographics::from_fhir(&sample(), &today()).unwrap();
        assert_eq!(
            d.nhs_number.as_ref().map(NhsNumber::as_str),
            Some("9434765919")
        );
        assert_eq!(d.mrn.as_deref(), Some("MRN-1"));
        assert_eq!(
            d.name,
            HumanName {
                family: "Ångström".into(),
                given: vec!["Zoë".into(), "Ann".into()],
                prefix: vec!["Dr".into()],
            }
        );
        assert_eq!(
            d.birth_date.as_ref().map(BirthDate::as_str),
            Some("1970-01-01")
        );
        assert_eq!(d.gender, Some(Gender::Female));
        assert_eq!(d.telecom.len(), 2);
        assert_eq!(d.telecom[1].use_, None);
        assert!(d.active);
        assert_eq!(d.display_name(), "ÅNGSTRÖM, Zoë Ann (Dr)");
    }

    #[test]
    fn fhir_patient_round_trips() {
        let d = Demographics::from_fhir(&sample(), &today()).unwrap();
        let id: PatientId = "5b1f8e2c-3f4a-4d6e-9a7b-1c2d3e4f5a6b".parse().unwrap();
        let back = d.to_fhir(id, 3, "2026-11-24T00:00:00.000Z");
        assert_eq!(back["resourceType"], "Patient");
        assert_eq!(back["id"], "5b1f8e2c-3f4a-4d6e-9a7b-1c2d3e4f5a6b");
        assert_eq!(back["meta"]["versionId"], "3");
        assert_eq!(back["meta"]["lastUpdated"], "2026-11-24T00:00:00.000Z");
        assert_eq!(
            back["identifier"],
            json!([
                {"system": NHS_SYSTEM, "value": "9434765919"},
                {"system": MRN_SYSTEM, "value": "MRN-1"}
            ])
        );
        assert_eq!(
            back["name"],
            json!([{"use": "official", "family": "Ångström", "given": ["Zoë", "Ann"], "prefix": ["Dr"]}])
        );
        assert_eq!(back["active"], true);
        assert_eq!(Demographics::from_fhir(&back, &today()).unwrap(), d);

        // A minimal patient: nothing absent is emitted, and it round-trips.
        let min = Demographics {
            nhs_number: None,
            mrn: None,
            name: HumanName {
                family: "Smith".into(),
                given: vec![],
                prefix: vec![],
            },
            birth_date: None,
            gender: None,
            address: vec![],
            telecom: vec![],
            active: false,
        };
        let v = min.to_fhir(id, 1, "2026-11-24T00:00:00.000Z");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
        for k in ["resourceType", "id", "meta", "name", "active"] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert_eq!(v["name"], json!([{"use": "official", "family": "Smith"}]));
        assert_eq!(min.display_name(), "SMITH");
        assert_eq!(Demographics::from_fhir(&v, &today()).unwrap(), min);
        assert!(!v.to_string().contains("null"));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut bad = sample();
        bad["identifier"][0]["value"] = json!("9434765918");
        bad["name"][1]["family"] = json!("   ");
        bad["gender"] = json!("robot");
        bad["birthDate"] = json!("2999-01-01");
        bad["telecom"][1]["system"] = json!("pigeon");
        bad["active"] = json!("yes");
        let errs = Demographics::from_fhir(&bad, &today()).unwrap_err();
        let got: Vec<(&str, &str)> = errs
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("identifier[0].value", "fails the NHS number checksum"),
                ("name[1].family", "must not be empty"),
                ("birthDate", "must not be in the future"),
                ("gender", "must be one of male, female, other, unknown"),
                (
                    "telecom[1].system",
                    "must be one of phone, fax, email, pager, url, sms, other"
                ),
                ("active", "must be true or false"),
            ]
        );
        assert_eq!(
            errs[0].to_string(),
            "identifier[0].value: fails the NHS number checksum"
        );
    }

    #[test]
    fn structural_problems_are_reported_too() {
        let fields = |v: Value| -> Vec<String> {
            Demographics::from_fhir(&v, &today())
                .unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert_eq!(fields(json!({"resourceType": "Patient"})), ["name"]);
        assert_eq!(
            fields(json!({"resourceType": "Patient", "name": []})),
            ["name"]
        );
        assert_eq!(
            fields(json!({"resourceType": "Patient", "name": "Smith"})),
            ["name"]
        );
        assert_eq!(
            fields(json!({"resourceType": "Observation", "name": [{"family": "x"}]})),
            ["resourceType"]
        );
        assert_eq!(fields(json!({"name": [{"family": "x"}]})), ["resourceType"]);
        assert_eq!(fields(json!([1, 2])), ["resourceType"]);
        assert_eq!(
            fields(json!({"resourceType": "Patient", "name": [{"given": ["Ann"]}]})),
            ["name[0].family"]
        );

        let mut bad = sample();
        bad["identifier"] = json!([
            {"system": NHS_SYSTEM, "value": "9434765919"},
            {"system": NHS_SYSTEM, "value": "9990000018"},
            {"system": NHS_SYSTEM},
            "x"
        ]);
        bad["name"] = json!([{
            "family": "x".repeat(101),
            "given": ["a", "b", "c", "d", "e", "f"],
            "prefix": [7]
        }]);
        bad["address"] = json!([{"use": "holiday", "city": "Leeds"}, {}, 3]);
        bad["telecom"] = json!([{"value": "x"}, {"system": "phone", "value": null}]);
        assert_eq!(
            fields(bad),
            [
                "identifier[1]",
                "identifier[2].value",
                "identifier[3]",
                "name[0].family",
                "name[0].given",
                "name[0].prefix[0]",
                "address[0].use",
                "address[1]",
                "address[2]",
                "telecom[0].system",
                "telecom[1].value",
            ]
        );
    }

    #[test]
    fn name_parts_are_bounded_at_100_characters() {
        let mut v = sample();
        v["name"] = json!([{"family": "x".repeat(100), "given": ["y".repeat(100)]}]);
        assert!(Demographics::from_fhir(&v, &today()).is_ok());
        v["name"][0]["given"] = json!(["y".repeat(101)]);
        let e = Demographics::from_fhir(&v, &today()).unwrap_err();
        assert_eq!(e[0].field, "name[0].given[0]");
        assert_eq!(e[0].message, "must be at most 100 characters");
    }

    #[test]
    fn identifiers_choose_the_mrn_and_the_name() {
        let mut v = sample();
        v["identifier"] = json!([
            {"system": "https://example.org/other", "value": "OTHER-1"},
            {"system": MRN_SYSTEM, "value": "OURS-1"},
            {"system": MRN_SYSTEM, "value": "OURS-2"}
        ]);
        v["name"] = json!([{"use": "usual", "family": "First"}, {"family": "Second"}]);
        let d = Demographics::from_fhir(&v, &today()).unwrap();
        assert_eq!(d.mrn.as_deref(), Some("OURS-1"));
        assert_eq!(d.nhs_number, None);
        assert_eq!(d.name.family, "First");
        v["identifier"] = json!([{"value": "NOSYSTEM"}, {"system": "x", "value": "X"}]);
        let d = Demographics::from_fhir(&v, &today()).unwrap();
        assert_eq!(d.mrn.as_deref(), Some("NOSYSTEM"));
    }

    #[test]
    fn search_folding_drops_case_and_accents() {
        assert_eq!(fold_for_search("Zoë Ångström"), "zoe angstrom");
        assert_eq!(
            fold_for_search("Nguyễn Ó Súilleabháin"),
            "nguyen o suilleabhain"
        );
        assert_eq!(fold_for_search("O'BRIEN"), "o'brien");
        // Precomposed and decomposed input fold alike.
        assert_eq!(fold_for_search("Zoe\u{308}"), fold_for_search("Zo\u{eb}"));
    }
}
