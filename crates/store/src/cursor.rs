//! The cursors of paged lists. Opaque to clients; backends encode and decode them only here.
//!
//! Evaluations: `<created_at>.<key>` of the last item of a page, where `key` is the backend's
//! insertion-ordered row key (ties on `created_at` are broken by it). Audit log: the `seq` of
//! the last entry.

use crate::{Millis, StoreError};

/// The position after which the next page of evaluations starts (newest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: Millis,
    pub key: i64,
}

fn number(s: &str) -> Result<i64, StoreError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(StoreError::InvalidCursor);
    }
    s.parse().map_err(|_| StoreError::InvalidCursor)
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at, self.key)
    }

    pub fn decode(s: &str) -> Result<Cursor, StoreError> {
        let (a, b) = s.split_once('.').ok_or(StoreError::InvalidCursor)?;
        Ok(Cursor {
            created_at: number(a)?,
            key: number(b)?,
        })
    }
}

/// The cursor of a page of the audit log: the last entry's `seq`.
pub fn encode_seq(seq: i64) -> String {
    seq.to_string()
}

pub fn decode_seq(s: &str) -> Result<i64, StoreError> {
    let seq = number(s)?;
    if seq < 0 {
        return Err(StoreError::InvalidCursor);
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let c = Cursor {
            created_at: 1_700_000_000_123,
            key: 42,
        };
        assert_eq!(c.encode(), "1700000000123.42");
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        let neg = Cursor {
            created_at: -1,
            key: 7,
        };
        assert_eq!(Cursor::decode(&neg.encode()).unwrap(), neg);
        for bad in [
            "", "x", "1", "1.", ".1", "1.2.3", "a.1", "1.b", "1.+2", "--1.2", "1 .2",
        ] {
            assert!(
                matches!(Cursor::decode(bad), Err(StoreError::InvalidCursor)),
                "{bad:?}"
            );
        }
        assert_eq!(decode_seq(&encode_seq(9)).unwrap(), 9);
        for bad in ["", "-1", "x", "1.0", "99999999999999999999"] {
            assert!(decode_seq(bad).is_err(), "{bad:?}");
        }
    }
}
