//! The queue and the workers (`GET /v1/queue`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// One worker process and its load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    pub id: String,
    pub hostname: String,
    /// The OCI runtime its sandboxes use.
    pub runtime: String,
    /// Evaluations it runs at once, at most.
    pub slots: u32,
    /// Evaluations it runs now.
    pub running: u32,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339: its last heartbeat.
    pub last_seen: String,
}

/// Queue status: counts by status and the oldest queued age (of the caller's tenant; for an
/// admin, of every tenant), and the live workers (shared by every tenant).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// Evaluations by status (every status, zeros included).
    pub counts: BTreeMap<String, u64>,
    /// Age of the oldest queued evaluation, in milliseconds.
    pub oldest_queued_age_ms: Option<i64>,
    pub workers: Vec<WorkerView>,
}
