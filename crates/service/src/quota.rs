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
//! This module only says what to check ([`admission`]) and how a refusal reads
//! ([`refusal_error`]): the store checks the caps and charges the bucket in the transaction that
//! inserts the evaluations, so they hold exactly however many API processes share the store
//! (ADR 0010).

use assay_api::{ApiError, ErrorCode};
use assay_domain::{QuotaPolicy, TenantQuota};
use assay_store::{Admission, RateCharge, Refusal};
use serde_json::json;

/// The `Retry-After` (seconds) of a full queue or a tenant at its queued cap: the queue drains
/// at the workers' pace, which the API does not know; this is a polite first back-off.
pub const QUEUE_RETRY_AFTER_SECS: u64 = 5;

/// What a submission of `tenant` with the key `key_id` must pass.
pub fn admission(quotas: &QuotaPolicy, tenant: &str, key_id: &str) -> Admission {
    let quota = quotas.for_tenant(tenant);
    Admission {
        tenant_cap: quota.queued_cap(),
        total_cap: quotas.queued_total_cap(),
        rate: quota.rate().map(|(per_minute, burst)| RateCharge {
            bucket: key_id.to_string(),
            per_minute,
            burst,
        }),
    }
}

/// 422 `invalid_batch` when `n` is more than the key's bucket can ever hold (checked before
/// validation, like every other property of the batch as a whole).
pub fn check_burst(quota: &TenantQuota, n: u32) -> Result<(), ApiError> {
    match quota.rate() {
        Some((_, burst)) if n > burst => Err(over_burst(burst, n)),
        _ => Ok(()),
    }
}

fn over_burst(burst: u32, n: u32) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidBatch,
        format!(
            "a batch of {n} is more than this key's burst of {burst} submissions; send smaller \
             batches"
        ),
    )
    .with_details(json!({"burst": burst, "requested": n}))
}

/// The API's answer to a refusal of `n` evaluations of `tenant` under `quota`.
pub fn refusal_error(r: Refusal, quota: &TenantQuota, tenant: &str, n: u32) -> ApiError {
    match r {
        Refusal::RateLimited { wait_ms } => {
            let (rate, burst) = quota.rate().unwrap_or_default();
            ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "this key may submit {rate} evaluations per minute (bursts of {burst}); \
                     retry in {wait_ms} ms"
                ),
            )
            .with_details(json!({
                "rate_per_minute": rate,
                "burst": burst,
                "requested": n,
                "retry_after_ms": wait_ms,
            }))
            .with_retry_after(retry_after_secs(wait_ms))
        }
        Refusal::OverBurst { burst } => over_burst(burst, n),
        Refusal::TenantQueueFull { queued, limit } => ApiError::new(
            ErrorCode::QuotaExceeded,
            format!(
                "tenant {tenant:?} has {queued} evaluations queued; at most {limit} may wait at \
                 once ({n} more requested)"
            ),
        )
        .with_details(json!({"limit": limit, "queued": queued, "requested": n}))
        .with_retry_after(QUEUE_RETRY_AFTER_SECS),
        Refusal::QueueFull { queued, limit } => {
            tracing::warn!(queued, limit, "queue full: refusing submissions");
            ApiError::new(ErrorCode::QueueFull, "the queue is full; retry later")
                .with_retry_after(QUEUE_RETRY_AFTER_SECS)
        }
    }
}

/// Whole seconds, rounded up, at least 1 (`Retry-After` has no fractions).
fn retry_after_secs(wait_ms: u64) -> u64 {
    wait_ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(10), 1);
        assert_eq!(retry_after_secs(1000), 1);
        assert_eq!(retry_after_secs(1001), 2);
    }

    #[test]
    fn refusals_read_as_before() {
        let q = TenantQuota {
            rate_per_minute: 1,
            burst: 2,
            ..Default::default()
        };
        let e = refusal_error(Refusal::RateLimited { wait_ms: 60_000 }, &q, "t", 1);
        assert_eq!(e.status(), 429);
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert_eq!(e.retry_after, Some(60));
        assert_eq!(e.details.as_ref().unwrap()["burst"], 2);
        let e = check_burst(&q, 3).unwrap_err();
        assert_eq!((e.status(), e.code), (422, ErrorCode::InvalidBatch));
        check_burst(&q, 2).unwrap();
        let e = refusal_error(
            Refusal::TenantQueueFull {
                queued: 4,
                limit: 5,
            },
            &q,
            "t",
            2,
        );
        assert_eq!((e.status(), e.code), (429, ErrorCode::QuotaExceeded));
        assert_eq!(e.details.as_ref().unwrap()["queued"], 4);
        let e = refusal_error(
            Refusal::QueueFull {
                queued: 9,
                limit: 9,
            },
            &q,
            "t",
            1,
        );
        assert_eq!((e.status(), e.code), (503, ErrorCode::QueueFull));
        assert!(e.details.is_none(), "no counts of other tenants");
        // The default rate is charged to the key's own bucket.
        let charge = admission(&QuotaPolicy::default(), "t", "k").rate.unwrap();
        assert_eq!(charge.bucket, "k");
        // No rate (0): no limit and no charge.
        let free = TenantQuota {
            rate_per_minute: 0,
            burst: 0,
            ..TenantQuota::default()
        };
        let policy = QuotaPolicy {
            default: free.clone(),
            ..QuotaPolicy::default()
        };
        assert!(admission(&policy, "t", "k").rate.is_none());
        check_burst(&free, 100_000).unwrap();
    }
}
