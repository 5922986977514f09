//! Users, usernames and roles.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Timestamp;

/// Why a value was refused at the edge, naming the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ParseError {
    pub field: &'static str,
    pub message: String,
}

impl ParseError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// A user's id: a random UUID, never sequential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for UserId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(UserId)
            .map_err(|_| ParseError::new("id", "is not a valid id"))
    }
}

/// A login name: 3–64 characters of lowercase letters, digits, `.`, `_` or `-`,
/// starting with a letter or digit. Input is folded to lowercase, so `Alice`
/// and `alice` are one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let name = raw.trim().to_lowercase();
        let len = name.chars().count();
        if !(3..=64).contains(&len) {
            return Err(ParseError::new(
                "username",
                "must be between 3 and 64 characters",
            ));
        }
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        if !first_ok || !rest_ok {
            return Err(ParseError::new(
                "username",
                "may contain only letters, digits, '.', '_' and '-', and must start with a letter or digit",
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every user has exactly one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Patient,
    Clinician,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Patient, Role::Clinician, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Clinician => "clinician",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "patient" => Ok(Role::Patient),
            "clinician" => Ok(Role::Clinician),
            "admin" => Ok(Role::Admin),
            _ => Err(ParseError::new(
                "role",
                "must be one of patient, clinician, admin",
            )),
        }
    }
}

/// An account as the rest of the system sees it. The password hash is not
/// part of it: only the store and the login use case ever touch that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    pub username: Username,
    pub role: Role,
    pub active: bool,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_folded_and_checked() {
        assert_eq!(Username::parse(" Alice ").map(|u| u.0), Ok("alice".into()));
        assert!(Username::parse("al").is_err());
        assert!(Username::parse("-alice").is_err());
        assert!(Username::parse("alice smith").is_err());
        assert!(Username::parse("dr.jones_2-x").is_ok());
    }

    #[test]
    fn roles_parse_from_their_names_only() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("superuser".parse::<Role>().is_err());
    }
}
