//! A worker's handling of one attempt runs in an `attempt` span carrying the evaluation id, the
//! attempt and the worker, so every log line of it says which evaluation it is about. A test
//! binary of its own: it installs the process-wide subscriber.

use assay_domain::EvaluationStatus;
use assay_domain::{Language, LimitPolicy, Program, Submission};
use assay_sandbox::{CancellationToken, ScriptedSandbox};
use assay_store::bus::LocalBus;
use assay_store::{NewEvaluation, Store, now_millis};
use assay_store_sqlite::SqliteStore;
use assay_worker::{Worker, WorkerConfig};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Log output, kept in memory.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_is_a_span_with_the_evaluation_and_the_attempt() {
    let log = Log::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let bus = LocalBus::new();
    let id = store
        .submit(
            NewEvaluation {
                tenant: "t".into(),
                submission: Submission {
                    language: Language::Python,
                    program: Program::single("out hi\nexit 0"),
                    stdin: String::new(),
                    limits: LimitPolicy::default().defaults,
                    priority: 0,
                    labels: Default::default(),
                },
                idempotency_key: None,
                max_attempts: 3,
            },
            now_millis(),
        )
        .await
        .unwrap()
        .evaluation()
        .id
        .clone();
    let shutdown = CancellationToken::new();
    let cfg = WorkerConfig {
        id: "w-spans".into(),
        slots: 1,
        poll_interval: Duration::from_millis(20),
        ..WorkerConfig::default()
    };
    let mut rx = bus.subscribe_events();
    let worker = tokio::spawn(
        Worker::new(store.clone(), Arc::new(ScriptedSandbox::new()), bus, cfg)
            .run(shutdown.clone()),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store.get(&id).await.unwrap().unwrap().status != EvaluationStatus::Succeeded {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the evaluation never ran"
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await;
    }
    shutdown.cancel();
    worker.await.unwrap();
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let span = format!("attempt{{evaluation={id} attempt=1 worker=w-spans}}");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(&span)).collect();
    assert!(
        lines.iter().any(|l| l.ends_with("attempt started"))
            && lines.iter().any(|l| l.contains("sandbox run ended")),
        "the attempt's log lines carry its span {span}:\n{text}"
    );
}
