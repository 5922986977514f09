//! Who may do what: the role matrix, in one place.
//!
//! | action                         | patient                | clinician | admin |
//! |--------------------------------|------------------------|-----------|-------|
//! | search/list patients           | no                     | yes       | no    |
//! | read demographics              | own record only        | yes       | no    |
//! | change demographics            | no                     | yes       | no    |
//! | write/amend letters            | no                     | yes       | no    |
//! | read letters                   | own final letters only | yes       | no    |
//! | read a patient's access log    | no                     | yes       | no    |
//! | manage users, link patients    | no                     | no        | yes   |

use serde::Serialize;

use crate::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    SearchPatients,
    ReadDemographics,
    ChangeDemographics,
    WriteLetters,
    ReadLetters,
    ReadAccessLog,
    ManageUsers,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::SearchPatients,
        Action::ReadDemographics,
        Action::ChangeDemographics,
        Action::WriteLetters,
        Action::ReadLetters,
        Action::ReadAccessLog,
        Action::ManageUsers,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::SearchPatients => "search_patients",
            Action::ReadDemographics => "read_demographics",
            Action::ChangeDemographics => "change_demographics",
            Action::WriteLetters => "write_letters",
            Action::ReadLetters => "read_letters",
            Action::ReadAccessLog => "read_access_log",
            Action::ManageUsers => "manage_users",
        }
    }
}

/// How far a role's permission for an action reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Not at all.
    None,
    /// Only the patient record linked to the account (and, for letters,
    /// only final ones).
    OwnRecord,
    /// Every record.
    All,
}

/// The role matrix.
pub fn scope(role: Role, action: Action) -> Scope {
    use Action::*;
    match (role, action) {
        (Role::Clinician, SearchPatients | ReadDemographics | ChangeDemographics) => Scope::All,
        (Role::Clinician, WriteLetters | ReadLetters | ReadAccessLog) => Scope::All,
        (Role::Clinician, ManageUsers) => Scope::None,
        (Role::Patient, ReadDemographics | ReadLetters) => Scope::OwnRecord,
        (Role::Patient, _) => Scope::None,
        (Role::Admin, ManageUsers) => Scope::All,
        (Role::Admin, _) => Scope::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clinicians_touch_clinical_records_and_only_admins_manage_users() {
        for action in Action::ALL {
            let clinician = scope(Role::Clinician, action);
            let admin = scope(Role::Admin, action);
            if action == Action::ManageUsers {
                assert_eq!((clinician, admin), (Scope::None, Scope::All));
            } else {
                assert_eq!((clinician, admin), (Scope::All, Scope::None), "{action:?}");
            }
        }
    }

    #[test]
    fn patients_reach_only_their_own_demographics_and_letters() {
        for action in Action::ALL {
            let expected = match action {
                Action::ReadDemographics | Action::ReadLetters => Scope::OwnRecord,
                _ => Scope::None,
            };
            assert_eq!(scope(Role::Patient, action), expected, "{action:?}");
        }
    }
}
