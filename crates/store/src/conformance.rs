//! The conformance suite every `Store` backend must pass.
//!
//! Every check is a public async function taking a FRESH, empty store. Time is driven only by
//! the `now` arguments (nothing here sleeps). A check panics with a message naming what broke.
//!
//! Two ways to run it from a backend's tests:
//!
//! ```text
//! // One #[tokio::test] per check (needs `tokio` with `macros` and `rt-multi-thread`). The
//! // function returns anything that derefs to the store (e.g. a struct that also keeps a temp
//! // directory alive, or a `Box<S>`).
//! async fn fresh() -> MyFixture { ... }
//! assay_store::conformance_tests!(fresh);
//!
//! // Or everything in one test:
//! assay_store::conformance::run_all(|| async { MyStore::new().await }).await;
//! ```
//!
//! Contract details that the trait's doc comments leave open and this suite pins:
//! - `ListFilter::created_after` is inclusive and `created_before` exclusive (`[after, before)`).
//! - A job is claimable from `not_before` on (`not_before <= now`); a lease with
//!   `lease_expires_at <= now` is expired.
//! - The evaluation's own `max_attempts` bounds retries; the `RetryPolicy` passed to `finish` and
//!   `reap_expired` supplies the backoff.
//! - A lost lease (reaped) is a platform failure: it counts toward `max_attempts` and is retried
//!   no later than `now + policy.backoff(attempt)`.
//! - A platform failure (`errored`, lost lease) or a `release` of an evaluation whose
//!   cancellation was requested ends it as `cancelled` instead of retrying it.
//! - Fenced operations (`heartbeat`, `append_output`, `finish`, `release`) on an unknown id are
//!   `NotFound`; on a known id with a token that is not current, `LeaseLost`.
//! - `release` gives the attempt back (`attempts` goes down by one).
//! - `requeue` clears `error`, `result`, `finished_at` and the lease.
//! - `claim` with running caps: a cancellation request does not free a running slot (the job
//!   runs until it ends); `count_queued` counts a retry waiting for its backoff.
//! - Output is stored once, in the event log: `finish` stores `RunRecord::of(result)` (the
//!   output of the `RunResult` it is given is not kept), the `result` event carries only the
//!   status, and `output` concatenates the `stdout` and `stderr` events (also while running).
//! - `submit_batch` and idempotency keys: a key repeated inside one batch counts as seen, an item
//!   without a key as new; every item seen: nothing inserted, all `Existing` in order; some seen
//!   and some new: nothing inserted, `IdempotencyConflict` naming a seen key.
//! - `queue_stats.counts` holds every status, zeros included.
//! - `list_keys` returns keys oldest first (`created_at`, then `id`), with their hashes;
//!   `revoke_key` keeps the first `revoked_at`.
//! - The audit log lists newest first unless `oldest_first`; `after` is inclusive and `before`
//!   exclusive (on `at`); cursors are opaque strings of digits; concurrent appends get distinct,
//!   gapless seqs on one chain.

use crate::audit::GENESIS_HASH;
use crate::{
    ApiKey, AuditEntry, AuditFilter, AuditOutcome, Claim, ClaimPolicy, Evaluation, Event, JobInput,
    LeaseState, ListFilter, Millis, NewEvaluation, Output, QueueStats, RunRecord, Store,
    StoreError, SubmitOutcome, WorkerInfo,
};
use assay_domain::{
    EvaluationStatus, Language, OutputStream, Program, ProgramFile, Role, RunStatus,
};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

pub mod scale;
mod support;

use support::*;
pub use support::{T0, audit_entry, new_eval, run_result};

/// Runs every check of the suite, each on a fresh store from `make`. Panics at the first
/// failure; the panic message names the check.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    crate::conformance_tests!(@run make);
    eprintln!("conformance check export_import_copies_everything ...");
    scale::export_import_copies_everything(&make().await, &make().await).await;
}

/// Expands to one `#[tokio::test]` per conformance check. The argument is the path of an async
/// function (no arguments) returning a value that derefs to the store under test.
#[macro_export]
macro_rules! conformance_tests {
    (@run $make:ident) => {
        $crate::conformance_tests!(@each [run $make]);
    };
    (@one [test $fixture:path] [$($m:ident)?] $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let fixture = $fixture().await;
            $crate::conformance::$($m::)?$name(&*fixture).await;
        }
    };
    (@one [run $make:ident] [$($m:ident)?] $name:ident) => {{
        let store = $make().await;
        eprintln!("conformance check {} ...", stringify!($name));
        $crate::conformance::$($m::)?$name(&store).await;
    }};
    (@each $how:tt) => {
        $crate::conformance_tests!(@list $how []
            submit_inserts_evaluation_and_queued_event
            idempotency_key_is_per_tenant
            find_by_idempotency_key_is_per_tenant
            submit_batch_idempotency_is_all_or_nothing
            submit_batch_inserts_all_in_order
            get_unknown_is_none
            list_filters
            list_is_newest_first_and_pages_without_gaps
            list_rejects_invalid_cursors
            claim_takes_highest_priority_then_oldest
            claim_marks_running_and_appends_status_event
            claim_returns_the_job_input
            claim_never_hands_out_a_job_twice
            concurrent_claims_never_share_a_job
            claim_respects_the_running_cap
            claim_skips_a_capped_tenant_for_others
            claim_alternates_between_flooding_tenants
            claim_fair_share_comes_before_priority
            claim_per_tenant_override
            concurrent_claims_respect_the_running_cap
            count_queued_per_tenant_and_total
            heartbeat_extends_the_lease_and_is_fenced
            append_output_is_fenced_and_gapless
            output_concatenates_the_chunks_of_each_stream
            get_with_output_is_get_and_output_together
            finish_with_user_outcome_is_final
            finish_errored_retries_with_backoff_then_dead_letters
            finish_with_stale_token_changes_nothing
            reap_requeues_expired_leases_and_fences_the_zombie
            reap_dead_letters_after_max_attempts
            release_requeues_without_consuming_an_attempt
            cancel_queued_is_immediate_and_terminal
            cancel_running_is_requested_until_finish
            cancel_terminal_is_unchanged
            platform_failure_after_cancel_request_ends_cancelled
            requeue_only_dead
            terminal_status_never_changes
            unknown_ids_are_not_found
            events_paginate
            queue_stats_counts_and_oldest_age
            queue_stats_counts_every_status
            queue_stats_per_tenant
            workers_upsert_and_remove
            api_keys
            keys_get_and_list_by_tenant
            revoke_key_is_immediate_and_idempotent
            audit_append_chains_entries
            audit_list_filters_and_pages
            audit_concurrent_appends_never_fork
            concurrent_claimers_keep_caps_and_fair_share
        );
        $crate::conformance_tests!(@list $how [scale]
            admit_caps_are_exact_under_concurrency
            admit_rate_is_one_bucket_per_key
            finish_record_publishes_blobs_only_when_fenced
            delete_finished_removes_old_terminal_evaluations_only
            output_is_the_last_attempts
        );
    };
    (@list [test $fixture:path] $m:tt $($name:ident)*) => {
        $( $crate::conformance_tests!(@one [test $fixture] $m $name); )*
    };
    (@list [run $make:ident] $m:tt $($name:ident)*) => {
        $( $crate::conformance_tests!(@one [run $make] $m $name); )*
    };
    ($fixture:path) => {
        $crate::conformance_tests!(@each [test $fixture]);

        /// Two stores: the one check that copies from one to another.
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn export_import_copies_everything() {
            let (a, b) = ($fixture().await, $fixture().await);
            $crate::conformance::scale::export_import_copies_everything(&*a, &*b).await;
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Submission

pub async fn submit_inserts_evaluation_and_queued_event<S: Store + ?Sized>(s: &S) {
    let mut n = with_label(new_eval("acme", 7), "suite", "humaneval");
    n.submission.stdin = "input\n".into();
    n.submission.program = Program::new(
        vec![
            ProgramFile {
                path: "main.py".into(),
                content: "import util\n".into(),
            },
            ProgramFile {
                path: "pkg/util.py".into(),
                content: "X = 'ü'\n".into(),
            },
        ],
        "main.py",
    )
    .unwrap();
    n.submission.limits.wall_time_ms = 1234;
    n.max_attempts = 5;
    let n = with_key(n, "key-1");
    let created = match s.submit(n.clone(), T0).await.expect("submit") {
        SubmitOutcome::Created(e) => e,
        other => panic!("first submit must be Created, got {other:?}"),
    };
    assert!(!created.id.is_empty());
    assert_eq!(created.tenant, "acme");
    assert_eq!(created.status, EvaluationStatus::Queued);
    assert_eq!(created.language, Language::Python);
    assert_eq!(created.entrypoint, "main.py");
    assert_eq!(created.limits, n.submission.limits);
    assert_eq!(created.priority, 7);
    assert_eq!(created.labels, n.submission.labels);
    assert_eq!(created.attempts, 0);
    assert_eq!(created.max_attempts, 5);
    assert_eq!(created.created_at, T0);
    assert_eq!(created.started_at, None);
    assert_eq!(created.finished_at, None);
    assert_eq!(created.result, None);
    assert_eq!(created.error, None);
    assert_eq!(created.worker_id, None);
    assert!(!created.cancel_requested);
    assert_eq!(created.idempotency_key.as_deref(), Some("key-1"));

    assert_eq!(
        get(s, &created.id).await,
        created,
        "get returns what submit returned"
    );

    let evs = all_events(s, &created.id).await;
    assert_eq!(evs.len(), 1, "one queued status event: {evs:?}");
    assert_status_event(&evs[0], EvaluationStatus::Queued, 0);
    assert_eq!(evs[0].at, T0);

    let other = submit(s, new_eval("acme", 0), T0 + 1).await;
    assert_ne!(other, created.id, "ids are unique");

    // The program and stdin are stored for the worker: the claim hands them over.
    let c = claim(s, "w", T0 + 2).await;
    assert_eq!(c.evaluation.id, created.id);
    assert_eq!(c.input.files, n.submission.program.files());
    assert_eq!(c.input.entrypoint, "main.py");
    assert_eq!(c.input.stdin, "input\n");
}

pub async fn idempotency_key_is_per_tenant<S: Store + ?Sized>(s: &S) {
    let first = match s.submit(with_key(new_eval("t1", 0), "k"), T0).await {
        Ok(SubmitOutcome::Created(e)) => e,
        other => panic!("{other:?}"),
    };
    // A client retry (even with a different body) returns the first evaluation.
    let again = s
        .submit(with_key(new_eval("t1", 9), "k"), T0 + 5)
        .await
        .expect("submit");
    match &again {
        SubmitOutcome::Existing(e) => assert_eq!(e, &first, "Existing returns the first one"),
        other => panic!("same key, same tenant must be Existing, got {other:?}"),
    }
    let t1 = ListFilter {
        tenant: Some("t1".into()),
        ..filter()
    };
    assert_eq!(list_ids(s, t1.clone()).await, vec![first.id.clone()]);
    assert_eq!(all_events(s, &first.id).await.len(), 1, "nothing appended");

    // The same key in another tenant is another evaluation.
    let other = match s.submit(with_key(new_eval("t2", 0), "k"), T0).await {
        Ok(SubmitOutcome::Created(e)) => e,
        other => panic!("same key in another tenant must be Created, got {other:?}"),
    };
    assert_ne!(other.id, first.id);

    // In a batch, a known key next to new items is not a retry: nothing is inserted.
    let err = s
        .submit_batch(
            vec![
                new_eval("t1", 0),
                with_key(new_eval("t1", 0), "k"),
                with_key(new_eval("t1", 0), "fresh"),
            ],
            T0 + 10,
        )
        .await;
    assert!(
        matches!(&err, Err(StoreError::IdempotencyConflict(k)) if k == "k"),
        "a batch mixing a seen key with new items: {err:?}"
    );
    assert_eq!(list_ids(s, t1).await.len(), 1, "nothing inserted");
    assert_eq!(
        s.find_by_idempotency_key("t1", "fresh")
            .await
            .expect("find"),
        None
    );
}

pub async fn find_by_idempotency_key_is_per_tenant<S: Store + ?Sized>(s: &S) {
    assert_eq!(
        s.find_by_idempotency_key("t1", "k").await.expect("find"),
        None
    );
    let first = submit(s, with_key(new_eval("t1", 0), "k"), T0).await;
    let other = submit(s, with_key(new_eval("t2", 0), "k"), T0 + 1).await;
    submit(s, new_eval("t1", 0), T0 + 2).await;
    let found = s.find_by_idempotency_key("t1", "k").await.expect("find");
    assert_eq!(found, Some(get(s, &first).await), "the whole evaluation");
    assert_eq!(
        s.find_by_idempotency_key("t2", "k")
            .await
            .expect("find")
            .map(|e| e.id),
        Some(other)
    );
    assert_eq!(
        s.find_by_idempotency_key("t3", "k").await.expect("find"),
        None
    );
    assert_eq!(
        s.find_by_idempotency_key("t1", "K").await.expect("find"),
        None
    );
    // It follows the evaluation through its life.
    let c = claim(s, "w", T0 + 3).await;
    assert_eq!(c.evaluation.id, first);
    let found = s.find_by_idempotency_key("t1", "k").await.expect("find");
    assert_eq!(found.map(|e| e.status), Some(EvaluationStatus::Running));
}

/// One submission of `tenant` per key (`""`: without a key).
fn keyed(tenant: &str, keys: &[&str]) -> Vec<NewEvaluation> {
    keys.iter()
        .map(|k| match *k {
            "" => new_eval(tenant, 0),
            k => with_key(new_eval(tenant, 0), k),
        })
        .collect()
}

async fn expect_idempotency_conflict<S: Store + ?Sized>(
    s: &S,
    items: Vec<NewEvaluation>,
) -> String {
    match s.submit_batch(items, T0 + 10).await {
        Err(StoreError::IdempotencyConflict(k)) => k,
        other => panic!("a batch mixing seen and new items must conflict: {other:?}"),
    }
}

pub async fn submit_batch_idempotency_is_all_or_nothing<S: Store + ?Sized>(s: &S) {
    let first: Vec<Evaluation> = s
        .submit_batch(keyed("t", &["a", "b", "c"]), T0)
        .await
        .expect("batch")
        .into_iter()
        .map(|o| match o {
            SubmitOutcome::Created(e) => e,
            other => panic!("new keys must be Created: {other:?}"),
        })
        .collect();
    let mut events = Vec::new();
    for e in &first {
        events.push(all_events(s, &e.id).await);
    }
    // The same batch again (a client retry): every item Existing, in order, nothing inserted.
    let again = s
        .submit_batch(keyed("t", &["a", "b", "c"]), T0 + 5)
        .await
        .expect("batch again");
    let existing: Vec<SubmitOutcome> = first.iter().cloned().map(SubmitOutcome::Existing).collect();
    assert_eq!(
        again, existing,
        "a retried batch returns the first evaluations in order"
    );
    // In another order too.
    let out = s
        .submit_batch(keyed("t", &["c", "b", "a"]), T0 + 6)
        .await
        .expect("reversed");
    let ids: Vec<&str> = out.iter().map(|o| o.evaluation().id.as_str()).collect();
    assert_eq!(ids, [&first[2].id, &first[1].id, &first[0].id]);
    assert!(out.iter().all(|o| !o.is_created()));
    assert_eq!(count_all(s).await, 3, "nothing inserted");
    for (e, evs) in first.iter().zip(&events) {
        assert_eq!(&all_events(s, &e.id).await, evs, "nothing appended");
    }

    // Seen and new items mixed, in any order: nothing inserted, the conflict names a seen key.
    // An item without a key is always new.
    for mixed in [&["new-1", "b"], &["a", "new-1"], &["c", ""]] {
        let k = expect_idempotency_conflict(s, keyed("t", mixed)).await;
        assert!(["a", "b", "c"].contains(&k.as_str()), "a seen key: {k:?}");
    }
    assert_eq!(
        count_all(s).await,
        3,
        "nothing of a conflicting batch inserted"
    );
    assert_eq!(
        s.find_by_idempotency_key("t", "new-1").await.expect("find"),
        None
    );
    // Keys are per tenant: the same keys in another tenant are new.
    let other = s
        .submit_batch(keyed("u", &["a", "b"]), T0 + 20)
        .await
        .expect("other tenant");
    assert!(other.iter().all(SubmitOutcome::is_created), "{other:?}");

    // A key repeated inside one batch counts as seen: with a new key, the batch conflicts.
    let k = expect_idempotency_conflict(s, keyed("t", &["dup", "dup"])).await;
    assert_eq!(k, "dup");
    assert_eq!(
        s.find_by_idempotency_key("t", "dup").await.expect("find"),
        None
    );
    // With a seen key, every item is seen: all Existing, the same evaluation twice.
    let out = s
        .submit_batch(keyed("t", &["a", "a"]), T0 + 31)
        .await
        .expect("a seen key twice");
    assert_eq!(out, [existing[0].clone(), existing[0].clone()]);
    // Items without keys are always new.
    let out = s
        .submit_batch(keyed("t", &["", ""]), T0 + 40)
        .await
        .expect("no keys");
    assert!(out.iter().all(SubmitOutcome::is_created), "{out:?}");
    assert_eq!(count_all(s).await, 7);
}

pub async fn submit_batch_inserts_all_in_order<S: Store + ?Sized>(s: &S) {
    let items: Vec<NewEvaluation> = (0..50)
        .map(|i| {
            let mut n = with_label(new_eval("batch", i % 5), "index", &i.to_string());
            n.submission.stdin = format!("item {i}");
            n
        })
        .collect();
    let out = s.submit_batch(items, T0).await.expect("batch");
    assert_eq!(out.len(), 50);
    let mut ids = BTreeSet::new();
    for (i, o) in out.iter().enumerate() {
        let e = match o {
            SubmitOutcome::Created(e) => e,
            other => panic!("batch item {i} must be Created: {other:?}"),
        };
        assert_eq!(
            e.labels.get("index"),
            Some(&i.to_string()),
            "results come back in input order"
        );
        assert_eq!(e.status, EvaluationStatus::Queued);
        assert_eq!(e.created_at, T0);
        assert!(ids.insert(e.id.clone()), "duplicate id {}", e.id);
        assert_eq!(&get(s, &e.id).await, e);
        let evs = all_events(s, &e.id).await;
        assert_eq!(evs.len(), 1);
        assert_status_event(&evs[0], EvaluationStatus::Queued, 0);
    }
    let listed: BTreeSet<String> = list_ids(s, filter()).await.into_iter().collect();
    assert_eq!(listed, ids);
    assert_eq!(
        s.submit_batch(vec![], T0).await.expect("empty batch").len(),
        0
    );
    // Each item keeps its own input.
    for i in 0..50 {
        let c = claim(s, "w", T0 + 1).await;
        let index = &c.evaluation.labels["index"];
        assert_eq!(c.input.stdin, format!("item {index}"), "item {i}");
    }
}

pub async fn get_unknown_is_none<S: Store + ?Sized>(s: &S) {
    assert_eq!(s.get("no-such-evaluation").await.expect("get"), None);
    submit(s, new_eval("t", 0), T0).await;
    assert_eq!(s.get("no-such-evaluation").await.expect("get"), None);
}

// ---------------------------------------------------------------------------------------------
// Listing

pub async fn list_filters<S: Store + ?Sized>(s: &S) {
    let a = submit(s, with_label(new_eval("t1", 0), "run", "x"), T0).await;
    let b = submit(s, with_label(new_eval("t1", 0), "run", "y"), T0 + 10).await;
    let c = submit(s, with_label(new_eval("t2", 0), "run", "x"), T0 + 20).await;
    let d = submit(s, new_eval("t1", 0), T0 + 30).await;
    let e = submit(
        s,
        with_label(with_label(new_eval("t1", 0), "run", "x"), "model", "m"),
        T0 + 40,
    )
    .await;
    // Make `a` running: it is the oldest at equal priority.
    assert_eq!(claim(s, "w", T0 + 50).await.evaluation.id, a);

    let ids = |v: &[&String]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(list_ids(s, filter()).await, ids(&[&e, &d, &c, &b, &a]));
    let t1 = || ListFilter {
        tenant: Some("t1".into()),
        ..filter()
    };
    assert_eq!(list_ids(s, t1()).await, ids(&[&e, &d, &b, &a]));
    assert_eq!(
        list_ids(
            s,
            ListFilter {
                tenant: Some("nobody".into()),
                ..filter()
            }
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        list_ids(
            s,
            ListFilter {
                status: Some(EvaluationStatus::Running),
                ..filter()
            }
        )
        .await,
        ids(&[&a])
    );
    assert_eq!(
        list_ids(
            s,
            ListFilter {
                status: Some(EvaluationStatus::Queued),
                ..t1()
            }
        )
        .await,
        ids(&[&e, &d, &b])
    );
    assert_eq!(
        list_ids(
            s,
            ListFilter {
                label: Some(("run".into(), "x".into())),
                ..filter()
            }
        )
        .await,
        ids(&[&e, &c, &a])
    );
    assert_eq!(
        list_ids(
            s,
            ListFilter {
                label: Some(("run".into(), "x".into())),
                ..t1()
            }
        )
        .await,
        ids(&[&e, &a])
    );
    assert_eq!(
        list_ids(
            s,
            ListFilter {
                label: Some(("model".into(), "m".into())),
                ..filter()
            }
        )
        .await,
        ids(&[&e])
    );
    assert_eq!(
        list_ids(
            s,
            ListFilter {
                label: Some(("run".into(), "nope".into())),
                ..filter()
            }
        )
        .await,
        Vec::<String>::new()
    );
    // created_after is inclusive, created_before exclusive.
    assert_eq!(
        list_ids(
            s,
            ListFilter {
                created_after: Some(T0 + 10),
                created_before: Some(T0 + 30),
                ..filter()
            }
        )
        .await,
        ids(&[&c, &b])
    );
    assert_eq!(
        list_ids(
            s,
            ListFilter {
                created_after: Some(T0 + 11),
                ..t1()
            }
        )
        .await,
        ids(&[&e, &d])
    );
    assert_eq!(
        list_ids(
            s,
            ListFilter {
                created_before: Some(T0 + 10),
                ..filter()
            }
        )
        .await,
        ids(&[&a])
    );
    // Everything at once.
    assert_eq!(
        list_ids(
            s,
            ListFilter {
                tenant: Some("t1".into()),
                status: Some(EvaluationStatus::Queued),
                label: Some(("run".into(), "x".into())),
                created_after: Some(T0),
                created_before: Some(T0 + 41),
                ..filter()
            }
        )
        .await,
        ids(&[&e])
    );
    // Listed items are complete evaluations.
    let page = s.list(&t1()).await.expect("list");
    for item in &page.items {
        assert_eq!(item, &get(s, &item.id).await);
    }
}

async fn pages<S: Store + ?Sized>(s: &S, f: &ListFilter) -> Vec<Evaluation> {
    let mut out = Vec::new();
    let mut f = f.clone();
    for _ in 0..10_000 {
        let page = s.list(&f).await.expect("list page");
        assert!(
            page.items.len() <= usize::try_from(f.limit).unwrap_or(usize::MAX),
            "page larger than limit"
        );
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => f.cursor = Some(c),
            None => return out,
        }
    }
    panic!("pagination does not end");
}

pub async fn list_is_newest_first_and_pages_without_gaps<S: Store + ?Sized>(s: &S) {
    // 40 evaluations, many sharing a creation time (a batch is created in the same
    // millisecond), two tenants.
    let mut all = Vec::new();
    for i in 0..40i64 {
        let tenant = if i % 4 == 0 { "other" } else { "main" };
        all.push((submit(s, new_eval(tenant, 0), T0 + i / 3).await, T0 + i / 3));
    }
    let batch = s
        .submit_batch((0..10).map(|_| new_eval("main", 0)).collect(), T0 + 100)
        .await
        .expect("batch");
    for o in batch {
        all.push((o.evaluation().id.clone(), T0 + 100));
    }

    for limit in [1u32, 3, 7, 50, 1000] {
        let got = pages(
            s,
            &ListFilter {
                limit,
                ..Default::default()
            },
        )
        .await;
        let ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "duplicates across pages (limit {limit})"
        );
        assert_eq!(ids.len(), all.len(), "gaps across pages (limit {limit})");
        for w in got.windows(2) {
            assert!(
                w[0].created_at >= w[1].created_at,
                "newest first (limit {limit}): {} then {}",
                w[0].created_at,
                w[1].created_at
            );
        }
    }
    // The last page exactly full: no cursor, or a cursor to an empty page.
    let main = ListFilter {
        tenant: Some("main".into()),
        limit: 5,
        ..Default::default()
    };
    let got = pages(s, &main).await;
    assert_eq!(got.len(), 40, "30 + 10 for tenant main");
    assert!(got.iter().all(|e| e.tenant == "main"));

    // Newer submissions after the first page do not disturb the following pages.
    let first = s
        .list(&ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    for _ in 0..5 {
        submit(s, new_eval("main", 0), T0 + 1_000).await;
    }
    let rest = pages(
        s,
        &ListFilter {
            limit: 10,
            cursor: first.next_cursor.clone(),
            ..Default::default()
        },
    )
    .await;
    let mut seen: BTreeSet<String> = first.items.iter().map(|e| e.id.clone()).collect();
    for e in &rest {
        assert!(
            seen.insert(e.id.clone()),
            "{} repeated after new inserts",
            e.id
        );
        assert!(
            e.created_at <= T0 + 100,
            "a newer item showed up on a later page"
        );
    }
    assert_eq!(seen.len(), all.len());
}

pub async fn list_rejects_invalid_cursors<S: Store + ?Sized>(s: &S) {
    for _ in 0..3 {
        submit(s, new_eval("t", 0), T0).await;
    }
    for bad in [
        "not-a-cursor",
        "%%%",
        "12",
        "::",
        "999999999999999999999999:x",
    ] {
        match s
            .list(&ListFilter {
                cursor: Some(bad.into()),
                limit: 10,
                ..Default::default()
            })
            .await
        {
            Err(StoreError::InvalidCursor) => {}
            other => panic!("cursor {bad:?} must be InvalidCursor, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Claiming

pub async fn claim_takes_highest_priority_then_oldest<S: Store + ?Sized>(s: &S) {
    claim_none(s, T0, "empty queue").await;
    let low_old = submit(s, new_eval("t", -5), T0).await;
    let mid_new = submit(s, new_eval("t", 0), T0 + 30).await;
    let mid_old = submit(s, new_eval("t", 0), T0 + 10).await;
    let high_new = submit(s, new_eval("t", 10), T0 + 40).await;
    let high_old = submit(s, new_eval("t", 10), T0 + 20).await;
    let mut order = Vec::new();
    for i in 0..5 {
        order.push(claim(s, &format!("w{i}"), T0 + 100).await.evaluation.id);
    }
    assert_eq!(order, vec![high_old, high_new, mid_old, mid_new, low_old]);
    claim_none(s, T0 + 100, "everything is running").await;
}

pub async fn claim_marks_running_and_appends_status_event<S: Store + ?Sized>(s: &S) {
    let id = submit(s, new_eval("t", 0), T0).await;
    let c = claim(s, "worker-1", T0 + 5).await;
    assert_eq!(c.evaluation.id, id);
    assert_eq!(c.attempt, 1);
    assert!(!c.token.is_empty(), "a lease token");
    assert_eq!(c.lease_expires_at, T0 + 5 + LEASE_MS);
    assert_eq!(c.evaluation.status, EvaluationStatus::Running);
    assert_eq!(c.evaluation.attempts, 1);
    assert_eq!(c.evaluation.worker_id.as_deref(), Some("worker-1"));
    assert_eq!(c.evaluation.started_at, Some(T0 + 5));
    assert_eq!(
        get(s, &id).await,
        c.evaluation,
        "the claim returns the stored state"
    );
    let evs = all_events(s, &id).await;
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert_status_event(&evs[1], EvaluationStatus::Running, 1);
    assert_eq!(evs[1].at, T0 + 5);
}

pub async fn claim_returns_the_job_input<S: Store + ?Sized>(s: &S) {
    let files = vec![
        ProgramFile {
            path: "run.py".into(),
            content: "from pkg.util import f\nprint(f(input()))\n".into(),
        },
        ProgramFile {
            path: "pkg/__init__.py".into(),
            content: String::new(),
        },
        ProgramFile {
            path: "pkg/util.py".into(),
            content: "def f(x):\n    return x[::-1]  # ✓ \"quoted\" {json}\n".into(),
        },
    ];
    let mut n = new_eval("t", 0);
    n.submission.program = Program::new(files.clone(), "run.py").expect("program");
    n.submission.stdin = "ünï\n\tline 2".into();
    let id = submit(s, n, T0).await;
    let plain = submit(s, new_eval("t", 0), T0 + 1).await;
    let expected = JobInput {
        entrypoint: "run.py".into(),
        files,
        stdin: "ünï\n\tline 2".into(),
    };
    let c = claim(s, "w", T0 + 2).await;
    assert_eq!(c.evaluation.id, id);
    assert_eq!(c.input, expected, "the program and stdin as submitted");
    assert_eq!(c.evaluation.entrypoint, "run.py");
    let p = c.input.program().expect("a valid program");
    assert_eq!(p.entrypoint(), "run.py");
    let c2 = claim(s, "w", T0 + 2).await;
    assert_eq!(c2.evaluation.id, plain);
    assert_eq!(
        c2.input,
        JobInput {
            entrypoint: "main.py".into(),
            files: Program::single("print('hello')\n").files().to_vec(),
            stdin: String::new(),
        }
    );
    // A retry gets the same input again.
    s.finish(
        &id,
        &c.token,
        &run_result(RunStatus::Errored),
        &policy(),
        T0 + 3,
    )
    .await
    .expect("finish");
    let retry = claim(s, "w", T0 + 3 + 60_000).await;
    assert_eq!(
        (retry.evaluation.id.as_str(), retry.attempt),
        (id.as_str(), 2)
    );
    assert_eq!(retry.input, expected);
}

pub async fn claim_never_hands_out_a_job_twice<S: Store + ?Sized>(s: &S) {
    let a = submit(s, new_eval("t", 0), T0).await;
    let b = submit(s, new_eval("t", 0), T0 + 1).await;
    let c1 = claim(s, "w1", T0 + 10).await;
    let c2 = claim(s, "w2", T0 + 10).await;
    assert_eq!(c1.evaluation.id, a);
    assert_eq!(c2.evaluation.id, b);
    assert_ne!(c1.token, c2.token, "tokens are unique");
    // Even long after the leases expired: only the reaper returns jobs to the queue.
    claim_none(s, T0 + 10 * LEASE_MS, "both running").await;
}

pub async fn concurrent_claims_never_share_a_job<S: Store + ?Sized>(s: &S) {
    const JOBS: usize = 60;
    s.submit_batch((0..JOBS).map(|_| new_eval("t", 0)).collect(), T0)
        .await
        .expect("batch");
    let claimer = |w: &'static str| async move {
        let mut got = Vec::new();
        while let Some(c) = s
            .claim(w, LEASE, &ClaimPolicy::default(), T0 + 1)
            .await
            .expect("claim")
        {
            got.push((c.evaluation.id, c.token));
        }
        got
    };
    let (a, b, c, d, e, f, g, h) = tokio::join!(
        claimer("w1"),
        claimer("w2"),
        claimer("w3"),
        claimer("w4"),
        claimer("w5"),
        claimer("w6"),
        claimer("w7"),
        claimer("w8"),
    );
    let mut ids = BTreeSet::new();
    let mut tokens = BTreeSet::new();
    let mut total = 0;
    for got in [a, b, c, d, e, f, g, h] {
        total += got.len();
        for (id, token) in got {
            assert!(ids.insert(id.clone()), "job {id} was claimed twice");
            assert!(tokens.insert(token), "a lease token was handed out twice");
        }
    }
    assert_eq!(total, JOBS, "every job claimed exactly once");
    let stats = s.queue_stats(None, T0 + 2).await.expect("stats");
    assert_eq!(
        stats.counts.get(&EvaluationStatus::Running).copied(),
        u64::try_from(JOBS).ok()
    );
}

// ---------------------------------------------------------------------------------------------
// Running caps and fair claiming

/// A policy with a default running cap and per-tenant overrides.
fn caps(default: Option<u32>, tenants: &[(&str, Option<u32>)]) -> ClaimPolicy {
    ClaimPolicy {
        max_running: default,
        tenants: tenants.iter().map(|(t, c)| (t.to_string(), *c)).collect(),
    }
}

async fn claim_with<S: Store + ?Sized>(s: &S, p: &ClaimPolicy, now: Millis) -> Option<Claim> {
    s.claim("w", LEASE, p, now).await.expect("claim")
}

async fn finish_ok<S: Store + ?Sized>(s: &S, c: &Claim, now: Millis) {
    s.finish(
        &c.evaluation.id,
        &c.token,
        &run_result(RunStatus::Succeeded),
        &policy(),
        now,
    )
    .await
    .expect("finish");
}

pub async fn claim_respects_the_running_cap<S: Store + ?Sized>(s: &S) {
    let p = caps(Some(2), &[]);
    for i in 0..4 {
        submit(s, new_eval("t", 0), T0 + i).await;
    }
    let c1 = claim_with(s, &p, T0 + 10).await.expect("1st under the cap");
    let _c2 = claim_with(s, &p, T0 + 10).await.expect("2nd under the cap");
    if let Some(c) = claim_with(s, &p, T0 + 10).await {
        panic!("a 3rd job of a tenant capped at 2 was claimed: {c:?}");
    }
    // The cap counts running evaluations, not claims: one ends, one more may start.
    finish_ok(s, &c1, T0 + 20).await;
    let c3 = claim_with(s, &p, T0 + 21).await.expect("room again");
    assert_eq!(c3.evaluation.tenant, "t");
    assert!(claim_with(s, &p, T0 + 21).await.is_none(), "at the cap");
    // A cancellation request does not free the slot: the job still runs until it ends.
    s.cancel(&c3.evaluation.id, T0 + 22).await.expect("cancel");
    assert!(
        claim_with(s, &p, T0 + 23).await.is_none(),
        "still at the cap"
    );
    // Without a cap the rest is claimable at once.
    assert!(
        claim_with(s, &ClaimPolicy::default(), T0 + 24)
            .await
            .is_some()
    );
    assert_eq!(s.count_queued(Some("t")).await.expect("count"), 0);
}

pub async fn claim_skips_a_capped_tenant_for_others<S: Store + ?Sized>(s: &S) {
    let p = caps(Some(1), &[]);
    // `a`'s jobs are older and of higher priority: without the cap they would all go first.
    let a1 = submit(s, new_eval("a", 50), T0).await;
    submit(s, new_eval("a", 50), T0 + 1).await;
    submit(s, new_eval("a", 50), T0 + 2).await;
    let b1 = submit(s, new_eval("b", -50), T0 + 3).await;
    let b2 = submit(s, new_eval("b", -50), T0 + 4).await;
    let c = claim_with(s, &p, T0 + 10).await.expect("a job");
    assert_eq!(c.evaluation.id, a1);
    let cb = claim_with(s, &p, T0 + 10).await.expect("b is not capped");
    assert_eq!(cb.evaluation.id, b1, "a is at its cap: b's job goes");
    assert!(
        claim_with(s, &p, T0 + 10).await.is_none(),
        "both tenants at their cap: nothing is claimable although 3 jobs are queued"
    );
    assert_eq!(s.count_queued(None).await.expect("count"), 3);
    finish_ok(s, &cb, T0 + 11).await;
    let next = claim_with(s, &p, T0 + 12).await.expect("b has room");
    assert_eq!(next.evaluation.id, b2);
}

pub async fn claim_alternates_between_flooding_tenants<S: Store + ?Sized>(s: &S) {
    // `a` floods first (older jobs), then `b`; no caps at all.
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..10 {
        a.push(submit(s, new_eval("a", 0), T0 + i).await);
    }
    for i in 0..10 {
        b.push(submit(s, new_eval("b", 0), T0 + 100 + i).await);
    }
    let p = ClaimPolicy::default();
    // Without anything finishing: the tenant with fewer running goes first, ties by age.
    let mut tenants = String::new();
    let mut claims = Vec::new();
    for _ in 0..6 {
        let c = claim_with(s, &p, T0 + 1_000).await.expect("a job");
        tenants.push_str(&c.evaluation.tenant);
        claims.push(c);
    }
    assert_eq!(tenants, "ababab", "fair share while both are queued");
    // Each tenant's own jobs still go oldest first.
    let ids: Vec<&str> = claims.iter().map(|c| c.evaluation.id.as_str()).collect();
    assert_eq!(ids, [&a[0], &b[0], &a[1], &b[1], &a[2], &b[2]]);
    // Workers free up one by one, always on `a` (3 running vs `b`'s 3): the freed slot goes to
    // whoever now has fewer running, here `a`, then the tie breaks on age (`a` is older).
    finish_ok(s, &claims[0], T0 + 1_001).await;
    finish_ok(s, &claims[2], T0 + 1_001).await;
    let c = claim_with(s, &p, T0 + 1_002).await.expect("a job");
    assert_eq!(c.evaluation.id, a[3], "a has 1 running, b 3");
    let c = claim_with(s, &p, T0 + 1_002).await.expect("a job");
    assert_eq!(c.evaluation.id, a[4], "a has 2 running, b 3");
    let c = claim_with(s, &p, T0 + 1_002).await.expect("a job");
    assert_eq!(c.evaluation.id, a[5], "tie at 3: the older job (a's)");
    let c = claim_with(s, &p, T0 + 1_002).await.expect("a job");
    assert_eq!(c.evaluation.id, b[3], "a has 4 running, b 3");
}

pub async fn claim_fair_share_comes_before_priority<S: Store + ?Sized>(s: &S) {
    let p = ClaimPolicy::default();
    let a_low = submit(s, new_eval("a", 0), T0).await;
    let a_high = submit(s, new_eval("a", 100), T0 + 1).await;
    let b_low = submit(s, new_eval("b", -100), T0 + 2).await;
    let b_mid = submit(s, new_eval("b", 5), T0 + 3).await;
    let order = [
        claim_with(s, &p, T0 + 10).await.expect("1"),
        claim_with(s, &p, T0 + 10).await.expect("2"),
        claim_with(s, &p, T0 + 10).await.expect("3"),
        claim_with(s, &p, T0 + 10).await.expect("4"),
    ];
    let ids: Vec<&str> = order.iter().map(|c| c.evaluation.id.as_str()).collect();
    // 1: both have 0 running: highest priority (a's 100). 2: b has fewer running: b's best.
    // 3: tie at 1: a's 0 beats b's -100. 4: b's last.
    assert_eq!(ids, [&a_high, &b_mid, &a_low, &b_low]);
}

pub async fn claim_per_tenant_override<S: Store + ?Sized>(s: &S) {
    // Default cap 1; `big` may run 3; `free` has no cap at all.
    let p = caps(Some(1), &[("big", Some(3)), ("free", None)]);
    for t in ["small", "big", "free"] {
        for i in 0..5 {
            submit(s, new_eval(t, 0), T0 + i).await;
        }
    }
    let mut running: BTreeMap<String, u32> = BTreeMap::new();
    while let Some(c) = claim_with(s, &p, T0 + 10).await {
        *running.entry(c.evaluation.tenant).or_default() += 1;
        assert!(running.values().sum::<u32>() <= 15, "claims must end");
    }
    assert_eq!(running.get("small").copied(), Some(1), "{running:?}");
    assert_eq!(running.get("big").copied(), Some(3), "{running:?}");
    assert_eq!(running.get("free").copied(), Some(5), "{running:?}");
    assert_eq!(s.count_queued(Some("small")).await.expect("count"), 4);
    assert_eq!(s.count_queued(Some("big")).await.expect("count"), 2);
    assert_eq!(s.count_queued(Some("free")).await.expect("count"), 0);
}

pub async fn concurrent_claims_respect_the_running_cap<S: Store + ?Sized>(s: &S) {
    s.submit_batch(
        (0..40)
            .map(|i| new_eval(if i % 2 == 0 { "a" } else { "b" }, 0))
            .collect(),
        T0,
    )
    .await
    .expect("batch");
    let p = caps(Some(3), &[]);
    let claimer = |w: &'static str| {
        let p = p.clone();
        async move {
            let mut got = Vec::new();
            while let Some(c) = s.claim(w, LEASE, &p, T0 + 1).await.expect("claim") {
                got.push(c.evaluation.tenant);
            }
            got
        }
    };
    let (w1, w2, w3, w4, w5, w6) = tokio::join!(
        claimer("w1"),
        claimer("w2"),
        claimer("w3"),
        claimer("w4"),
        claimer("w5"),
        claimer("w6"),
    );
    let mut per_tenant: BTreeMap<String, u32> = BTreeMap::new();
    for t in [w1, w2, w3, w4, w5, w6].into_iter().flatten() {
        *per_tenant.entry(t).or_default() += 1;
    }
    assert_eq!(
        per_tenant,
        BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 3)]),
        "concurrent claimers never exceed a cap"
    );
}

pub async fn count_queued_per_tenant_and_total<S: Store + ?Sized>(s: &S) {
    assert_eq!(s.count_queued(None).await.expect("count"), 0);
    assert_eq!(s.count_queued(Some("a")).await.expect("count"), 0);
    let a1 = submit(s, with_max_attempts(new_eval("a", 10), 3), T0).await;
    submit(s, new_eval("a", 0), T0 + 1).await;
    let a3 = submit(s, new_eval("a", 0), T0 + 2).await;
    s.submit_batch(vec![new_eval("b", 0), new_eval("b", 0)], T0 + 3)
        .await
        .expect("batch");
    assert_eq!(s.count_queued(Some("a")).await.expect("count"), 3);
    assert_eq!(s.count_queued(Some("b")).await.expect("count"), 2);
    assert_eq!(s.count_queued(Some("nobody")).await.expect("count"), 0);
    assert_eq!(s.count_queued(None).await.expect("count"), 5);
    // Running and terminal evaluations are not queued; one waiting out its backoff is.
    let c = claim(s, "w", T0 + 10).await;
    assert_eq!(c.evaluation.id, a1);
    s.cancel(&a3, T0 + 11).await.expect("cancel");
    assert_eq!(s.count_queued(Some("a")).await.expect("count"), 1);
    assert_eq!(s.count_queued(None).await.expect("count"), 3);
    s.finish(
        &a1,
        &c.token,
        &run_result(RunStatus::Errored),
        &policy(),
        T0 + 12,
    )
    .await
    .expect("finish");
    assert_eq!(get(s, &a1).await.status, EvaluationStatus::Queued);
    assert_eq!(
        s.count_queued(Some("a")).await.expect("count"),
        2,
        "a retry waiting for its backoff counts"
    );
    assert_eq!(s.count_queued(None).await.expect("count"), 4);
}

pub async fn heartbeat_extends_the_lease_and_is_fenced<S: Store + ?Sized>(s: &S) {
    let id = submit(s, new_eval("t", 0), T0).await;
    let c = claim(s, "w", T0).await;
    expect_lease_lost(
        s.heartbeat(&id, "not-the-token", LEASE, T0 + 1).await,
        "heartbeat with a wrong token",
    );
    let st = s
        .heartbeat(&id, &c.token, LEASE, T0 + 20_000)
        .await
        .expect("heartbeat");
    assert_eq!(
        st,
        LeaseState {
            cancel_requested: false
        }
    );
    // Old expiry T0+30s passed, new one (T0+50s) not yet.
    assert_eq!(
        s.reap_expired(&policy(), T0 + 40_000).await.expect("reap"),
        0
    );
    assert_eq!(get(s, &id).await.status, EvaluationStatus::Running);
    // A heartbeat after the lease ran out but before a reaper noticed still holds the job.
    s.heartbeat(&id, &c.token, LEASE, T0 + 55_000)
        .await
        .expect("late heartbeat");
    assert_eq!(
        s.reap_expired(&policy(), T0 + 80_000).await.expect("reap"),
        0
    );
    assert_eq!(
        s.reap_expired(&policy(), T0 + 85_000).await.expect("reap"),
        1
    );
    expect_lease_lost(
        s.heartbeat(&id, &c.token, LEASE, T0 + 85_001).await,
        "heartbeat after the lease was reaped",
    );
    // Heartbeats append no events.
    let evs = all_events(s, &id).await;
    assert_status_event(&evs[evs.len() - 1], EvaluationStatus::Queued, 1);
}

pub async fn append_output_is_fenced_and_gapless<S: Store + ?Sized>(s: &S) {
    let id = submit(s, new_eval("t", 0), T0).await;
    let other = submit(s, new_eval("t", 0), T0 + 1).await;
    let c = claim(s, "w", T0 + 2).await;
    let c_other = claim(s, "w", T0 + 2).await;
    assert_eq!(c.evaluation.id, id);
    let chunks = [
        (OutputStream::Stdout, "line 1\n"),
        (OutputStream::Stderr, "warn: ✓ ü\n"),
        (OutputStream::Stdout, ""),
        (OutputStream::Stdout, "no newline"),
        (OutputStream::Stderr, "\t\"quoted\" {json}\n"),
    ];
    let mut last = 2; // queued, running
    for ((stream, data), at) in chunks.iter().zip(T0 + 3..) {
        let seq = s
            .append_output(&id, &c.token, *stream, data, at)
            .await
            .expect("append");
        assert_eq!(seq, last + 1, "seq strictly increasing without gaps");
        last = seq;
        // Interleave writes to another evaluation: seqs are per evaluation.
        s.append_output(&other, &c_other.token, OutputStream::Stdout, "x", T0 + 3)
            .await
            .expect("append other");
    }
    expect_lease_lost(
        s.append_output(&id, "stale", OutputStream::Stdout, "zombie", T0 + 50)
            .await,
        "append with a wrong token",
    );
    expect_lease_lost(
        s.append_output(&id, &c_other.token, OutputStream::Stdout, "x", T0 + 50)
            .await,
        "append with another job's token",
    );
    let evs = all_events(s, &id).await;
    assert_eq!(evs.len(), 2 + chunks.len(), "{evs:?}");
    for ((e, (stream, data)), at) in evs[2..].iter().zip(&chunks).zip(T0 + 3..) {
        assert_eq!(
            e.payload,
            output_event(*stream, data),
            "output is stored verbatim"
        );
        assert_eq!(e.at, at);
    }
    assert_eq!(all_events(s, &other).await.len(), 2 + chunks.len());
    assert_eq!(
        output(s, &id).await,
        Output {
            stdout: "line 1\nno newline".into(),
            stderr: "warn: ✓ ü\n\t\"quoted\" {json}\n".into(),
        }
    );
}

pub async fn output_concatenates_the_chunks_of_each_stream<S: Store + ?Sized>(s: &S) {
    expect_not_found(s.output("no-such-evaluation").await, "output");
    let id = submit(s, new_eval("t", 0), T0).await;
    let other = submit(s, new_eval("t", 0), T0 + 1).await;
    assert_eq!(
        output(s, &id).await,
        Output::default(),
        "queued: nothing yet"
    );
    let c = claim(s, "w", T0 + 2).await;
    let c_other = claim(s, "w", T0 + 2).await;
    assert_eq!(output(s, &id).await, Output::default(), "running, silent");
    let mut expected = Output::default();
    for i in 0..200u32 {
        let (stream, text) = match i % 3 {
            0 | 1 => (OutputStream::Stdout, format!("line {i}: ✓\n")),
            _ => (OutputStream::Stderr, format!("err {i} ")),
        };
        s.append_output(&id, &c.token, stream, &text, T0 + 3)
            .await
            .expect("append");
        match stream {
            OutputStream::Stdout => expected.stdout.push_str(&text),
            OutputStream::Stderr => expected.stderr.push_str(&text),
        }
        if i % 50 == 0 {
            s.append_output(&other, &c_other.token, OutputStream::Stdout, "o", T0 + 3)
                .await
                .expect("append other");
            assert_eq!(output(s, &id).await, expected, "the output so far ({i})");
        }
    }
    assert_eq!(output(s, &id).await, expected);
    assert_eq!(
        output(s, &other).await,
        Output {
            stdout: "oooo".into(),
            stderr: String::new()
        },
        "per evaluation"
    );
    // Finishing changes nothing in it; the run result's own output is not what is kept.
    let mut result = run_result(RunStatus::Succeeded);
    result.stdout = "what the worker kept".into();
    s.finish(&id, &c.token, &result, &policy(), T0 + 4)
        .await
        .expect("finish");
    assert_eq!(
        output(s, &id).await,
        expected,
        "the event log is the output"
    );
    // A large chunk is kept whole.
    let big = "x".repeat(1 << 20);
    s.append_output(&other, &c_other.token, OutputStream::Stderr, &big, T0 + 5)
        .await
        .expect("append a large chunk");
    assert_eq!(output(s, &other).await.stderr.len(), big.len());
}

pub async fn get_with_output_is_get_and_output_together<S: Store + ?Sized>(s: &S) {
    assert_eq!(
        s.get_with_output("no-such-evaluation").await.expect("read"),
        None
    );
    let queued = submit(s, new_eval("t", 0), T0).await;
    let id = submit(s, new_eval("t", 0), T0 + 1).await;
    let both = |id: String| async move {
        let e = s.get(&id).await.expect("get").expect("exists");
        let o = s.output(&id).await.expect("output");
        (e, o)
    };
    assert_eq!(
        s.get_with_output(&queued).await.expect("read"),
        Some(both(queued.clone()).await),
        "queued: no output"
    );
    let c = claim(s, "w", T0 + 2).await;
    assert_eq!(c.evaluation.id, queued);
    let c2 = claim(s, "w", T0 + 2).await;
    for (i, text) in ["a\n", "é✓", "", "tail"].iter().enumerate() {
        let stream = if i % 2 == 0 {
            OutputStream::Stdout
        } else {
            OutputStream::Stderr
        };
        s.append_output(&id, &c2.token, stream, text, T0 + 3)
            .await
            .expect("append");
    }
    s.finish(
        &id,
        &c2.token,
        &run_result(RunStatus::Failed),
        &policy(),
        T0 + 4,
    )
    .await
    .expect("finish");
    let got = s.get_with_output(&id).await.expect("read").expect("exists");
    assert_eq!(got, both(id.clone()).await);
    assert_eq!(
        (got.1.stdout.as_str(), got.1.stderr.as_str()),
        ("a\n", "é✓tail"),
        "in order, per stream"
    );
    assert_eq!(got.0.status, EvaluationStatus::Failed);
    drop(c);
}

// ---------------------------------------------------------------------------------------------
// Finishing

pub async fn finish_with_user_outcome_is_final<S: Store + ?Sized>(s: &S) {
    let outcomes = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::MemoryExceeded,
        RunStatus::OutputExceeded,
        RunStatus::Cancelled,
    ];
    for (status, now) in outcomes.into_iter().zip((T0..).step_by(1_000)) {
        let id = submit(s, new_eval("t", 0), now).await;
        let c = claim(s, "w", now + 1).await;
        assert_eq!(c.evaluation.id, id);
        s.append_output(&id, &c.token, OutputStream::Stdout, "hello\n", now + 2)
            .await
            .expect("append");
        let result = run_result(status);
        let got = s
            .finish(&id, &c.token, &result, &policy(), now + 3)
            .await
            .expect("finish");
        let expected = EvaluationStatus::from(status);
        assert_eq!(got, expected, "{status} is final");
        let e = get(s, &id).await;
        assert_eq!(e.status, expected);
        assert_eq!(
            e.result,
            Some(RunRecord::of(&result)),
            "the result is stored as given, without its output"
        );
        assert_eq!(e.finished_at, Some(now + 3));
        assert_eq!(e.started_at, Some(now + 1));
        assert_eq!(e.attempts, 1);
        assert_eq!(e.worker_id.as_deref(), Some("w"));
        let evs = all_events(s, &id).await;
        assert_eq!(
            evs.len(),
            5,
            "queued, running, stdout, status, result: {evs:?}"
        );
        assert_ends_with_result(&evs, expected);
        assert_eq!(
            e.result.as_ref().map(|r| r.exit_code),
            Some(result.exit_code)
        );
        assert_eq!(evs[4].at, now + 3);
        assert_eq!(
            output(s, &id).await,
            Output {
                stdout: "hello\n".into(),
                stderr: String::new()
            },
            "the output is the event log's"
        );
        claim_none(s, now + 10 * LEASE_MS, "finished jobs are never claimed").await;
        assert_eq!(
            s.reap_expired(&policy(), now + 10 * LEASE_MS)
                .await
                .expect("reap"),
            0
        );
    }
}

pub async fn finish_errored_retries_with_backoff_then_dead_letters<S: Store + ?Sized>(s: &S) {
    let p = policy(); // backoff 1s, 2s, ...
    let id = submit(s, new_eval("t", 0), T0).await; // max_attempts 3
    let errored = run_result(RunStatus::Errored);

    let c1 = claim(s, "w", T0 + 10).await;
    assert_eq!(c1.attempt, 1);
    let st = s
        .finish(&id, &c1.token, &errored, &p, T0 + 20)
        .await
        .expect("finish 1");
    assert_eq!(
        st,
        EvaluationStatus::Queued,
        "a platform failure is retried"
    );
    let e = get(s, &id).await;
    assert_eq!(e.status, EvaluationStatus::Queued);
    assert_eq!(e.attempts, 1);
    assert_eq!(e.result, None, "no result until terminal");
    assert_eq!(e.finished_at, None);
    assert!(
        e.error
            .as_deref()
            .is_some_and(|m| m.contains("runtime crashed")),
        "the platform error is kept: {:?}",
        e.error
    );
    let evs = all_events(s, &id).await;
    assert_status_event(&evs[evs.len() - 1], EvaluationStatus::Queued, 1);
    expect_lease_lost(
        s.heartbeat(&id, &c1.token, LEASE, T0 + 21).await,
        "the old token after a retry",
    );
    claim_none(s, T0 + 20 + 999, "backoff of 1s not passed").await;
    let c2 = claim(s, "w", T0 + 20 + 1_000).await;
    assert_eq!(c2.attempt, 2);
    assert_ne!(c2.token, c1.token);

    let t = T0 + 5_000;
    let st = s
        .finish(&id, &c2.token, &errored, &p, t)
        .await
        .expect("finish 2");
    assert_eq!(st, EvaluationStatus::Queued);
    claim_none(s, t + 1_999, "backoff of 2s not passed").await;
    let c3 = claim(s, "w", t + 2_000).await;
    assert_eq!(c3.attempt, 3);

    let t = T0 + 20_000;
    let st = s
        .finish(&id, &c3.token, &errored, &p, t)
        .await
        .expect("finish 3");
    assert_eq!(st, EvaluationStatus::Dead, "the last attempt dead-letters");
    let e = get(s, &id).await;
    assert_eq!(e.status, EvaluationStatus::Dead);
    assert_eq!(e.attempts, 3);
    assert_eq!(e.finished_at, Some(t));
    assert!(
        e.error
            .as_deref()
            .is_some_and(|m| m.contains("runtime crashed")),
        "dead keeps the reason: {:?}",
        e.error
    );
    let evs = all_events(s, &id).await;
    assert_ends_with_result(&evs, EvaluationStatus::Dead);
    claim_none(s, t + 3_600_000, "dead jobs are never claimed").await;

    // The evaluation's max_attempts bounds retries, whatever the policy says.
    let once = submit(s, with_max_attempts(new_eval("t", 0), 1), T0 + 30_000).await;
    let c = claim(s, "w", T0 + 30_001).await;
    assert_eq!(c.evaluation.id, once);
    assert_eq!(
        s.finish(&once, &c.token, &errored, &p, T0 + 30_002)
            .await
            .expect("finish"),
        EvaluationStatus::Dead
    );
}

pub async fn finish_with_stale_token_changes_nothing<S: Store + ?Sized>(s: &S) {
    let id = submit(s, new_eval("t", 0), T0).await;
    let zombie = claim(s, "zombie", T0).await;
    assert_eq!(
        s.reap_expired(&policy(), T0 + LEASE_MS + 1)
            .await
            .expect("reap"),
        1
    );
    let live = claim(s, "live", T0 + 3_600_000).await;
    assert_eq!(live.evaluation.id, id);
    assert_eq!(live.attempt, 2);
    let before = get(s, &id).await;
    let events_before = all_events(s, &id).await;

    for status in [RunStatus::Succeeded, RunStatus::Errored] {
        expect_lease_lost(
            s.finish(
                &id,
                &zombie.token,
                &run_result(status),
                &policy(),
                T0 + 3_600_001,
            )
            .await,
            "finish with a stale token",
        );
    }
    expect_lease_lost(
        s.release(&id, &zombie.token, T0 + 3_600_001).await,
        "release with a stale token",
    );
    assert_eq!(get(s, &id).await, before, "a zombie changes nothing");
    assert_eq!(all_events(s, &id).await, events_before);

    let result = run_result(RunStatus::Failed);
    s.finish(&id, &live.token, &result, &policy(), T0 + 3_600_002)
        .await
        .expect("the live worker finishes");
    let e = get(s, &id).await;
    assert_eq!(e.status, EvaluationStatus::Failed);
    assert_eq!(e.result, Some(RunRecord::of(&result)));
    assert_eq!(e.worker_id.as_deref(), Some("live"));
}

// ---------------------------------------------------------------------------------------------
// Reaping, releasing

pub async fn reap_requeues_expired_leases_and_fences_the_zombie<S: Store + ?Sized>(s: &S) {
    let p = policy();
    let id = submit(s, new_eval("t", 0), T0).await;
    let fresh = submit(s, new_eval("t", 0), T0 + 1).await;
    let c = claim(s, "w1", T0).await;
    assert_eq!(c.evaluation.id, id);
    let c_fresh = claim(s, "w2", T0 + 20_000).await;
    assert_eq!(c_fresh.evaluation.id, fresh);

    assert_eq!(
        s.reap_expired(&p, T0 + LEASE_MS - 1).await.expect("reap"),
        0
    );
    let t = T0 + LEASE_MS + 1;
    assert_eq!(
        s.reap_expired(&p, t).await.expect("reap"),
        1,
        "only the expired lease"
    );
    assert_eq!(get(s, &fresh).await.status, EvaluationStatus::Running);
    let e = get(s, &id).await;
    assert_eq!(e.status, EvaluationStatus::Queued);
    assert_eq!(e.attempts, 1, "the lost attempt counts");
    assert!(
        e.error.is_some(),
        "the lost lease is recorded as the last error"
    );
    let evs = all_events(s, &id).await;
    assert_status_event(&evs[evs.len() - 1], EvaluationStatus::Queued, 1);

    // The zombie can no longer write anything.
    expect_lease_lost(
        s.heartbeat(&id, &c.token, LEASE, t).await,
        "zombie heartbeat",
    );
    expect_lease_lost(
        s.append_output(&id, &c.token, OutputStream::Stdout, "x", t)
            .await,
        "zombie append",
    );
    expect_lease_lost(
        s.finish(&id, &c.token, &run_result(RunStatus::Succeeded), &p, t)
            .await,
        "zombie finish",
    );
    assert_eq!(get(s, &id).await, e);

    // Claimable again once the backoff passed.
    let c2 = claim(s, "w3", crate::after(t, p.backoff(1))).await;
    assert_eq!(c2.evaluation.id, id);
    assert_eq!(c2.attempt, 2);
    // And the zombie's token still does not work after the re-claim.
    expect_lease_lost(
        s.finish(
            &id,
            &c.token,
            &run_result(RunStatus::Succeeded),
            &p,
            t + 5_000,
        )
        .await,
        "zombie finish after re-claim",
    );
    assert_eq!(get(s, &id).await.worker_id.as_deref(), Some("w3"));
}

pub async fn reap_dead_letters_after_max_attempts<S: Store + ?Sized>(s: &S) {
    let p = policy();
    let id = submit(s, with_max_attempts(new_eval("t", 0), 2), T0).await;
    let mut now = T0;
    for attempt in 1..=2u32 {
        let c = claim(s, "w", now).await;
        assert_eq!(c.attempt, attempt);
        now = c.lease_expires_at + 1;
        assert_eq!(s.reap_expired(&p, now).await.expect("reap"), 1);
        now = crate::after(now, Duration::from_millis(p.max_backoff_ms));
    }
    let e = get(s, &id).await;
    assert_eq!(e.status, EvaluationStatus::Dead);
    assert_eq!(e.attempts, 2);
    assert_eq!(e.result, None);
    assert!(e.finished_at.is_some());
    assert!(e.error.is_some(), "dead keeps a reason");
    assert_ends_with_result(&all_events(s, &id).await, EvaluationStatus::Dead);
    claim_none(s, now + 3_600_000, "dead").await;
    assert_eq!(s.reap_expired(&p, now + 3_600_000).await.expect("reap"), 0);
}

pub async fn release_requeues_without_consuming_an_attempt<S: Store + ?Sized>(s: &S) {
    let id = submit(s, with_max_attempts(new_eval("t", 0), 1), T0).await;
    let c = claim(s, "w", T0 + 1).await;
    expect_lease_lost(
        s.release(&id, "wrong", T0 + 2).await,
        "release with a wrong token",
    );
    s.release(&id, &c.token, T0 + 2).await.expect("release");
    let e = get(s, &id).await;
    assert_eq!(e.status, EvaluationStatus::Queued);
    assert_eq!(e.attempts, 0, "a released attempt is not counted");
    let evs = all_events(s, &id).await;
    assert_status_event(&evs[evs.len() - 1], EvaluationStatus::Queued, 0);
    expect_lease_lost(
        s.heartbeat(&id, &c.token, LEASE, T0 + 3).await,
        "heartbeat after release",
    );
    // Claimable at once, and the single allowed attempt is still there.
    let c2 = claim(s, "w2", T0 + 2).await;
    assert_eq!(c2.attempt, 1);
    assert_eq!(
        s.finish(
            &id,
            &c2.token,
            &run_result(RunStatus::Errored),
            &policy(),
            T0 + 4
        )
        .await
        .expect("finish"),
        EvaluationStatus::Dead
    );
}

// ---------------------------------------------------------------------------------------------
// Cancelling, requeueing

pub async fn cancel_queued_is_immediate_and_terminal<S: Store + ?Sized>(s: &S) {
    let id = submit(s, new_eval("t", 0), T0).await;
    let e = s.cancel(&id, T0 + 5).await.expect("cancel");
    assert_eq!(e.status, EvaluationStatus::Cancelled);
    assert_eq!(e.finished_at, Some(T0 + 5));
    assert_eq!(e.result, None);
    assert_eq!(get(s, &id).await, e);
    let evs = all_events(s, &id).await;
    assert_eq!(evs.len(), 3, "queued, cancelled, result: {evs:?}");
    assert_ends_with_result(&evs, EvaluationStatus::Cancelled);
    claim_none(s, T0 + 10, "a cancelled job is never claimed").await;
    // Cancelling again changes nothing.
    assert_eq!(s.cancel(&id, T0 + 20).await.expect("cancel again"), e);
    assert_eq!(all_events(s, &id).await.len(), 3);

    // A job waiting for a retry is queued too.
    let retry = submit(s, new_eval("t", 0), T0 + 30).await;
    let c = claim(s, "w", T0 + 31).await;
    s.finish(
        &retry,
        &c.token,
        &run_result(RunStatus::Errored),
        &policy(),
        T0 + 32,
    )
    .await
    .expect("finish");
    assert_eq!(
        s.cancel(&retry, T0 + 33).await.expect("cancel").status,
        EvaluationStatus::Cancelled
    );
    claim_none(s, T0 + 3_600_000, "cancelled during backoff").await;
}

pub async fn cancel_running_is_requested_until_finish<S: Store + ?Sized>(s: &S) {
    let id = submit(s, new_eval("t", 0), T0).await;
    let c = claim(s, "w", T0 + 1).await;
    let e = s.cancel(&id, T0 + 2).await.expect("cancel");
    assert_eq!(
        e.status,
        EvaluationStatus::Running,
        "a running job runs until killed"
    );
    assert!(e.cancel_requested);
    assert_eq!(get(s, &id).await, e);
    let st = s
        .heartbeat(&id, &c.token, LEASE, T0 + 3)
        .await
        .expect("heartbeat");
    assert!(
        st.cancel_requested,
        "the worker learns of it at its heartbeat"
    );
    // Cancelling twice is harmless.
    assert!(
        s.cancel(&id, T0 + 4)
            .await
            .expect("cancel")
            .cancel_requested
    );
    let result = run_result(RunStatus::Cancelled);
    assert_eq!(
        s.finish(&id, &c.token, &result, &policy(), T0 + 5)
            .await
            .expect("finish"),
        EvaluationStatus::Cancelled
    );
    let e = get(s, &id).await;
    assert_eq!(e.status, EvaluationStatus::Cancelled);
    assert_eq!(e.result, Some(RunRecord::of(&result)));
    assert_ends_with_result(&all_events(s, &id).await, EvaluationStatus::Cancelled);
}

pub async fn cancel_terminal_is_unchanged<S: Store + ?Sized>(s: &S) {
    let id = submit(s, new_eval("t", 0), T0).await;
    let c = claim(s, "w", T0 + 1).await;
    s.finish(
        &id,
        &c.token,
        &run_result(RunStatus::Succeeded),
        &policy(),
        T0 + 2,
    )
    .await
    .expect("finish");
    let before = get(s, &id).await;
    let events = all_events(s, &id).await;
    let after = s
        .cancel(&id, T0 + 3)
        .await
        .expect("cancel of a terminal job");
    assert_eq!(after, before);
    assert!(!after.cancel_requested);
    assert_eq!(all_events(s, &id).await, events);
}

pub async fn platform_failure_after_cancel_request_ends_cancelled<S: Store + ?Sized>(s: &S) {
    // errored
    let a = submit(s, new_eval("t", 0), T0).await;
    let c = claim(s, "w", T0 + 1).await;
    s.cancel(&a, T0 + 2).await.expect("cancel");
    assert_eq!(
        s.finish(
            &a,
            &c.token,
            &run_result(RunStatus::Errored),
            &policy(),
            T0 + 3
        )
        .await
        .expect("finish"),
        EvaluationStatus::Cancelled,
        "a cancelled job is not retried"
    );
    assert_ends_with_result(&all_events(s, &a).await, EvaluationStatus::Cancelled);
    // lost lease
    let b = submit(s, new_eval("t", 0), T0 + 10).await;
    let c = claim(s, "w", T0 + 11).await;
    s.cancel(&b, T0 + 12).await.expect("cancel");
    assert_eq!(
        s.reap_expired(&policy(), c.lease_expires_at + 1)
            .await
            .expect("reap"),
        1
    );
    assert_eq!(get(s, &b).await.status, EvaluationStatus::Cancelled);
    // released
    let d = submit(s, new_eval("t", 0), T0 + 20).await;
    let c = claim(s, "w", T0 + 21).await;
    assert_eq!(c.evaluation.id, d);
    s.cancel(&d, T0 + 22).await.expect("cancel");
    s.release(&d, &c.token, T0 + 23).await.expect("release");
    assert_eq!(get(s, &d).await.status, EvaluationStatus::Cancelled);
    assert_ends_with_result(&all_events(s, &d).await, EvaluationStatus::Cancelled);
    claim_none(s, T0 + 3_600_000, "all cancelled").await;
}

pub async fn requeue_only_dead<S: Store + ?Sized>(s: &S) {
    let id = submit(s, with_max_attempts(new_eval("t", 0), 1), T0).await;
    match s.requeue(&id, T0 + 1).await {
        Err(StoreError::Conflict { status, .. }) => assert_eq!(status, EvaluationStatus::Queued),
        other => panic!("requeue of a queued job must be Conflict, got {other:?}"),
    }
    let c = claim(s, "w", T0 + 2).await;
    match s.requeue(&id, T0 + 3).await {
        Err(StoreError::Conflict { status, .. }) => assert_eq!(status, EvaluationStatus::Running),
        other => panic!("requeue of a running job must be Conflict, got {other:?}"),
    }
    s.finish(
        &id,
        &c.token,
        &run_result(RunStatus::Errored),
        &policy(),
        T0 + 4,
    )
    .await
    .expect("finish");
    assert_eq!(get(s, &id).await.status, EvaluationStatus::Dead);

    let e = s.requeue(&id, T0 + 100).await.expect("requeue");
    assert_eq!(e.status, EvaluationStatus::Queued);
    assert_eq!(e.attempts, 0, "attempts reset");
    assert_eq!(e.finished_at, None);
    assert_eq!(e.error, None);
    assert_eq!(e.result, None);
    assert_eq!(get(s, &id).await, e);
    let evs = all_events(s, &id).await;
    assert_status_event(&evs[evs.len() - 1], EvaluationStatus::Queued, 0);
    let c = claim(s, "w", T0 + 100).await;
    assert_eq!(c.evaluation.id, id);
    assert_eq!(c.attempt, 1);
    s.finish(
        &id,
        &c.token,
        &run_result(RunStatus::Succeeded),
        &policy(),
        T0 + 101,
    )
    .await
    .expect("finish");
    match s.requeue(&id, T0 + 102).await {
        Err(StoreError::Conflict { status, .. }) => {
            assert_eq!(status, EvaluationStatus::Succeeded)
        }
        other => panic!("requeue of a succeeded job must be Conflict, got {other:?}"),
    }
}

pub async fn terminal_status_never_changes<S: Store + ?Sized>(s: &S) {
    let id = submit(s, new_eval("t", 0), T0).await;
    let c = claim(s, "w", T0 + 1).await;
    let result = run_result(RunStatus::Succeeded);
    s.finish(&id, &c.token, &result, &policy(), T0 + 2)
        .await
        .expect("finish");
    let before = get(s, &id).await;
    let events = all_events(s, &id).await;
    let later = T0 + 3_600_000;
    expect_lease_lost(
        s.finish(
            &id,
            &c.token,
            &run_result(RunStatus::Failed),
            &policy(),
            later,
        )
        .await,
        "finish twice",
    );
    expect_lease_lost(
        s.finish(
            &id,
            &c.token,
            &run_result(RunStatus::Errored),
            &policy(),
            later,
        )
        .await,
        "errored after finish",
    );
    expect_lease_lost(
        s.heartbeat(&id, &c.token, LEASE, later).await,
        "heartbeat after finish",
    );
    expect_lease_lost(
        s.append_output(&id, &c.token, OutputStream::Stdout, "x", later)
            .await,
        "append after finish",
    );
    expect_lease_lost(
        s.release(&id, &c.token, later).await,
        "release after finish",
    );
    assert_eq!(s.reap_expired(&policy(), later).await.expect("reap"), 0);
    claim_none(s, later, "finished").await;
    s.cancel(&id, later).await.expect("cancel");
    assert_eq!(get(s, &id).await, before);
    assert_eq!(all_events(s, &id).await, events);
}

pub async fn unknown_ids_are_not_found<S: Store + ?Sized>(s: &S) {
    let p = policy();
    let r = run_result(RunStatus::Succeeded);
    expect_not_found(s.cancel("nope", T0).await, "cancel");
    expect_not_found(s.requeue("nope", T0).await, "requeue");
    expect_not_found(s.heartbeat("nope", "t", LEASE, T0).await, "heartbeat");
    expect_not_found(
        s.append_output("nope", "t", OutputStream::Stdout, "x", T0)
            .await,
        "append_output",
    );
    expect_not_found(s.finish("nope", "t", &r, &p, T0).await, "finish");
    expect_not_found(s.release("nope", "t", T0).await, "release");
    expect_not_found(s.output("nope").await, "output");
    assert_eq!(
        s.events("nope", 0, 10).await.expect("events of unknown id"),
        vec![]
    );
}

// ---------------------------------------------------------------------------------------------
// Events, stats, workers, keys

pub async fn events_paginate<S: Store + ?Sized>(s: &S) {
    let id = submit(s, new_eval("t", 0), T0).await;
    let c = claim(s, "w", T0 + 1).await;
    for i in 0..5 {
        s.append_output(&id, &c.token, OutputStream::Stdout, &format!("{i}"), T0 + 2)
            .await
            .expect("append");
    }
    let seqs = |v: Vec<Event>| v.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(s.events(&id, 0, 3).await.expect("events")),
        vec![1, 2, 3]
    );
    assert_eq!(
        seqs(s.events(&id, 3, 100).await.expect("events")),
        vec![4, 5, 6, 7]
    );
    assert_eq!(seqs(s.events(&id, 5, 1).await.expect("events")), vec![6]);
    assert_eq!(
        seqs(s.events(&id, 7, 10).await.expect("events")),
        Vec::<i64>::new()
    );
    let all = all_events(s, &id).await;
    assert_eq!(all.len(), 7);
    assert_eq!(all[2].payload, output_event(OutputStream::Stdout, "0"));
    assert_eq!(all[6].payload, output_event(OutputStream::Stdout, "4"));
    s.finish(
        &id,
        &c.token,
        &run_result(RunStatus::Succeeded),
        &policy(),
        T0 + 3,
    )
    .await
    .expect("finish");
    assert_eq!(
        seqs(s.events(&id, 7, 10).await.expect("events")),
        vec![8, 9]
    );
}

pub async fn queue_stats_counts_and_oldest_age<S: Store + ?Sized>(s: &S) {
    let empty = s.queue_stats(None, T0).await.expect("stats");
    assert_eq!(empty.oldest_queued_age_ms, None);
    assert!(empty.counts.values().all(|&n| n == 0), "{empty:?}");
    assert!(empty.workers.is_empty());

    let ids: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..5 {
            v.push(submit(s, new_eval("t", 0), T0 + 100 * i).await);
        }
        v
    };
    let c0 = claim(s, "w", T0 + 1_000).await; // ids[0]
    let c1 = claim(s, "w", T0 + 1_000).await; // ids[1]
    s.finish(
        &ids[1],
        &c1.token,
        &run_result(RunStatus::Failed),
        &policy(),
        T0 + 1_001,
    )
    .await
    .expect("finish");
    s.cancel(&ids[2], T0 + 1_002).await.expect("cancel");
    let st = s.queue_stats(None, T0 + 5_000).await.expect("stats");
    let count = |k| count_of(&st, k);
    assert_eq!(count(EvaluationStatus::Queued), 2, "{st:?}");
    assert_eq!(count(EvaluationStatus::Running), 1, "{st:?}");
    assert_eq!(count(EvaluationStatus::Failed), 1, "{st:?}");
    assert_eq!(count(EvaluationStatus::Cancelled), 1, "{st:?}");
    assert_eq!(count(EvaluationStatus::Succeeded), 0, "{st:?}");
    assert_eq!(
        st.oldest_queued_age_ms,
        Some(5_000 - 300),
        "the oldest queued was created at T0+300"
    );
    assert_eq!(c0.evaluation.id, ids[0]);
}

/// The count of `status` (every status must be present).
fn count_of(st: &QueueStats, status: EvaluationStatus) -> u64 {
    st.counts
        .get(&status)
        .copied()
        .unwrap_or_else(|| panic!("every status is counted, {status} is missing: {st:?}"))
}

pub async fn queue_stats_counts_every_status<S: Store + ?Sized>(s: &S) {
    let mut every: Vec<EvaluationStatus> = EvaluationStatus::ALL.to_vec();
    every.sort();
    let empty = s.queue_stats(None, T0).await.expect("stats");
    assert_eq!(
        empty.counts.keys().copied().collect::<Vec<_>>(),
        every,
        "every status, at zero"
    );
    // One evaluation ending in each status a run can reach.
    let finished = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::MemoryExceeded,
        RunStatus::OutputExceeded,
    ];
    for (status, now) in finished.into_iter().zip((T0..).step_by(10)) {
        submit(s, new_eval("t", 0), now).await;
        let c = claim(s, "w", now + 1).await;
        s.finish(
            &c.evaluation.id,
            &c.token,
            &run_result(status),
            &policy(),
            now + 2,
        )
        .await
        .expect("finish");
    }
    let dead = submit(s, with_max_attempts(new_eval("t", 0), 1), T0 + 100).await;
    let c = claim(s, "w", T0 + 101).await;
    assert_eq!(c.evaluation.id, dead);
    s.finish(
        &dead,
        &c.token,
        &run_result(RunStatus::Errored),
        &policy(),
        T0 + 102,
    )
    .await
    .expect("finish");
    let cancelled = submit(s, new_eval("t", 0), T0 + 110).await;
    s.cancel(&cancelled, T0 + 111).await.expect("cancel");
    submit(s, new_eval("t", 0), T0 + 120).await;
    claim(s, "w", T0 + 121).await;
    submit(s, new_eval("other", 0), T0 + 130).await;

    let st = s.queue_stats(None, T0 + 200).await.expect("stats");
    assert_eq!(st.counts.keys().copied().collect::<Vec<_>>(), every);
    for status in every.iter().copied() {
        // `errored` is never where an evaluation stays: it is retried or dead-lettered.
        let expected = u64::from(status != EvaluationStatus::Errored);
        assert_eq!(count_of(&st, status), expected, "{status}: {st:?}");
    }
    let t = s.queue_stats(Some("t"), T0 + 200).await.expect("stats");
    assert_eq!(t.counts.keys().copied().collect::<Vec<_>>(), every);
    assert_eq!(count_of(&t, EvaluationStatus::Queued), 0, "{t:?}");
    assert_eq!(count_of(&t, EvaluationStatus::Dead), 1, "{t:?}");
}

pub async fn queue_stats_per_tenant<S: Store + ?Sized>(s: &S) {
    let a1 = submit(s, new_eval("a", 0), T0).await;
    submit(s, new_eval("a", 0), T0 + 100).await;
    submit(s, new_eval("b", 0), T0 + 50).await;
    let b2 = submit(s, new_eval("b", 0), T0 + 200).await;
    s.cancel(&a1, T0 + 300).await.expect("cancel");
    s.cancel(&b2, T0 + 300).await.expect("cancel");
    s.worker_heartbeat(&WorkerInfo {
        id: "w1".into(),
        hostname: "h".into(),
        runtime: "runc".into(),
        slots: 1,
        running: 0,
        started_at: T0,
        last_seen: T0,
    })
    .await
    .expect("worker heartbeat");
    let now = T0 + 1_000;
    let count =
        |st: &QueueStats, k: &str| count_of(st, EvaluationStatus::parse(k).expect("a status"));

    let all = s.queue_stats(None, now).await.expect("stats");
    assert_eq!(count(&all, "queued"), 2, "{all:?}");
    assert_eq!(count(&all, "cancelled"), 2, "{all:?}");
    assert_eq!(
        all.oldest_queued_age_ms,
        Some(1_000 - 50),
        "b's first, at T0+50"
    );

    let a = s.queue_stats(Some("a"), now).await.expect("stats");
    assert_eq!(count(&a, "queued"), 1, "{a:?}");
    assert_eq!(count(&a, "cancelled"), 1, "{a:?}");
    assert_eq!(
        a.oldest_queued_age_ms,
        Some(1_000 - 100),
        "a's queued one, at T0+100"
    );
    assert_eq!(a.workers.len(), 1, "workers are shared: always listed");

    let b = s.queue_stats(Some("b"), now).await.expect("stats");
    assert_eq!(count(&b, "queued"), 1, "{b:?}");
    assert_eq!(b.oldest_queued_age_ms, Some(1_000 - 50));

    let none = s.queue_stats(Some("nobody"), now).await.expect("stats");
    assert!(none.counts.values().all(|&n| n == 0), "{none:?}");
    assert_eq!(none.oldest_queued_age_ms, None);
    assert_eq!(
        none.counts.keys().collect::<Vec<_>>(),
        all.counts.keys().collect::<Vec<_>>(),
        "every status is counted, even at zero"
    );
}

pub async fn workers_upsert_and_remove<S: Store + ?Sized>(s: &S) {
    let mut w1 = WorkerInfo {
        id: "w1".into(),
        hostname: "host-a".into(),
        runtime: "runc".into(),
        slots: 4,
        running: 0,
        started_at: T0,
        last_seen: T0,
    };
    let w2 = WorkerInfo {
        id: "w2".into(),
        hostname: "host-b".into(),
        runtime: "runsc".into(),
        slots: 2,
        running: 1,
        started_at: T0 + 5,
        last_seen: T0 + 5,
    };
    s.worker_heartbeat(&w1).await.expect("worker heartbeat");
    s.worker_heartbeat(&w2).await.expect("worker heartbeat");
    w1.running = 3;
    w1.last_seen = T0 + 10;
    s.worker_heartbeat(&w1)
        .await
        .expect("worker heartbeat upsert");
    let mut workers = s.queue_stats(None, T0 + 20).await.expect("stats").workers;
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(workers, vec![w1.clone(), w2.clone()]);
    s.remove_worker("w1").await.expect("remove");
    s.remove_worker("never-seen").await.expect("remove unknown");
    assert_eq!(
        s.queue_stats(None, T0 + 30).await.expect("stats").workers,
        vec![w2]
    );
}

pub async fn api_keys<S: Store + ?Sized>(s: &S) {
    assert_eq!(s.count_keys().await.expect("count"), 0);
    let key = ApiKey {
        id: "key-1".into(),
        name: "ci".into(),
        tenant: "acme".into(),
        role: Role::Member,
        hash: "a".repeat(64),
        created_at: T0,
        expires_at: Some(T0 + 86_400_000),
        revoked_at: None,
        last_used_at: None,
    };
    s.create_key(&key).await.expect("create key");
    assert_eq!(s.count_keys().await.expect("count"), 1);
    assert_eq!(s.use_key(&"b".repeat(64), T0).await.expect("use"), None);

    let used = s
        .use_key(&key.hash, T0 + 1_000)
        .await
        .expect("use")
        .expect("known hash");
    assert_eq!(
        used,
        ApiKey {
            last_used_at: Some(T0 + 1_000),
            ..key.clone()
        }
    );
    // Later uses are recorded (a backend may coarsen this to once a minute).
    let later = T0 + 600_000;
    s.use_key(&key.hash, later).await.expect("use");
    let again = s
        .use_key(&key.hash, later)
        .await
        .expect("use")
        .expect("key");
    assert_eq!(again.last_used_at, Some(later));
    assert_eq!(again.hash, key.hash);

    let admin = ApiKey {
        id: "key-2".into(),
        name: "root".into(),
        tenant: "ops".into(),
        role: Role::Admin,
        hash: "c".repeat(64),
        created_at: T0,
        expires_at: None,
        revoked_at: Some(T0 + 5),
        last_used_at: None,
    };
    s.create_key(&admin).await.expect("create key");
    assert_eq!(s.count_keys().await.expect("count"), 2);
    let got = s
        .use_key(&admin.hash, T0 + 10)
        .await
        .expect("use")
        .expect("key");
    assert_eq!(got.role, Role::Admin);
    assert_eq!(
        got.revoked_at,
        Some(T0 + 5),
        "revocation is visible to the caller"
    );
}

fn test_key(id: &str, tenant: &str, role: Role, created_at: Millis, hash: char) -> ApiKey {
    ApiKey {
        id: id.into(),
        name: format!("{id} of {tenant}"),
        tenant: tenant.into(),
        role,
        hash: hash.to_string().repeat(64),
        created_at,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

pub async fn keys_get_and_list_by_tenant<S: Store + ?Sized>(s: &S) {
    assert_eq!(s.list_keys(None).await.expect("list keys"), vec![]);
    assert_eq!(s.get_key("key-x").await.expect("get key"), None);
    // Created out of order: the list is by created_at, then id.
    let k3 = ApiKey {
        expires_at: Some(T0 + 5_000),
        ..test_key("key-3", "acme", Role::Viewer, T0 + 20, '3')
    };
    let k1 = test_key("key-1", "acme", Role::Member, T0, '1');
    let k2b = test_key("key-2b", "ops", Role::Admin, T0 + 10, '5');
    let k2a = test_key("key-2a", "acme", Role::Member, T0 + 10, '4');
    for k in [&k3, &k1, &k2b, &k2a] {
        s.create_key(k).await.expect("create key");
    }
    assert_eq!(
        s.list_keys(None).await.expect("list keys"),
        vec![k1.clone(), k2a.clone(), k2b.clone(), k3.clone()],
        "all tenants, oldest first, hashes included"
    );
    assert_eq!(
        s.list_keys(Some("acme")).await.expect("list keys"),
        vec![k1.clone(), k2a.clone(), k3.clone()]
    );
    assert_eq!(
        s.list_keys(Some("ops")).await.expect("list keys"),
        vec![k2b.clone()]
    );
    assert_eq!(
        s.list_keys(Some("nobody")).await.expect("list keys"),
        vec![]
    );
    assert_eq!(s.get_key("key-3").await.expect("get key"), Some(k3.clone()));
    assert_eq!(s.get_key("key-2b").await.expect("get key"), Some(k2b));
    assert_eq!(
        s.get_key("key-").await.expect("get key"),
        None,
        "no prefix match"
    );
    // A use shows in the listing.
    s.use_key(&k1.hash, T0 + 100).await.expect("use");
    let listed = s.list_keys(Some("acme")).await.expect("list keys");
    assert_eq!(listed[0].last_used_at, Some(T0 + 100));
    assert_eq!(
        s.get_key("key-1")
            .await
            .expect("get key")
            .unwrap()
            .last_used_at,
        Some(T0 + 100)
    );
    assert_eq!(s.count_keys().await.expect("count"), 4);
    // Ids and hashes are unique.
    assert!(
        s.create_key(&test_key("key-1", "other", Role::Viewer, T0, '9'))
            .await
            .is_err(),
        "a second key with the same id"
    );
    assert!(
        s.create_key(&test_key("key-9", "other", Role::Viewer, T0, '1'))
            .await
            .is_err(),
        "a second key with the same hash"
    );
    assert_eq!(s.count_keys().await.expect("count"), 4);
}

pub async fn revoke_key_is_immediate_and_idempotent<S: Store + ?Sized>(s: &S) {
    let k = test_key("key-a", "acme", Role::Member, T0, 'a');
    let other = test_key("key-b", "acme", Role::Member, T0, 'b');
    s.create_key(&k).await.expect("create key");
    s.create_key(&other).await.expect("create key");
    expect_not_found(s.revoke_key("key-nope", T0 + 1).await, "revoke_key");

    let revoked = s.revoke_key("key-a", T0 + 50).await.expect("revoke");
    assert_eq!(
        revoked,
        ApiKey {
            revoked_at: Some(T0 + 50),
            ..k.clone()
        }
    );
    let used = s
        .use_key(&k.hash, T0 + 51)
        .await
        .expect("use")
        .expect("a revoked key is still found");
    assert_eq!(
        used.revoked_at,
        Some(T0 + 50),
        "visible to the next use at once"
    );
    assert_eq!(
        s.get_key("key-a")
            .await
            .expect("get key")
            .unwrap()
            .revoked_at,
        Some(T0 + 50)
    );
    // Again: nothing changes, the first revocation time stays.
    let again = s.revoke_key("key-a", T0 + 900).await.expect("revoke again");
    assert_eq!(again.revoked_at, Some(T0 + 50));
    // The other key is untouched.
    let o = s.use_key(&other.hash, T0 + 60).await.expect("use").unwrap();
    assert_eq!(o.revoked_at, None);
    let listed = s.list_keys(Some("acme")).await.expect("list keys");
    assert_eq!(
        listed
            .iter()
            .map(|k| (k.id.as_str(), k.revoked_at))
            .collect::<Vec<_>>(),
        vec![("key-a", Some(T0 + 50)), ("key-b", None)],
        "revoked keys stay listed"
    );
    assert_eq!(s.count_keys().await.expect("count"), 2);
}

// ---------------------------------------------------------------------------------------------
// Audit log

async fn audit_all<S: Store + ?Sized>(s: &S, mut filter: AuditFilter) -> Vec<AuditEntry> {
    let mut out = Vec::new();
    loop {
        let page = s.list_audit(&filter).await.expect("list audit");
        assert!(page.items.len() <= usize::try_from(filter.limit.max(1)).unwrap_or(usize::MAX));
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => filter.cursor = Some(c),
            None => return out,
        }
    }
}

pub async fn audit_append_chains_entries<S: Store + ?Sized>(s: &S) {
    let empty = s.verify_audit().await.expect("verify empty");
    assert_eq!((empty.entries, empty.head_seq, empty.broken), (0, 0, None));
    assert_eq!(empty.head_hash, GENESIS_HASH);
    let mut prev = GENESIS_HASH.to_string();
    for i in 0..5 {
        let new = audit_entry(
            T0 + i,
            Some("key-a"),
            Some("acme"),
            "evaluation.submit",
            AuditOutcome::Ok,
        );
        let e = s.append_audit(new.clone()).await.expect("append");
        assert_eq!(e.seq, i + 1, "seqs are 1, 2, 3, … without gaps");
        assert_eq!(e.entry, new, "stored as given");
        assert_eq!(e.prev_hash, prev, "linked to the entry before");
        assert_eq!(
            e.hash,
            e.computed_hash(),
            "hash over the canonical encoding"
        );
        assert_eq!(e.hash.len(), 64);
        prev = e.hash.clone();
    }
    let all = audit_all(
        s,
        AuditFilter {
            oldest_first: true,
            limit: 1000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.len(), 5);
    assert_eq!(all[4].hash, prev, "listed exactly as appended");
    let v = s.verify_audit().await.expect("verify");
    assert_eq!(v.entries, 5);
    assert_eq!(v.head_seq, 5);
    assert_eq!(v.head_hash, prev);
    assert_eq!(v.broken, None);
}

pub async fn audit_list_filters_and_pages<S: Store + ?Sized>(s: &S) {
    use AuditOutcome::{Denied, Error, Ok};
    let rows = [
        (Some("key-a"), Some("acme"), "evaluation.submit", Ok),
        (Some("key-b"), Some("beta"), "evaluation.submit", Ok),
        (Some("key-a"), Some("acme"), "evaluation.cancel", Error),
        (None, None, "auth.failed", Denied),
        (Some("key-v"), Some("acme"), "evaluation.submit", Denied),
        (Some("key-a"), Some("acme"), "key.create", Ok),
        (Some("key-b"), Some("beta"), "evaluation.cancel", Ok),
    ];
    for ((actor, tenant, action, outcome), at) in rows.iter().zip((T0..).step_by(10)) {
        s.append_audit(audit_entry(at, *actor, *tenant, action, *outcome))
            .await
            .expect("append");
    }
    let seqs = |items: &[AuditEntry]| items.iter().map(|e| e.seq).collect::<Vec<_>>();
    let all = |filter: AuditFilter| async move { seqs(&audit_all(s, filter).await) };
    let f = |limit| AuditFilter {
        limit,
        ..Default::default()
    };
    // Newest first by default; oldest first on request; pages without gaps or repeats.
    assert_eq!(all(f(1000)).await, vec![7, 6, 5, 4, 3, 2, 1]);
    for limit in [1, 2, 3, 7] {
        assert_eq!(
            all(f(limit)).await,
            vec![7, 6, 5, 4, 3, 2, 1],
            "limit {limit}"
        );
        assert_eq!(
            all(AuditFilter {
                oldest_first: true,
                ..f(limit)
            })
            .await,
            vec![1, 2, 3, 4, 5, 6, 7],
            "limit {limit}, oldest first"
        );
    }
    let first = s.list_audit(&f(3)).await.expect("page");
    assert_eq!(seqs(&first.items), vec![7, 6, 5]);
    assert!(first.next_cursor.is_some());
    let last = s.list_audit(&f(7)).await.expect("page");
    assert_eq!(last.next_cursor, None, "no cursor after the last page");
    // Filters.
    let by = |g: fn(&mut AuditFilter)| {
        let mut filter = f(1000);
        g(&mut filter);
        filter
    };
    assert_eq!(
        all(by(|f| f.actor = Some("key-a".into()))).await,
        vec![6, 3, 1]
    );
    assert_eq!(
        all(by(|f| f.tenant = Some("beta".into()))).await,
        vec![7, 2]
    );
    assert_eq!(
        all(by(|f| f.action = Some("evaluation.submit".into()))).await,
        vec![5, 2, 1]
    );
    assert_eq!(
        all(by(|f| f.outcome = Some(AuditOutcome::Denied))).await,
        vec![5, 4]
    );
    assert_eq!(
        all(by(|f| f.target = Some(format!("target-{}", T0 + 20)))).await,
        vec![3]
    );
    // [after, before)
    assert_eq!(
        all(by(|f| {
            f.after = Some(T0 + 20);
            f.before = Some(T0 + 50);
        }))
        .await,
        vec![5, 4, 3]
    );
    assert_eq!(
        all(by(|f| {
            f.actor = Some("key-a".into());
            f.outcome = Some(AuditOutcome::Ok);
            f.oldest_first = true;
        }))
        .await,
        vec![1, 6]
    );
    assert_eq!(
        all(by(|f| f.actor = Some("nobody".into()))).await,
        Vec::<i64>::new()
    );
    for bad in ["", "x", "-1", "1.5", "99999999999999999999999"] {
        let err = s
            .list_audit(&AuditFilter {
                cursor: Some(bad.into()),
                ..f(10)
            })
            .await;
        assert!(
            matches!(err, Err(StoreError::InvalidCursor)),
            "cursor {bad:?}: {err:?}"
        );
    }
    let v = s.verify_audit().await.expect("verify");
    assert_eq!((v.entries, v.head_seq, v.broken), (7, 7, None));
}

pub async fn audit_concurrent_appends_never_fork<S: Store + ?Sized>(s: &S) {
    let appender = |w: i64| async move {
        let mut seqs = Vec::new();
        for i in 0..5 {
            let e = s
                .append_audit(audit_entry(
                    T0 + w * 10 + i,
                    Some("key-a"),
                    Some("acme"),
                    "evaluation.submit",
                    AuditOutcome::Ok,
                ))
                .await
                .expect("append");
            seqs.push(e.seq);
        }
        seqs
    };
    let (a, b, c, d, e, f, g, h) = tokio::join!(
        appender(0),
        appender(1),
        appender(2),
        appender(3),
        appender(4),
        appender(5),
        appender(6),
        appender(7),
    );
    let mut seqs: Vec<i64> = [a, b, c, d, e, f, g, h].into_iter().flatten().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>(), "each seq exactly once");
    let v = s.verify_audit().await.expect("verify");
    assert_eq!(
        (v.entries, v.head_seq, v.broken),
        (40, 40, None),
        "one chain, not forked"
    );
}

// ---------------------------------------------------------------------------------------------
// Many claimers at once

pub async fn concurrent_claimers_keep_caps_and_fair_share<S: Store + ?Sized>(s: &S) {
    // Three tenants: `a` capped at 2, `b` at 3, `c` at the default 1; 20 jobs each.
    let p = caps(Some(1), &[("a", Some(2)), ("b", Some(3))]);
    const TENANTS: [&str; 3] = ["a", "b", "c"];
    const EACH: usize = 20;
    const TOTAL: usize = EACH * TENANTS.len();
    for (i, t) in TENANTS.iter().enumerate() {
        let i = i64::try_from(i).expect("small");
        s.submit_batch((0..EACH).map(|_| new_eval(t, 0)).collect(), T0 + i)
            .await
            .expect("batch");
    }
    /// What the claimers hold, as they see it: running per tenant, every id ever claimed, and
    /// how many ended.
    #[derive(Default)]
    struct Seen {
        running: BTreeMap<String, u32>,
        claimed: BTreeSet<String>,
        finished: usize,
    }
    let seen = std::sync::Mutex::new(Seen::default());
    let cap = |t: &str| p.max_running(t).expect("every tenant is capped");
    let finish = |c: Claim, now: Millis| {
        let seen = &seen;
        async move {
            // Counted out before the finish: once it commits, the store may hand the slot out.
            {
                let mut st = seen.lock().expect("not poisoned");
                let n = st
                    .running
                    .get_mut(&c.evaluation.tenant)
                    .expect("was running");
                *n -= 1;
            }
            s.finish(
                &c.evaluation.id,
                &c.token,
                &run_result(RunStatus::Succeeded),
                &policy(),
                now,
            )
            .await
            .expect("finish");
            seen.lock().expect("not poisoned").finished += 1;
        }
    };
    let claimer = |w: usize| {
        let (p, seen) = (&p, &seen);
        async move {
            let worker = format!("w{w}");
            let mut held: Vec<Claim> = Vec::new();
            let mut step = 0u64;
            loop {
                step += 1;
                assert!(step < 20_000, "{worker}: the queue never drained");
                let now = T0 + 100 + i64::try_from(step).expect("small");
                match s.claim(&worker, LEASE, p, now).await.expect("claim") {
                    Some(c) => {
                        let tenant = c.evaluation.tenant.clone();
                        {
                            let mut st = seen.lock().expect("not poisoned");
                            assert!(
                                st.claimed.insert(c.evaluation.id.clone()),
                                "{} was claimed twice",
                                c.evaluation.id
                            );
                            let n = st.running.entry(tenant.clone()).or_default();
                            *n += 1;
                            assert!(
                                *n <= cap(&tenant),
                                "{tenant} runs {n}, over its cap of {}",
                                cap(&tenant)
                            );
                        }
                        // The store's own count, at this moment, never exceeds the cap either
                        // (it is never below what the claimers hold).
                        let st = s.queue_stats(Some(&tenant), now).await.expect("stats");
                        let running = count_of(&st, EvaluationStatus::Running);
                        assert!(
                            running <= u64::from(cap(&tenant)),
                            "the store runs {running} of {tenant}, over its cap"
                        );
                        held.push(c);
                        // Hold some claims a while, finish others at once.
                        if held.len() >= 2 || (w + held.len()).is_multiple_of(3) {
                            finish(held.remove(0), now).await;
                        }
                    }
                    None if !held.is_empty() => {
                        for c in std::mem::take(&mut held) {
                            finish(c, now).await;
                        }
                    }
                    None => {
                        if seen.lock().expect("not poisoned").finished == TOTAL {
                            return;
                        }
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    };
    tokio::join!(
        claimer(0),
        claimer(1),
        claimer(2),
        claimer(3),
        claimer(4),
        claimer(5),
        claimer(6),
        claimer(7),
    );
    let st = seen.into_inner().expect("not poisoned");
    assert_eq!(st.claimed.len(), TOTAL, "every job claimed exactly once");
    assert!(st.running.values().all(|&n| n == 0), "{:?}", st.running);
    let stats = s.queue_stats(None, T0 + 50_000).await.expect("stats");
    assert_eq!(
        count_of(&stats, EvaluationStatus::Succeeded),
        u64::try_from(TOTAL).expect("small"),
        "everything finished: {stats:?}"
    );
    assert_eq!(count_of(&stats, EvaluationStatus::Running), 0);
    assert_eq!(s.count_queued(None).await.expect("count"), 0);
    // Fair share afterwards: the store's running counts are back to zero for every tenant, so
    // three claims go to three different tenants (fewest running first), whoever is older.
    for t in TENANTS.iter().rev() {
        s.submit_batch(vec![new_eval(t, 0), new_eval(t, 0)], T0 + 60_000)
            .await
            .expect("batch");
    }
    let mut tenants = BTreeSet::new();
    for _ in 0..3 {
        let c = claim_with(s, &ClaimPolicy::default(), T0 + 60_001)
            .await
            .expect("a job");
        tenants.insert(c.evaluation.tenant);
    }
    assert_eq!(tenants.len(), 3, "one claim per tenant: {tenants:?}");
    // And the caps still count exactly: `c` (cap 1) runs one, so only `a` and `b` may start.
    let c = claim_with(s, &p, T0 + 60_002).await.expect("a or b");
    assert_ne!(c.evaluation.tenant, "c");
}
