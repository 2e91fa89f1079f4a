//! Submission-side quotas and backpressure (`settings.quotas`, see `assay_domain::QuotaPolicy`):
//!
//! * a token bucket per API key (`rate_per_minute`, `burst`): 429 `rate_limited` with
//!   `Retry-After`;
//! * the tenant's queued evaluations (`max_queued`): 429 `quota_exceeded`, `details`
//!   `{limit, queued, requested}`;
//! * all tenants' queued evaluations (`max_queued_total`): 503 `queue_full` with `Retry-After`
//!   (no counts in the answer: they would tell one tenant about the others' load).
//!
//! A batch counts as its size, all or nothing. The tenant's maximum run limits are applied by
//! validation (`TenantQuota::limit_policy`, 422 `limit_exceeded`); the running cap and fair
//! share by the store when workers claim.
//!
//! The queue caps are checked and the evaluations inserted under one lock ([`AdmitPermit`]),
//! so concurrent submissions to this process cannot overshoot a cap together. Several API
//! processes on one database each hold their own lock: there a cap may be passed by at most
//! the submissions in flight at once.

use assay_api::{ApiError, ErrorCode};
use assay_domain::{QuotaPolicy, TenantQuota};
use assay_store::Store;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `Retry-After` (seconds) of a full queue or a tenant at its queued cap: the queue drains
/// at the workers' pace, which the API does not know; this is a polite first back-off.
pub const QUEUE_RETRY_AFTER_SECS: u64 = 5;

/// Buckets of keys idle long enough to be full again are dropped once there are this many.
const PRUNE_ABOVE: usize = 4096;

/// Shared, cheap to clone: the buckets of every key and the admission lock.
#[derive(Clone, Default)]
pub struct QuotaGate {
    inner: Arc<Inner>,
}

struct Inner {
    /// Time zero of the buckets.
    origin: Instant,
    buckets: Mutex<HashMap<String, KeyBucket>>,
    admit: tokio::sync::Mutex<()>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            origin: Instant::now(),
            buckets: Mutex::new(HashMap::new()),
            admit: tokio::sync::Mutex::new(()),
        }
    }
}

/// A key's bucket with the (rate, burst) it was last used under.
type KeyBucket = (TokenBucket, (u32, u32));

/// Held from the queue-cap check until the evaluations are inserted.
pub struct AdmitPermit<'a> {
    _guard: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl QuotaGate {
    /// Takes `n` submissions from `key`'s bucket under `quota`'s rate. 429 `rate_limited`
    /// with `Retry-After` when the bucket holds fewer; 422 `invalid_batch` when `n` is more
    /// than the bucket can ever hold.
    pub fn check_rate(&self, quota: &TenantQuota, key: &str, n: u32) -> Result<(), ApiError> {
        let Some((rate, burst)) = quota.rate() else {
            return Ok(());
        };
        let now = self.inner.origin.elapsed();
        let mut buckets = self
            .inner
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, (b, (rate, burst))| !b.is_full(*rate, *burst, now));
        }
        let (bucket, used) = buckets
            .entry(key.to_string())
            .or_insert_with(|| (TokenBucket::full(burst, now), (rate, burst)));
        *used = (rate, burst);
        match bucket.take(n, rate, burst, now) {
            Ok(()) => Ok(()),
            Err(Refusal::Wait(wait)) => {
                let ms = wait.as_millis();
                Err(ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "this key may submit {rate} evaluations per minute (bursts of {burst}); \
                         retry in {ms} ms"
                    ),
                )
                .with_details(json!({
                    "rate_per_minute": rate,
                    "burst": burst,
                    "requested": n,
                    "retry_after_ms": ms,
                }))
                .with_retry_after(retry_after_secs(wait)))
            }
            Err(Refusal::Never) => Err(ApiError::new(
                ErrorCode::InvalidBatch,
                format!(
                    "a batch of {n} is more than this key's burst of {burst} submissions; \
                     send smaller batches"
                ),
            )
            .with_details(json!({"burst": burst, "requested": n}))),
        }
    }

    /// Checks that `n` more queued evaluations of `tenant` fit under the tenant's and the
    /// global queue caps. Keep the permit until they are inserted.
    pub async fn admit<'a>(
        &'a self,
        store: &dyn Store,
        quotas: &QuotaPolicy,
        tenant: &str,
        n: u64,
    ) -> Result<AdmitPermit<'a>, ApiError> {
        let tenant_cap = quotas.for_tenant(tenant).queued_cap();
        let total_cap = quotas.queued_total_cap();
        if tenant_cap.is_none() && total_cap.is_none() {
            return Ok(AdmitPermit { _guard: None });
        }
        let guard = self.inner.admit.lock().await;
        if let Some(limit) = tenant_cap {
            let queued = store
                .count_queued(Some(tenant))
                .await
                .map_err(crate::store_error)?;
            if queued.saturating_add(n) > limit {
                return Err(ApiError::new(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "tenant {tenant:?} has {queued} evaluations queued; at most {limit} may \
                         wait at once ({n} more requested)"
                    ),
                )
                .with_details(json!({"limit": limit, "queued": queued, "requested": n}))
                .with_retry_after(QUEUE_RETRY_AFTER_SECS));
            }
        }
        if let Some(limit) = total_cap {
            let queued = store.count_queued(None).await.map_err(crate::store_error)?;
            if queued.saturating_add(n) > limit {
                tracing::warn!(queued, limit, "queue full: refusing submissions");
                return Err(
                    ApiError::new(ErrorCode::QueueFull, "the queue is full; retry later")
                        .with_retry_after(QUEUE_RETRY_AFTER_SECS),
                );
            }
        }
        Ok(AdmitPermit {
            _guard: Some(guard),
        })
    }
}

/// Whole seconds, rounded up, at least 1 (`Retry-After` has no fractions).
fn retry_after_secs(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis().div_ceil(1000).max(1)).unwrap_or(u64::MAX)
}

/// Why a bucket refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Enough tokens will be there after this long.
    Wait(Duration),
    /// More than the bucket holds when full.
    Never,
}

/// A token bucket in exact integer arithmetic: one token is `60_000` units and the bucket
/// gains `rate` units per millisecond (`rate` tokens per minute), up to `burst` tokens. Time is
/// passed in (since an origin), so it is tested without sleeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TokenBucket {
    units: u128,
    at_ms: u128,
}

const UNITS_PER_TOKEN: u128 = 60_000;

impl TokenBucket {
    fn full(burst: u32, now: Duration) -> TokenBucket {
        TokenBucket {
            units: u128::from(burst) * UNITS_PER_TOKEN,
            at_ms: now.as_millis(),
        }
    }

    fn refill(&mut self, rate: u32, burst: u32, now: Duration) {
        let now_ms = now.as_millis();
        let elapsed = now_ms.saturating_sub(self.at_ms);
        let cap = u128::from(burst) * UNITS_PER_TOKEN;
        self.units = self
            .units
            .saturating_add(elapsed.saturating_mul(u128::from(rate)))
            .min(cap);
        self.at_ms = self.at_ms.max(now_ms);
    }

    fn is_full(&self, rate: u32, burst: u32, now: Duration) -> bool {
        let mut b = *self;
        b.refill(rate, burst, now);
        b.units >= u128::from(burst) * UNITS_PER_TOKEN
    }

    /// Takes `n` tokens, or says how long until there are `n` (nothing is taken then).
    fn take(&mut self, n: u32, rate: u32, burst: u32, now: Duration) -> Result<(), Refusal> {
        if n > burst {
            return Err(Refusal::Never);
        }
        self.refill(rate, burst, now);
        let need = u128::from(n) * UNITS_PER_TOKEN;
        if self.units >= need {
            self.units -= need;
            return Ok(());
        }
        let missing = need - self.units;
        let ms = missing.div_ceil(u128::from(rate.max(1)));
        Err(Refusal::Wait(Duration::from_millis(
            u64::try_from(ms).unwrap_or(u64::MAX),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        // 60 per minute = one per second, bursts of 3.
        let mut b = TokenBucket::full(3, ms(0));
        for _ in 0..3 {
            b.take(1, 60, 3, ms(0)).unwrap();
        }
        assert_eq!(b.take(1, 60, 3, ms(0)), Err(Refusal::Wait(ms(1000))));
        assert_eq!(b.take(1, 60, 3, ms(400)), Err(Refusal::Wait(ms(600))));
        b.take(1, 60, 3, ms(1000)).unwrap();
        assert_eq!(b.take(1, 60, 3, ms(1000)), Err(Refusal::Wait(ms(1000))));
        // A long pause refills to the burst, never beyond.
        let at = ms(3_600_000);
        for _ in 0..3 {
            b.take(1, 60, 3, at).unwrap();
        }
        assert!(b.take(1, 60, 3, at).is_err());
    }

    #[test]
    fn refused_requests_take_nothing() {
        let mut b = TokenBucket::full(2, ms(0));
        b.take(2, 60, 2, ms(0)).unwrap();
        for t in [0, 100, 200, 500] {
            assert!(b.take(1, 60, 2, ms(t)).is_err());
        }
        // Exactly one token's worth of time after the burst: one more, no debt from refusals.
        b.take(1, 60, 2, ms(1000)).unwrap();
    }

    #[test]
    fn batches_take_their_size_all_or_nothing() {
        let mut b = TokenBucket::full(10, ms(0));
        b.take(7, 600, 10, ms(0)).unwrap();
        // 3 left; 5 wanted: 2 missing at 10 per second = 200 ms; nothing taken meanwhile.
        assert_eq!(b.take(5, 600, 10, ms(0)), Err(Refusal::Wait(ms(200))));
        b.take(3, 600, 10, ms(0)).unwrap();
        assert_eq!(b.take(11, 600, 10, ms(0)), Err(Refusal::Never));
    }

    #[test]
    fn high_rates_wait_milliseconds_and_fractions_round_up() {
        // 6000 per minute: a token every 10 ms.
        let mut b = TokenBucket::full(1, ms(0));
        b.take(1, 6000, 1, ms(0)).unwrap();
        assert_eq!(b.take(1, 6000, 1, ms(3)), Err(Refusal::Wait(ms(7))));
        b.take(1, 6000, 1, ms(10)).unwrap();
        // 7 per minute: 8571.43 ms per token, rounded up.
        let mut b = TokenBucket::full(1, ms(0));
        b.take(1, 7, 1, ms(0)).unwrap();
        assert_eq!(b.take(1, 7, 1, ms(0)), Err(Refusal::Wait(ms(8572))));
    }

    #[test]
    fn time_going_backwards_does_not_refill() {
        let mut b = TokenBucket::full(1, ms(1000));
        b.take(1, 60, 1, ms(1000)).unwrap();
        assert!(b.take(1, 60, 1, ms(0)).is_err());
        assert!(b.take(1, 60, 1, ms(1999)).is_err());
        b.take(1, 60, 1, ms(2000)).unwrap();
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_after_secs(ms(0)), 1);
        assert_eq!(retry_after_secs(ms(10)), 1);
        assert_eq!(retry_after_secs(ms(1000)), 1);
        assert_eq!(retry_after_secs(ms(1001)), 2);
    }

    #[test]
    fn gate_limits_per_key_and_answers_429_with_retry_after() {
        let gate = QuotaGate::default();
        let q = TenantQuota {
            rate_per_minute: 1,
            burst: 2,
            ..Default::default()
        };
        gate.check_rate(&q, "k1", 2).unwrap();
        let e = gate.check_rate(&q, "k1", 1).unwrap_err();
        assert_eq!(e.status(), 429);
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert_eq!(e.retry_after, Some(60));
        assert_eq!(e.details.as_ref().unwrap()["burst"], 2);
        // Another key has its own bucket.
        gate.check_rate(&q, "k2", 1).unwrap();
        let e = gate.check_rate(&q, "k2", 3).unwrap_err();
        assert_eq!(e.status(), 422);
        assert_eq!(e.code, ErrorCode::InvalidBatch);
        // No rate: no limit.
        let free = TenantQuota {
            rate_per_minute: 0,
            ..Default::default()
        };
        for _ in 0..1000 {
            gate.check_rate(&free, "k1", 1000).unwrap();
        }
    }
}
