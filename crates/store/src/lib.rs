//! `assay-store`: the storage contract of Assay — evaluations, the durable job queue, the event
//! log, workers, API keys and the audit log — as one trait that every backend implements, and
//! the semantics every backend shares as pure code:
//!
//! - [`lifecycle`]: the queue's state machine (claim, finish, retry with backoff, dead letters,
//!   hand-back, cancellation, requeue);
//! - [`claim`]: the fair-claim policy (fair share, then priority, then age; running caps);
//! - [`event`]: the typed event payloads and their stored encoding;
//! - [`record`]: the stored formats of structured columns (tolerant of fields added later);
//! - [`idempotency`]: what a batch insert does about idempotency keys;
//! - [`cursor`]: the cursor format of paged lists;
//! - [`url`]: which backend to open, as a URL;
//! - [`audit`]: audit entries and their hash chain.
//!
//! A backend only persists: it loads, hands the state to these functions, and writes back what
//! they return. Every backend passes the conformance suite (`conformance`, behind the cargo
//! feature of the same name, for tests only).
//!
//! Time is always passed in (`now`, unix milliseconds) so that leases, backoff and expiry are
//! tested without sleeping.
#![forbid(unsafe_code)]

pub mod admission;
pub mod audit;
pub mod bus;
pub mod claim;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod cursor;
mod error;
pub mod event;
pub mod idempotency;
pub mod lifecycle;
pub mod record;
mod time;
pub mod url;

pub use admission::{Admission, RateCharge, Refusal};
use assay_domain::{
    EvaluationStatus, Language, Limits, OutputStream, Program, ProgramError, ProgramFile,
    RetryPolicy, Role, RunResult, Submission,
};
pub use audit::{
    AuditBreak, AuditEntry, AuditFilter, AuditOutcome, AuditVerification, NewAuditEntry,
};
pub use claim::ClaimPolicy;
pub use error::{Result, StoreError};
pub use event::{Event, EventKind, EventPayload};
pub use record::{BlobRef, Output, RunRecord};
use std::collections::BTreeMap;
use std::time::Duration;
pub use time::{Millis, after, now_millis};
pub use url::{StoreUrl, StoreUrlError};

/// An evaluation as stored, without its program and its output (see [`Claim::input`] and
/// [`Store::output`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    pub id: String,
    pub tenant: String,
    pub status: EvaluationStatus,
    pub language: Language,
    pub entrypoint: String,
    pub limits: Limits,
    pub priority: i32,
    pub labels: BTreeMap<String, String>,
    /// Attempts started so far (a retried evaluation shows more than one).
    pub attempts: u32,
    pub max_attempts: u32,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// How the run ended, once terminal (absent for cancelled-while-queued and dead). The
    /// output is in the event log ([`Store::output`]).
    pub result: Option<RunRecord>,
    /// Dead-letter reason, or the last platform error.
    pub error: Option<String>,
    pub worker_id: Option<String>,
    pub cancel_requested: bool,
    pub idempotency_key: Option<String>,
}

/// What a sandbox needs to run an evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobInput {
    pub entrypoint: String,
    pub files: Vec<ProgramFile>,
    pub stdin: String,
}

impl JobInput {
    /// The program, checked again (it was validated on submission; a stored program that is not
    /// valid is a platform fault).
    pub fn program(&self) -> Result<Program, ProgramError> {
        Program::new(self.files.clone(), self.entrypoint.clone())
    }
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

    pub fn into_evaluation(self) -> Evaluation {
        match self {
            SubmitOutcome::Created(e) | SubmitOutcome::Existing(e) => e,
        }
    }

    pub fn is_created(&self) -> bool {
        matches!(self, SubmitOutcome::Created(_))
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
    /// From a previous page ([`cursor::Cursor`], encoded).
    pub cursor: Option<String>,
    /// Page size, 1..=1000 (the store clamps nothing: callers validate).
    pub limit: u32,
}

/// Newest first. `next_cursor` is present when more items follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A leased job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub evaluation: Evaluation,
    /// The program and stdin to run.
    pub input: JobInput,
    /// Fencing token: every later write for this attempt must present it.
    pub token: String,
    pub attempt: u32,
    pub lease_expires_at: Millis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseState {
    /// The evaluation was cancelled while running: kill the sandbox.
    pub cancel_requested: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    pub id: String,
    pub hostname: String,
    pub runtime: String,
    pub slots: u32,
    pub running: u32,
    pub started_at: Millis,
    pub last_seen: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStats {
    /// Every status, zeros included.
    pub counts: BTreeMap<EvaluationStatus, u64>,
    pub oldest_queued_age_ms: Option<i64>,
    pub workers: Vec<WorkerInfo>,
}

/// An evaluation removed by retention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    pub id: String,
    /// The blob objects its result referenced.
    pub blobs: Vec<String>,
}

/// One evaluation whole, as `export_evaluations` reads it and `import_evaluations` writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvaluationDump {
    pub evaluation: Evaluation,
    pub input: JobInput,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Claimable from (backoff).
    pub not_before: Millis,
    pub lease_token: Option<String>,
    pub lease_expires_at: Option<Millis>,
}

/// An API key as stored: only the SHA-256 hash of the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub role: Role,
    pub hash: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts `items` (each with its queue entry and first `status` event) in one
    /// transaction, all or nothing, after checking `admission` in that same transaction: the
    /// queue caps count what is queued at that moment and the key's token bucket is charged
    /// there, so the caps hold exactly across processes. A refusal is `Refused` and changes
    /// nothing. Idempotency as for `submit_batch`: a replay (every key seen before) is charged
    /// nothing and returns the existing evaluations.
    async fn admit(
        &self,
        items: Vec<NewEvaluation>,
        admission: &Admission,
        now: Millis,
    ) -> Result<Vec<SubmitOutcome>>;

    /// Inserts the evaluation, its queue entry and its first `status` event in one
    /// transaction. With an idempotency key already used by this tenant, inserts nothing and
    /// returns the existing evaluation.
    async fn submit(&self, new: NewEvaluation, now: Millis) -> Result<SubmitOutcome> {
        self.admit(vec![new], &Admission::default(), now)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Backend("submit: no outcome".into()))
    }

    /// All or nothing: every item is inserted in one transaction. Idempotency too: when every
    /// item's key was seen before, nothing is inserted and the existing evaluations are
    /// returned; when only some were, nothing is inserted and the answer is
    /// `IdempotencyConflict`.
    async fn submit_batch(
        &self,
        items: Vec<NewEvaluation>,
        now: Millis,
    ) -> Result<Vec<SubmitOutcome>> {
        self.admit(items, &Admission::default(), now).await
    }

    async fn get(&self, id: &str) -> Result<Option<Evaluation>>;

    /// The evaluation `tenant` created with idempotency key `key`, if any.
    async fn find_by_idempotency_key(&self, tenant: &str, key: &str) -> Result<Option<Evaluation>>;

    /// The output so far of the current (or last) attempt: its `stdout` and `stderr` events,
    /// concatenated in order (those after the last `queued` or `running` status event; earlier
    /// attempts' output stays in the event log only). `NotFound` for an unknown id.
    async fn output(&self, id: &str) -> Result<Output>;

    /// `get` and `output` together (what the API shows of one evaluation). A backend may
    /// answer it in one read; this default makes the two calls.
    async fn get_with_output(&self, id: &str) -> Result<Option<(Evaluation, Output)>> {
        let Some(e) = self.get(id).await? else {
            return Ok(None);
        };
        match self.output(id).await {
            Ok(out) => Ok(Some((e, out))),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn list(&self, filter: &ListFilter) -> Result<Page<Evaluation>>;

    /// Cancels ([`lifecycle::Lifecycle::cancel`]). Returns the evaluation after the change.
    async fn cancel(&self, id: &str, now: Millis) -> Result<Evaluation>;

    /// Leases the job [`claim::FairPick`] chooses among queued jobs whose backoff has passed,
    /// under `policy`'s running caps ([`lifecycle::Lifecycle::claim`]). `None` when nothing is
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

    /// Extends the lease to `now + lease`. `LeaseLost` if the token is no longer current.
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

    /// Ends the attempt (fenced; [`lifecycle::Lifecycle::finish_record`]) with `record` as
    /// the stored result: the output is not in it (the event log holds its preview, the blob
    /// store the whole of it, which `record` references). Only this fenced write publishes
    /// those references, so a zombie attempt's objects are never shown. Returns the status the
    /// evaluation now has (`queued` when a retry is due).
    async fn finish_record(
        &self,
        id: &str,
        token: &str,
        record: &RunRecord,
        policy: &RetryPolicy,
        now: Millis,
    ) -> Result<EvaluationStatus>;

    /// [`Store::finish_record`] with `RunRecord::of(result)` (no blob references).
    async fn finish(
        &self,
        id: &str,
        token: &str,
        result: &RunResult,
        policy: &RetryPolicy,
        now: Millis,
    ) -> Result<EvaluationStatus> {
        self.finish_record(id, token, &RunRecord::of(result), policy, now)
            .await
    }

    /// Hands a running job back (graceful shutdown; fenced;
    /// [`lifecycle::Lifecycle::release`]).
    async fn release(&self, id: &str, token: &str, now: Millis) -> Result<()>;

    /// Returns jobs whose lease expired to the queue ([`lifecycle::Lifecycle::expire`]).
    /// Returns how many were reaped.
    async fn reap_expired(&self, policy: &RetryPolicy, now: Millis) -> Result<u64>;

    /// Events with `seq > after`, in order, at most `limit`.
    async fn events(&self, id: &str, after: i64, limit: u32) -> Result<Vec<Event>>;

    /// Counts by status and the oldest queued age, of one tenant (`Some`) or of all (`None`);
    /// the workers are shared by every tenant and always all listed.
    async fn queue_stats(&self, tenant: Option<&str>, now: Millis) -> Result<QueueStats>;

    /// Dead → queued ([`lifecycle::Lifecycle::requeue`]). `Conflict` unless dead.
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

    /// Retention: deletes at most `limit` evaluations that ended (a terminal status, dead
    /// letters included) before `before`, with their events and labels, oldest first. Returns
    /// the deleted ones (their blobs are the caller's to delete, after this). The audit log is
    /// never touched.
    async fn delete_finished(&self, before: Millis, limit: u32) -> Result<Vec<Deleted>>;

    /// Every evaluation whole (input, queue state, events), in insertion order, one page
    /// (`after`: the previous page's `next_cursor`): what `assay store copy` reads.
    async fn export_evaluations(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<EvaluationDump>>;

    /// Writes exported evaluations as they are (ids, times, queue state, events), after those
    /// already here, in one transaction. `Conflict`-free: an id already present is an error
    /// (`Backend`) and nothing of the call is written.
    async fn import_evaluations(&self, dumps: Vec<EvaluationDump>) -> Result<()>;

    /// Appends audit entries exactly as they are (seq, times, hashes), in one transaction.
    /// The first must link to the current head (its `prev_hash` is the head's hash, or the
    /// genesis hash on an empty log) and the seqs must follow on without a gap; otherwise
    /// `Backend` and nothing is written. `verify_audit` then checks the imported chain.
    async fn import_audit(&self, entries: Vec<AuditEntry>) -> Result<()>;

    /// Closes the store's connections, waiting for those in use (a short-lived command's last
    /// step). Calls after it fail.
    async fn close(&self);
}
