//! Parsers for the human forms used on the command line and in config: `3s`, `500ms`, `256MiB`.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("invalid duration {input:?}: {reason} (examples: 3s, 500ms, 1m30s)")]
    Duration { input: String, reason: String },
    #[error("invalid size {input:?}: {reason} (examples: 256MiB, 1GiB, 64M, 4096)")]
    Size { input: String, reason: String },
}

/// Parses a duration such as `3s`, `500ms` or `1m30s`. A bare number is rejected: the unit must
/// be explicit so that `--timeout 3` can never silently mean three milliseconds.
pub fn parse_duration(input: &str) -> Result<Duration, ParseError> {
    let err = |reason: &str| ParseError::Duration {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(err("empty"));
    }
    if trimmed.chars().all(|c| c.is_ascii_digit()) {
        return Err(err("a unit is required"));
    }
    humantime::parse_duration(trimmed).map_err(|e| err(&e.to_string()))
}

/// Parses a byte size: a whole number with an optional unit. `K`/`KB` are powers of ten, `KiB`
/// powers of two (likewise M, G, T); the unit is case-insensitive; `B` or no unit means bytes.
pub fn parse_size(input: &str) -> Result<u64, ParseError> {
    let err = |reason: &str| ParseError::Size {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = input.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(err("must start with a whole number"));
    }
    let value: u64 = digits.parse().map_err(|_| err("number too large"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(err("unknown unit")),
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| err("number too large"))
}

/// Formats bytes with binary units for messages (`268435456` → `256MiB`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{name}", bytes / size);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("3").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("256mib").unwrap(), 256 << 20);
        assert_eq!(parse_size("64M").unwrap(), 64_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("-5").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(format_size(256 << 20), "256MiB");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size(3 << 30), "3GiB");
    }
}
