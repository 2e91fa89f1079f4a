//! Blob store URLs: `file:///abs/dir`, `s3://bucket` and `s3://bucket/some/prefix`.
//!
//! One string in the configuration names where large objects live; everything else about the
//! store (endpoint, region, credentials) comes from the environment so that secrets stay out of
//! URLs. Parsing is strict and `Display` prints the canonical form, so `parse(display(u)) == u`.

use crate::error::BlobError;
use crate::key::validate_key;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where a [`crate::Blobs`] keeps its objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobUrl(Location);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Location {
    File(PathBuf),
    S3 {
        bucket: String,
        prefix: Option<String>,
    },
}

/// The longest `s3://bucket/prefix` prefix, so that prefix and key fit S3's 1024-byte limit.
const MAX_PREFIX_LEN: usize = 256;

impl BlobUrl {
    /// Parses a store URL. A trailing `/` is accepted and dropped.
    pub fn parse(url: &str) -> Result<Self, BlobError> {
        let bad = |reason: &str| BlobError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad(
                    "a file URL names an absolute directory: file:///abs/dir (three slashes)",
                ));
            }
            if path.contains(['?', '#', '%']) || path.chars().any(char::is_control) {
                return Err(bad(
                    "'?', '#', '%' and control characters are not supported",
                ));
            }
            let trimmed = path.trim_end_matches('/');
            let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
            if trimmed.contains("//") || trimmed.split('/').any(|s| s == "." || s == "..") {
                return Err(bad(
                    "the directory must be normalised (no '//', '.' or '..')",
                ));
            }
            Ok(Self(Location::File(PathBuf::from(trimmed))))
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            let (bucket, prefix) = match rest.split_once('/') {
                Some((b, p)) => (b, Some(p)),
                None => (rest, None),
            };
            if let Some(reason) = bucket_problem(bucket) {
                return Err(bad(&reason));
            }
            if let Some(p) = prefix {
                validate_key(p).map_err(|e| bad(&format!("bad prefix: {e}")))?;
                if p.len() > MAX_PREFIX_LEN {
                    return Err(bad(&format!("prefix longer than {MAX_PREFIX_LEN} bytes")));
                }
            }
            Ok(Self(Location::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.map(str::to_string),
            }))
        } else {
            Err(bad(
                "expected file:///abs/dir, s3://bucket or s3://bucket/some/prefix",
            ))
        }
    }

    /// A `file://` URL of an absolute directory.
    pub fn file(dir: &Path) -> Result<Self, BlobError> {
        Self::parse(&format!("file://{}", dir.display()))
    }

    /// The directory of a `file://` store.
    pub fn local_dir(&self) -> Option<&Path> {
        match &self.0 {
            Location::File(p) => Some(p),
            Location::S3 { .. } => None,
        }
    }

    /// The bucket of an `s3://` store.
    pub fn s3_bucket(&self) -> Option<&str> {
        match &self.0 {
            Location::S3 { bucket, .. } => Some(bucket),
            Location::File(_) => None,
        }
    }

    /// The prefix put before every key of an `s3://bucket/prefix` store.
    pub fn s3_prefix(&self) -> Option<&str> {
        match &self.0 {
            Location::S3 { prefix, .. } => prefix.as_deref(),
            Location::File(_) => None,
        }
    }
}

/// Why `b` is not an S3 bucket name (3 to 63 lowercase letters, digits, `-` and `.`, starting and
/// ending with a letter or digit), if it is not.
fn bucket_problem(b: &str) -> Option<String> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = (3..=63).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && edge(b.chars().next())
        && edge(b.chars().last())
        && !b.contains("..");
    (!ok).then(|| {
        format!(
            "bucket {b:?}: 3 to 63 lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit"
        )
    })
}

impl fmt::Display for BlobUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Location::File(p) => write!(f, "file://{}", p.display()),
            Location::S3 {
                bucket,
                prefix: None,
            } => write!(f, "s3://{bucket}"),
            Location::S3 {
                bucket,
                prefix: Some(p),
            } => write!(f, "s3://{bucket}/{p}"),
        }
    }
}

impl FromStr for BlobUrl {
    type Err = BlobError;
    fn from_str(s: &str) -> Result<Self, BlobError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_urls_round_trip() {
        for u in [
            "file:///var/lib/assay/blobs",
            "file:///",
            "s3://assay-outputs",
            "s3://assay.outputs/some/prefix",
            "s3://a1b/x",
        ] {
            let parsed = BlobUrl::parse(u).unwrap_or_else(|e| panic!("{u}: {e}"));
            assert_eq!(parsed.to_string(), u);
            assert_eq!(parsed.to_string().parse::<BlobUrl>().unwrap(), parsed);
        }
    }

    #[test]
    fn accessors_and_trailing_slashes() {
        let u = BlobUrl::parse("file:///tmp/x/").unwrap();
        assert_eq!(u.local_dir(), Some(Path::new("/tmp/x")));
        assert_eq!(u.to_string(), "file:///tmp/x");
        assert_eq!(u.s3_bucket(), None);
        let u = BlobUrl::parse("s3://bucket/pre/fix/").unwrap();
        assert_eq!(u.s3_bucket(), Some("bucket"));
        assert_eq!(u.s3_prefix(), Some("pre/fix"));
        assert_eq!(u.to_string(), "s3://bucket/pre/fix");
        assert_eq!(BlobUrl::parse("s3://bucket/").unwrap().s3_prefix(), None);
        let dir = Path::new("/srv/blobs");
        assert_eq!(BlobUrl::file(dir).unwrap().local_dir(), Some(dir));
    }

    #[test]
    fn refuses_everything_else() {
        for u in [
            "",
            "/abs/dir",
            "file://relative/dir",
            "file:/abs",
            "file:///a/../b",
            "file:///a//b",
            "file:///a%20b",
            "file:///a?x=1",
            "s3://",
            "s3://Bucket",
            "s3://ab",
            "s3://-bucket",
            "s3://bucket-",
            "s3://bu..cket",
            "s3://bucket_name",
            "s3://bucket//x",
            "s3://bucket/a/../b",
            "s3://user@bucket",
            "s3://bucket:9000",
            "gs://bucket",
            "http://localhost:9000/bucket",
            "S3://bucket",
        ] {
            let e = BlobUrl::parse(u).expect_err(u);
            assert!(matches!(e, BlobError::InvalidUrl { .. }), "{u}: {e}");
            assert!(e.to_string().contains("invalid blob store URL"), "{e}");
        }
    }
}
