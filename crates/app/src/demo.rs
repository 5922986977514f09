//! Synthetic data for demonstrations and benchmarks: realistic patients
//! with valid test-range NHS numbers (999 000 0000–999 999 9999) and letters.

use domain::patient::{BirthDate, Demographics, Gender, HumanName, NhsNumber, PatientId};
use domain::{NewSecurityEvent, Role, SecurityEventKind as Kind, UserId, Username};
use secrecy::SecretString;
use store::{LetterWrite, NewUserRecord};

use crate::patients::write_of;
use crate::{App, AppResult};

const FAMILY: &[&str] = &[
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Jackson",
    "Wood",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "Moore",
    "Clark",
    "Lee",
    "King",
    "Baker",
    "Harrison",
    "Morgan",
    "Allen",
    "James",
    "Scott",
    "Phillips",
    "Watson",
    "Davis",
    "Parker",
    "Price",
    "Bennett",
    "Young",
    "Griffiths",
    "Mitchell",
    "Kelly",
    "Cook",
    "Carter",
    "Richardson",
    "Bailey",
    "Collins",
    "Bell",
    "Shaw",
    "Murphy",
    "Miller",
    "Cox",
    "Richards",
    "Khan",
    "Marshall",
    "Anderson",
    "Simpson",
    "Ellis",
    "Adams",
    "Singh",
    "Begum",
    "Wilkinson",
    "Foster",
    "Chapman",
    "Powell",
    "Webb",
    "Rogers",
    "Gray",
    "Mason",
    "Ali",
    "Hunt",
    "Hussain",
    "Campbell",
    "Matthews",
    "Owen",
    "Palmer",
    "Holmes",
    "Mills",
    "Barnes",
    "Knight",
    "Lloyd",
    "Butler",
    "Russell",
    "Barker",
    "Fisher",
    "Stevens",
    "Jenkins",
    "Murray",
    "Dixon",
    "Harvey",
    "O'Brien",
    "Ångström",
    "Nguyễn",
    "Müller",
    "García",
    "Ó Súilleabháin",
    "Kowalski",
    "Okonkwo",
    "Zhang",
    "Fernández",
];
const GIVEN_F: &[&str] = &[
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Mia",
    "Ivy",
    "Lily",
    "Isabella",
    "Rosie",
    "Sophia",
    "Grace",
    "Freya",
    "Emily",
    "Poppy",
    "Ella",
    "Evie",
    "Chloe",
    "Zoë",
    "Margaret",
    "Susan",
    "Patricia",
    "Elizabeth",
    "Aisha",
    "Fatima",
    "Siobhán",
    "Ngozi",
    "Mei",
    "Anna",
    "Sarah",
    "Ruth",
];
const GIVEN_M: &[&str] = &[
    "Oliver", "George", "Noah", "Arthur", "Harry", "Leo", "Muhammad", "Jack", "Charlie", "Oscar",
    "Jacob", "Henry", "Thomas", "Freddie", "Alfie", "Theo", "William", "James", "David", "John",
    "Peter", "Michael", "Robert", "Raj", "Chidi", "Wei", "Seán", "José", "Ahmed", "Tomás",
];
const TOPICS: &[(&str, &str)] = &[
    (
        "Clinic letter: diabetes review",
        "HbA1c improved to 52 mmol/mol. Continue metformin 1 g twice daily. Review in 6 months.",
    ),
    (
        "Discharge summary",
        "Admitted with community-acquired pneumonia. Treated with amoxicillin. Discharged well; GP to review in 2 weeks.",
    ),
    (
        "Cardiology outpatient letter",
        "Echo shows preserved ejection fraction. Continue ramipril 5 mg. No driving restrictions.",
    ),
    (
        "Referral: dermatology",
        "Please assess a pigmented lesion on the left forearm, changed in size over 3 months.",
    ),
    (
        "Asthma annual review",
        "Inhaler technique checked. Peak flow 420 L/min. Personalised action plan updated.",
    ),
    (
        "Medication review",
        "Stopped omeprazole (no ongoing indication). Allergies: **penicillin** (rash).",
    ),
];

/// What a seed run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub patients: u64,
    pub letters: u64,
}

fn pick<'a>(list: &[&'a str]) -> &'a str {
    let i = crypto::random::index_below(list.len() as u64);
    list.get(usize::try_from(i).unwrap_or(0))
        .copied()
        .unwrap_or("Smith")
}

/// The next valid NHS number at or after the 9-digit stem `stem`.
fn next_nhs(stem: &mut u64) -> Option<NhsNumber> {
    while *stem <= 999_999_999 {
        let candidate = format!("{stem:09}");
        *stem += 1;
        for check in 0..=9 {
            if let Ok(n) = NhsNumber::parse(&format!("{candidate}{check}")) {
                return Some(n);
            }
        }
    }
    None
}

impl App {
    /// Adds `patients` synthetic patients with `letters_per_patient` final
    /// letters each, in batches, calling `progress(done, total)` after each.
    pub async fn seed_demo(
        &self,
        patients: u64,
        letters_per_patient: u64,
        progress: impl Fn(u64, u64),
    ) -> AppResult<SeedReport> {
        let author = self.demo_author().await?;
        let mut stem = match self.store.max_test_nhs_number().await? {
            Some(max) => {
                max.get(..9)
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(999_000_000)
                    + 1
            }
            None => 999_000_000,
        };
        let today_days = self.now().millis() / 86_400_000;
        let mut done = 0;
        let mut letters_done = 0;
        while done < patients {
            let batch = (patients - done).min(1000);
            let mut rows = Vec::with_capacity(usize::try_from(batch).unwrap_or(1000));
            let mut letters = Vec::new();
            let now = self.now();
            for _ in 0..batch {
                // The test range holds about 909,000 valid numbers; past
                // them patients get none, as an untraced patient has none.
                let nhs = next_nhs(&mut stem);
                let female = crypto::random::index_below(2) == 0;
                let given = if female { pick(GIVEN_F) } else { pick(GIVEN_M) };
                let age_days = i64::try_from(crypto::random::index_below(95 * 365)).unwrap_or(0);
                let d = Demographics {
                    nhs_number: nhs,
                    mrn: None,
                    name: HumanName {
                        family: pick(FAMILY).to_owned(),
                        given: vec![given.to_owned()],
                        prefix: Vec::new(),
                    },
                    birth_date: Some(BirthDate::from_unix_millis(
                        (today_days - age_days) * 86_400_000,
                    )),
                    gender: Some(match crypto::random::index_below(50) {
                        0 => Gender::Other,
                        1 => Gender::Unknown,
                        _ if female => Gender::Female,
                        _ => Gender::Male,
                    }),
                    address: Vec::new(),
                    telecom: Vec::new(),
                    active: true,
                };
                let pid = PatientId(crypto::random::uuid_v4());
                for _ in 0..letters_per_patient {
                    let (title, body) = TOPICS
                        .get(
                            usize::try_from(crypto::random::index_below(TOPICS.len() as u64))
                                .unwrap_or(0),
                        )
                        .copied()
                        .unwrap_or(("Clinic letter", "Seen in clinic."));
                    letters.push(LetterWrite {
                        id: crypto::random::uuid_v4().to_string(),
                        patient_id: pid.to_string(),
                        version: 1,
                        status: "final".to_owned(),
                        title: title.to_owned(),
                        body: body.to_owned(),
                        author_id: author.to_string(),
                        finalised_at: Some(now.millis()),
                        amends: None,
                        error_reason: None,
                    });
                }
                rows.push(write_of(pid, 1, &d, now));
            }
            self.store
                .bulk_load(&rows, &letters, "demo seed", now)
                .await?;
            done += batch;
            letters_done += letters.len() as u64;
            progress(done, patients);
        }
        Ok(SeedReport {
            patients: done,
            letters: letters_done,
        })
    }

    /// The author of synthetic letters: a deactivated account nobody can
    /// sign in as (its password is random and never shown).
    async fn demo_author(&self) -> AppResult<UserId> {
        let name = Username::parse("demo.author")?;
        if let Some(u) = self.store.user_by_username(&name).await? {
            return Ok(u.user.id);
        }
        let record = NewUserRecord {
            id: UserId(crypto::random::uuid_v4()),
            username: name,
            role: Role::Clinician,
            password_hash: self
                .hash_password(SecretString::from(crypto::random::token(32)))
                .await?,
            must_change_password: false,
        };
        let now = self.now();
        let created = self
            .store
            .create_user(&record, store::ChangedBy::Operator, now, &[NewSecurityEvent::new(Kind::UserCreated)
                .user(record.id, record.username.as_str())
                .detail(serde_json::json!({"role": "clinician", "actor": "demo seed", "purpose": "author of synthetic letters"}))])
            .await?;
        self.store
            .set_user_active(
                created.id,
                false,
                store::ChangedBy::Operator,
                now,
                &[NewSecurityEvent::new(Kind::UserDeactivated)
                    .user(created.id, created.username.as_str())
                    .detail(serde_json::json!({"actor": "demo seed"}))],
            )
            .await?;
        Ok(created.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_nhs_numbers_are_valid_consecutive_and_in_the_test_range() {
        let mut stem = 999_000_000;
        let mut seen = Vec::new();
        for _ in 0..200 {
            let n = next_nhs(&mut stem).unwrap();
            assert!(n.as_str().starts_with("999"));
            assert!(NhsNumber::parse(n.as_str()).is_ok());
            seen.push(n.as_str().to_owned());
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, seen, "increasing, no repeats");
        let mut past = 1_000_000_000;
        assert!(next_nhs(&mut past).is_none(), "the range ends");
    }
}
