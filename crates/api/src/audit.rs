//! The audit log on the wire (`GET /v1/audit`; `assay audit export` prints the same objects).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryView {
    /// 1, 2, 3, … in order of recording, without gaps.
    pub seq: i64,
    /// RFC 3339.
    pub at: String,
    /// Unix milliseconds (what the hash covers).
    pub at_ms: i64,
    /// The key id (or external subject) that made the call; absent for failed authentications.
    pub actor: Option<String>,
    pub tenant: Option<String>,
    /// e.g. `evaluation.submit`, `evaluation.cancel`, `key.create`, `key.revoke`, `auth.failed`.
    pub action: String,
    /// The evaluation or key acted on.
    pub target: Option<String>,
    /// `ok`, `denied` or `error`.
    pub outcome: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// The peer's IP address.
    pub source: Option<String>,
    /// As answered in `X-Request-Id`.
    pub request_id: String,
    /// The error code, why authentication failed, or the ids of a batch.
    pub detail: Option<String>,
    /// Hash of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over this entry's fields and `prev_hash`.
    pub hash: String,
}

/// A page of audit entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/audit`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only calls by this key id (or subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only calls by this tenant's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Only this action (e.g. `evaluation.submit`, `auth.failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Only calls on this evaluation or key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `ok`, `denied` or `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// RFC 3339: at or after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// RFC 3339: before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// `newest` (default) or `oldest` first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// From a previous page's `next_cursor` (same order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}
