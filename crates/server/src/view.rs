//! What the API shows of stored things.

use assay_domain::{EvaluationStatus, Language, Limits, RunResult, SubmitRequest};
use assay_store::{Evaluation, Millis, QueueStats, WorkerInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};
use utoipa::ToSchema;

pub fn rfc3339(ms: Millis) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn parse_time(s: &str) -> Option<Millis> {
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as Millis)
}

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct EvaluationView {
    pub id: String,
    pub status: EvaluationStatus,
    pub language: Language,
    pub entrypoint: String,
    pub priority: i32,
    pub labels: BTreeMap<String, String>,
    pub limits: Limits,
    /// Attempts started (more than one when the platform failed and the run was retried).
    pub attempts: u32,
    pub max_attempts: u32,
    /// RFC 3339.
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub result: Option<RunResult>,
    /// Dead-letter reason or the last platform error.
    pub error: Option<String>,
    pub worker_id: Option<String>,
    pub cancel_requested: bool,
}

impl From<&Evaluation> for EvaluationView {
    fn from(e: &Evaluation) -> Self {
        EvaluationView {
            id: e.id.clone(),
            status: e.status,
            language: e.language,
            entrypoint: e.entrypoint.clone(),
            priority: e.priority,
            labels: e.labels.clone(),
            limits: e.limits,
            attempts: e.attempts,
            max_attempts: e.max_attempts,
            created_at: rfc3339(e.created_at),
            started_at: e.started_at.map(rfc3339),
            finished_at: e.finished_at.map(rfc3339),
            result: e.result.clone(),
            error: e.error.clone(),
            worker_id: e.worker_id.clone(),
            cancel_requested: e.cancel_requested,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EvaluationPage {
    pub items: Vec<EvaluationView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 1000 submissions, validated all or nothing.
    pub items: Vec<SubmitRequest>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    pub items: Vec<EvaluationView>,
}

#[derive(Serialize, ToSchema)]
pub struct WorkerView {
    pub id: String,
    pub hostname: String,
    pub runtime: String,
    pub slots: u32,
    pub running: u32,
    pub started_at: String,
    pub last_seen: String,
}

impl From<&WorkerInfo> for WorkerView {
    fn from(w: &WorkerInfo) -> Self {
        WorkerView {
            id: w.id.clone(),
            hostname: w.hostname.clone(),
            runtime: w.runtime.clone(),
            slots: w.slots,
            running: w.running,
            started_at: rfc3339(w.started_at),
            last_seen: rfc3339(w.last_seen),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct QueueView {
    /// Evaluations by status.
    pub counts: BTreeMap<String, u64>,
    /// Age of the oldest queued evaluation, in milliseconds.
    pub oldest_queued_age_ms: Option<i64>,
    pub workers: Vec<WorkerView>,
}

impl From<&QueueStats> for QueueView {
    fn from(q: &QueueStats) -> Self {
        QueueView {
            counts: q.counts.clone(),
            oldest_queued_age_ms: q.oldest_queued_age_ms,
            workers: q.workers.iter().map(WorkerView::from).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}
