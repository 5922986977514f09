//! Authorisation by the role matrix (`domain::access`) and the access log.

use domain::access::{Action, Scope, scope};
use domain::{Role, User};
use store::AccessEntry;

use crate::{App, AppError, AppResult};

/// What an access-log row is about.
pub(crate) struct Target<'a> {
    pub action: &'static str,
    pub resource_type: &'static str,
    pub resource_id: Option<&'a str>,
    pub patient_id: Option<&'a str>,
}

pub(crate) fn entry(user: &User, t: &Target<'_>, outcome: &str) -> AccessEntry {
    AccessEntry {
        user_id: Some(user.id.to_string()),
        username: user.username.to_string(),
        role: user.role.as_str().to_owned(),
        action: t.action.to_owned(),
        resource_type: t.resource_type.to_owned(),
        resource_id: t.resource_id.map(str::to_owned),
        patient_id: t.patient_id.map(str::to_owned),
        outcome: outcome.to_owned(),
    }
}

impl App {
    /// Checks `action` on `patient_id` (or on no record) for `user`. A
    /// refusal is written to the access log and answered `Forbidden`, or
    /// `NotFound` when a patient asks for a record that is not their own
    /// (so they cannot learn which records exist).
    pub(crate) async fn authorise(
        &self,
        user: &User,
        action: Action,
        target: &Target<'_>,
    ) -> AppResult<Scope> {
        let s = scope(user.role, action);
        let refusal = match s {
            Scope::All => None,
            Scope::None => Some(AppError::Forbidden),
            Scope::OwnRecord => {
                let own = self.store.linked_patient(&user.id.to_string()).await?;
                match (own, target.patient_id) {
                    (Some(own), Some(asked)) if own == asked => None,
                    _ => Some(AppError::NotFound),
                }
            }
        };
        match refusal {
            None => Ok(s),
            Some(e) => {
                self.store
                    .record_access(self.now(), &[entry(user, target, "denied")])
                    .await?;
                Err(e)
            }
        }
    }

    /// The patient record linked to a patient account, if any.
    pub async fn linked_patient(&self, user: &User) -> AppResult<Option<String>> {
        if user.role != Role::Patient {
            return Ok(None);
        }
        Ok(self.store.linked_patient(&user.id.to_string()).await?)
    }
}
