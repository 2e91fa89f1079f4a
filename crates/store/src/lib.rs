//! `assay-store`: the storage contract of Assay — evaluations, the durable job queue, the event
//! log, workers and API keys — as one trait that every backend (SQLite now, PostgreSQL next)
//! implements, plus the conformance suite every backend must pass (`conformance` module).
//!
//! Time is always passed in (`now`, unix milliseconds) so that leases, backoff and expiry are
//! tested without sleeping.
#![forbid(unsafe_code)]

pub mod audit;
pub mod bus;
pub mod conformance;

use assay_domain::{
    EvaluationStatus, Language, Limits, OutputStream, ProgramFile, QuotaPolicy, RetryPolicy,
    RunResult, Submission,
};
pub use audit::{
    AuditBreak, AuditEntry, AuditFilter, AuditOutcome, AuditVerification, NewAuditEntry,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Unix time in milliseconds.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    pub id: String,
    pub tenant: String,
    pub status: EvaluationStatus,
    pub language: Language,
    pub entrypoint: String,
    pub files: Vec<ProgramFile>,
    pub stdin: String,
    pub limits: Limits,
    pub priority: i32,
    pub labels: BTreeMap<String, String>,
    /// Attempts started so far (a retried evaluation shows more than one).
    pub attempts: u32,
    pub max_attempts: u32,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// The run's result, once terminal (absent for cancelled-while-queued and dead).
    pub result: Option<RunResult>,
    /// Dead-letter reason, or the last platform error.
    pub error: Option<String>,
    pub worker_id: Option<String>,
    pub cancel_requested: bool,
    pub idempotency_key: Option<String>,
}

/// What to insert for one submission.
#[derive(Clone, Debug)]
pub struct NewEvaluation {
    pub tenant: String,
    pub submission: Submission,
    /// A client retry with the same key (per tenant) returns the first evaluation.
    pub idempotency_key: Option<String>,
    pub max_attempts: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    Created(Evaluation),
    /// The idempotency key was seen before: this is the evaluation it created.
    Existing(Evaluation),
}

impl SubmitOutcome {
    pub fn evaluation(&self) -> &Evaluation {
        match self {
            SubmitOutcome::Created(e) | SubmitOutcome::Existing(e) => e,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this tenant's evaluations (None: all tenants, for admins).
    pub tenant: Option<String>,
    pub status: Option<EvaluationStatus>,
    /// `key=value` label match.
    pub label: Option<(String, String)>,
    pub created_after: Option<Millis>,
    pub created_before: Option<Millis>,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
    /// Page size, 1..=1000 (the store clamps nothing: callers validate).
    pub limit: u32,
}

/// Newest first. `next_cursor` is present when more items follow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A leased job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub evaluation: Evaluation,
    /// Fencing token: every later write for this attempt must present it.
    pub token: String,
    pub attempt: u32,
    pub lease_expires_at: Millis,
}

/// Running caps per tenant, applied when claiming (from the operator's quotas).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimPolicy {
    /// The cap of every tenant without an entry in `tenants` (`None`: no cap).
    pub max_running: Option<u32>,
    /// Per-tenant caps, replacing `max_running` (`None`: no cap for this tenant).
    pub tenants: BTreeMap<String, Option<u32>>,
}

impl ClaimPolicy {
    /// How many evaluations of `tenant` may run at once (`None`: any number).
    pub fn max_running(&self, tenant: &str) -> Option<u32> {
        match self.tenants.get(tenant) {
            Some(cap) => *cap,
            None => self.max_running,
        }
    }
}

impl From<&QuotaPolicy> for ClaimPolicy {
    fn from(q: &QuotaPolicy) -> ClaimPolicy {
        ClaimPolicy {
            max_running: q.default.running_cap(),
            tenants: q
                .tenants
                .iter()
                .map(|(t, tq)| (t.clone(), tq.running_cap()))
                .collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseState {
    /// The evaluation was cancelled while running: kill the sandbox.
    pub cancel_requested: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Status,
    Stdout,
    Stderr,
    Result,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Status => "status",
            EventKind::Stdout => "stdout",
            EventKind::Stderr => "stderr",
            EventKind::Result => "result",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        [
            EventKind::Status,
            EventKind::Stdout,
            EventKind::Stderr,
            EventKind::Result,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl From<OutputStream> for EventKind {
    fn from(s: OutputStream) -> Self {
        match s {
            OutputStream::Stdout => EventKind::Stdout,
            OutputStream::Stderr => EventKind::Stderr,
        }
    }
}

/// One entry of an evaluation's event log. `seq` starts at 1 and has no gaps.
/// `data`: for `status`, JSON `{"status": "...", "attempt": n}`; for `stdout`/`stderr`, the
/// text; for `result`, the JSON of the evaluation's final state (status, result, error).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub evaluation_id: String,
    pub seq: i64,
    pub kind: EventKind,
    pub data: String,
    pub at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    pub hostname: String,
    pub runtime: String,
    pub slots: u32,
    pub running: u32,
    pub started_at: Millis,
    pub last_seen: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub counts: BTreeMap<String, u64>,
    pub oldest_queued_age_ms: Option<i64>,
    pub workers: Vec<WorkerInfo>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Member, Role::Viewer]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// An API key as stored: only the SHA-256 hash of the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub role: Role,
    #[serde(skip)]
    pub hash: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No evaluation (or API key) with this id.
    #[error("{0} not found")]
    NotFound(String),
    /// The lease token is not the current one (expired and re-claimed, or finished): the
    /// caller is a zombie and must stop writing.
    #[error("lease lost for evaluation {0}")]
    LeaseLost(String),
    #[error("evaluation {id} is {status}: {action} is not possible")]
    Conflict {
        id: String,
        status: EvaluationStatus,
        action: &'static str,
    },
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("database: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts the evaluation, its queue entry and its first `status` event in one
    /// transaction. With an idempotency key already used by this tenant, inserts nothing and
    /// returns the existing evaluation.
    async fn submit(&self, new: NewEvaluation, now: Millis) -> Result<SubmitOutcome>;

    /// All or nothing: every item is inserted in one transaction.
    async fn submit_batch(
        &self,
        items: Vec<NewEvaluation>,
        now: Millis,
    ) -> Result<Vec<SubmitOutcome>>;

    async fn get(&self, id: &str) -> Result<Option<Evaluation>>;

    async fn list(&self, filter: &ListFilter) -> Result<Page<Evaluation>>;

    /// Queued: cancelled at once (terminal, `status` and `result` events). Running: marks
    /// `cancel_requested` (the worker sees it at its next heartbeat and kills the sandbox).
    /// Terminal: unchanged. Returns the evaluation after the change.
    async fn cancel(&self, id: &str, now: Millis) -> Result<Evaluation>;

    /// Leases the best job among queued jobs whose backoff has passed (`not_before <= now`),
    /// skipping every tenant that already has `policy.max_running(tenant)` evaluations running.
    /// The order (fair share first, so that a tenant flooding the queue cannot occupy every
    /// worker):
    /// 1. the tenant with the fewest running evaluations,
    /// 2. then the highest priority,
    /// 3. then the oldest (`created_at`, then insertion order).
    ///
    /// Marks it running, counts the attempt, appends a `status` event. `None` when nothing is
    /// claimable.
    async fn claim(
        &self,
        worker_id: &str,
        lease: Duration,
        policy: &ClaimPolicy,
        now: Millis,
    ) -> Result<Option<Claim>>;

    /// Queued evaluations (backoff included) of one tenant (`Some`) or of all (`None`): what
    /// the queue caps count.
    async fn count_queued(&self, tenant: Option<&str>) -> Result<u64>;

    /// Extends the lease. `LeaseLost` if the token is no longer current.
    async fn heartbeat(
        &self,
        id: &str,
        token: &str,
        lease: Duration,
        now: Millis,
    ) -> Result<LeaseState>;

    /// Appends an output chunk to the event log (fenced). Returns its `seq`.
    async fn append_output(
        &self,
        id: &str,
        token: &str,
        stream: OutputStream,
        data: &str,
        now: Millis,
    ) -> Result<i64>;

    /// Ends the attempt (fenced). User-code outcomes are final; a platform failure
    /// (`errored`) is retried with backoff or dead-lettered, per `policy`. Returns the status
    /// the evaluation now has (`queued` when a retry is due).
    async fn finish(
        &self,
        id: &str,
        token: &str,
        result: &RunResult,
        policy: &RetryPolicy,
        now: Millis,
    ) -> Result<EvaluationStatus>;

    /// Hands a running job back (graceful shutdown): queued again at once, the attempt not
    /// counted against `max_attempts`. Fenced.
    async fn release(&self, id: &str, token: &str, now: Millis) -> Result<()>;

    /// Returns jobs whose lease expired to the queue (a platform failure: counts toward
    /// `max_attempts`, then dead). Returns how many were reaped.
    async fn reap_expired(&self, policy: &RetryPolicy, now: Millis) -> Result<u64>;

    /// Events with `seq > after`, in order, at most `limit`.
    async fn events(&self, id: &str, after: i64, limit: u32) -> Result<Vec<Event>>;

    /// Counts by status and the oldest queued age, of one tenant (`Some`) or of all (`None`);
    /// the workers are shared by every tenant and always all listed.
    async fn queue_stats(&self, tenant: Option<&str>, now: Millis) -> Result<QueueStats>;

    /// Dead → queued with attempts reset. `Conflict` unless dead.
    async fn requeue(&self, id: &str, now: Millis) -> Result<Evaluation>;

    async fn worker_heartbeat(&self, info: &WorkerInfo) -> Result<()>;

    async fn remove_worker(&self, id: &str) -> Result<()>;

    /// Stores a new key (its id and hash must be new).
    async fn create_key(&self, key: &ApiKey) -> Result<()>;

    /// Finds a key by hash and records its use. Revoked and expired keys are returned too
    /// (the caller rejects them).
    async fn use_key(&self, hash: &str, now: Millis) -> Result<Option<ApiKey>>;

    /// A key by id (revoked and expired ones included).
    async fn get_key(&self, id: &str) -> Result<Option<ApiKey>>;

    /// Every key of one tenant (`Some`) or of all (`None`), revoked and expired ones included,
    /// oldest first (`created_at`, then `id`).
    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>>;

    /// Revokes a key from `now` on: `use_key` shows it revoked at once. Revoking a revoked key
    /// changes nothing (the first `revoked_at` stays). Returns the key; `NotFound` if unknown.
    async fn revoke_key(&self, id: &str, now: Millis) -> Result<ApiKey>;

    async fn count_keys(&self) -> Result<u64>;

    /// Appends one audit entry: assigns the next `seq` and chains it (`prev_hash`, `hash`,
    /// and the head) in the same write transaction, so that concurrent appends never fork the
    /// chain. Returns the entry as stored.
    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry>;

    /// Audit entries matching `filter`, newest first (or oldest first), one page.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Page<AuditEntry>>;

    /// Checks the whole audit chain (every hash, every link, no gap, the head) and reports the
    /// first break. Reads one consistent snapshot.
    async fn verify_audit(&self) -> Result<AuditVerification>;
}

#[cfg(test)]
mod claim_policy_tests {
    use super::*;
    use assay_domain::TenantQuota;

    #[test]
    fn claim_policy_from_quotas() {
        let mut q = QuotaPolicy::default();
        assert_eq!(
            ClaimPolicy::from(&q),
            ClaimPolicy::default(),
            "no caps by default"
        );
        q.default.max_running = 2;
        q.tenants.insert(
            "big".into(),
            TenantQuota {
                max_running: 8,
                ..Default::default()
            },
        );
        q.tenants.insert("free".into(), TenantQuota::default());
        let p = ClaimPolicy::from(&q);
        assert_eq!(p.max_running("anyone"), Some(2));
        assert_eq!(p.max_running("big"), Some(8));
        assert_eq!(
            p.max_running("free"),
            None,
            "an entry without max_running has no cap (built-in default)"
        );
    }
}
