//! Conformance checks of what scaling out added to the contract: admission checked in the
//! store (exact across processes), output blobs published by the fenced finish, retention, and
//! copying a whole installation (export, import, audit import).

use super::support::{
    LEASE, LEASE_MS, T0, audit_entry, claim, filter, get, new_eval, policy, run_result, submit,
    with_key,
};
use crate::audit::GENESIS_HASH;
use crate::{
    Admission, ApiKey, AuditFilter, AuditOutcome, BlobRef, RateCharge, Refusal, RunRecord, Store,
    StoreError, SubmitOutcome,
};
use assay_domain::{EvaluationStatus, OutputStream, Role, RunStatus};
use std::collections::BTreeSet;

fn refusal<T: std::fmt::Debug>(r: crate::Result<T>, what: &str) -> Refusal {
    match r {
        Err(StoreError::Refused(r)) => r,
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

fn caps(tenant: Option<u64>, total: Option<u64>) -> Admission {
    Admission {
        tenant_cap: tenant,
        total_cap: total,
        rate: None,
    }
}

/// Queue caps are checked in the inserting transaction: concurrent submissions never pass them
/// together, a refusal inserts nothing, and the cap counts the tenant's queued evaluations only.
pub async fn admit_caps_are_exact_under_concurrency<S: Store + ?Sized>(s: &S) {
    let cap = caps(Some(5), Some(8));
    let tries = (0..24).map(|i| s.admit(vec![new_eval("a", 0)], &cap, T0 + i));
    let outcomes = futures::future::join_all(tries).await;
    let admitted = outcomes.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        admitted, 5,
        "exactly the tenant cap is admitted: {outcomes:?}"
    );
    for r in outcomes.into_iter().filter(|r| r.is_err()) {
        assert!(
            matches!(
                refusal(r, "over the cap"),
                Refusal::TenantQueueFull { limit: 5, .. }
            ),
            "the tenant's cap refuses"
        );
    }
    assert_eq!(s.count_queued(Some("a")).await.expect("count"), 5);
    // Another tenant fits under the total (8) with 3 more; a batch of 4 is refused whole.
    let r = s
        .admit((0..4).map(|_| new_eval("b", 0)).collect(), &cap, T0 + 100)
        .await;
    assert_eq!(
        refusal(r, "batch over the total"),
        Refusal::QueueFull {
            queued: 5,
            limit: 8
        }
    );
    assert_eq!(s.count_queued(Some("b")).await.expect("count"), 0);
    let ok = s
        .admit((0..3).map(|_| new_eval("b", 0)).collect(), &cap, T0 + 101)
        .await
        .expect("a batch that fits");
    assert_eq!(ok.len(), 3);
    // A claimed evaluation no longer counts as queued: one more fits.
    claim(s, "w1", T0 + 200).await;
    s.admit(vec![new_eval("c", 0)], &cap, T0 + 201)
        .await
        .expect("a slot freed by the claim");
}

/// The key's token bucket lives in the store: charged per evaluation, refusals take nothing,
/// replays of idempotent submissions are free, and two handles on one store share it.
pub async fn admit_rate_is_one_bucket_per_key<S: Store + ?Sized>(s: &S) {
    let rate = |bucket: &str| Admission {
        rate: Some(RateCharge {
            bucket: bucket.into(),
            per_minute: 60,
            burst: 3,
        }),
        ..Admission::default()
    };
    let k1 = rate("key-1");
    s.admit(vec![with_key(new_eval("a", 0), "i-1")], &k1, T0)
        .await
        .expect("first");
    s.admit(vec![new_eval("a", 0), new_eval("a", 0)], &k1, T0)
        .await
        .expect("burst");
    assert_eq!(
        refusal(
            s.admit(vec![new_eval("a", 0)], &k1, T0 + 400).await,
            "empty"
        ),
        Refusal::RateLimited { wait_ms: 600 }
    );
    // A replay of an idempotent submission is not charged (and not refused).
    let replay = s
        .admit(vec![with_key(new_eval("a", 0), "i-1")], &k1, T0 + 400)
        .await
        .expect("replay");
    assert!(matches!(replay[0], SubmitOutcome::Existing(_)));
    // More than the burst at once: never.
    let batch = (0..4).map(|_| new_eval("a", 0)).collect();
    assert_eq!(
        refusal(s.admit(batch, &k1, T0 + 100_000).await, "over burst"),
        Refusal::OverBurst { burst: 3 }
    );
    // A cap refusal takes no token: after it, the full bucket still gives 3.
    let capped = Admission {
        tenant_cap: Some(0),
        ..rate("key-2")
    };
    assert!(matches!(
        refusal(s.admit(vec![new_eval("z", 0)], &capped, T0).await, "cap"),
        Refusal::TenantQueueFull { .. }
    ));
    let k2 = rate("key-2");
    s.admit((0..3).map(|_| new_eval("z", 0)).collect(), &k2, T0)
        .await
        .expect("bucket untouched by the refusal");
    // One token a second refills key-1.
    s.admit(vec![new_eval("a", 0)], &k1, T0 + 1_000)
        .await
        .expect("refilled");
    // Concurrent charges of one bucket never overdraw it.
    let k3 = rate("key-3");
    let tries = (0..12).map(|_| s.admit(vec![new_eval("y", 0)], &k3, T0));
    let ok = futures::future::join_all(tries)
        .await
        .into_iter()
        .filter(|r| r.is_ok())
        .count();
    assert_eq!(
        ok, 3,
        "a burst of 3 admits exactly 3 of 12 concurrent submissions"
    );
}

fn blob(key: &str, size: u64) -> BlobRef {
    BlobRef {
        key: key.into(),
        size,
        sha256: "ab".repeat(32),
    }
}

/// `finish_record` stores the record with its blob references; a zombie's finish (stale
/// token) publishes nothing.
pub async fn finish_record_publishes_blobs_only_when_fenced<S: Store + ?Sized>(s: &S) {
    let id = submit(s, new_eval("a", 0), T0).await;
    let first = claim(s, "w1", T0 + 1).await;
    // The first attempt's lease runs out; a second worker claims.
    assert_eq!(
        s.reap_expired(&policy(), T0 + 1 + 31_000)
            .await
            .expect("reap"),
        1
    );
    let second = loop_claim(s, T0 + 1 + 31_000 + 120_000).await;
    assert_eq!(second.evaluation.id, id);
    let zombie = RunRecord {
        stdout_blob: Some(blob(&format!("outputs/{id}/1.{}/stdout", first.token), 9)),
        ..RunRecord::of(&run_result(RunStatus::Succeeded))
    };
    match s
        .finish_record(&id, &first.token, &zombie, &policy(), T0 + 200_000)
        .await
    {
        Err(StoreError::LeaseLost(_)) => {}
        other => panic!("a zombie's finish: expected LeaseLost, got {other:?}"),
    }
    let key = format!("outputs/{id}/2.{}/stdout", second.token);
    let record = RunRecord {
        stdout_bytes: Some(300 << 20),
        stdout_blob: Some(blob(&key, 300 << 20)),
        stderr_blob: Some(blob(&format!("outputs/{id}/2.{}/stderr", second.token), 0)),
        ..RunRecord::of(&run_result(RunStatus::Succeeded))
    };
    let status = s
        .finish_record(&id, &second.token, &record, &policy(), T0 + 200_001)
        .await
        .expect("finish");
    assert_eq!(status, EvaluationStatus::Succeeded);
    let e = get(s, &id).await;
    let stored = e.result.expect("result");
    assert_eq!(stored, record, "the record is stored as given");
    assert_eq!(stored.blob_keys().len(), 2);
    assert_eq!(stored.stdout_blob.expect("stdout blob").key, key);
}

async fn loop_claim<S: Store + ?Sized>(s: &S, now: crate::Millis) -> crate::Claim {
    claim(s, "w2", now).await
}

/// Retention deletes evaluations that ended before the cutoff, with their events, oldest first
/// and at most `limit` at a time, and reports their blobs; everything else and the audit log
/// stay.
pub async fn delete_finished_removes_old_terminal_evaluations_only<S: Store + ?Sized>(s: &S) {
    s.append_audit(audit_entry(
        T0,
        Some("k"),
        Some("a"),
        "submit",
        AuditOutcome::Ok,
    ))
    .await
    .expect("audit");
    let mut old = Vec::new();
    for i in 0..3 {
        let id = submit(s, new_eval("a", 0), T0 + i).await;
        let c = claim(s, "w1", T0 + 10 + i).await;
        let record = RunRecord {
            stdout_blob: Some(blob(&format!("outputs/{id}/1.{}/stdout", c.token), 5)),
            ..RunRecord::of(&run_result(RunStatus::Succeeded))
        };
        s.append_output(&id, &c.token, OutputStream::Stdout, "hi", T0 + 20 + i)
            .await
            .expect("output");
        s.finish_record(&id, &c.token, &record, &policy(), T0 + 1_000 + i)
            .await
            .expect("finish");
        old.push(id);
    }
    let cancelled_old = submit(s, new_eval("a", 0), T0 + 5).await;
    s.cancel(&cancelled_old, T0 + 1_500).await.expect("cancel");
    // Newer than the cutoff, queued, running: kept.
    let recent = submit(s, new_eval("a", 0), T0 + 6).await;
    let running = submit(s, new_eval("a", 0), T0 + 7).await;
    let queued = submit(s, new_eval("a", 0), T0 + 8).await;
    let rc = claim(s, "w1", T0 + 9).await;
    let cr = claim(s, "w1", T0 + 9).await;
    let (done, still) = if rc.evaluation.id == recent {
        (rc, cr)
    } else {
        (cr, rc)
    };
    assert_eq!(still.evaluation.id, running);
    s.finish(
        &done.evaluation.id,
        &done.token,
        &run_result(RunStatus::Failed),
        &policy(),
        T0 + 50_000,
    )
    .await
    .expect("finish recent");
    let cutoff = T0 + 10_000;
    let first = s.delete_finished(cutoff, 2).await.expect("gc");
    assert_eq!(first.len(), 2, "at most `limit`");
    let rest = s.delete_finished(cutoff, 100).await.expect("gc");
    let deleted: Vec<_> = first.iter().chain(&rest).collect();
    let ids: BTreeSet<&str> = deleted.iter().map(|d| d.id.as_str()).collect();
    let want: BTreeSet<&str> = old
        .iter()
        .map(String::as_str)
        .chain([cancelled_old.as_str()])
        .collect();
    assert_eq!(ids, want);
    assert_eq!(first[0].id, old[0], "oldest finished first");
    for d in &deleted {
        assert!(s.get(&d.id).await.expect("get").is_none(), "{} gone", d.id);
        assert!(s.events(&d.id, 0, 100).await.unwrap_or_default().is_empty());
        if d.id == cancelled_old {
            assert!(d.blobs.is_empty());
        } else {
            assert_eq!(d.blobs.len(), 1);
            assert!(d.blobs[0].starts_with(&format!("outputs/{}/", d.id)));
        }
    }
    for id in [&recent, &running, &queued] {
        assert!(s.get(id).await.expect("get").is_some(), "{id} kept");
    }
    assert!(s.delete_finished(cutoff, 100).await.expect("gc").is_empty());
    let audit = s.verify_audit().await.expect("verify");
    assert!(
        audit.broken.is_none(),
        "the audit log is untouched: {audit:?}"
    );
    assert_eq!(audit.entries, 1);
}

/// Export from one store and import into another gives the same evaluations (ids, times, queue
/// state, events, output), the same keys and the same audit chain; the copy goes on working
/// (claims, finishes, appends) and an import that does not continue the chain is refused whole.
pub async fn export_import_copies_everything<S: Store + ?Sized>(a: &S, b: &S) {
    // Source: every kind of state.
    let done = submit(a, with_key(new_eval("t1", 3), "idem-1"), T0).await;
    let c = claim(a, "w1", T0 + 1).await;
    assert_eq!(c.evaluation.id, done);
    a.append_output(&done, &c.token, OutputStream::Stdout, "out ✓", T0 + 2)
        .await
        .expect("out");
    a.finish(
        &done,
        &c.token,
        &run_result(RunStatus::Succeeded),
        &policy(),
        T0 + 3,
    )
    .await
    .expect("finish");
    let running = submit(a, new_eval("t2", 0), T0 + 4).await;
    let held = claim(a, "w1", T0 + 5).await;
    assert_eq!(held.evaluation.id, running);
    let mut queued = Vec::new();
    for i in 0..5 {
        let mut n = new_eval("t1", 0);
        n.submission.labels.insert("run".into(), format!("r{i}"));
        queued.push(submit(a, n, T0 + 10 + i).await);
    }
    let key = ApiKey {
        id: "k1".into(),
        name: "ci".into(),
        tenant: "t1".into(),
        role: Role::Member,
        hash: "h".repeat(64),
        created_at: T0,
        expires_at: Some(T0 + 1_000_000),
        revoked_at: Some(T0 + 50),
        last_used_at: Some(T0 + 40),
    };
    a.create_key(&key).await.expect("key");
    for i in 0..7 {
        a.append_audit(audit_entry(
            T0 + i,
            Some("k1"),
            Some("t1"),
            "submit",
            AuditOutcome::Ok,
        ))
        .await
        .expect("audit");
    }
    // Copy, in small pages.
    let mut after: Option<String> = None;
    let mut copied = 0;
    loop {
        let page = a
            .export_evaluations(after.as_deref(), 3)
            .await
            .expect("export");
        copied += page.items.len();
        b.import_evaluations(page.items).await.expect("import");
        match page.next_cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(copied, 7);
    for k in a.list_keys(None).await.expect("keys") {
        b.create_key(&k).await.expect("copy key");
    }
    let mut entries = Vec::new();
    let mut cursor = None;
    loop {
        let page = a
            .list_audit(&AuditFilter {
                oldest_first: true,
                limit: 4,
                cursor: cursor.clone(),
                ..AuditFilter::default()
            })
            .await
            .expect("audit page");
        entries.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    // Refused whole: a chain that skips an entry.
    let mut broken = entries.clone();
    broken.remove(2);
    assert!(b.import_audit(broken).await.is_err(), "a gap is refused");
    assert_eq!(
        b.verify_audit().await.expect("verify").entries,
        0,
        "nothing written"
    );
    b.import_audit(entries).await.expect("import audit");
    // The same things, read through the contract.
    let (va, vb) = (
        a.verify_audit().await.expect("va"),
        b.verify_audit().await.expect("vb"),
    );
    assert!(vb.broken.is_none(), "{vb:?}");
    assert_eq!((va.entries, &va.head_hash), (vb.entries, &vb.head_hash));
    assert_ne!(vb.head_hash, GENESIS_HASH);
    let everything = filter();
    assert_eq!(
        a.list(&everything).await.expect("list a").items,
        b.list(&everything).await.expect("list b").items,
        "same evaluations in the same order"
    );
    for id in [&done, &running, &queued[0]] {
        assert_eq!(
            a.events(id, 0, 100).await.expect("ea"),
            b.events(id, 0, 100).await.expect("eb")
        );
        assert_eq!(
            a.output(id).await.expect("oa"),
            b.output(id).await.expect("ob")
        );
    }
    assert_eq!(b.get_key("k1").await.expect("key"), Some(key));
    assert_eq!(
        b.find_by_idempotency_key("t1", "idem-1")
            .await
            .expect("idem")
            .map(|e| e.id),
        Some(done.clone())
    );
    let mut by_label = filter();
    by_label.label = Some(("run".into(), "r3".into()));
    assert_eq!(b.list(&by_label).await.expect("label").items.len(), 1);
    // The copy works on: the held lease is still fenced, queued work is claimable, events go on.
    b.heartbeat(&running, &held.token, LEASE, T0 + 6)
        .await
        .expect("lease copied");
    b.append_output(&running, &held.token, OutputStream::Stderr, "more", T0 + 7)
        .await
        .expect("append after copy");
    let next = claim(b, "w9", T0 + 100).await;
    assert_eq!(next.evaluation.id, queued[0]);
    b.append_audit(audit_entry(T0 + 99, None, None, "after", AuditOutcome::Ok))
        .await
        .expect("append after import");
    assert!(b.verify_audit().await.expect("verify").broken.is_none());
    // Importing the same evaluations again is refused whole.
    let again = a.export_evaluations(None, 100).await.expect("export");
    assert!(b.import_evaluations(again.items).await.is_err());
}

/// An evaluation's output is its last attempt's: what an attempt that lost its lease (or failed
/// in the platform) wrote stays in the event log's history, not in the output, so the output
/// always belongs to the result beside it.
pub async fn output_is_the_last_attempts<S: Store + ?Sized>(s: &S) {
    let p = policy();
    let id = submit(s, new_eval("t", 0), T0).await;
    let first = claim(s, "w1", T0).await;
    s.append_output(&id, &first.token, OutputStream::Stdout, "first ", T0 + 1)
        .await
        .expect("append");
    s.append_output(&id, &first.token, OutputStream::Stderr, "oops", T0 + 2)
        .await
        .expect("append");
    let t = T0 + LEASE_MS + 1;
    assert_eq!(s.reap_expired(&p, t).await.expect("reap"), 1);
    let e = s.get(&id).await.expect("get").expect("exists");
    assert_eq!(e.status, EvaluationStatus::Queued);
    let out = s.output(&id).await.expect("output");
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("", ""),
        "queued again: no attempt's output yet"
    );

    let second = claim(s, "w2", crate::after(t, p.backoff(1))).await;
    assert_eq!(second.attempt, 2);
    s.append_output(
        &id,
        &second.token,
        OutputStream::Stdout,
        "second",
        t + 5_000,
    )
    .await
    .expect("append");
    s.finish(
        &id,
        &second.token,
        &run_result(RunStatus::Succeeded),
        &p,
        t + 6_000,
    )
    .await
    .expect("finish");
    let out = s.output(&id).await.expect("output");
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("second", ""));
    let (_, with) = s
        .get_with_output(&id)
        .await
        .expect("get_with_output")
        .expect("exists");
    assert_eq!(with, out, "get_with_output agrees");
    let history = get_events(s, &id).await;
    let written: Vec<&str> = history
        .iter()
        .filter_map(|e| match &e.payload {
            crate::EventPayload::Output { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        written,
        ["first ", "oops", "second"],
        "the history keeps all"
    );
}

async fn get_events<S: Store + ?Sized>(s: &S, id: &str) -> Vec<crate::Event> {
    s.events(id, 0, 10_000).await.expect("events")
}
