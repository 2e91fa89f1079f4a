//! Retrying store writes that failed in a way a retry may mend.

use assay_store::{Result, StoreError};
use std::future::Future;
use std::time::Duration;

/// Tries after the first, and the pause before each (doubling).
const TRIES: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// Runs `op` until it succeeds, fails for good (`!is_retryable()`), or the tries are used up.
pub async fn retrying<T, F, Fut>(what: &str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut pause = FIRST_PAUSE;
    let mut tries = 0;
    loop {
        match op().await {
            Err(e) if e.is_retryable() && tries < TRIES => {
                tries += 1;
                tracing::debug!(error = %e, tries, "{what} failed; retrying");
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
            }
            other => return other,
        }
    }
}

/// Whether the error says the attempt belongs to someone else now.
pub fn lease_lost(e: &StoreError) -> bool {
    matches!(e, StoreError::LeaseLost(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test(start_paused = true)]
    async fn retries_only_what_may_succeed() {
        let calls = Cell::new(0);
        let r = retrying("x", || {
            calls.set(calls.get() + 1);
            async {
                if calls.get() < 3 {
                    Err(StoreError::Unavailable("busy".into()))
                } else {
                    Ok(7)
                }
            }
        })
        .await;
        assert_eq!((r.unwrap(), calls.get()), (7, 3));
        calls.set(0);
        let r: Result<()> = retrying("x", || {
            calls.set(calls.get() + 1);
            async { Err(StoreError::Backend("corrupt".into())) }
        })
        .await;
        assert!(
            r.is_err() && calls.get() == 1,
            "a lasting failure is not retried"
        );
        calls.set(0);
        let r: Result<()> = retrying("x", || {
            calls.set(calls.get() + 1);
            async { Err(StoreError::Unavailable("down".into())) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.get(), TRIES + 1, "gives up after its tries");
    }
}
