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
        Uuid::parse_str(s)
            .map(LetterId)
            .map_err(|_| ParseError::new("letter_id", "is not a valid letter id"))
    }
}

/// 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterTitle(String);

impl LetterTitle {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let t = raw.trim();
        let n = t.chars().count();
        if n == 0 || n > 200 {
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

/// Markdown, 1–100,000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    #[error("this letter is already final")]
    AlreadyFinal,
    #[error("a letter marked entered-in-error cannot change")]
    EnteredInError,
    #[error("only a final letter can be amended; edit the draft instead")]
    AmendDraft,
    #[error("this letter has already been amended; amend the newest version")]
    AlreadySuperseded,
}

impl LetterStatus {
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

    pub fn finalise(self) -> Result<LetterStatus, LetterRuleError> {
        match self {
            LetterStatus::Draft => Ok(LetterStatus::Final),
            LetterStatus::Final => Err(LetterRuleError::AlreadyFinal),
            LetterStatus::EnteredInError => Err(LetterRuleError::EnteredInError),
        }
    }

    pub fn mark_entered_in_error(self) -> Result<LetterStatus, LetterRuleError> {
        match self {
            LetterStatus::EnteredInError => Err(LetterRuleError::EnteredInError),
            _ => Ok(LetterStatus::EnteredInError),
        }
    }

    pub fn can_amend(self, superseded: bool) -> Result<(), LetterRuleError> {
        match (self, superseded) {
            (LetterStatus::Final, false) => Ok(()),
            (LetterStatus::Final, true) => Err(LetterRuleError::AlreadySuperseded),
            (LetterStatus::Draft, _) => Err(LetterRuleError::AmendDraft),
            (LetterStatus::EnteredInError, _) => Err(LetterRuleError::EnteredInError),
        }
    }

    /// FHIR `DocumentReference.status`.
    pub fn fhir_status(self, superseded: bool) -> &'static str {
        match (self, superseded) {
            (LetterStatus::EnteredInError, _) => "entered-in-error",
            (_, true) => "superseded",
            _ => "current",
        }
    }

    /// FHIR `DocumentReference.docStatus`.
    pub fn fhir_doc_status(self, amends: bool) -> &'static str {
        match (self, amends) {
            (LetterStatus::Draft, _) => "preliminary",
            (_, true) => "amended",
            _ => "final",
        }
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

    #[test]
    fn drafts_edit_and_finalise_finals_are_amended_never_edited() {
        use LetterStatus::*;
        assert!(Draft.can_edit() && !Final.can_edit() && !EnteredInError.can_edit());
        assert_eq!(Draft.finalise(), Ok(Final));
        assert_eq!(Final.finalise(), Err(LetterRuleError::AlreadyFinal));
        assert_eq!(Final.can_amend(false), Ok(()));
        assert_eq!(
            Final.can_amend(true),
            Err(LetterRuleError::AlreadySuperseded)
        );
        assert_eq!(Draft.can_amend(false), Err(LetterRuleError::AmendDraft));
        assert_eq!(Final.mark_entered_in_error(), Ok(EnteredInError));
        assert_eq!(Draft.mark_entered_in_error(), Ok(EnteredInError));
        assert!(EnteredInError.mark_entered_in_error().is_err());
    }

    #[test]
    fn titles_and_bodies_are_bounded() {
        assert!(LetterTitle::parse("  ").is_err());
        assert!(LetterTitle::parse(&"x".repeat(201)).is_err());
        assert!(LetterTitle::parse("two\nlines").is_err());
        assert_eq!(
            LetterTitle::parse(" Clinic letter ").unwrap().as_str(),
            "Clinic letter"
        );
        assert!(LetterBody::parse("").is_err());
        assert!(LetterBody::parse(&"x".repeat(100_001)).is_err());
        assert!(LetterBody::parse("Line one\n\nLine two\twith tab").is_ok());
    }

    #[test]
    fn fhir_statuses_follow_the_letter() {
        assert_eq!(LetterStatus::Final.fhir_status(true), "superseded");
        assert_eq!(
            LetterStatus::EnteredInError.fhir_status(false),
            "entered-in-error"
        );
        assert_eq!(LetterStatus::Final.fhir_doc_status(true), "amended");
        assert_eq!(LetterStatus::Draft.fhir_doc_status(false), "preliminary");
    }
}
