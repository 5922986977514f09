//! Clinical letters: drafts, final letters, amendments, entered-in-error.

use domain::access::{Action, Scope};
use domain::letter::{LetterBody, LetterId, LetterStatus, LetterTitle};
use domain::{Timestamp, User};
use serde::Serialize;
use store::{LetterRow, LetterWrite};

use crate::access::{Target, entry};
use crate::{App, AppError, AppResult};

/// Letters per page.
pub const LETTER_PAGE: i64 = 20;

#[derive(Debug, Clone, Serialize)]
pub struct Author {
    pub id: String,
    pub username: String,
}

/// A letter as the API shows it. `body` is Markdown; the web layer renders
/// it to HTML only through a sanitiser.
#[derive(Debug, Clone, Serialize)]
pub struct LetterView {
    pub id: String,
    pub patient_id: String,
    pub version: i64,
    pub status: String,
    pub title: String,
    pub body: String,
    pub author: Author,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finalised_at: Option<Timestamp>,
    pub amends: Option<String>,
    pub superseded_by: Option<String>,
    pub error_reason: Option<String>,
}

impl From<LetterRow> for LetterView {
    fn from(r: LetterRow) -> Self {
        Self {
            id: r.id,
            patient_id: r.patient_id,
            version: r.version,
            status: r.status,
            title: r.title,
            body: r.body,
            author: Author {
                id: r.author_id,
                username: r.author_username,
            },
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
            finalised_at: r.finalised_at.map(Timestamp),
            amends: r.amends,
            superseded_by: r.superseded_by,
            error_reason: r.error_reason,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LetterPage {
    pub items: Vec<LetterView>,
    pub next: Option<u32>,
}

/// What a clinician writes.
#[derive(Debug, Clone)]
pub struct LetterDraft {
    pub title: String,
    pub body: String,
    pub finalise: bool,
}

fn status_of(row: &LetterRow) -> AppResult<LetterStatus> {
    row.status
        .parse()
        .map_err(|_| AppError::Internal(format!("letter {} has status {:?}", row.id, row.status)))
}

fn rule(e: domain::letter::LetterRuleError) -> AppError {
    AppError::Conflict(e.to_string())
}

/// Why a letter that is not a draft is not edited.
pub const ONLY_DRAFTS_ARE_EDITED: &str =
    "only a draft can be edited; a final letter is corrected by an amendment";

impl App {
    fn letter_target<'a>(
        action: &'static str,
        patient_id: &'a str,
        letter_id: Option<&'a str>,
    ) -> Target<'a> {
        Target {
            action,
            resource_type: "letter",
            resource_id: letter_id,
            patient_id: Some(patient_id),
        }
    }

    async fn require_patient(&self, patient_id: &str) -> AppResult<()> {
        self.store
            .patient(patient_id)
            .await?
            .map(|_| ())
            .ok_or(AppError::NotFound)
    }

    /// Writes a new letter for the patient: a draft, or final at once. The
    /// author and the time are the server's, never the request's.
    pub async fn create_letter(
        &self,
        user: &User,
        patient_id: &str,
        draft: LetterDraft,
    ) -> AppResult<LetterView> {
        let target = Self::letter_target("create", patient_id, None);
        self.authorise(user, Action::WriteLetters, &target).await?;
        let write = self.new_letter(user, patient_id, &draft, None)?;
        let logged = Self::letter_target("create", patient_id, Some(&write.id));
        // A patient that does not exist is NotFound from the store, with
        // nothing written.
        let stored = self
            .store
            .create_letter(&write, self.now(), &[entry(user, &logged, "ok")])
            .await?;
        Ok(LetterView::from(stored))
    }

    fn new_letter(
        &self,
        user: &User,
        patient_id: &str,
        draft: &LetterDraft,
        amends: Option<&str>,
    ) -> AppResult<LetterWrite> {
        let title = LetterTitle::parse(&draft.title)?;
        let body = LetterBody::parse(&draft.body)?;
        let status = if draft.finalise {
            LetterStatus::Final
        } else {
            LetterStatus::Draft
        };
        Ok(LetterWrite {
            id: LetterId(crypto::random::uuid_v4()).to_string(),
            patient_id: patient_id.to_owned(),
            version: 1,
            status: status.as_str().to_owned(),
            title: title.as_str().to_owned(),
            body: body.as_str().to_owned(),
            author_id: user.id.to_string(),
            finalised_at: draft.finalise.then(|| self.now().millis()),
            amends: amends.map(str::to_owned),
            error_reason: None,
        })
    }

    async fn letter_for_change(
        &self,
        user: &User,
        action: &'static str,
        patient_id: &str,
        letter_id: &str,
        expected_version: Option<i64>,
    ) -> AppResult<(LetterRow, i64)> {
        let target = Self::letter_target(action, patient_id, Some(letter_id));
        self.authorise(user, Action::WriteLetters, &target).await?;
        let expected = expected_version.ok_or(AppError::VersionRequired)?;
        let row = self
            .store
            .letter(patient_id, letter_id)
            .await?
            .ok_or(AppError::NotFound)?;
        if row.version != expected {
            return Err(AppError::VersionConflict {
                current: row.version,
            });
        }
        Ok((row, expected))
    }

    async fn save_change(
        &self,
        user: &User,
        action: &'static str,
        row: LetterRow,
        expected: i64,
        change: impl FnOnce(&mut LetterWrite),
    ) -> AppResult<LetterView> {
        let mut write = LetterWrite {
            id: row.id.clone(),
            patient_id: row.patient_id.clone(),
            version: expected + 1,
            status: row.status.clone(),
            title: row.title.clone(),
            body: row.body.clone(),
            author_id: row.author_id.clone(),
            finalised_at: row.finalised_at,
            amends: row.amends.clone(),
            error_reason: row.error_reason.clone(),
        };
        change(&mut write);
        let target = Self::letter_target(action, &row.patient_id, Some(&row.id));
        self.store
            .update_letter(&write, expected, self.now(), &[entry(user, &target, "ok")])
            .await?;
        self.read_letter_unlogged(&row.patient_id, &row.id).await
    }

    /// Edits a draft (final letters are immutable).
    pub async fn edit_letter(
        &self,
        user: &User,
        patient_id: &str,
        letter_id: &str,
        expected_version: Option<i64>,
        draft: LetterDraft,
    ) -> AppResult<LetterView> {
        let (row, expected) = self
            .letter_for_change(user, "update", patient_id, letter_id, expected_version)
            .await?;
        let status = status_of(&row)?;
        if !status.can_edit() {
            return Err(AppError::Conflict(ONLY_DRAFTS_ARE_EDITED.to_owned()));
        }
        let title = LetterTitle::parse(&draft.title)?;
        let body = LetterBody::parse(&draft.body)?;
        let next = if draft.finalise {
            status.finalise().map_err(rule)?
        } else {
            status
        };
        let now = self.now().millis();
        self.save_change(user, "update", row, expected, |w| {
            w.title = title.as_str().to_owned();
            w.body = body.as_str().to_owned();
            w.status = next.as_str().to_owned();
            if next == LetterStatus::Final {
                w.finalised_at = Some(now);
            }
        })
        .await
    }

    /// Makes a draft final; from then on it cannot change.
    pub async fn finalise_letter(
        &self,
        user: &User,
        patient_id: &str,
        letter_id: &str,
        expected_version: Option<i64>,
    ) -> AppResult<LetterView> {
        let (row, expected) = self
            .letter_for_change(user, "finalise", patient_id, letter_id, expected_version)
            .await?;
        let next = status_of(&row)?.finalise().map_err(rule)?;
        let now = self.now().millis();
        self.save_change(user, "finalise", row, expected, |w| {
            w.status = next.as_str().to_owned();
            w.finalised_at = Some(now);
        })
        .await
    }

    /// Marks a letter made in error; it stays, marked, with the reason.
    pub async fn mark_letter_entered_in_error(
        &self,
        user: &User,
        patient_id: &str,
        letter_id: &str,
        expected_version: Option<i64>,
        reason: &str,
    ) -> AppResult<LetterView> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 1000 {
            return Err(AppError::invalid(
                "reason",
                "say why the letter was made in error (1 to 1000 characters)",
            ));
        }
        let (row, expected) = self
            .letter_for_change(
                user,
                "entered_in_error",
                patient_id,
                letter_id,
                expected_version,
            )
            .await?;
        let next = status_of(&row)?.mark_entered_in_error().map_err(rule)?;
        self.save_change(user, "entered_in_error", row, expected, |w| {
            w.status = next.as_str().to_owned();
            w.error_reason = Some(reason.to_owned());
        })
        .await
    }

    /// Corrects a final letter with a new one that amends it; the old one is
    /// kept and shown as superseded.
    pub async fn amend_letter(
        &self,
        user: &User,
        patient_id: &str,
        letter_id: &str,
        draft: LetterDraft,
    ) -> AppResult<LetterView> {
        let target = Self::letter_target("amend", patient_id, Some(letter_id));
        self.authorise(user, Action::WriteLetters, &target).await?;
        let old = self
            .store
            .letter(patient_id, letter_id)
            .await?
            .ok_or(AppError::NotFound)?;
        status_of(&old)?
            .can_amend(old.superseded_by.is_some())
            .map_err(rule)?;
        let write = self.new_letter(user, patient_id, &draft, Some(letter_id))?;
        let logged = Self::letter_target("amend", patient_id, Some(&write.id));
        self.store
            .amend_letter(&write, letter_id, self.now(), &[entry(user, &logged, "ok")])
            .await
            .map_err(|e| match e {
                store::StoreError::VersionConflict { .. } => AppError::Conflict(
                    "this letter has already been amended; amend the newest version".to_owned(),
                ),
                other => other.into(),
            })?;
        self.read_letter_unlogged(patient_id, &write.id).await
    }

    async fn read_letter_unlogged(
        &self,
        patient_id: &str,
        letter_id: &str,
    ) -> AppResult<LetterView> {
        self.store
            .letter(patient_id, letter_id)
            .await?
            .map(LetterView::from)
            .ok_or(AppError::NotFound)
    }

    /// Reads one letter. A letter id under another patient is not found; a
    /// patient sees only their own final letters.
    pub async fn letter(
        &self,
        user: &User,
        patient_id: &str,
        letter_id: &str,
    ) -> AppResult<LetterView> {
        let target = Self::letter_target("read", patient_id, Some(letter_id));
        let scope = self.authorise(user, Action::ReadLetters, &target).await?;
        let row = self.store.letter(patient_id, letter_id).await?;
        self.show_letter(user, &target, scope, row).await
    }

    /// The letter if `scope` lets the user see it (a patient: final letters
    /// only), else not found; either way the read is in the access log.
    async fn show_letter(
        &self,
        user: &User,
        target: &Target<'_>,
        scope: Scope,
        row: Option<LetterRow>,
    ) -> AppResult<LetterView> {
        let visible = row.filter(|r| scope == Scope::All || r.status == "final");
        let outcome = if visible.is_some() { "ok" } else { "not_found" };
        self.store
            .record_access(self.now(), &[entry(user, target, outcome)])
            .await?;
        visible.map(LetterView::from).ok_or(AppError::NotFound)
    }

    /// Reads one letter by its id alone (FHIR `DocumentReference/{id}`),
    /// under the same rules as [`App::letter`]: a patient sees only their
    /// own final letters, and anything else they ask for is not found.
    pub async fn letter_by_id(&self, user: &User, letter_id: &str) -> AppResult<LetterView> {
        let row = self.store.letter_by_id(letter_id).await?;
        let patient_id = row.as_ref().map(|r| r.patient_id.clone());
        let target = Target {
            action: "read",
            resource_type: "letter",
            resource_id: Some(letter_id),
            patient_id: patient_id.as_deref(),
        };
        let scope = self.authorise(user, Action::ReadLetters, &target).await?;
        self.show_letter(user, &target, scope, row).await
    }

    /// A patient's letters, newest first, [`LETTER_PAGE`] to a page.
    pub async fn letters(&self, user: &User, patient_id: &str, page: u32) -> AppResult<LetterPage> {
        self.letters_sized(user, patient_id, page, LETTER_PAGE)
            .await
    }

    /// A patient's letters, newest first, `size` (1 to 100) to a page.
    pub async fn letters_sized(
        &self,
        user: &User,
        patient_id: &str,
        page: u32,
        size: i64,
    ) -> AppResult<LetterPage> {
        let size = size.clamp(1, crate::MAX_PAGE_SIZE);
        let target = Self::letter_target("list", patient_id, None);
        let scope = self.authorise(user, Action::ReadLetters, &target).await?;
        self.require_patient(patient_id).await?;
        let statuses: &[&str] = if scope == Scope::All { &[] } else { &["final"] };
        let page = page.max(1);
        let mut rows = self
            .store
            .list_letters(patient_id, statuses, size + 1, i64::from(page - 1) * size)
            .await?;
        let more = rows.len() as i64 > size;
        rows.truncate(usize::try_from(size).unwrap_or(20));
        self.store
            .record_access(self.now(), &[entry(user, &target, "ok")])
            .await?;
        Ok(LetterPage {
            items: rows.into_iter().map(LetterView::from).collect(),
            next: more.then_some(page + 1),
        })
    }
}
