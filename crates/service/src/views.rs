//! What the API shows of stored things: the one mapping from the store's types to the API's.

use crate::Caller;
use assay_api::audit::AuditEntryView;
use assay_api::evaluation::{
    EvaluationSummary, EvaluationView, LimitsView, RunResultView, RunSummaryView,
};
use assay_api::keys::{KeyState, KeyView, MeView, NewKeyView};
use assay_api::queue::{QueueView, WorkerView};
use assay_api::time::rfc3339;
use assay_store::{
    ApiKey, AuditEntry, Evaluation, Millis, Output, QueueStats, RunRecord, WorkerInfo,
};

/// An evaluation in full. `output`: its output (needed when it has a result).
pub fn evaluation(e: &Evaluation, output: Output) -> EvaluationView {
    EvaluationView {
        id: e.id.clone(),
        tenant: e.tenant.clone(),
        status: e.status,
        language: e.language,
        entrypoint: e.entrypoint.clone(),
        priority: e.priority,
        labels: e.labels.clone(),
        limits: LimitsView::from(e.limits),
        attempts: e.attempts,
        max_attempts: e.max_attempts,
        created_at: rfc3339(e.created_at),
        started_at: e.started_at.map(rfc3339),
        finished_at: e.finished_at.map(rfc3339),
        result: e.result.as_ref().map(|r| result(r, output)),
        error: e.error.clone(),
        worker_id: e.worker_id.clone(),
        cancel_requested: e.cancel_requested,
    }
}

/// A run's result with the output the event log holds: all of each stream, or its preview when
/// the whole stream is in the blob store.
fn result(r: &RunRecord, output: Output) -> RunResultView {
    RunResultView {
        stdout_bytes: r.stdout_bytes,
        stderr_bytes: r.stderr_bytes,
        stdout_partial: r.stdout_blob.is_some(),
        stderr_partial: r.stderr_blob.is_some(),
        ..RunResultView::from(r.with_output(output))
    }
}

fn run_summary(r: &RunRecord) -> RunSummaryView {
    RunSummaryView {
        status: r.status,
        exit_code: r.exit_code,
        signal: r.signal,
        wall_ms: r.wall_ms,
        cpu_ms: r.cpu_ms,
        peak_memory_bytes: r.peak_memory_bytes,
        stdout_truncated: r.stdout_truncated,
        stderr_truncated: r.stderr_truncated,
        runtime: r.runtime.clone(),
        error: r.error.clone(),
    }
}

/// An evaluation in a list: no output.
pub fn summary(e: &Evaluation) -> EvaluationSummary {
    EvaluationSummary {
        id: e.id.clone(),
        tenant: e.tenant.clone(),
        status: e.status,
        language: e.language,
        entrypoint: e.entrypoint.clone(),
        priority: e.priority,
        labels: e.labels.clone(),
        attempts: e.attempts,
        max_attempts: e.max_attempts,
        created_at: rfc3339(e.created_at),
        started_at: e.started_at.map(rfc3339),
        finished_at: e.finished_at.map(rfc3339),
        result: e.result.as_ref().map(run_summary),
        error: e.error.clone(),
        cancel_requested: e.cancel_requested,
    }
}

pub fn key(k: &ApiKey, now: Millis) -> KeyView {
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
        role: k.role,
        state,
        created_at: rfc3339(k.created_at),
        expires_at: k.expires_at.map(rfc3339),
        revoked_at: k.revoked_at.map(rfc3339),
        last_used_at: k.last_used_at.map(rfc3339),
    }
}

/// A key just made, with its secret (the only answer that carries it).
pub fn new_key(k: &ApiKey, secret: String) -> NewKeyView {
    NewKeyView {
        id: k.id.clone(),
        key: secret,
        tenant: k.tenant.clone(),
        role: k.role,
        name: k.name.clone(),
        created_at: rfc3339(k.created_at),
        expires_at: k.expires_at.map(rfc3339),
    }
}

pub fn me(c: &Caller) -> MeView {
    MeView {
        key_id: c.key_id.clone(),
        name: c.name.clone(),
        tenant: c.tenant.clone(),
        role: c.role,
        expires_at: c.expires_at.map(rfc3339),
    }
}

pub fn worker(w: &WorkerInfo) -> WorkerView {
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

pub fn queue(q: &QueueStats) -> QueueView {
    QueueView {
        counts: q
            .counts
            .iter()
            .map(|(s, n)| (s.as_str().to_string(), *n))
            .collect(),
        oldest_queued_age_ms: q.oldest_queued_age_ms,
        workers: q.workers.iter().map(worker).collect(),
    }
}

pub fn audit_entry(e: &AuditEntry) -> AuditEntryView {
    let n = &e.entry;
    AuditEntryView {
        seq: e.seq,
        at: rfc3339(n.at),
        at_ms: n.at,
        actor: n.actor.clone(),
        tenant: n.tenant.clone(),
        action: n.action.clone(),
        target: n.target.clone(),
        outcome: n.outcome.as_str().to_string(),
        status: n.status,
        source: n.source.clone(),
        request_id: n.request_id.clone(),
        detail: n.detail.clone(),
        prev_hash: e.prev_hash.clone(),
        hash: e.hash.clone(),
    }
}
