//! Admission: what a submission must pass before it is queued, checked by the store in the
//! transaction that inserts it, so that the caps hold exactly however many API processes share
//! the store (ADR 0010):
//!
//! * the tenant's queued evaluations under `tenant_cap`, all tenants' under `total_cap`;
//! * the submitting key's token bucket ([`RateCharge`]), kept in the store.
//!
//! A replay (every idempotency key seen before) is charged nothing. A refusal changes nothing:
//! no token is taken and nothing is inserted. The checks are pure ([`TokenBucket`],
//! [`Admission::check_caps`]); a backend loads the counts and the bucket, asks, and writes the
//! bucket back.

use crate::Millis;
use serde::{Deserialize, Serialize};

/// The checks one submission (or batch) must pass. `Default` checks nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// At most this many queued evaluations (backoff included) of the submitting tenant.
    pub tenant_cap: Option<u64>,
    /// At most this many queued evaluations of all tenants.
    pub total_cap: Option<u64>,
    /// Tokens to take from a key's bucket, one per evaluation.
    pub rate: Option<RateCharge>,
}

/// A token bucket to charge: `per_minute` tokens a minute, at most `burst` at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateCharge {
    /// The bucket's name (the API key's id).
    pub bucket: String,
    pub per_minute: u32,
    pub burst: u32,
}

/// Why a submission was not admitted. Nothing was inserted and no token taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The key's bucket holds fewer tokens than the submission needs; enough will be there
    /// after `wait_ms`.
    RateLimited { wait_ms: u64 },
    /// More evaluations than the bucket holds when full: never admitted as one request.
    OverBurst { burst: u32 },
    /// The tenant's queue cap.
    TenantQueueFull { queued: u64, limit: u64 },
    /// The queue cap of all tenants.
    QueueFull { queued: u64, limit: u64 },
}

impl Admission {
    /// Whether the caps need the queued counts.
    pub fn counts_needed(&self) -> bool {
        self.tenant_cap.is_some() || self.total_cap.is_some()
    }

    /// The caps, given the queued counts now (`None` for a count not loaded because its cap
    /// is not set) and the `n` evaluations asked for. The tenant's cap is checked first.
    pub fn check_caps(
        &self,
        tenant_queued: Option<u64>,
        total_queued: Option<u64>,
        n: u64,
    ) -> Result<(), Refusal> {
        if let (Some(limit), Some(queued)) = (self.tenant_cap, tenant_queued)
            && queued.saturating_add(n) > limit
        {
            return Err(Refusal::TenantQueueFull { queued, limit });
        }
        if let (Some(limit), Some(queued)) = (self.total_cap, total_queued)
            && queued.saturating_add(n) > limit
        {
            return Err(Refusal::QueueFull { queued, limit });
        }
        Ok(())
    }
}

/// A token bucket in exact integer arithmetic: one token is [`UNITS_PER_TOKEN`] units and the
/// bucket gains `per_minute` units per millisecond, up to `burst` tokens. Stored as two integers
/// by every backend (`units`, `at_ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBucket {
    pub units: i64,
    pub at_ms: Millis,
}

pub const UNITS_PER_TOKEN: i64 = 60_000;

impl TokenBucket {
    /// A bucket seen for the first time: full.
    pub fn full(burst: u32, now: Millis) -> TokenBucket {
        TokenBucket {
            units: i64::from(burst) * UNITS_PER_TOKEN,
            at_ms: now,
        }
    }

    fn refill(&mut self, per_minute: u32, burst: u32, now: Millis) {
        let elapsed = now.saturating_sub(self.at_ms).max(0);
        let cap = i64::from(burst) * UNITS_PER_TOKEN;
        self.units = self
            .units
            .saturating_add(elapsed.saturating_mul(i64::from(per_minute)))
            .min(cap);
        self.at_ms = self.at_ms.max(now);
    }

    /// Takes `n` tokens, or says how long until there are `n` (nothing is taken then; time
    /// going backwards refills nothing).
    pub fn take(
        &mut self,
        n: u32,
        per_minute: u32,
        burst: u32,
        now: Millis,
    ) -> Result<(), Refusal> {
        if n > burst {
            return Err(Refusal::OverBurst { burst });
        }
        let mut next = *self;
        next.refill(per_minute, burst, now);
        let need = i64::from(n) * UNITS_PER_TOKEN;
        if next.units >= need {
            next.units -= need;
            *self = next;
            return Ok(());
        }
        // Both positive here: unsigned arithmetic rounds up.
        let missing = u64::try_from(need - next.units).unwrap_or(u64::MAX);
        Err(Refusal::RateLimited {
            wait_ms: missing.div_ceil(u64::from(per_minute.max(1))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(ms: u64) -> Result<(), Refusal> {
        Err(Refusal::RateLimited { wait_ms: ms })
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        // 60 per minute = one per second, bursts of 3.
        let mut b = TokenBucket::full(3, 0);
        for _ in 0..3 {
            b.take(1, 60, 3, 0).unwrap();
        }
        assert_eq!(b.take(1, 60, 3, 0), wait(1000));
        assert_eq!(b.take(1, 60, 3, 400), wait(600));
        b.take(1, 60, 3, 1000).unwrap();
        assert_eq!(b.take(1, 60, 3, 1000), wait(1000));
        // A long pause refills to the burst, never beyond.
        for _ in 0..3 {
            b.take(1, 60, 3, 3_600_000).unwrap();
        }
        assert!(b.take(1, 60, 3, 3_600_000).is_err());
    }

    #[test]
    fn refused_requests_take_nothing() {
        let mut b = TokenBucket::full(2, 0);
        b.take(2, 60, 2, 0).unwrap();
        for t in [0, 100, 200, 500] {
            assert!(b.take(1, 60, 2, t).is_err());
        }
        // Exactly one token's worth of time after the burst: one more, no debt from refusals.
        b.take(1, 60, 2, 1000).unwrap();
    }

    #[test]
    fn batches_take_their_size_all_or_nothing() {
        let mut b = TokenBucket::full(10, 0);
        b.take(7, 600, 10, 0).unwrap();
        // 3 left; 5 wanted: 2 missing at 10 per second = 200 ms; nothing taken meanwhile.
        assert_eq!(b.take(5, 600, 10, 0), wait(200));
        b.take(3, 600, 10, 0).unwrap();
        assert_eq!(
            b.take(11, 600, 10, 0),
            Err(Refusal::OverBurst { burst: 10 })
        );
    }

    #[test]
    fn high_rates_wait_milliseconds_and_fractions_round_up() {
        // 6000 per minute: a token every 10 ms.
        let mut b = TokenBucket::full(1, 0);
        b.take(1, 6000, 1, 0).unwrap();
        assert_eq!(b.take(1, 6000, 1, 3), wait(7));
        b.take(1, 6000, 1, 10).unwrap();
        // 7 per minute: 8571.43 ms per token, rounded up.
        let mut b = TokenBucket::full(1, 0);
        b.take(1, 7, 1, 0).unwrap();
        assert_eq!(b.take(1, 7, 1, 0), wait(8572));
    }

    #[test]
    fn time_going_backwards_does_not_refill() {
        let mut b = TokenBucket::full(1, 1000);
        b.take(1, 60, 1, 1000).unwrap();
        assert!(b.take(1, 60, 1, 0).is_err());
        assert!(b.take(1, 60, 1, 1999).is_err());
        b.take(1, 60, 1, 2000).unwrap();
    }

    #[test]
    fn caps_check_the_tenant_first_then_the_total() {
        let a = Admission {
            tenant_cap: Some(3),
            total_cap: Some(10),
            rate: None,
        };
        assert_eq!(a.check_caps(Some(1), Some(5), 2), Ok(()));
        assert_eq!(
            a.check_caps(Some(2), Some(9), 2),
            Err(Refusal::TenantQueueFull {
                queued: 2,
                limit: 3
            })
        );
        assert_eq!(
            a.check_caps(Some(0), Some(9), 2),
            Err(Refusal::QueueFull {
                queued: 9,
                limit: 10
            })
        );
        assert!(Admission::default().check_caps(None, None, 1000).is_ok());
    }
}
