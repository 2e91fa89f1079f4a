//! Rows and types: the column lists queries select, and how a row becomes a store type. The
//! structured columns (limits, labels, files, result) and event data are read and written only
//! through `assay_store::record` and `assay_store::event`, the stored formats every backend
//! shares. Counts are BIGINT columns, converted checked.

use crate::error::{corrupt, db};
use assay_domain::{EvaluationStatus, Language, Limits, Role};
use assay_store::lifecycle::Lifecycle;
use assay_store::record::{decode_files, decode_labels, decode_limits, decode_result};
use assay_store::{
    ApiKey, Evaluation, Event, EventKind, EventPayload, JobInput, Millis, Result, WorkerInfo,
};
use sqlx::Row;
use sqlx::postgres::PgRow;
use std::collections::BTreeMap;

/// An evaluation's keys and queue state ([`Current`]), from `evaluations e`.
macro_rules! lifecycle_cols {
    () => {
        "e.pk, e.id, e.tenant, e.revision, e.status, e.attempts, e.max_attempts, \
         e.not_before, e.lease_token, e.lease_expires_at, e.worker_id, e.started_at, \
         e.finished_at, e.result, e.error, e.cancel_requested"
    };
}

/// A whole evaluation ([`evaluation_from_row`]), from `evaluations e`: everything but the
/// job's input (`files`, `stdin`), which only a claim (and an export) reads.
macro_rules! evaluation_cols {
    () => {
        concat!(
            $crate::rows::lifecycle_cols!(),
            ", e.language, e.entrypoint, e.limits, e.priority, e.labels, e.created_at, \
             e.idempotency_key"
        )
    };
}

macro_rules! key_cols {
    () => {
        "id, name, tenant, role, hash, created_at, expires_at, revoked_at, last_used_at"
    };
}

pub(crate) use {evaluation_cols, key_cols, lifecycle_cols};

/// An evaluation as a transition loads it: its keys, its lifecycle, and the revision that
/// lifecycle is (a write back succeeds only on that revision).
#[derive(Clone, Debug)]
pub(crate) struct Current {
    pub(crate) pk: i64,
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) revision: i64,
    pub(crate) lifecycle: Lifecycle,
}

pub(crate) fn get<'r, T>(row: &'r PgRow, col: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(col).map_err(db)
}

/// A BIGINT count as a `u32`.
pub(crate) fn get_u32(row: &PgRow, col: &str) -> Result<u32> {
    let n: i64 = get(row, col)?;
    u32::try_from(n).map_err(|_| corrupt(format_args!("{col} = {n}")))
}

pub(crate) fn parse_status(s: &str) -> Result<EvaluationStatus> {
    EvaluationStatus::parse(s).ok_or_else(|| corrupt(format_args!("unknown status {s:?}")))
}

/// Selected with [`lifecycle_cols`].
pub(crate) fn current_from_row(row: &PgRow) -> Result<Current> {
    let result: Option<String> = get(row, "result")?;
    Ok(Current {
        pk: get(row, "pk")?,
        id: get(row, "id")?,
        tenant: get(row, "tenant")?,
        revision: get(row, "revision")?,
        lifecycle: Lifecycle {
            status: parse_status(&get::<String>(row, "status")?)?,
            attempts: get_u32(row, "attempts")?,
            max_attempts: get_u32(row, "max_attempts")?,
            not_before: get(row, "not_before")?,
            lease_token: get(row, "lease_token")?,
            lease_expires_at: get(row, "lease_expires_at")?,
            worker_id: get(row, "worker_id")?,
            started_at: get(row, "started_at")?,
            finished_at: get(row, "finished_at")?,
            result: result.as_deref().map(decode_result).transpose()?,
            error: get(row, "error")?,
            cancel_requested: get(row, "cancel_requested")?,
        },
    })
}

/// What an evaluation is apart from its lifecycle (it never changes after the insert).
pub(crate) struct Head {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) language: Language,
    pub(crate) entrypoint: String,
    pub(crate) limits: Limits,
    pub(crate) priority: i32,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) created_at: Millis,
    pub(crate) idempotency_key: Option<String>,
}

/// The evaluation of `head` in the state `l`.
pub(crate) fn evaluation(head: Head, l: &Lifecycle) -> Evaluation {
    Evaluation {
        id: head.id,
        tenant: head.tenant,
        status: l.status,
        language: head.language,
        entrypoint: head.entrypoint,
        limits: head.limits,
        priority: head.priority,
        labels: head.labels,
        attempts: l.attempts,
        max_attempts: l.max_attempts,
        created_at: head.created_at,
        started_at: l.started_at,
        finished_at: l.finished_at,
        result: l.result.clone(),
        error: l.error.clone(),
        worker_id: l.worker_id.clone(),
        cancel_requested: l.cancel_requested,
        idempotency_key: head.idempotency_key,
    }
}

/// `e` after a transition to `l`.
pub(crate) fn with_lifecycle(e: Evaluation, l: &Lifecycle) -> Evaluation {
    let head = Head {
        id: e.id,
        tenant: e.tenant,
        language: e.language,
        entrypoint: e.entrypoint,
        limits: e.limits,
        priority: e.priority,
        labels: e.labels,
        created_at: e.created_at,
        idempotency_key: e.idempotency_key,
    };
    evaluation(head, l)
}

/// Selected with [`evaluation_cols`]: the evaluation, and its keys and lifecycle.
pub(crate) fn evaluation_from_row(row: &PgRow) -> Result<(Current, Evaluation)> {
    let current = current_from_row(row)?;
    let language: String = get(row, "language")?;
    let head = Head {
        id: current.id.clone(),
        tenant: current.tenant.clone(),
        language: Language::parse(&language)
            .map_err(|_| corrupt(format_args!("unknown language {language:?}")))?,
        entrypoint: get(row, "entrypoint")?,
        limits: decode_limits(&get::<String>(row, "limits")?)?,
        priority: get(row, "priority")?,
        labels: decode_labels(&get::<String>(row, "labels")?)?,
        created_at: get(row, "created_at")?,
        idempotency_key: get(row, "idempotency_key")?,
    };
    let e = evaluation(head, &current.lifecycle);
    Ok((current, e))
}

/// Selected with `e.entrypoint, e.files, e.stdin`.
pub(crate) fn input_from_row(row: &PgRow) -> Result<JobInput> {
    Ok(JobInput {
        entrypoint: get(row, "entrypoint")?,
        files: decode_files(&get::<String>(row, "files")?)?,
        stdin: get(row, "stdin")?,
    })
}

/// The kind and data columns of an event.
pub(crate) fn payload_from_row(row: &PgRow) -> Result<EventPayload> {
    let kind: String = get(row, "kind")?;
    let kind = EventKind::parse(&kind)
        .ok_or_else(|| corrupt(format_args!("unknown event kind {kind:?}")))?;
    EventPayload::decode(kind, &get::<String>(row, "data")?)
}

/// Selected with `evaluation_id, seq, kind, data, at`.
pub(crate) fn event_from_row(row: &PgRow) -> Result<Event> {
    Ok(Event {
        evaluation_id: get(row, "evaluation_id")?,
        seq: get(row, "seq")?,
        at: get(row, "at")?,
        payload: payload_from_row(row)?,
    })
}

/// Selected with [`key_cols`].
pub(crate) fn key_from_row(row: &PgRow) -> Result<ApiKey> {
    let role: String = get(row, "role")?;
    Ok(ApiKey {
        id: get(row, "id")?,
        name: get(row, "name")?,
        tenant: get(row, "tenant")?,
        role: Role::parse(&role).ok_or_else(|| corrupt(format_args!("unknown role {role:?}")))?,
        hash: get(row, "hash")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
        revoked_at: get(row, "revoked_at")?,
        last_used_at: get(row, "last_used_at")?,
    })
}

/// Selected with every column of `workers`.
pub(crate) fn worker_from_row(row: &PgRow) -> Result<WorkerInfo> {
    Ok(WorkerInfo {
        id: get(row, "id")?,
        hostname: get(row, "hostname")?,
        runtime: get(row, "runtime")?,
        slots: get_u32(row, "slots")?,
        running: get_u32(row, "running")?,
        started_at: get(row, "started_at")?,
        last_seen: get(row, "last_seen")?,
    })
}
