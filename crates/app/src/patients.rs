//! Patients: FHIR R4 demographics with every version kept.

use domain::access::Action;
use domain::patient::{BirthDate, Demographics, NhsNumber, PatientId, fold_for_search};
use domain::{Timestamp, User};
use serde::Serialize;
use store::{PatientRow, PatientSearch, PatientWrite};

use crate::access::{Target, entry};
use crate::{App, AppError, AppResult};

/// Patients per page of a list or search.
pub const PAGE_SIZE: i64 = 20;

/// The most patients one page may hold, whatever the caller asks.
pub const MAX_PAGE_SIZE: i64 = 100;

/// One patient version as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PatientView {
    pub id: String,
    pub version: i64,
    pub avatar_gradient: u8,
    pub active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The FHIR R4 Patient resource, with `meta.versionId` and `lastUpdated`.
    pub resource: serde_json::Value,
}

/// A row of a patient list.
#[derive(Debug, Clone, Serialize)]
pub struct PatientSummary {
    pub id: String,
    pub display_name: String,
    pub birth_date: Option<String>,
    pub nhs_number: Option<String>,
    pub avatar_gradient: u8,
    pub active: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PatientPage {
    pub items: Vec<PatientSummary>,
    /// The next page number, when there is one.
    pub next: Option<u32>,
}

/// A page of whole patient records (FHIR search).
#[derive(Debug, Clone, Serialize)]
pub struct PatientResources {
    pub items: Vec<PatientView>,
    pub next: Option<u32>,
}

/// What creating (or changing) a patient does when the patient looks like
/// one already registered (hazard H008): the same family name, first given
/// name and date of birth, where one of the two has no NHS number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfPossibleDuplicate {
    /// Write nothing; answer [`AppError::PossibleDuplicates`] naming them.
    Refuse,
    /// The user checked these records (by id) and this is another person:
    /// written over them, but refused as [`IfPossibleDuplicate::Refuse`]
    /// when the check finds any other — one registered since the user was
    /// shown the list (what the forms send).
    RegisterOver(Vec<String>),
    /// The user checked whatever the check finds and this is another
    /// person (an API client that sends no ids).
    Register,
}

impl IfPossibleDuplicate {
    /// The records the user checked, when the check still refuses others;
    /// `None` when nothing found refuses the write.
    fn checked(&self) -> Option<&[String]> {
        match self {
            IfPossibleDuplicate::Refuse => Some(&[]),
            IfPossibleDuplicate::RegisterOver(ids) => Some(ids),
            IfPossibleDuplicate::Register => None,
        }
    }
}

/// The most possible duplicates one warning names.
pub const MAX_POSSIBLE_DUPLICATES: usize = 10;

/// One stored version of a patient.
#[derive(Debug, Clone, Serialize)]
pub struct PatientVersion {
    pub version: i64,
    pub recorded_at: Timestamp,
    pub recorded_by: String,
    pub resource: serde_json::Value,
}

/// The avatar gradient (seed 002): derived from the id, never random.
pub fn avatar_gradient(id: &str) -> u8 {
    crypto::avatar::gradient_index(id)
}

fn view(row: &PatientRow) -> AppResult<PatientView> {
    Ok(PatientView {
        id: row.id.clone(),
        version: row.version,
        avatar_gradient: avatar_gradient(&row.id),
        active: row.active,
        created_at: Timestamp(row.created_at),
        updated_at: Timestamp(row.updated_at),
        resource: serde_json::from_str(&row.resource)
            .map_err(|e| AppError::Internal(format!("stored patient {}: {e}", row.id)))?,
    })
}

fn summary(row: PatientRow) -> PatientSummary {
    PatientSummary {
        avatar_gradient: avatar_gradient(&row.id),
        id: row.id,
        display_name: row.display_name,
        birth_date: row.birth_date,
        nhs_number: row.nhs_number,
        active: row.active,
    }
}

/// One access-log row of `action` by `user` about each patient of `ids`.
fn about_each<'a>(
    user: &User,
    action: &'static str,
    ids: impl Iterator<Item = &'a str>,
) -> Vec<store::AccessEntry> {
    ids.map(|id| {
        let t = Target {
            action,
            resource_type: "patient",
            resource_id: Some(id),
            patient_id: Some(id),
        };
        entry(user, &t, "ok")
    })
    .collect()
}

/// Where the user registers or changes a patient over possible duplicates
/// they said they checked: one access-log row in each of their records and
/// in the one written (none when there were none).
fn overridden(user: &User, found: &[PatientSummary], id: &str) -> Vec<store::AccessEntry> {
    if found.is_empty() {
        return Vec::new();
    }
    let ids = found.iter().map(|p| p.id.as_str());
    about_each(user, "duplicate_override", ids.chain([id]))
}

/// The possible-duplicate check for a patient described by `d` (see
/// [`store::DuplicateCheck`]), refusing what `if_duplicate` does not say
/// the user checked; none without a date of birth — there is too little to
/// go on.
fn duplicate_check(
    d: &Demographics,
    if_duplicate: &IfPossibleDuplicate,
) -> Option<store::DuplicateCheck> {
    let birth = d.birth_date.as_ref()?;
    let given = fold_for_search(&d.name.given.join(" "));
    let first_given = given.split_whitespace().next().unwrap_or("").to_owned();
    Some(store::DuplicateCheck {
        // The same folded family name, first given name and date of birth,
        // active or not; with an NHS number, only those without one (one
        // NHS number is one person, two different ones two people). One
        // more than a warning names: the patient changed may be among them.
        search: PatientSearch {
            same_name: Some((fold_for_search(&d.name.family), first_given)),
            birth_date: Some(birth.as_str().to_owned()),
            without_nhs_number: d.nhs_number.is_some(),
            include_inactive: true,
            limit: i64::try_from(MAX_POSSIBLE_DUPLICATES + 1).unwrap_or(11),
            ..PatientSearch::default()
        },
        checked: if_duplicate.checked().map(<[String]>::to_vec),
    })
}

fn invalid(errors: Vec<domain::patient::FieldError>) -> AppError {
    AppError::InvalidFields(errors.into_iter().map(|e| (e.field, e.message)).collect())
}

fn duplicate_nhs(e: store::StoreError) -> AppError {
    match e {
        store::StoreError::Conflict(_) => AppError::Conflict(
            "another patient record already has this NHS number; one NHS number belongs to \
             one patient — find and use the existing record"
                .to_owned(),
        ),
        other => other.into(),
    }
}

/// The columns a version is stored and searched by.
pub(crate) fn write_of(
    pid: PatientId,
    version: i64,
    d: &Demographics,
    now: Timestamp,
) -> PatientWrite {
    let family = fold_for_search(&d.name.family);
    let given = fold_for_search(&d.name.given.join(" "));
    let name_tokens = family
        .split_whitespace()
        .chain(given.split_whitespace())
        .map(str::to_owned)
        .collect();
    PatientWrite {
        id: pid.to_string(),
        version,
        nhs_number: d.nhs_number.as_ref().map(|n| n.as_str().to_owned()),
        family_folded: family,
        given_folded: given,
        name_tokens,
        display_name: d.display_name(),
        birth_date: d.birth_date.as_ref().map(|b| b.as_str().to_owned()),
        gender: d.gender.map(|g| g.as_str().to_owned()),
        active: d.active,
        resource: d.to_fhir(pid, version, &now.to_rfc3339()).to_string(),
    }
}

impl App {
    fn today(&self) -> BirthDate {
        BirthDate::from_unix_millis(self.now().millis())
    }

    /// Creates a patient from a FHIR Patient resource; the id is a new
    /// random UUID whatever the resource says. A patient who looks like one
    /// already registered is refused unless `if_duplicate` says the user
    /// checked (see [`IfPossibleDuplicate`]); the check is repeated inside
    /// the registering transaction, so two registrations of one person at
    /// the same moment cannot both pass it.
    pub async fn create_patient(
        &self,
        user: &User,
        resource: &serde_json::Value,
        if_duplicate: IfPossibleDuplicate,
    ) -> AppResult<PatientView> {
        let target = Target {
            action: "create",
            resource_type: "patient",
            resource_id: None,
            patient_id: None,
        };
        self.authorise(user, Action::ChangeDemographics, &target)
            .await?;
        let d = Demographics::from_fhir(resource, &self.today()).map_err(invalid)?;
        let check = duplicate_check(&d, &if_duplicate);
        let pid = PatientId(crypto::random::uuid_v4());
        let id = pid.to_string();
        // Looked for even when the user says they checked: registering over
        // possible duplicates is recorded in each one's access log.
        let found = self.possible_duplicates(user, check.as_ref(), None).await?;
        let now = self.now();
        let write = write_of(pid, 1, &d, now);
        let logged = Target {
            resource_id: Some(&id),
            patient_id: Some(&id),
            ..target
        };
        let mut entries = vec![entry(user, &logged, "ok")];
        entries.extend(overridden(user, &found, &id));
        let written = self
            .store
            .create_patient(
                &write,
                user.username.as_str(),
                now,
                &entries,
                check.as_ref(),
            )
            .await;
        self.written(user, written).await?;
        self.patient_unlogged(&id).await
    }

    /// Replaces the demographics with a new version. `expected_version` is
    /// the version the change started from; a stale one is refused and
    /// nothing changes. A change of the name or date of birth (or the
    /// removal of the NHS number) that makes the patient look like another
    /// registered one is refused as registering them would be, unless
    /// `if_duplicate` says the user checked.
    pub async fn update_patient(
        &self,
        user: &User,
        id: &str,
        expected_version: Option<i64>,
        resource: &serde_json::Value,
        if_duplicate: IfPossibleDuplicate,
    ) -> AppResult<PatientView> {
        let target = Target {
            action: "update",
            resource_type: "patient",
            resource_id: Some(id),
            patient_id: Some(id),
        };
        self.authorise(user, Action::ChangeDemographics, &target)
            .await?;
        let expected = expected_version.ok_or(AppError::VersionRequired)?;
        let pid: PatientId = id.parse().map_err(|_| AppError::NotFound)?;
        let row = self.store.patient(id).await?.ok_or(AppError::NotFound)?;
        if row.version != expected {
            return Err(AppError::VersionConflict {
                current: row.version,
            });
        }
        if resource
            .get("id")
            .and_then(|v| v.as_str())
            .is_some_and(|rid| rid != id)
        {
            return Err(AppError::InvalidFields(vec![(
                "id".to_owned(),
                "does not match the patient being updated".to_owned(),
            )]));
        }
        let d = Demographics::from_fhir(resource, &self.today()).map_err(invalid)?;
        // Checked only when what the check compares changed: a record
        // already known to look like another is not refused at every edit.
        let before = serde_json::from_str::<serde_json::Value>(&row.resource)
            .ok()
            .and_then(|r| Demographics::from_fhir(&r, &self.today()).ok())
            .and_then(|old| duplicate_check(&old, &if_duplicate));
        let check = duplicate_check(&d, &if_duplicate).filter(|c| Some(c) != before.as_ref());
        let found = self
            .possible_duplicates(user, check.as_ref(), Some(id))
            .await?;
        let now = self.now();
        let write = write_of(pid, expected + 1, &d, now);
        let mut entries = vec![entry(user, &target, "ok")];
        entries.extend(overridden(user, &found, id));
        let written = self
            .store
            .update_patient(
                &write,
                expected,
                user.username.as_str(),
                now,
                &entries,
                check.as_ref(),
            )
            .await;
        self.written(user, written).await?;
        self.patient_unlogged(id).await
    }

    /// Registered patients `check` finds who may be the person written
    /// (other than `excluding`, the patient being changed). When the user
    /// has not said they checked one it finds, the write is refused naming
    /// every one found, and each one's access log records that they were
    /// shown.
    async fn possible_duplicates(
        &self,
        user: &User,
        check: Option<&store::DuplicateCheck>,
        excluding: Option<&str>,
    ) -> AppResult<Vec<PatientSummary>> {
        let Some(check) = check else {
            return Ok(Vec::new());
        };
        let rows: Vec<PatientRow> = self
            .store
            .search_patients(&check.search)
            .await?
            .into_iter()
            .filter(|r| Some(r.id.as_str()) != excluding)
            .collect();
        if check.refuses(&rows) {
            return Err(self.refused_as_duplicate(user, rows).await);
        }
        Ok(rows
            .into_iter()
            .take(MAX_POSSIBLE_DUPLICATES)
            .map(summary)
            .collect())
    }

    /// A write of demographics refused as a possible duplicate of `rows`
    /// — found before the write, or by the check repeated inside it: the
    /// error naming them, each record shown to the user recorded in its
    /// access log.
    async fn refused_as_duplicate(&self, user: &User, mut rows: Vec<PatientRow>) -> AppError {
        rows.truncate(MAX_POSSIBLE_DUPLICATES);
        let shown = about_each(
            user,
            "duplicate_warning",
            rows.iter().map(|p| p.id.as_str()),
        );
        match self.store.record_access(self.now(), &shown).await {
            Ok(()) => AppError::PossibleDuplicates(rows.into_iter().map(summary).collect()),
            Err(e) => e.into(),
        }
    }

    /// A write of demographics' outcome (see [`App::refused_as_duplicate`]
    /// and [`duplicate_nhs`]).
    async fn written(&self, user: &User, written: store::Result<()>) -> AppResult<()> {
        match written {
            Err(store::StoreError::PossibleDuplicates(rows)) => {
                Err(self.refused_as_duplicate(user, rows).await)
            }
            other => other.map_err(duplicate_nhs),
        }
    }

    async fn patient_unlogged(&self, id: &str) -> AppResult<PatientView> {
        let row = self.store.patient(id).await?.ok_or(AppError::NotFound)?;
        view(&row)
    }

    /// Reads a patient (clinicians; a patient their own record).
    pub async fn patient(&self, user: &User, id: &str) -> AppResult<PatientView> {
        let target = Target {
            action: "read",
            resource_type: "patient",
            resource_id: Some(id),
            patient_id: Some(id),
        };
        self.authorise(user, Action::ReadDemographics, &target)
            .await?;
        let row = self.store.patient(id).await?;
        let outcome = if row.is_some() { "ok" } else { "not_found" };
        self.store
            .record_access(self.now(), &[entry(user, &target, outcome)])
            .await?;
        view(&row.ok_or(AppError::NotFound)?)
    }

    /// Every version, oldest first.
    pub async fn patient_history(&self, user: &User, id: &str) -> AppResult<Vec<PatientVersion>> {
        let target = Target {
            action: "read_history",
            resource_type: "patient",
            resource_id: Some(id),
            patient_id: Some(id),
        };
        self.authorise(user, Action::ReadDemographics, &target)
            .await?;
        let rows = self.store.patient_versions(id).await?;
        if rows.is_empty() {
            return Err(AppError::NotFound);
        }
        self.store
            .record_access(self.now(), &[entry(user, &target, "ok")])
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(PatientVersion {
                    version: r.version,
                    recorded_at: Timestamp(r.recorded_at),
                    recorded_by: r.recorded_by,
                    resource: serde_json::from_str(&r.resource)
                        .map_err(|e| AppError::Internal(format!("stored version: {e}")))?,
                })
            })
            .collect()
    }

    /// Finds patients by name prefixes (case- and accent-insensitive), NHS
    /// number, or birth date. Deactivated patients are left out unless asked.
    pub async fn search_patients(
        &self,
        user: &User,
        q: &str,
        page: u32,
        include_inactive: bool,
    ) -> AppResult<PatientPage> {
        let target = Target {
            action: "search",
            resource_type: "patient",
            resource_id: None,
            patient_id: None,
        };
        self.authorise(user, Action::SearchPatients, &target)
            .await?;
        let mut search = parse_query(q);
        search.include_inactive = include_inactive;
        self.list_page(user, search, page, &target).await
    }

    /// FHIR's Patient search: whole resources rather than list rows. Name
    /// criteria are folded here as they are when stored; `search.limit` is
    /// the page size (at most [`MAX_PAGE_SIZE`]).
    pub async fn find_patients(
        &self,
        user: &User,
        mut search: PatientSearch,
        page: u32,
    ) -> AppResult<PatientResources> {
        let target = Target {
            action: "search",
            resource_type: "patient",
            resource_id: None,
            patient_id: None,
        };
        self.authorise(user, Action::SearchPatients, &target)
            .await?;
        search.name_terms = search
            .name_terms
            .iter()
            .map(|t| fold_for_search(t))
            .filter(|t| !t.is_empty())
            .collect();
        search.family_prefix = search.family_prefix.as_deref().map(fold_for_search);
        search.given_prefix = search.given_prefix.as_deref().map(fold_for_search);
        let (rows, next) = self.rows_page(user, search, page, &target).await?;
        Ok(PatientResources {
            items: rows.iter().map(view).collect::<AppResult<_>>()?,
            next,
        })
    }

    async fn list_page(
        &self,
        user: &User,
        search: PatientSearch,
        page: u32,
        target: &Target<'_>,
    ) -> AppResult<PatientPage> {
        let (rows, next) = self.rows_page(user, search, page, target).await?;
        Ok(PatientPage {
            items: rows.into_iter().map(summary).collect(),
            next,
        })
    }

    /// One page of a search and the number of the next page, if any; the
    /// search is written to the access log.
    async fn rows_page(
        &self,
        user: &User,
        mut search: PatientSearch,
        page: u32,
        target: &Target<'_>,
    ) -> AppResult<(Vec<PatientRow>, Option<u32>)> {
        let size = if search.limit > 0 {
            search.limit.min(MAX_PAGE_SIZE)
        } else {
            PAGE_SIZE
        };
        let page = page.max(1);
        search.limit = size + 1;
        search.offset = i64::from(page - 1) * size;
        let mut rows = self.store.search_patients(&search).await?;
        let more = rows.len() as i64 > size;
        rows.truncate(usize::try_from(size).unwrap_or(20));
        self.store
            .record_access(self.now(), &[entry(user, target, "ok")])
            .await?;
        Ok((rows, more.then_some(page + 1)))
    }

    /// Who read or changed this patient's record, newest first.
    pub async fn patient_access_log(
        &self,
        user: &User,
        id: &str,
        before: Option<i64>,
    ) -> AppResult<Vec<store::AccessRow>> {
        let target = Target {
            action: "read_access_log",
            resource_type: "patient",
            resource_id: Some(id),
            patient_id: Some(id),
        };
        self.authorise(user, Action::ReadAccessLog, &target).await?;
        self.store.patient(id).await?.ok_or(AppError::NotFound)?;
        let rows = self.store.access_log(id, 200, before).await?;
        self.store
            .record_access(self.now(), &[entry(user, &target, "ok")])
            .await?;
        Ok(rows)
    }
}

/// `q` → what to search: ten digits (spaces or dashes allowed) are an NHS
/// number, `YYYY-MM-DD` a birth date, anything else name prefixes.
pub fn parse_query(q: &str) -> PatientSearch {
    let q = q.trim();
    let mut s = PatientSearch::default();
    if q.is_empty() {
        return s;
    }
    if let Ok(nhs) = NhsNumber::parse(q) {
        s.nhs_number = Some(nhs.as_str().to_owned());
        return s;
    }
    let digits: String = q.chars().filter(char::is_ascii_digit).collect();
    if digits.len() == 10
        && q.chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
    {
        // Ten digits that fail the checksum match no patient.
        s.nhs_number = Some(digits);
        return s;
    }
    let is_date = q.len() == 10
        && q.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    if is_date {
        s.birth_date = Some(q.to_owned());
        return s;
    }
    s.name_terms = fold_for_search(q)
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    s
}
