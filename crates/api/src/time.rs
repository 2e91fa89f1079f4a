//! Times on the wire: RFC 3339 in UTC with milliseconds (`2025-01-02T03:04:05.123Z`).

use std::time::{Duration, UNIX_EPOCH};

/// Unix milliseconds as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// An RFC 3339 time (with or without `Z`, fractions optional) as unix milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let since = humantime::parse_rfc3339_weak(s)
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?;
    i64::try_from(since.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = 1_735_787_045_123;
        assert_eq!(rfc3339(t), "2025-01-02T03:04:05.123Z");
        assert_eq!(parse_time(&rfc3339(t)), Some(t));
        assert_eq!(parse_time("2025-01-02T03:04:05Z"), Some(1_735_787_045_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
    }
}
