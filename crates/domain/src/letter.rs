//! Clinical letters: their parts and the rules of their status.
//!
//! draft ──finalise──▶ final ──(amended by a new letter)──▶ final, superseded
//!   │                   │
//!   └──────────────┬────┘
//!                  ▼
//!          entered-in-error (kept, with the reason; never deleted)

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ParseError;

/// A letter's id: a random UUID, never sequential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LetterId(pub Uuid);

impl fmt::Display for LetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for LetterId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(LetterId)
            .map_err(|_| ParseError::new("letter_id", "is not a valid letter id"))
    }
}

/// 1–200 characters after trimming, one line, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LetterTitle(String);

impl LetterTitle {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let t = raw.trim();
        let n = t.chars().count();
        if n == 0 || n > Self::MAX_CHARS {
            return Err(ParseError::new("title", "must be 1 to 200 characters"));
        }
        if t.chars().any(char::is_control) {
            return Err(ParseError::new("title", "must be one line of text"));
        }
        Ok(Self(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Markdown, 1–100,000 characters, not only whitespace; kept as written.
/// Tabs and line breaks are allowed, other control characters are not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LetterBody(String);

impl LetterBody {
    pub const MAX_CHARS: usize = 100_000;

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let n = raw.chars().count();
        if raw.trim().is_empty() || n > Self::MAX_CHARS {
            return Err(ParseError::new(
                "body",
                "must be 1 to 100000 characters of text",
            ));
        }
        if raw
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(ParseError::new(
                "body",
                "must not contain control characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a letter is in its life. Whether a final letter has been amended
/// (superseded) is not a status of its own: it is the existence of a newer
/// letter that amends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LetterStatus {
    #[serde(rename = "draft")]
    Draft,
    #[serde(rename = "final")]
    Final,
    #[serde(rename = "entered-in-error")]
    EnteredInError,
}

/// Why a status change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LetterRuleError {
    #[error("a final letter cannot be edited; write an amendment")]
    FinalNotEditable,
    #[error("this letter is already final")]
    AlreadyFinal,
    #[error("a letter marked entered-in-error cannot be changed")]
    EnteredInError,
    #[error("only a final letter can be amended; edit the draft instead")]
    AmendDraft,
    #[error("this letter has already been amended; amend the newest version")]
    AlreadySuperseded,
}

impl LetterStatus {
    pub const ALL: [LetterStatus; 3] = [
        LetterStatus::Draft,
        LetterStatus::Final,
        LetterStatus::EnteredInError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LetterStatus::Draft => "draft",
            LetterStatus::Final => "final",
            LetterStatus::EnteredInError => "entered-in-error",
        }
    }

    /// Only drafts change in place.
    pub fn can_edit(self) -> bool {
        self == LetterStatus::Draft
    }

    /// [`LetterStatus::can_edit`], with the reason when it cannot.
    pub fn check_edit(self) -> Result<(), LetterRuleError> {
        match self {
            LetterStatus::Draft => Ok(()),
            LetterStatus::Final => Err(LetterRuleError::FinalNotEditable),
            LetterStatus::EnteredInError => Err(LetterRuleError::EnteredInError),
        }
    }

    /// draft → final.
    pub fn finalise(self) -> Result<LetterStatus, LetterRuleError> {
        match self {
            LetterStatus::Draft => Ok(LetterStatus::Final),
            LetterStatus::Final => Err(LetterRuleError::AlreadyFinal),
            LetterStatus::EnteredInError => Err(LetterRuleError::EnteredInError),
        }
    }

    /// draft or final → entered-in-error (the letter is kept, never deleted).
    pub fn mark_entered_in_error(self) -> Result<LetterStatus, LetterRuleError> {
        match self {
            LetterStatus::EnteredInError => Err(LetterRuleError::EnteredInError),
            _ => Ok(LetterStatus::EnteredInError),
        }
    }

    /// Whether a new letter may amend this one: only a final letter that no
    /// other letter has amended yet.
    pub fn can_amend(self, superseded: bool) -> Result<(), LetterRuleError> {
        match (self, superseded) {
            (LetterStatus::Final, false) => Ok(()),
            (LetterStatus::Final, true) => Err(LetterRuleError::AlreadySuperseded),
            (LetterStatus::Draft, _) => Err(LetterRuleError::AmendDraft),
            (LetterStatus::EnteredInError, _) => Err(LetterRuleError::EnteredInError),
        }
    }

    /// FHIR `DocumentReference.status`: `current`, `superseded` (amended by
    /// a newer letter) or `entered-in-error`.
    pub fn fhir_status(self, superseded: bool) -> &'static str {
        match (self, superseded) {
            (LetterStatus::EnteredInError, _) => "entered-in-error",
            (_, true) => "superseded",
            _ => "current",
        }
    }

    /// FHIR `DocumentReference.docStatus`: `preliminary` for a draft,
    /// `amended` for a letter that amends another, else `final`.
    pub fn fhir_doc_status(self, amends: bool) -> &'static str {
        match (self, amends) {
            (LetterStatus::Draft, _) => "preliminary",
            (_, true) => "amended",
            _ => "final",
        }
    }
}

impl fmt::Display for LetterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LetterStatus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "draft" => Ok(LetterStatus::Draft),
            "final" => Ok(LetterStatus::Final),
            "entered-in-error" => Ok(LetterStatus::EnteredInError),
            _ => Err(ParseError::new(
                "status",
                "must be draft, final or entered-in-error",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LetterStatus::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for st in LetterStatus::ALL {
            assert_eq!(st.as_str().parse::<LetterStatus>(), Ok(st));
            assert_eq!(st.to_string(), st.as_str());
            assert_eq!(
                serde_json::to_value(st).unwrap(),
                serde_json::json!(st.as_str())
            );
        }
        assert_eq!("Final".parse::<LetterStatus>().unwrap_err().field, "status");
        assert!("superseded".parse::<LetterStatus>().is_err());
    }

    #[test]
    fn only_drafts_are_edited() {
        assert!(Draft.can_edit() && !Final.can_edit() && !EnteredInError.can_edit());
        assert_eq!(Draft.check_edit(), Ok(()));
        let e = Final.check_edit().unwrap_err();
        assert_eq!(e, LetterRuleError::FinalNotEditable);
        assert_eq!(
            e.to_string(),
            "a final letter cannot be edited; write an amendment"
        );
        assert_eq!(
            EnteredInError.check_edit(),
            Err(LetterRuleError::EnteredInError)
        );
    }

    #[test]
    fn drafts_are_finalised_once() {
        assert_eq!(Draft.finalise(), Ok(Final));
        assert_eq!(Final.finalise(), Err(LetterRuleError::AlreadyFinal));
        assert_eq!(
            EnteredInError.finalise(),
            Err(LetterRuleError::EnteredInError)
        );
    }

    #[test]
    fn only_final_letters_not_yet_superseded_are_amended() {
        assert_eq!(Final.can_amend(false), Ok(()));
        assert_eq!(
            Final.can_amend(true),
            Err(LetterRuleError::AlreadySuperseded)
        );
        assert_eq!(Draft.can_amend(false), Err(LetterRuleError::AmendDraft));
        assert_eq!(
            EnteredInError.can_amend(false),
            Err(LetterRuleError::EnteredInError)
        );
    }

    #[test]
    fn any_letter_can_be_marked_entered_in_error_once() {
        assert_eq!(Final.mark_entered_in_error(), Ok(EnteredInError));
        assert_eq!(Draft.mark_entered_in_error(), Ok(EnteredInError));
        assert_eq!(
            EnteredInError.mark_entered_in_error(),
            Err(LetterRuleError::EnteredInError)
        );
    }

    #[test]
    fn titles_and_bodies_are_bounded() {
        let title = |s: &str| LetterTitle::parse(s).map_err(|e| e.field);
        assert_eq!(title("  "), Err("title"));
        assert!(title(&"x".repeat(201)).is_err());
        assert!(title(&"é".repeat(200)).is_ok());
        assert!(title("two\nlines").is_err());
        assert!(title("bell\u{7}").is_err());
        assert_eq!(
            LetterTitle::parse(" Clinic letter ").unwrap().as_str(),
            "Clinic letter"
        );
        let body = |s: &str| LetterBody::parse(s).map_err(|e| e.field);
        assert_eq!(body(""), Err("body"));
        assert!(body(" \n\t ").is_err());
        assert!(body(&"x".repeat(100_001)).is_err());
        assert!(body(&"é".repeat(100_000)).is_ok());
        assert!(body("nul\u{0}").is_err());
        let b = LetterBody::parse("# Heading\r\n\nLine two\twith tab\n").unwrap();
        assert_eq!(b.as_str(), "# Heading\r\n\nLine two\twith tab\n");
    }

    #[test]
    fn ids_parse_and_print_lowercase() {
        let id: LetterId = "5B1F8E2C-3F4A-4D6E-9A7B-1C2D3E4F5A6B".parse().unwrap();
        assert_eq!(id.to_string(), "5b1f8e2c-3f4a-4d6e-9a7b-1c2d3e4f5a6b");
        assert!("nope".parse::<LetterId>().is_err());
    }

    #[test]
    fn fhir_statuses_follow_the_letter() {
        assert_eq!(Draft.fhir_status(false), "current");
        assert_eq!(Final.fhir_status(false), "current");
        assert_eq!(LetterStatus::fhir_status(Final, true), "superseded");
        assert_eq!(EnteredInError.fhir_status(false), "entered-in-error");
        assert_eq!(EnteredInError.fhir_status(true), "entered-in-error");
        assert_eq!(Draft.fhir_doc_status(false), "preliminary");
        assert_eq!(Draft.fhir_doc_status(true), "preliminary");
        assert_eq!(Final.fhir_doc_status(false), "final");
        assert_eq!(LetterStatus::fhir_doc_status(Final, true), "amended");
    }
}
