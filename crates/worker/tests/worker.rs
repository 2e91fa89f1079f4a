//! The worker's own logic, without root: a scripted fake sandbox (its programs are scripts, see
//! `assay_sandbox::fake`) and an in-memory store. Covered: a run end to end with its output
//! stored once, output coalescing, cancellation during a run, a lease lost mid-run (the zombie
//! kills its sandbox and writes nothing more), the hand-back on shutdown, a platform
//! failure retried then dead-lettered, and long or binary streams going whole to a `file://`
//! blob store while the event log keeps their preview.
//!
//! Waiting is on conditions (the in-process bus, re-checking the store), bounded by a deadline;
//! nothing sleeps for a fixed time to let something happen.

use assay_blob::{BlobUrl, Blobs};
use assay_domain::{
    EvaluationStatus, Language, LimitPolicy, Program, RetryPolicy, RunStatus, Submission,
};
use assay_sandbox::{CancellationToken, ScriptedSandbox};
use assay_store::bus::LocalBus;
use assay_store::{ClaimPolicy, EventPayload, NewEvaluation, Store, StoreError, now_millis};
use assay_store_sqlite::SqliteStore;
use assay_worker::{Worker, WorkerConfig};
use std::sync::Arc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

struct Rig {
    store: Arc<dyn Store>,
    bus: LocalBus,
    sandbox: ScriptedSandbox,
    shutdown: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
}

fn config(retry: RetryPolicy) -> WorkerConfig {
    WorkerConfig {
        id: "w-test".into(),
        slots: 2,
        // Heartbeats every 100 ms: cancellation and lease loss are noticed quickly.
        lease: Duration::from_millis(300),
        poll_interval: Duration::from_millis(50),
        grace: Duration::from_millis(200),
        retry,
        claim: ClaimPolicy::default(),
    }
}

async fn rig(retry: RetryPolicy) -> Rig {
    rig_with(retry, None).await
}

async fn rig_with(retry: RetryPolicy, blobs: Option<Blobs>) -> Rig {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
    let bus = LocalBus::new();
    let sandbox = ScriptedSandbox::default();
    let shutdown = CancellationToken::new();
    let mut worker = Worker::new(
        store.clone(),
        Arc::new(sandbox.clone()),
        bus.clone(),
        config(retry),
    );
    if let Some(blobs) = blobs {
        worker = worker.with_blobs(blobs);
    }
    let worker = tokio::spawn(worker.run(shutdown.clone()));
    Rig {
        store,
        bus,
        sandbox,
        shutdown,
        worker,
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_backoff_ms: 10,
        max_backoff_ms: 20,
    }
}

impl Rig {
    /// Queues a script (the fake's program) and wakes the worker.
    async fn submit(&self, script: &str) -> String {
        // A wall-time limit far beyond every test: a run that ends did so for the reason the
        // test is about, not because it timed out.
        let mut limits = LimitPolicy::default().defaults;
        limits.wall_time_ms = 300_000;
        let submission = Submission {
            language: Language::Python,
            program: Program::single(script),
            stdin: String::new(),
            limits,
            priority: 0,
            labels: Default::default(),
        };
        let out = self
            .store
            .submit(
                NewEvaluation {
                    tenant: "t".into(),
                    submission,
                    idempotency_key: None,
                    max_attempts: 3,
                },
                now_millis(),
            )
            .await
            .expect("submit");
        self.bus.notify_queue();
        out.evaluation().id.clone()
    }

    /// Waits until `check` holds for the evaluation, re-checking whenever the worker signals
    /// news of it (and at least every 50 ms, for changes made by the test itself).
    async fn until(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&assay_store::Evaluation, &str) -> bool,
    ) -> assay_store::Evaluation {
        let mut rx = self.bus.subscribe_events();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let ev = self.store.get(id).await.unwrap().expect("evaluation");
            let out = self.store.output(id).await.unwrap();
            if check(&ev, &out.stdout) {
                return ev;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {ev:?}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await;
        }
    }

    async fn until_status(&self, id: &str, status: EvaluationStatus) -> assay_store::Evaluation {
        self.until(id, status.as_str(), |e, _| e.status == status)
            .await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.worker)
            .await
            .expect("the worker stops")
            .expect("the worker does not panic");
    }
}

fn output_events(evs: &[assay_store::Event]) -> usize {
    evs.iter()
        .filter(|e| matches!(e.payload, EventPayload::Output { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_ends_with_its_result_and_its_output_stored_once() {
    let r = rig(fast_retries()).await;
    let id = r.submit("out hello\\n\nerr oops\nexit 3").await;
    let ev = r.until_status(&id, EvaluationStatus::Failed).await;
    let result = ev.result.expect("a result");
    assert_eq!(
        (result.status, result.exit_code, result.runtime.as_str()),
        (RunStatus::Failed, Some(3), "fake")
    );
    assert_eq!(
        (result.stdout_bytes, result.stderr_bytes),
        (Some(6), Some(4))
    );
    let out = r.store.output(&id).await.unwrap();
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("hello\n", "oops")
    );
    assert_eq!(ev.attempts, 1);
    assert_eq!(ev.worker_id.as_deref(), Some("w-test"));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_output_is_coalesced_into_few_events_complete_and_in_order() {
    let r = rig(fast_retries()).await;
    let id = r.submit("repeat 20000 out x\nout END").await;
    r.until_status(&id, EvaluationStatus::Succeeded).await;
    let out = r.store.output(&id).await.unwrap();
    assert_eq!(out.stdout, format!("{}END", "x".repeat(20_000)));
    let evs = r.store.events(&id, 0, 100_000).await.unwrap();
    let n = output_events(&evs);
    assert!(
        n < 2_000,
        "20,001 chunks should take far fewer than one event each; took {n}"
    );
    let seqs: Vec<i64> = evs.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=i64::try_from(seqs.len()).unwrap()).collect::<Vec<_>>(),
        "gapless"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_evaluation_kills_its_sandbox() {
    let r = rig(fast_retries()).await;
    let id = r.submit("out started\nhang").await;
    r.until(&id, "the program to start", |e, out| {
        e.status == EvaluationStatus::Running && out == "started"
    })
    .await;
    let marked = r.store.cancel(&id, now_millis()).await.unwrap();
    assert!(marked.cancel_requested);
    let ev = r.until_status(&id, EvaluationStatus::Cancelled).await;
    assert_eq!(ev.result.map(|r| r.status), Some(RunStatus::Cancelled));
    assert_eq!(r.sandbox.runs_in_flight(), 0, "the sandbox is gone");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lost_its_lease_kills_its_sandbox_and_writes_nothing_more() {
    let r = rig(fast_retries()).await;
    let id = r.submit("out started\nhang").await;
    r.until(&id, "the program to start", |e, out| {
        e.status == EvaluationStatus::Running && out == "started"
    })
    .await;
    // As if the worker had stalled for a minute: the lease expires, the reaper requeues the
    // evaluation, and another worker ("thief", at a time this worker cannot claim at) takes it.
    let later = now_millis() + 60_000;
    assert_eq!(
        r.store.reap_expired(&fast_retries(), later).await.unwrap(),
        1
    );
    let thief = r
        .store
        .claim(
            "thief",
            Duration::from_secs(600),
            &ClaimPolicy::default(),
            later + 1_000,
        )
        .await
        .unwrap()
        .expect("the thief claims it");
    assert_eq!(thief.attempt, 2);
    // The zombie notices at its next heartbeat (every 100 ms) and kills its sandbox.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while r.sandbox.runs_in_flight() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the zombie's sandbox still runs"
        );
        // The counter has no signal of its own: look again shortly (bounded by the deadline).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ev = r.store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (ev.status, ev.worker_id.as_deref(), ev.attempts),
        (EvaluationStatus::Running, Some("thief"), 2),
        "the zombie wrote nothing"
    );
    // Fencing holds: the thief's token finishes it, the zombie's could not.
    let mut ok = assay_domain::RunResult::platform_error("fake", "x");
    ok.status = RunStatus::Succeeded;
    ok.error = None;
    ok.exit_code = Some(0);
    assert_eq!(
        r.store
            .finish(&id, &thief.token, &ok, &fast_retries(), later + 2_000)
            .await
            .unwrap(),
        EvaluationStatus::Succeeded
    );
    assert_eq!(r.sandbox.runs_started(), 1, "the worker never ran it again");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_running_work_gets_its_grace_then_is_handed_back_uncounted() {
    let r = rig(fast_retries()).await;
    let id = r.submit("out started\nhang").await;
    r.until(&id, "the program to start", |e, out| {
        e.status == EvaluationStatus::Running && out == "started"
    })
    .await;
    let store = r.store.clone();
    r.stop().await; // returns only after the grace period and the hand-back
    let ev = store.get(&id).await.unwrap().unwrap();
    assert_eq!(ev.status, EvaluationStatus::Queued, "{ev:?}");
    assert_eq!(ev.attempts, 0, "a handed-back attempt is not counted");
    assert!(ev.result.is_none());
    let evs = store.events(&id, 0, 100).await.unwrap();
    assert!(matches!(
        evs.last().map(|e| &e.payload),
        Some(EventPayload::Status {
            status: EvaluationStatus::Queued,
            attempt: 0,
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_failure_is_retried_then_dead_lettered() {
    let r = rig(fast_retries()).await;
    let id = r.submit("out trying\nerror the runtime exploded").await;
    let ev = r.until_status(&id, EvaluationStatus::Dead).await;
    assert_eq!(ev.attempts, 3);
    let reason = ev.error.expect("a reason");
    assert!(
        reason.contains("the runtime exploded") && reason.contains("3 of 3"),
        "{reason}"
    );
    assert_eq!(r.sandbox.runs_started(), 3, "each attempt ran once");
    let retries = r
        .store
        .events(&id, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            matches!(
                &e.payload,
                EventPayload::Status {
                    status: EvaluationStatus::Queued,
                    error: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(retries, 2, "two retries, then the dead letter");
    let lost = r
        .store
        .finish(
            &id,
            "stale",
            &assay_domain::RunResult::platform_error("fake", "x"),
            &fast_retries(),
            now_millis(),
        )
        .await;
    assert!(matches!(lost, Err(StoreError::LeaseLost(_))));
    r.stop().await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_and_binary_streams_go_whole_to_the_blob_store_with_a_preview_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::open_env(&BlobUrl::file(dir.path()).unwrap())
        .await
        .unwrap();
    let r = rig_with(fast_retries(), Some(blobs.clone())).await;
    // 64 KiB − 1 bytes, then a two-byte character across the preview's end, then more.
    let script = format!(
        "out {}\nout \\xc3\\xa9\nrepeat 1000 out yyyyyyyyyy\nerr \\xff\\xfe\nout \\n",
        "x".repeat(65_535)
    );
    let id = r.submit(&script).await;
    let ev = r.until_status(&id, EvaluationStatus::Succeeded).await;
    let result = ev.result.expect("a result");

    let mut stdout = vec![b'x'; 65_535];
    stdout.extend_from_slice("é".as_bytes());
    stdout.extend_from_slice(&[b'y'; 10_000]);
    stdout.push(b'\n');
    let blob = result
        .stdout_blob
        .clone()
        .expect("stdout outgrew the preview");
    assert_eq!(result.stdout_bytes, Some(stdout.len() as u64));
    assert_eq!(blob.size, stdout.len() as u64);
    assert_eq!(blob.sha256, sha256_hex(&stdout));
    assert!(
        blob.key.starts_with(&format!("outputs/{id}/1.")) && blob.key.ends_with("/stdout"),
        "the key names the evaluation and the attempt: {}",
        blob.key
    );
    assert_eq!(blobs.read_all(&blob.key).await.unwrap(), stdout, "whole");

    // The log keeps the preview, ended at its last whole character.
    let out = r.store.output(&id).await.unwrap();
    assert_eq!(out.stdout, "x".repeat(65_535));

    // A stream that is not UTF-8 is kept byte for byte, however short.
    let err_blob = result.stderr_blob.clone().expect("binary stderr");
    assert_eq!(
        blobs.read_all(&err_blob.key).await.unwrap(),
        &[0xff, 0xfe][..]
    );
    assert_eq!(out.stderr, "\u{fffd}\u{fffd}", "its preview is readable");

    // A short text stream stays in the log only.
    let small = r.submit("out hello\\n").await;
    let ev = r.until_status(&small, EvaluationStatus::Succeeded).await;
    let result = ev.result.unwrap();
    assert_eq!((result.stdout_blob, result.stderr_blob), (None, None));
    let listed = blobs.list("outputs").await.unwrap();
    assert_eq!(
        listed.len(),
        2,
        "only the two streams that needed it: {listed:?}"
    );
    r.stop().await;
}
