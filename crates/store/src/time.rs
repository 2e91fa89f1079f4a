//! Time as the store counts it: unix milliseconds, always passed in (`now`), so that leases,
//! backoff and expiry are tested without sleeping.

use std::time::Duration;

/// Unix time in milliseconds.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// `now + d`, saturating.
pub fn after(now: Millis, d: Duration) -> Millis {
    now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
