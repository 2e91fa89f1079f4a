//! `assay-api`: the HTTP API's types, defined once.
//!
//! Request and response bodies, query parameters, the events of the live stream and the error
//! codes. The server renders them, the CLI parses them, and the OpenAPI document
//! (`docs/openapi.json`, from which the dashboard's TypeScript types are generated) is derived
//! from them. Nothing here knows storage, sandboxes or an HTTP server.
//!
//! Wire formats are contracts. Request bodies and query strings refuse unknown fields, so a
//! typo is an error rather than a silently ignored option. Responses only ever gain fields;
//! readers ignore fields they do not know.
#![forbid(unsafe_code)]

pub mod audit;
pub mod error;
pub mod evaluation;
pub mod events;
pub mod keys;
pub mod queue;
pub mod time;

pub use assay_domain::{
    EvaluationStatus, Language, LimitOverrides, OutputStream, ProgramFile, Role, RunStatus,
};
pub use error::{ApiError, ErrorBody, ErrorCode, ErrorInfo};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Largest request body accepted (a batch of 1000 programs fits; one program is capped lower by
/// validation).
pub const MAX_BODY_BYTES: usize = 32 << 20;
/// Most items of one `POST /v1/evaluations/batch`.
pub const MAX_BATCH: usize = 1000;
/// Longest `?wait=` of a submission, in seconds.
pub const MAX_WAIT_SECS: u64 = 60;
/// Largest page of every list.
pub const MAX_PAGE: u32 = 1000;
/// Page size when a list request gives none.
pub const DEFAULT_PAGE: u32 = 100;
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;
/// The header that makes a submission (or a batch) safe to retry.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The header every answer carries: the id the audit log records for the call.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Query parameters that would carry a credential: refused on every `/v1` route.
pub const CREDENTIAL_QUERY_PARAMS: [&str; 7] = [
    "key",
    "api_key",
    "apikey",
    "token",
    "access_token",
    "jwt",
    "id_token",
];

/// `/healthz` and `/readyz`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `ok` (alive) or `ready` (the store answers).
    pub status: String,
}
