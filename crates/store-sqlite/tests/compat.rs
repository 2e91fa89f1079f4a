//! A database the previous version wrote (migrations 0001–0003, rows in its formats: output in
//! the `result` column and the `result` event, no byte counts) opens with this version, which
//! applies 0004, and every row loads and works on: a row written before a field was added still
//! loads.

use assay_domain::{EvaluationStatus, Limits, OutputStream, ProgramFile, RunStatus};
use assay_store::conformance::run_result;
use assay_store::{ClaimPolicy, EventPayload, ListFilter, Output, RunRecord, Store, SubmitOutcome};
use assay_store_sqlite::SqliteStore;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use std::path::Path;
use std::time::Duration;

/// The migrations the previous version applied.
const PREVIOUS: [&str; 3] = ["0001_initial.sql", "0002_fair_claim.sql", "0003_audit.sql"];

const T0: i64 = 1_700_000_000_000;

/// Rows exactly as the previous version's statements wrote them: a finished evaluation (its
/// output in three places), a queued one, a dead letter, and one running under a lease the
/// previous version granted (its worker finishes after the upgrade).
const PREVIOUS_ROWS: &str = r#"
INSERT INTO evaluations (pk, id, tenant, status, language, entrypoint, files, stdin, limits,
    priority, labels, attempts, max_attempts, created_at, started_at, finished_at, result, error,
    worker_id, cancel_requested, idempotency_key, not_before, lease_token, lease_expires_at,
    next_seq)
VALUES
(1, 'e-done', 'acme', 'succeeded', 'python', 'main.py',
    '[{"path":"main.py","content":"print(input())\n"}]', 'hi',
    '{"wall_time_ms":5000,"cpu_time_ms":4000,"memory_bytes":268435456,"pids":64,"output_bytes":1048576,"tmpfs_bytes":67108864,"open_files":256,"file_size_bytes":67108864,"cpu_millicores":1000}',
    5, '{"suite":"old"}', 1, 3, 1700000000000, 1700000000010, 1700000000020,
    '{"status":"succeeded","exit_code":0,"signal":null,"wall_ms":27,"cpu_ms":13,"peak_memory_bytes":3641344,"stdout":"hi\nthere\n","stderr":"warn\n","stdout_truncated":false,"stderr_truncated":false,"runtime":"crun"}',
    NULL, 'w-old', 0, 'k-done', 0, NULL, NULL, 8),
(2, 'e-queued', 'acme', 'queued', 'python', 'app.py',
    '[{"path":"app.py","content":"import util\n"},{"path":"util.py","content":"X = 1\n"}]',
    'stdin of e-queued',
    '{"wall_time_ms":1000,"cpu_time_ms":1000,"memory_bytes":134217728,"pids":32,"output_bytes":65536,"tmpfs_bytes":1048576,"open_files":64,"file_size_bytes":1048576,"cpu_millicores":500}',
    0, '{}', 0, 3, 1700000000001, NULL, NULL, NULL, NULL, NULL, 0, NULL, 0, NULL, NULL, 2),
(3, 'e-dead', 'beta', 'dead', 'python', 'main.py',
    '[{"path":"main.py","content":"while True: pass\n"}]', '',
    '{"wall_time_ms":5000,"cpu_time_ms":4000,"memory_bytes":268435456,"pids":64,"output_bytes":1048576,"tmpfs_bytes":67108864,"open_files":256,"file_size_bytes":67108864,"cpu_millicores":1000}',
    0, '{}', 2, 2, 1700000000002, 1700000060000, 1700000090001, NULL,
    'lease expired (worker w-old lost) (attempt 2 of 2)', 'w-old', 0, NULL, 1700000031000,
    NULL, NULL, 7),
(4, 'e-running', 'beta', 'running', 'python', 'main.py',
    '[{"path":"main.py","content":"print(1)\n"}]', '',
    '{"wall_time_ms":5000,"cpu_time_ms":4000,"memory_bytes":268435456,"pids":64,"output_bytes":1048576,"tmpfs_bytes":67108864,"open_files":256,"file_size_bytes":67108864,"cpu_millicores":1000}',
    0, '{}', 1, 3, 1700000000003, 1700000000050, NULL, NULL, NULL, 'w-old', 0, NULL, 0,
    'tok-old', 1700009999999, 4);

INSERT INTO evaluation_labels (key, value, created_at, pk) VALUES ('suite', 'old', 1700000000000, 1);

INSERT INTO events (evaluation_id, seq, kind, data, at) VALUES
('e-done', 1, 'status', '{"attempt":0,"status":"queued"}', 1700000000000),
('e-done', 2, 'status', '{"attempt":1,"status":"running"}', 1700000000010),
('e-done', 3, 'stdout', 'hi' || char(10), 1700000000011),
('e-done', 4, 'stderr', 'warn' || char(10), 1700000000012),
('e-done', 5, 'stdout', 'there' || char(10), 1700000000013),
('e-done', 6, 'status', '{"attempt":1,"status":"succeeded"}', 1700000000020),
('e-done', 7, 'result', '{"attempts":1,"error":null,"result":{"status":"succeeded","exit_code":0,"signal":null,"wall_ms":27,"cpu_ms":13,"peak_memory_bytes":3641344,"stdout":"hi\nthere\n","stderr":"warn\n","stdout_truncated":false,"stderr_truncated":false,"runtime":"crun"},"status":"succeeded"}', 1700000000020),
('e-queued', 1, 'status', '{"attempt":0,"status":"queued"}', 1700000000001),
('e-dead', 1, 'status', '{"attempt":0,"status":"queued"}', 1700000000002),
('e-dead', 2, 'status', '{"attempt":1,"status":"running"}', 1700000000005),
('e-dead', 3, 'status', '{"attempt":1,"error":"lease expired (worker w-old lost)","status":"queued"}', 1700000030001),
('e-dead', 4, 'status', '{"attempt":2,"status":"running"}', 1700000060000),
('e-dead', 5, 'status', '{"attempt":2,"error":"lease expired (worker w-old lost) (attempt 2 of 2)","status":"dead"}', 1700000090001),
('e-dead', 6, 'result', '{"attempts":2,"error":"lease expired (worker w-old lost) (attempt 2 of 2)","result":null,"status":"dead"}', 1700000090001),
('e-running', 1, 'status', '{"attempt":0,"status":"queued"}', 1700000000003),
('e-running', 2, 'status', '{"attempt":1,"status":"running"}', 1700000000050),
('e-running', 3, 'stdout', 'partial', 1700000000060);
"#;

/// Creates the database at `path` as the previous version left it: its migrations resolved
/// from their files and recorded the way its `sqlx::migrate!` did, then its rows.
async fn previous_version_database(path: &Path, scratch: &Path) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for name in PREVIOUS {
        std::fs::copy(here.join(name), scratch.join(name)).expect("copy a migration");
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true),
        )
        .await
        .expect("connect");
    Migrator::new(scratch)
        .await
        .expect("migrations 0001-0003")
        .run(&pool)
        .await
        .expect("migrate to 0003");
    sqlx::raw_sql(PREVIOUS_ROWS)
        .execute(&pool)
        .await
        .expect("rows of the previous version");
    pool.close().await;
}

/// Raw column values, read behind the store's back.
async fn raw(path: &Path, sql: &'static str) -> Vec<String> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(path))
        .await
        .expect("connect");
    let out = sqlx::query_scalar(sql)
        .fetch_all(&pool)
        .await
        .expect("raw query");
    pool.close().await;
    out
}

fn limits(wall: u64, cpu: u64, memory: u64, pids: u32) -> Limits {
    Limits {
        wall_time_ms: wall,
        cpu_time_ms: cpu,
        memory_bytes: memory,
        pids,
        output_bytes: 1_048_576,
        tmpfs_bytes: 67_108_864,
        open_files: 256,
        file_size_bytes: 67_108_864,
        cpu_millicores: 1000,
    }
}

#[tokio::test]
async fn a_database_of_the_previous_version_loads_and_works_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("assay.db");
    let migrations = tempfile::tempdir().expect("temp dir");
    previous_version_database(&path, migrations.path()).await;
    let store = SqliteStore::open(&path).await.expect("open applies 0004");

    // The finished evaluation: every column loads; the result has no output and no byte
    // counts (unknown for rows written before they existed).
    let done = store.get("e-done").await.expect("get").expect("e-done");
    assert_eq!(done.status, EvaluationStatus::Succeeded);
    assert_eq!(done.limits, limits(5000, 4000, 268_435_456, 64));
    assert_eq!(done.labels.get("suite").map(String::as_str), Some("old"));
    assert_eq!((done.priority, done.attempts, done.max_attempts), (5, 1, 3));
    assert_eq!(
        (done.created_at, done.started_at, done.finished_at),
        (T0, Some(T0 + 10), Some(T0 + 20))
    );
    assert_eq!(done.worker_id.as_deref(), Some("w-old"));
    assert_eq!(done.idempotency_key.as_deref(), Some("k-done"));
    assert_eq!(
        done.result,
        Some(RunRecord {
            status: RunStatus::Succeeded,
            exit_code: Some(0),
            signal: None,
            wall_ms: 27,
            cpu_ms: 13,
            peak_memory_bytes: 3_641_344,
            stdout_truncated: false,
            stderr_truncated: false,
            runtime: "crun".into(),
            error: None,
            stdout_bytes: None,
            stderr_bytes: None,
            stdout_blob: None,
            stderr_blob: None,
        })
    );
    // The output is stored once now: in the events, no longer in the row or the result event.
    assert_eq!(
        store.output("e-done").await.expect("output"),
        Output {
            stdout: "hi\nthere\n".into(),
            stderr: "warn\n".into(),
        }
    );
    let results = raw(
        &path,
        "SELECT result FROM evaluations WHERE result IS NOT NULL",
    )
    .await;
    assert_eq!(results.len(), 1);
    assert!(!results[0].contains("stdout\"") && !results[0].contains("there"));
    assert!(results[0].contains("\"wall_ms\":27"), "{}", results[0]);
    assert_eq!(
        raw(
            &path,
            "SELECT data FROM events WHERE kind = 'result' ORDER BY data"
        )
        .await,
        [r#"{"status":"dead"}"#, r#"{"status":"succeeded"}"#]
    );
    let payloads: Vec<EventPayload> = store
        .events("e-done", 0, 100)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.payload)
        .collect();
    let out = |stream, text: &str| EventPayload::Output {
        stream,
        text: text.into(),
    };
    assert_eq!(
        payloads,
        [
            EventPayload::status(EvaluationStatus::Queued, 0),
            EventPayload::status(EvaluationStatus::Running, 1),
            out(OutputStream::Stdout, "hi\n"),
            out(OutputStream::Stderr, "warn\n"),
            out(OutputStream::Stdout, "there\n"),
            EventPayload::status(EvaluationStatus::Succeeded, 1),
            EventPayload::Result {
                status: EvaluationStatus::Succeeded
            },
        ]
    );
    let dead_events = store.events("e-dead", 0, 100).await.expect("events");
    assert_eq!(dead_events.len(), 6);
    assert_eq!(
        dead_events[2].payload,
        EventPayload::Status {
            status: EvaluationStatus::Queued,
            attempt: 1,
            error: Some("lease expired (worker w-old lost)".into()),
        }
    );

    // Lists, label filters, idempotency keys and counts see the old rows.
    let page = store
        .list(&ListFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .expect("list");
    let ids: Vec<&str> = page.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["e-running", "e-dead"]);
    let rest = store
        .list(&ListFilter {
            limit: 10,
            cursor: page.next_cursor.clone(),
            ..Default::default()
        })
        .await
        .expect("next page");
    let ids: Vec<&str> = rest.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["e-queued", "e-done"]);
    assert_eq!(page.next_cursor.as_deref(), Some("1700000000002.3"));
    let labelled = store
        .list(&ListFilter {
            label: Some(("suite".into(), "old".into())),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("by label");
    assert_eq!(labelled.items, std::slice::from_ref(&done));
    assert_eq!(
        store
            .find_by_idempotency_key("acme", "k-done")
            .await
            .expect("find"),
        Some(done.clone())
    );
    let again = store
        .submit(
            {
                let mut n = assay_store::conformance::new_eval("acme", 0);
                n.idempotency_key = Some("k-done".into());
                n
            },
            T0 + 1_000,
        )
        .await
        .expect("submit with an old key");
    assert_eq!(again, SubmitOutcome::Existing(done));
    let stats = store.queue_stats(None, T0 + 1_000).await.expect("stats");
    for (status, n) in [
        (EvaluationStatus::Queued, 1),
        (EvaluationStatus::Running, 1),
        (EvaluationStatus::Succeeded, 1),
        (EvaluationStatus::Dead, 1),
        (EvaluationStatus::Failed, 0),
    ] {
        assert_eq!(stats.counts[&status], n, "{status}");
    }

    // The queued row is claimed with its input, and finishes; its events go on from seq 2.
    let now = T0 + 100_000;
    let policy = ClaimPolicy::default();
    let lease = Duration::from_secs(30);
    let c = store
        .claim("w-new", lease, &policy, now)
        .await
        .expect("claim")
        .expect("the queued row");
    assert_eq!(c.evaluation.id, "e-queued");
    assert_eq!(c.evaluation.limits, {
        let mut l = limits(1000, 1000, 134_217_728, 32);
        (l.output_bytes, l.tmpfs_bytes, l.open_files) = (65_536, 1_048_576, 64);
        (l.file_size_bytes, l.cpu_millicores) = (1_048_576, 500);
        l
    });
    assert_eq!(c.input.entrypoint, "app.py");
    assert_eq!(c.input.stdin, "stdin of e-queued");
    assert_eq!(
        c.input.files,
        [
            ProgramFile {
                path: "app.py".into(),
                content: "import util\n".into()
            },
            ProgramFile {
                path: "util.py".into(),
                content: "X = 1\n".into()
            }
        ]
    );
    c.input.program().expect("a valid program");
    let seq = store
        .append_output("e-queued", &c.token, OutputStream::Stdout, "new\n", now + 1)
        .await
        .expect("append");
    assert_eq!(seq, 3);
    let result = run_result(RunStatus::Succeeded);
    store
        .finish("e-queued", &c.token, &result, &Default::default(), now + 2)
        .await
        .expect("finish");
    let e = store.get("e-queued").await.expect("get").expect("e-queued");
    assert_eq!(e.result, Some(RunRecord::of(&result)));
    assert_eq!(
        store.output("e-queued").await.expect("output").stdout,
        "new\n"
    );

    // The lease the previous version granted still fences: its worker finishes.
    assert!(
        store
            .finish(
                "e-running",
                "not-the-token",
                &result,
                &Default::default(),
                now
            )
            .await
            .is_err()
    );
    store
        .heartbeat("e-running", "tok-old", lease, now)
        .await
        .expect("heartbeat of an old lease");
    store
        .append_output(
            "e-running",
            "tok-old",
            OutputStream::Stdout,
            " and more",
            now,
        )
        .await
        .expect("append");
    assert_eq!(
        store
            .finish(
                "e-running",
                "tok-old",
                &result,
                &Default::default(),
                now + 3
            )
            .await
            .expect("finish"),
        EvaluationStatus::Succeeded
    );
    assert_eq!(
        store.output("e-running").await.expect("output").stdout,
        "partial and more"
    );

    // The dead letter is requeued, claimed and run again.
    let requeued = store.requeue("e-dead", now + 4).await.expect("requeue");
    assert_eq!(
        (requeued.status, requeued.attempts, requeued.error),
        (EvaluationStatus::Queued, 0, None)
    );
    let c = store
        .claim("w-new", lease, &policy, now + 5)
        .await
        .expect("claim")
        .expect("the requeued row");
    assert_eq!((c.evaluation.id.as_str(), c.attempt), ("e-dead", 1));
    store
        .finish("e-dead", &c.token, &result, &Default::default(), now + 6)
        .await
        .expect("finish");
    let evs = store.events("e-dead", 0, 100).await.expect("events");
    let seqs: Vec<i64> = evs.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=10).collect::<Vec<_>>(),
        "gapless across the upgrade"
    );

    // Migrations 0004 and 0005 are recorded once; opening again applies nothing.
    store.close().await;
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(
        raw(
            &path,
            "SELECT description FROM _sqlx_migrations ORDER BY version"
        )
        .await,
        [
            "initial",
            "fair claim",
            "audit",
            "output once",
            "admission and retention"
        ]
    );
    assert_eq!(
        store.output("e-done").await.expect("output").stderr,
        "warn\n"
    );
}
