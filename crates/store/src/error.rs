//! What can go wrong in a store, and whether trying again may help.

use assay_domain::EvaluationStatus;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No evaluation (or API key) with this id.
    #[error("{0} not found")]
    NotFound(String),
    /// The lease token is not the current one (expired and re-claimed, or finished): the
    /// caller is a zombie and must stop writing.
    #[error("lease lost for evaluation {0}")]
    LeaseLost(String),
    /// The evaluation's state does not allow the action.
    #[error("evaluation {id} is {status}: {action} is not possible")]
    Conflict {
        id: String,
        status: EvaluationStatus,
        action: &'static str,
    },
    /// Some items of a batch carry idempotency keys seen before and some do not: the batch is
    /// not a retry of one earlier batch. Nothing was inserted.
    #[error("idempotency key {0:?} was used for a different request")]
    IdempotencyConflict(String),
    /// The submission was not admitted ([`crate::Refusal`]): nothing was inserted.
    #[error("not admitted: {0:?}")]
    Refused(crate::Refusal),
    #[error("invalid cursor")]
    InvalidCursor,
    /// The backend could not do it now (busy, timed out, connection lost); the same call may
    /// succeed if tried again.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend failed in a way a retry will not mend (corrupt data, a broken schema).
    #[error("store: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether the same call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
