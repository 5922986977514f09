//! Work the server does on its own, round after round: scheduled backups,
//! re-reading the key source, purging expired sessions.
//!
//! Each round is guarded. A fault in one round (a panic: a bug) is caught,
//! logged at ERROR through the redacting log, and the next round runs as
//! planned. Unguarded, the task would end for good at its first panic and
//! the server would go on serving as if nothing had happened — scheduled
//! backups would stop without a word (H024).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;

/// Runs one round of `what`. `None` if it panicked: the panic's message and
/// place were already reported by the panic hook; this adds which round it
/// was and that the work goes on.
pub async fn guarded<F: Future>(what: &str, round: F) -> Option<F::Output> {
    match AssertUnwindSafe(round).catch_unwind().await {
        Ok(out) => Some(out),
        Err(_) => {
            tracing::error!(
                task = what,
                "a fault in the server stopped this round; the next round runs as planned"
            );
            None
        }
    }
}

/// Runs `round` at once and then every `period`, for ever, each round
/// guarded. A round that overruns delays the next instead of bunching
/// the missed ones together.
pub async fn every<F, Fut>(what: &str, period: Duration, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // `round()` itself inside the guard too, not only its future.
        guarded(what, async { round().await }).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_round_that_panics_is_caught_and_one_that_does_not_gives_its_answer() {
        assert_eq!(guarded("sum", async { 2 + 2 }).await, Some(4));
        let panicked = guarded("fault", async {
            if Duration::ZERO.is_zero() {
                panic!("a bug in this round");
            }
            1
        })
        .await;
        assert_eq!(panicked, None);
    }

    #[tokio::test]
    async fn rounds_go_on_after_one_panics() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let counted = rounds.clone();
        let task = tokio::spawn(async move {
            every("test rounds", Duration::from_millis(5), move || {
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n == 2 {
                        panic!("the second round fails");
                    }
                }
            })
            .await;
        });
        tokio::time::timeout(Duration::from_secs(30), async {
            while rounds.load(Ordering::SeqCst) < 5 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("rounds after the panicking one ran");
        assert!(!task.is_finished(), "the loop is still running");
        task.abort();
    }
}
