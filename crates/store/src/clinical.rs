//! Patients, letters and the access log: the clinical half of the store.

use async_trait::async_trait;
use domain::{NewSecurityEvent, Timestamp};

use crate::Result;

/// A patient version about to be written: the searchable columns and the
/// FHIR resource as JSON text. The app computes every field.
#[derive(Debug, Clone)]
pub struct PatientWrite {
    pub id: String,
    pub version: i64,
    pub nhs_number: Option<String>,
    pub family_folded: String,
    pub given_folded: String,
    /// Every folded word of the family and given names.
    pub name_tokens: Vec<String>,
    pub display_name: String,
    pub birth_date: Option<String>,
    pub gender: Option<String>,
    pub active: bool,
    pub resource: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PatientRow {
    pub id: String,
    pub version: i64,
    pub nhs_number: Option<String>,
    pub display_name: String,
    pub birth_date: Option<String>,
    pub gender: Option<String>,
    pub active: bool,
    pub resource: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The patient whose id is `$1`.
pub(crate) const PATIENT_SQL: &str = "SELECT id, version, nhs_number, display_name, \
     birth_date, gender, active, resource, created_at, updated_at FROM patients WHERE id = $1";

crate::records::keyed_row!(PatientRow {
    id,
    version,
    nhs_number,
    display_name,
    birth_date,
    gender,
    active,
    resource,
    created_at,
    updated_at,
});

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PatientVersionRow {
    pub version: i64,
    pub resource: String,
    pub recorded_at: i64,
    pub recorded_by: String,
}

/// How to find patients. Every name term must prefix-match one of the
/// patient's name words; `given_prefix` must prefix-match one given name;
/// the other criteria are exact or, for `birth_date_bounds`, comparisons of
/// the stored `YYYY[-MM[-DD]]` text. All criteria must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientSearch {
    /// When not empty, the patient's id is one of these.
    pub ids: Vec<String>,
    pub name_terms: Vec<String>,
    pub family_prefix: Option<String>,
    pub given_prefix: Option<String>,
    /// Folded family name and first given name the patient's must equal
    /// (their first given name; later given names may differ): the
    /// duplicate check.
    pub same_name: Option<(String, String)>,
    pub nhs_number: Option<String>,
    /// Only patients without an NHS number.
    pub without_nhs_number: bool,
    pub birth_date: Option<String>,
    pub birth_date_bounds: Vec<(Cmp, String)>,
    pub gender: Option<String>,
    pub include_inactive: bool,
    pub limit: i64,
    pub offset: i64,
}

/// A write of demographics that the possible-duplicate check (safety file,
/// H008) may refuse: the app's search for registered patients who may be
/// the person written, which the write repeats inside its own transaction
/// (where such writes are made one at a time), and what the user said they
/// checked. The store decides nothing about who may be a duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateCheck {
    pub search: PatientSearch,
    /// `Some` of the ids of the records the user checked: any other record
    /// found (but the patient written) refuses the write; none checked, any
    /// found does. `None` when the user said they checked whatever is found.
    pub checked: Option<Vec<String>>,
}

impl DuplicateCheck {
    /// Whether `found` (possible duplicates, the patient written left out)
    /// refuses the write.
    pub fn refuses(&self, found: &[PatientRow]) -> bool {
        self.checked
            .as_ref()
            .is_some_and(|checked| found.iter().any(|r| !checked.contains(&r.id)))
    }
}

/// A comparison in a search bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Le,
    Ge,
    Gt,
}

impl Cmp {
    /// The SQL operator: one of four fixed strings, never input.
    pub fn sql(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Ge => ">=",
            Cmp::Gt => ">",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LetterRow {
    pub id: String,
    pub patient_id: String,
    pub version: i64,
    pub status: String,
    pub title: String,
    pub body: String,
    pub author_id: String,
    pub author_username: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub finalised_at: Option<i64>,
    pub amends: Option<String>,
    pub superseded_by: Option<String>,
    pub error_reason: Option<String>,
}

impl LetterRow {
    /// Whether this row holds what `write` wrote (not merely its id).
    pub(crate) fn is_written_from(&self, write: &LetterWrite) -> bool {
        (
            &self.patient_id,
            self.version,
            &self.status,
            &self.title,
            &self.body,
            &self.author_id,
            self.finalised_at,
            &self.amends,
            &self.error_reason,
        ) == (
            &write.patient_id,
            write.version,
            &write.status,
            &write.title,
            &write.body,
            &write.author_id,
            write.finalised_at,
            &write.amends,
            &write.error_reason,
        )
    }
}

/// A letter's new or changed state.
#[derive(Debug, Clone)]
pub struct LetterWrite {
    pub id: String,
    pub patient_id: String,
    pub version: i64,
    pub status: String,
    pub title: String,
    pub body: String,
    pub author_id: String,
    pub finalised_at: Option<i64>,
    pub amends: Option<String>,
    pub error_reason: Option<String>,
}

/// One access-log row: who did what to which record, with what outcome.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AccessEntry {
    pub user_id: Option<String>,
    pub username: String,
    pub role: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub patient_id: Option<String>,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AccessRow {
    pub id: i64,
    pub at: i64,
    pub user_id: Option<String>,
    pub username: String,
    pub role: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub patient_id: Option<String>,
    pub outcome: String,
}

/// An API token as stored (its hash only).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ApiTokenRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    #[serde(skip)]
    pub token_hash: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The role the account had when the token was issued: a token whose
    /// account's role is no longer this one is refused.
    #[serde(skip)]
    pub issued_role: String,
}

/// The API token whose hash is `$1`.
pub(crate) const API_TOKEN_SQL: &str = "SELECT id, user_id, name, token_hash, scope, \
     created_at, expires_at, last_used_at, revoked_at, issued_role FROM api_tokens \
     WHERE token_hash = $1";

crate::records::keyed_row!(ApiTokenRow {
    id,
    user_id,
    name,
    token_hash,
    scope,
    created_at,
    expires_at,
    last_used_at,
    revoked_at,
    issued_role,
});

#[async_trait]
pub trait ClinicalStore: Send + Sync {
    /// `Conflict("nhs_number")` when another patient has the NHS number;
    /// with `refuse_duplicates`, `PossibleDuplicates` (nothing written)
    /// when its check, repeated inside the transaction, finds any.
    async fn create_patient(
        &self,
        p: &PatientWrite,
        recorded_by: &str,
        now: Timestamp,
        access: &[AccessEntry],
        refuse_duplicates: Option<&DuplicateCheck>,
    ) -> Result<()>;
    /// Writes version `p.version`, which must follow `expected_version`;
    /// `VersionConflict` when the stored version differs, `NotFound` when
    /// there is no such patient, `Conflict("nhs_number")` on a duplicate,
    /// and `PossibleDuplicates` as [`ClinicalStore::create_patient`].
    async fn update_patient(
        &self,
        p: &PatientWrite,
        expected_version: i64,
        recorded_by: &str,
        now: Timestamp,
        access: &[AccessEntry],
        refuse_duplicates: Option<&DuplicateCheck>,
    ) -> Result<()>;
    async fn patient(&self, id: &str) -> Result<Option<PatientRow>>;
    /// Oldest first.
    async fn patient_versions(&self, id: &str) -> Result<Vec<PatientVersionRow>>;
    async fn search_patients(&self, q: &PatientSearch) -> Result<Vec<PatientRow>>;

    /// Writes a new letter with its access-log rows and returns it as
    /// stored; `NotFound` (nothing written) when the patient does not exist.
    async fn create_letter(
        &self,
        l: &LetterWrite,
        now: Timestamp,
        access: &[AccessEntry],
    ) -> Result<LetterRow>;
    /// Overwrites a letter whose stored version is `expected_version`.
    async fn update_letter(
        &self,
        l: &LetterWrite,
        expected_version: i64,
        now: Timestamp,
        access: &[AccessEntry],
    ) -> Result<()>;
    /// Creates `amendment` and marks `old_id` superseded by it, atomically;
    /// `VersionConflict` if `old_id` was already superseded.
    async fn amend_letter(
        &self,
        amendment: &LetterWrite,
        old_id: &str,
        now: Timestamp,
        access: &[AccessEntry],
    ) -> Result<()>;
    /// The letter only if it belongs to `patient_id`.
    async fn letter(&self, patient_id: &str, letter_id: &str) -> Result<Option<LetterRow>>;
    /// A letter by its id alone; the caller checks whose it is.
    async fn letter_by_id(&self, letter_id: &str) -> Result<Option<LetterRow>>;
    /// Newest first; `statuses` empty means all.
    async fn list_letters(
        &self,
        patient_id: &str,
        statuses: &[&str],
        limit: i64,
        offset: i64,
    ) -> Result<Vec<LetterRow>>;
    async fn count_letters(&self, patient_id: &str) -> Result<i64>;

    async fn record_access(&self, now: Timestamp, access: &[AccessEntry]) -> Result<()>;
    /// The highest access-log id at or below which every row is committed
    /// and no other can still appear (0 for an empty log). On PostgreSQL it
    /// is read under a SHARE lock, which waits for every transaction then
    /// writing the log (ids are given out before commit, and may commit out
    /// of order) and holds new ones back for that moment; SQLite's one
    /// writer commits rows in id order.
    async fn access_log_settled_up_to(&self) -> Result<i64>;
    /// Every record's access-log rows after `after_id`, oldest first (for
    /// sealing and verifying the log).
    async fn access_rows_after(&self, after_id: i64, limit: i64) -> Result<Vec<AccessRow>>;
    /// Newest first.
    async fn access_log(
        &self,
        patient_id: &str,
        limit: i64,
        before_id: Option<i64>,
    ) -> Result<Vec<AccessRow>>;

    /// Links (or unlinks) a patient account to the record it may read, with
    /// `events` appended to the security log in the same transaction.
    async fn link_patient_user(
        &self,
        user_id: &str,
        patient_id: Option<&str>,
        by: crate::ChangedBy,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<()>;
    async fn linked_patient(&self, user_id: &str) -> Result<Option<String>>;

    /// Bulk load (synthetic data): patients with their first version and
    /// letters, in one transaction, without access-log rows.
    async fn bulk_load(
        &self,
        patients: &[PatientWrite],
        letters: &[LetterWrite],
        recorded_by: &str,
        now: Timestamp,
    ) -> Result<()>;
    /// The highest NHS number in the test range 999 000 0000–999 999 9999.
    async fn max_test_nhs_number(&self) -> Result<Option<String>>;

    /// Stores a new token, with `events` appended to the security log in
    /// the same transaction.
    async fn create_api_token(
        &self,
        t: &ApiTokenRow,
        now: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<()>;
    async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiTokenRow>>;
    async fn touch_api_token(&self, id: &str, at: Timestamp) -> Result<()>;
    async fn list_api_tokens(&self, user_id: &str) -> Result<Vec<ApiTokenRow>>;
    /// Revokes every API token of `user_id` not revoked yet, in one
    /// transaction with `events`; gives how many. `NotFound` when there is
    /// no such account.
    async fn revoke_all_api_tokens(
        &self,
        user_id: &str,
        by: crate::ChangedBy,
        at: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<u64>;
    /// `NotFound` unless the token belongs to `user_id` and was not revoked;
    /// `events` are appended to the security log in the same transaction.
    async fn revoke_api_token(
        &self,
        user_id: &str,
        id: &str,
        at: Timestamp,
        events: &[NewSecurityEvent],
    ) -> Result<()>;
}
