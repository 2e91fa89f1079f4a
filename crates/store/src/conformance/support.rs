//! Helpers every conformance check shares: fixed times, sample submissions and results, and
//! short forms of the store calls with their expectations.

use crate::{
    AuditOutcome, Claim, ClaimPolicy, Evaluation, Event, EventPayload, ListFilter, Millis,
    NewAuditEntry, NewEvaluation, Output, Store, StoreError, SubmitOutcome,
};
use assay_domain::{
    EvaluationStatus, Language, LimitPolicy, OutputStream, Program, RetryPolicy, RunResult,
    RunStatus, Submission,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// A fixed point in time (2023-11-14) all checks count from.
pub const T0: Millis = 1_700_000_000_000;

pub(crate) const LEASE: Duration = Duration::from_secs(30);
pub(crate) const LEASE_MS: Millis = 30_000;

/// A valid submission for `tenant` with `priority` (the rest: defaults, one `main.py`).
pub fn new_eval(tenant: &str, priority: i32) -> NewEvaluation {
    NewEvaluation {
        tenant: tenant.to_string(),
        submission: Submission {
            language: Language::Python,
            program: Program::single("print('hello')\n"),
            stdin: String::new(),
            limits: LimitPolicy::default().defaults,
            priority,
            labels: BTreeMap::new(),
        },
        idempotency_key: None,
        max_attempts: 3,
    }
}

pub(crate) fn with_key(mut n: NewEvaluation, key: &str) -> NewEvaluation {
    n.idempotency_key = Some(key.to_string());
    n
}

pub(crate) fn with_label(mut n: NewEvaluation, k: &str, v: &str) -> NewEvaluation {
    n.submission.labels.insert(k.to_string(), v.to_string());
    n
}

pub(crate) fn with_max_attempts(mut n: NewEvaluation, max: u32) -> NewEvaluation {
    n.max_attempts = max;
    n
}

/// A run result with `status` (and an `error` for `errored`).
pub fn run_result(status: RunStatus) -> RunResult {
    RunResult {
        status,
        exit_code: match status {
            RunStatus::Succeeded => Some(0),
            RunStatus::Failed => Some(1),
            _ => None,
        },
        signal: match status {
            RunStatus::TimedOut | RunStatus::MemoryExceeded => Some(9),
            _ => None,
        },
        wall_ms: 42,
        cpu_ms: 17,
        peak_memory_bytes: 12 << 20,
        stdout: "hello\n".into(),
        stderr: "ünïcode ✓\n".into(),
        stdout_truncated: false,
        stderr_truncated: status == RunStatus::OutputExceeded,
        runtime: "runc".into(),
        error: (status == RunStatus::Errored).then(|| "runtime crashed".to_string()),
    }
}

pub(crate) fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_backoff_ms: 1_000,
        max_backoff_ms: 60_000,
    }
}

pub(crate) async fn submit<S: Store + ?Sized>(s: &S, n: NewEvaluation, now: Millis) -> String {
    match s.submit(n, now).await.expect("submit") {
        SubmitOutcome::Created(e) => e.id,
        SubmitOutcome::Existing(e) => panic!("submit without a seen key returned Existing {e:?}"),
    }
}

pub(crate) async fn get<S: Store + ?Sized>(s: &S, id: &str) -> Evaluation {
    s.get(id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("evaluation {id} should exist"))
}

pub(crate) async fn claim<S: Store + ?Sized>(s: &S, worker: &str, now: Millis) -> Claim {
    s.claim(worker, LEASE, &ClaimPolicy::default(), now)
        .await
        .expect("claim")
        .unwrap_or_else(|| panic!("claim at {now} should find a job"))
}

pub(crate) async fn claim_none<S: Store + ?Sized>(s: &S, now: Millis, why: &str) {
    if let Some(c) = s
        .claim("w-none", LEASE, &ClaimPolicy::default(), now)
        .await
        .expect("claim")
    {
        panic!("claim should find nothing ({why}), got {:?}", c.evaluation);
    }
}

pub(crate) async fn all_events<S: Store + ?Sized>(s: &S, id: &str) -> Vec<Event> {
    let evs = s.events(id, 0, 10_000).await.expect("events");
    for (seq, e) in (1..).zip(&evs) {
        assert_eq!(
            e.seq, seq,
            "event seqs must start at 1 without gaps: {evs:?}"
        );
        assert_eq!(e.evaluation_id, id);
    }
    evs
}

pub(crate) fn assert_status_event(e: &Event, status: EvaluationStatus, attempt: u32) {
    match &e.payload {
        EventPayload::Status {
            status: s,
            attempt: a,
            ..
        } => {
            assert_eq!(*s, status, "status event: {e:?}");
            assert_eq!(*a, attempt, "status event attempt: {e:?}");
        }
        other => panic!("expected a status event, got {other:?}"),
    }
}

/// The last event is `result` with the final status; the one before is its `status` event.
pub(crate) fn assert_ends_with_result(evs: &[Event], status: EvaluationStatus) {
    let n = evs.len();
    assert!(n >= 2, "expected status + result events, got {evs:?}");
    assert_eq!(
        evs[n - 1].payload,
        EventPayload::Result { status },
        "the last event is the result, with the status only: {evs:?}"
    );
    match &evs[n - 2].payload {
        EventPayload::Status { status: s, .. } => assert_eq!(*s, status, "{evs:?}"),
        other => panic!("the result follows its status event, got {other:?}"),
    }
}

pub(crate) fn output_event(stream: OutputStream, text: &str) -> EventPayload {
    EventPayload::Output {
        stream,
        text: text.to_string(),
    }
}

pub(crate) async fn output<S: Store + ?Sized>(s: &S, id: &str) -> Output {
    s.output(id).await.expect("output")
}

/// Every evaluation, all tenants (a check's store holds far fewer than a page).
pub(crate) async fn count_all<S: Store + ?Sized>(s: &S) -> usize {
    s.list(&filter()).await.expect("list").items.len()
}

pub(crate) fn expect_lease_lost<T: std::fmt::Debug>(r: crate::Result<T>, what: &str) {
    match r {
        Err(StoreError::LeaseLost(_)) => {}
        other => panic!("{what}: expected LeaseLost, got {other:?}"),
    }
}

pub(crate) fn expect_not_found<T: std::fmt::Debug>(r: crate::Result<T>, what: &str) {
    match r {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

pub(crate) fn filter() -> ListFilter {
    ListFilter {
        limit: 1000,
        ..Default::default()
    }
}

pub(crate) async fn list_ids<S: Store + ?Sized>(s: &S, f: ListFilter) -> Vec<String> {
    let page = s.list(&f).await.expect("list");
    assert!(
        page.next_cursor.is_none(),
        "a page with all the items should have no next cursor"
    );
    page.items.into_iter().map(|e| e.id).collect()
}

/// An audit entry at `at` (the rest filled from the arguments).
pub fn audit_entry(
    at: Millis,
    actor: Option<&str>,
    tenant: Option<&str>,
    action: &str,
    outcome: AuditOutcome,
) -> NewAuditEntry {
    NewAuditEntry {
        at,
        actor: actor.map(String::from),
        tenant: tenant.map(String::from),
        action: action.to_string(),
        target: Some(format!("target-{at}")),
        outcome,
        status: match outcome {
            AuditOutcome::Ok => 200,
            AuditOutcome::Denied => 403,
            AuditOutcome::Error => 409,
        },
        source: Some("127.0.0.1".into()),
        request_id: format!("req-{at}"),
        detail: None,
    }
}
