//! Group commit: many requests' writes share one transaction, yet each
//! request is answered only after its own write is committed, and a write
//! that fails takes no other write with it.

use domain::{Role, Timestamp, Username};
use store::{AccessEntry, LetterWrite};
use tokio::task::JoinSet;

use crate::clinical::{create_patient, nhs};
use crate::harness::TestApp;

#[tokio::test]
async fn each_concurrent_read_is_answered_only_after_its_access_log_row_is_committed() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let mut ids = Vec::new();
    for i in 0..24u8 {
        let family = format!("Reader{}", char::from(b'a' + i));
        let p = create_patient(&c, &family, &nhs(1000 + 10 * u32::from(i))).await;
        ids.push(p["id"].as_str().unwrap().to_owned());
    }
    let c = std::sync::Arc::new(c);
    let mut reads = JoinSet::new();
    for id in ids {
        let (c, store) = (c.clone(), t.store.clone());
        reads.spawn(async move {
            let res = c.get(&format!("/api/patients/{id}")).await;
            assert_eq!(res.status(), 200);
            // The moment the answer arrives, its row is there for anyone
            // to read: it was committed before the record was sent.
            let log = store.access_log(&id, 50, None).await.unwrap();
            assert!(
                log.iter().any(|r| r.action == "read" && r.outcome == "ok"),
                "patient {id} was shown before its read was logged: {log:?}"
            );
        });
    }
    while let Some(done) = reads.join_next().await {
        done.unwrap();
    }
}

fn letter(patient_id: &str, author_id: &str, n: usize) -> (LetterWrite, AccessEntry) {
    let id = crypto::random::uuid_v4().to_string();
    let write = LetterWrite {
        id: id.clone(),
        patient_id: patient_id.to_owned(),
        version: 1,
        status: "draft".to_owned(),
        title: format!("Letter {n}"),
        body: "Dear colleague".to_owned(),
        author_id: author_id.to_owned(),
        finalised_at: None,
        amends: None,
        error_reason: None,
    };
    let mut logged = access(patient_id, "create", "letter", id);
    logged.user_id = Some(author_id.to_owned());
    (write, logged)
}

/// The id of the user called `username`.
async fn user_id(t: &TestApp, username: &str) -> String {
    let name = Username::parse(username).unwrap();
    let user = t.store.user_by_username(&name).await.unwrap().unwrap();
    user.user.id.to_string()
}

/// Alice's access-log row: `action` on `resource_type` `resource_id`.
fn access(patient_id: &str, action: &str, resource_type: &str, resource_id: String) -> AccessEntry {
    AccessEntry {
        user_id: None,
        username: "alice".to_owned(),
        role: "clinician".to_owned(),
        action: action.to_owned(),
        resource_type: resource_type.to_owned(),
        resource_id: Some(resource_id),
        patient_id: Some(patient_id.to_owned()),
        outcome: "ok".to_owned(),
    }
}

#[tokio::test]
async fn a_write_that_fails_in_a_batch_takes_no_other_write_with_it() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let p = create_patient(&c, "Batch", &nhs(900)).await;
    let patient = p["id"].as_str().unwrap().to_owned();
    let author = user_id(&t, "alice").await;
    let before = t.store.access_log(&patient, 500, None).await.unwrap().len();

    // Forty letters at once; every fourth names a patient that does not
    // exist, so the database refuses it (a foreign key).
    let mut writes = JoinSet::new();
    for n in 0..40 {
        let target = if n % 4 == 3 {
            "no-such-patient"
        } else {
            patient.as_str()
        };
        let (write, access) = letter(target, &author, n);
        let store = t.store.clone();
        writes.spawn(async move {
            let outcome = store
                .create_letter(&write, Timestamp::from_millis(1_800_000_000_000), &[access])
                .await;
            (write.patient_id, outcome.is_ok())
        });
    }
    let mut ok = 0;
    while let Some(done) = writes.join_next().await {
        let (target, committed) = done.unwrap();
        assert_eq!(
            committed,
            target == patient,
            "a letter for {target} was {}",
            if committed { "written" } else { "refused" }
        );
        ok += usize::from(committed);
    }
    assert_eq!(ok, 30);
    assert_eq!(t.store.count_letters(&patient).await.unwrap(), 30);
    assert_eq!(t.store.count_letters("no-such-patient").await.unwrap(), 0);
    // Each written letter has its access-log row; the refused ones none.
    let log = t.store.access_log(&patient, 500, None).await.unwrap();
    assert_eq!(log.len() - before, 30);
    assert!(
        t.store
            .access_log("no-such-patient", 50, None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn letters_written_at_once_each_come_back_to_their_writer_with_a_time_of_their_own() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let mut patients = Vec::new();
    for (family, n) in [("Together", 910), ("Alongside", 920)] {
        let p = create_patient(&c, family, &nhs(n)).await;
        patients.push(p["id"].as_str().unwrap().to_owned());
    }
    let author = user_id(&t, "alice").await;
    // Thirty letters at once, at one instant, for two patients: they share
    // batches, and so statements.
    let mut writes = JoinSet::new();
    for n in 0..30 {
        let (write, access) = letter(&patients[n % 2], &author, n);
        let store = t.store.clone();
        writes.spawn(async move {
            let stored = store
                .create_letter(&write, Timestamp::from_millis(1_800_000_000_000), &[access])
                .await
                .unwrap();
            (write, stored)
        });
    }
    let mut answered = Vec::new();
    while let Some(done) = writes.join_next().await {
        let (write, stored) = done.unwrap();
        // Each writer is given its own letter back, as it was stored.
        assert_eq!(
            (&stored.id, &stored.patient_id, &stored.title),
            (&write.id, &write.patient_id, &write.title)
        );
        assert_eq!(stored.author_username, "alice");
        answered.push(stored);
    }
    for patient in &patients {
        let mut listed = t.store.list_letters(patient, &[], 100, 0).await.unwrap();
        let mut given: Vec<_> = answered
            .iter()
            .filter(|l| &l.patient_id == patient)
            .cloned()
            .collect();
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        given.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(
            listed, given,
            "a letter was answered other than it was stored"
        );
        // No two of one patient's letters share a time: "newest first"
        // is exact.
        let mut times: Vec<i64> = listed.iter().map(|l| l.created_at).collect();
        times.sort_unstable();
        times.dedup();
        assert_eq!(times.len(), 15, "two letters of one patient share a time");
        let log = t.store.access_log(patient, 100, None).await.unwrap();
        for l in &listed {
            assert!(
                log.iter()
                    .any(|r| r.action == "create" && r.resource_id.as_deref() == Some(&l.id)),
                "letter {} has no access-log row",
                l.id
            );
        }
    }
}

#[tokio::test]
async fn a_letter_tried_again_after_it_was_written_is_given_back_not_written_twice() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let p = create_patient(&c, "Again", &nhs(930)).await;
    let patient = p["id"].as_str().unwrap().to_owned();
    let author = user_id(&t, "alice").await;
    let (write, access) = letter(&patient, &author, 1);
    let at = Timestamp::from_millis(1_800_000_000_000);
    let first = t
        .store
        .create_letter(&write, at, std::slice::from_ref(&access))
        .await
        .unwrap();
    // The same write again, as the group commit retries a letter whose
    // batch failed after it was written: its own letter comes back.
    let later = Timestamp::from_millis(1_800_000_000_500);
    let again = t
        .store
        .create_letter(&write, later, std::slice::from_ref(&access))
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(t.store.count_letters(&patient).await.unwrap(), 1);
    let log = t.store.access_log(&patient, 100, None).await.unwrap();
    let rows = log
        .iter()
        .filter(|r| r.resource_id.as_deref() == Some(write.id.as_str()))
        .count();
    assert_eq!(rows, 1, "the letter's access-log row was written twice");
    // Another letter under a taken id is refused, not mistaken for it.
    let mut other = write.clone();
    other.body = "Another letter".to_owned();
    assert!(
        t.store
            .create_letter(&other, later, std::slice::from_ref(&access))
            .await
            .is_err()
    );
    assert_eq!(t.store.count_letters(&patient).await.unwrap(), 1);
}

#[tokio::test]
async fn access_log_rows_are_all_committed_whether_a_batch_fits_one_insert_or_not() {
    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let p = create_patient(&c, "Many", &nhs(950)).await;
    let patient = p["id"].as_str().unwrap().to_owned();
    let before = t.store.access_log(&patient, 500, None).await.unwrap().len();
    let entry = |n: usize| access(&patient, "read", "patient", format!("r{n}"));
    // One row (a batch of its own: one INSERT, no BEGIN/COMMIT), 64 (one
    // statement's worth) and 65 (more than one statement: a transaction).
    let at = Timestamp::from_millis(1_800_000_000_000);
    let mut n = 0;
    for size in [1, 64, 65] {
        let batch: Vec<AccessEntry> = (n..n + size).map(entry).collect();
        t.store.record_access(at, &batch).await.unwrap();
        n += size;
    }
    let log = t.store.access_log(&patient, 500, None).await.unwrap();
    assert_eq!(log.len() - before, n);
    let mut ids: Vec<String> = log.iter().filter_map(|r| r.resource_id.clone()).collect();
    ids.retain(|id| id.starts_with('r'));
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "a row was lost or written twice");
}

#[tokio::test]
async fn other_writes_get_their_turn_while_access_log_rows_keep_the_writer_busy() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    let t = TestApp::spawn().await;
    let c = t.signed_in("alice", Role::Clinician).await;
    let p = create_patient(&c, "Busy", &nhs(960)).await;
    let patient = p["id"].as_str().unwrap().to_owned();
    // Readers keep the group commit's writer busy (it keeps its connection
    // from one batch to the next) until the other writes are done, or for
    // at most a minute — which would mean those writes waited for them.
    let stop = Arc::new(AtomicBool::new(false));
    let limit = Duration::from_secs(60);
    let mut readers = JoinSet::new();
    for r in 0..8 {
        let (store, stop, patient) = (t.store.clone(), stop.clone(), patient.clone());
        readers.spawn(async move {
            let started = Instant::now();
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                if started.elapsed() > limit {
                    return (n, true);
                }
                let row = access(&patient, "read", "patient", format!("busy-{r}-{n}"));
                store
                    .record_access(Timestamp::from_millis(1_800_000_000_000), &[row])
                    .await
                    .unwrap();
                n += 1;
            }
            (n, false)
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Other writes (on SQLite they need the writer's one connection).
    for n in 0..5 {
        create_patient(&c, "Between", &nhs(961 + n)).await;
    }
    stop.store(true, Ordering::Release);
    let mut rows = 0;
    while let Some(done) = readers.join_next().await {
        let (n, ran_out) = done.unwrap();
        assert!(
            !ran_out,
            "the other writes waited until the readers stopped"
        );
        rows += n;
    }
    assert!(rows > 0, "the readers wrote nothing");
}
