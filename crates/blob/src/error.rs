//! Errors of the blob store, and the one place that turns `object_store`'s errors into them.
//!
//! Callers decide between "try again later" and "give up" from the error alone
//! ([`BlobError::is_retryable`]), the way `assay-store`'s errors work: a worker retries an upload
//! of outputs when the store was unreachable, and fails the evaluation when the store refused.

use object_store::client::{HttpError, HttpErrorKind};
use std::error::Error as StdError;

/// What went wrong with a blob operation.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The store's URL is not one Assay understands.
    #[error("invalid blob store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A key (or prefix) breaks the key rules (see [`crate::validate_key`]).
    #[error("invalid blob key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    /// The store's settings are incomplete or unreadable (credentials, `*_FILE` secrets).
    #[error("blob store configuration: {0}")]
    Config(String),
    /// No object at this key.
    #[error("no blob at {0:?}")]
    NotFound(String),
    /// `put_if_absent` found an object already there.
    #[error("a blob already exists at {0:?}")]
    AlreadyExists(String),
    /// The requested byte range does not start inside the object.
    #[error("range {start}..{end} is outside blob {key:?} of {size} bytes")]
    InvalidRange {
        key: String,
        start: u64,
        end: u64,
        size: u64,
    },
    /// The store could not be reached or failed transiently (connection refused, timeouts, 5xx
    /// after the client's own retries): a later retry may succeed.
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
    /// The store refused or failed in a way a retry will not fix (bad credentials, permissions,
    /// a local I/O error, a protocol error).
    #[error("blob store error: {0}")]
    Backend(String),
}

impl BlobError {
    /// Whether the same call may succeed later (the store was unreachable or overloaded).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Maps an `object_store` error about `key` (a key relative to the store, as the caller
    /// gave it).
    pub(crate) fn from_store(e: object_store::Error, key: &str) -> Self {
        use object_store::Error as E;
        match e {
            E::NotFound { .. } => Self::NotFound(key.to_string()),
            E::AlreadyExists { .. } | E::Precondition { .. } => {
                Self::AlreadyExists(key.to_string())
            }
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => Self::Backend(format!(
                "access denied (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): {}",
                chain(&e)
            )),
            e if is_transient(&e) => Self::Unavailable(chain(&e)),
            e => Self::Backend(chain(&e)),
        }
    }
}

/// Whether an error's causes show a transport failure or a server-side (5xx, 429, 408) failure.
fn is_transient(e: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        // object_store's retry error (which carries the status) is private to it; its message
        // is "Server returned non-2xx status code: 503 Service Unavailable: ...".
        if let Some(status) = status_in(&err.to_string()) {
            return status >= 500 || status == 429 || status == 408;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if matches!(
                io.kind(),
                K::ConnectionRefused | K::ConnectionReset | K::ConnectionAborted | K::TimedOut
            ) {
                return true;
            }
        }
        current = err.source();
    }
    false
}

/// The HTTP status in an object_store error message, if it names one.
fn status_in(message: &str) -> Option<u16> {
    const MARK: &str = "status code: ";
    let at = message.find(MARK)? + MARK.len();
    let digits = message.get(at..at + 3)?;
    digits.parse().ok()
}

/// The error and its causes on one line, without repeating a cause the message already holds.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut current = e.source();
    while let Some(err) = current {
        let s = err.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        current = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_status_in_a_message() {
        assert_eq!(
            status_in(
                "Error performing PUT http://x in 1s - Server returned non-2xx status code: 503 Service Unavailable: "
            ),
            Some(503)
        );
        assert_eq!(status_in("no status here"), None);
        assert_eq!(status_in("status code: 4"), None);
    }

    #[test]
    fn only_unavailable_is_retryable() {
        assert!(BlobError::Unavailable("x".into()).is_retryable());
        assert!(!BlobError::Backend("x".into()).is_retryable());
        assert!(!BlobError::NotFound("k".into()).is_retryable());
    }

    #[test]
    fn maps_object_store_errors() {
        let e = object_store::Error::NotFound {
            path: "p/k".into(),
            source: "gone".into(),
        };
        assert!(matches!(BlobError::from_store(e, "k"), BlobError::NotFound(k) if k == "k"));
        let e = object_store::Error::Precondition {
            path: "k".into(),
            source: "exists".into(),
        };
        assert!(matches!(
            BlobError::from_store(e, "k"),
            BlobError::AlreadyExists(_)
        ));
        let e = object_store::Error::Unauthenticated {
            path: "k".into(),
            source: "SignatureDoesNotMatch".into(),
        };
        let e = BlobError::from_store(e, "k");
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("SignatureDoesNotMatch"), "{e}");
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = object_store::Error::Generic {
            store: "S3",
            source: Box::new(io),
        };
        assert!(BlobError::from_store(e, "k").is_retryable());
    }
}
