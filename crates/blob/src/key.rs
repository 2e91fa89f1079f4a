//! The rules every key (and list or delete prefix) follows, the same for every backend.
//!
//! Keys become file paths on `file://` and URL paths on S3, so the rules are the intersection of
//! what both take without surprises: `/`-separated segments of ASCII letters, digits and
//! `- _ . = + @ ~`, no empty, `.` or `..` segment (no escaping the store's directory or prefix,
//! no two spellings of one key), and lengths that fit a file name and S3's key limit even after
//! a URL prefix. `#` is excluded because object_store's local backend reserves `name#<n>` for
//! uploads in progress.

use crate::error::BlobError;
use object_store::path::Path;

/// The longest key, in bytes (S3 allows 1024 including the URL's prefix, which is kept shorter).
pub const MAX_KEY_LEN: usize = 512;
/// The longest segment, in bytes (a file name on common file systems).
pub const MAX_SEGMENT_LEN: usize = 255;

/// Checks `key` against the key rules.
pub fn validate_key(key: &str) -> Result<(), BlobError> {
    let bad = |reason: &str| {
        Err(BlobError::InvalidKey {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad(&format!("longer than {MAX_KEY_LEN} bytes"));
    }
    if key.starts_with('/') {
        return bad("starts with '/' (keys are relative)");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return bad("has an empty segment ('//' or a trailing '/')");
        }
        if segment == "." || segment == ".." {
            return bad("has a '.' or '..' segment");
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return bad(&format!(
                "has a segment longer than {MAX_SEGMENT_LEN} bytes"
            ));
        }
        if let Some(c) = segment.chars().find(|c| !allowed(*c)) {
            return bad(&format!(
                "has {c:?}: allowed are ASCII letters, digits and - _ . = + @ ~"
            ));
        }
    }
    Ok(())
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | '+' | '@' | '~')
}

/// The object_store path of a valid key.
pub(crate) fn key_path(key: &str) -> Result<Path, BlobError> {
    validate_key(key)?;
    Path::parse(key).map_err(|e| BlobError::InvalidKey {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// The object_store path of a list or delete prefix: empty (everything) or a valid key.
pub(crate) fn prefix_path(prefix: &str) -> Result<Option<Path>, BlobError> {
    if prefix.is_empty() {
        Ok(None)
    } else {
        key_path(prefix).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for k in [
            "a",
            "outputs/0b6f9c1e-1f/stdout",
            "a.b/c_d/e-f/g=h/i+j/k@l/m~n",
            ".hidden/x",
            "x..y",
        ] {
            validate_key(k).unwrap_or_else(|e| panic!("{k}: {e}"));
            key_path(k).unwrap();
        }
        validate_key(&"a".repeat(MAX_SEGMENT_LEN)).unwrap();
    }

    #[test]
    fn refuses_bad_keys() {
        let long = format!("{}/{}/x", "a".repeat(255), "b".repeat(255));
        for k in [
            "",
            "/a",
            "a/",
            "a//b",
            "..",
            "a/../b",
            "./a",
            "a/.",
            "a\\b",
            "a b",
            "a#1",
            "a%2F",
            "a?b",
            "é",
            "a\nb",
            long.as_str(),
        ] {
            assert!(
                matches!(validate_key(k), Err(BlobError::InvalidKey { .. })),
                "{k:?} was accepted"
            );
        }
        assert!(validate_key(&"a".repeat(MAX_SEGMENT_LEN + 1)).is_err());
    }

    #[test]
    fn empty_prefix_means_everything() {
        assert_eq!(prefix_path("").unwrap(), None);
        assert_eq!(prefix_path("a/b").unwrap(), Some(Path::from("a/b")));
        assert!(prefix_path("a/").is_err());
    }
}
