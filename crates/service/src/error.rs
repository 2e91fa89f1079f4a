//! Store failures as the API's errors.

use assay_api::ApiError;
use assay_store::StoreError;

/// How a store failure reaches the caller: a missing evaluation is a 404, a state that does not
/// allow the action a 409, a busy store a 503 to retry, anything else a 500 (the cause logged,
/// never shown).
pub(crate) fn store_error(e: StoreError) -> ApiError {
    use assay_api::ErrorCode;
    match e {
        StoreError::NotFound(_) => ApiError::not_found("evaluation"),
        StoreError::Conflict { .. } => ApiError::new(ErrorCode::Conflict, e.to_string()),
        StoreError::IdempotencyConflict(_) => ApiError::new(
            ErrorCode::IdempotencyConflict,
            "this Idempotency-Key was used for a different request",
        ),
        StoreError::InvalidCursor => ApiError::new(ErrorCode::InvalidCursor, "invalid cursor"),
        StoreError::Unavailable(_) => ApiError::unavailable(e, 1),
        StoreError::LeaseLost(_) | StoreError::Backend(_) | StoreError::Refused(_) => {
            ApiError::internal(e)
        }
    }
}
