//! What the API shows of stored things.

use crate::auth::Caller;
use assay_domain::{EvaluationStatus, Language, Limits, RunResult, SubmitRequest};
use assay_store::{ApiKey, Evaluation, Millis, QueueStats, Role, WorkerInfo};
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

/// A key's role: `admin` (everything, every tenant), `member` (submit, read and cancel its
/// tenant's evaluations), `viewer` (read its tenant's evaluations).
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    Admin,
    Member,
    Viewer,
}

impl From<Role> for KeyRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Admin => KeyRole::Admin,
            Role::Member => KeyRole::Member,
            Role::Viewer => KeyRole::Viewer,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// The tenant the key belongs to: `[a-z0-9][a-z0-9-_.]{0,62}`.
    #[schema(example = "acme")]
    pub tenant: String,
    #[schema(value_type = KeyRole)]
    pub role: String,
    /// 1 to 100 characters, to recognise the key by.
    #[schema(example = "ci runner")]
    pub name: String,
    /// RFC 3339, in the future; absent or null: the key does not expire.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// Whether a key authenticates now.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Active,
    Expired,
    Revoked,
}

/// An API key as listed: never the key itself, never its hash.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub role: KeyRole,
    pub state: KeyState,
    /// RFC 3339.
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// Recorded at most once a minute.
    pub last_used_at: Option<String>,
}

impl KeyView {
    pub fn new(k: &ApiKey, now: Millis) -> KeyView {
        let state = if k.revoked_at.is_some() {
            KeyState::Revoked
        } else if k.expires_at.is_some_and(|e| e <= now) {
            KeyState::Expired
        } else {
            KeyState::Active
        };
        KeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            tenant: k.tenant.clone(),
            role: k.role.into(),
            state,
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<KeyView>,
}

/// A new API key. `key` is shown only in this answer: store it now.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct NewKeyView {
    pub id: String,
    /// The secret to send as `Authorization: Bearer <key>`.
    pub key: String,
    pub tenant: String,
    pub role: KeyRole,
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    pub expires_at: Option<String>,
}

impl NewKeyView {
    pub fn new(k: &ApiKey, secret: String) -> NewKeyView {
        NewKeyView {
            id: k.id.clone(),
            key: secret,
            tenant: k.tenant.clone(),
            role: k.role.into(),
            name: k.name.clone(),
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
        }
    }
}

/// The key making the request.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct MeView {
    pub key_id: String,
    pub name: String,
    pub tenant: String,
    pub role: KeyRole,
    /// RFC 3339; null: never.
    pub expires_at: Option<String>,
}

impl From<&Caller> for MeView {
    fn from(c: &Caller) -> Self {
        MeView {
            key_id: c.key_id.clone(),
            name: c.name.clone(),
            tenant: c.tenant.clone(),
            role: c.role.into(),
            expires_at: c.expires_at.map(rfc3339),
        }
    }
}
