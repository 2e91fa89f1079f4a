//! The scripted fake: the `Sandbox` conformance suite (no root needed), and what the script
//! language promises beyond it.

use assay_domain::{OutputStream, RunResult, RunStatus};
use assay_sandbox::conformance::{Behaviour, Fixture};
use assay_sandbox::fake::{RUNTIME, escape};
use assay_sandbox::{CancellationToken, RunEvent, RunRequest, Sandbox, ScriptedSandbox};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The fake, spelling each behaviour as a script.
struct Fake(ScriptedSandbox);

impl Fixture for Fake {
    fn sandbox(&self) -> &dyn Sandbox {
        &self.0
    }

    fn request(&self, behaviour: &Behaviour) -> RunRequest {
        let script = match behaviour {
            Behaviour::PrintLines { tag, count } => (0..*count)
                .map(|i| format!("out {}\n", escape(format!("{tag} {i}\n").as_bytes())))
                .collect(),
            Behaviour::ExitWith(code) => format!("exit {code}"),
            Behaviour::KilledBy(signal) => format!("signal {signal}"),
            Behaviour::EchoStdin => "echo-stdin".into(),
            Behaviour::SleepForever => "hang".into(),
            Behaviour::Flood(OutputStream::Stdout) => {
                format!("repeat forever out {}", "x".repeat(4096))
            }
            Behaviour::Flood(OutputStream::Stderr) => {
                format!("repeat forever err {}", "x".repeat(4096))
            }
            Behaviour::PrintThenHang(text) => format!("out {}\nhang", escape(text.as_bytes())),
            Behaviour::PlatformFailure => "error no such environment".into(),
        };
        let mut req = ScriptedSandbox::request(script);
        req.limits.wall_time_ms = 20_000;
        req
    }
}

async fn fixture() -> Fake {
    Fake(ScriptedSandbox::new())
}

assay_sandbox::conformance_tests!(fixture);

#[tokio::test]
async fn whole_suite_on_one_sandbox() {
    assay_sandbox::conformance::run_all(&fixture().await).await;
}

/// Runs a script to its end; returns the result and every event.
async fn run(sandbox: &ScriptedSandbox, req: RunRequest) -> (RunResult, Vec<RunEvent>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let r = sandbox.run(req, Some(tx), CancellationToken::new()).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (r, events)
}

async fn script(text: &str) -> (RunResult, Vec<RunEvent>) {
    run(&ScriptedSandbox::new(), ScriptedSandbox::request(text)).await
}

#[tokio::test]
async fn twenty_thousand_one_byte_chunks_arrive_as_such() {
    let (r, events) = script("repeat 20000 out x\nerr done").await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    assert_eq!(r.stdout.len(), 20_000);
    let chunks: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Output {
                stream: OutputStream::Stdout,
                data,
            } => Some(data.as_slice()),
            _ => None,
        })
        .collect();
    assert_eq!(chunks.len(), 20_000);
    assert!(chunks.iter().all(|c| *c == b"x"));
    assert_eq!(
        events.last(),
        Some(&RunEvent::Output {
            stream: OutputStream::Stderr,
            data: b"done".to_vec()
        })
    );
    assert!(
        !events.iter().any(|e| matches!(e, RunEvent::Started { .. })),
        "no runtime process, no Started"
    );
}

#[tokio::test]
async fn endings_map_to_statuses_like_the_engine() {
    for (text, status, exit_code, signal) in [
        ("out hi", RunStatus::Succeeded, Some(0), None),
        ("exit 0\nout never", RunStatus::Succeeded, Some(0), None),
        ("exit 2", RunStatus::Failed, Some(2), None),
        ("signal 9", RunStatus::Failed, Some(137), Some(9)),
        ("oom", RunStatus::MemoryExceeded, Some(137), Some(9)),
        (
            "memory 1000\nmemory 999999999999",
            RunStatus::MemoryExceeded,
            Some(137),
            Some(9),
        ),
        (
            "cpu 6000\ncpu 6000",
            RunStatus::TimedOut,
            Some(137),
            Some(9),
        ),
    ] {
        let (r, _) = script(text).await;
        assert_eq!(
            (r.status, r.exit_code, r.signal),
            (status, exit_code, signal),
            "{text:?}: {r:?}"
        );
        assert_eq!(r.runtime, RUNTIME);
        assert_eq!(r.error, None, "{text:?}");
    }
    let (r, _) = script("out partial\nerror the host is on fire\nout never").await;
    assert_eq!(r.status, RunStatus::Errored);
    assert_eq!(r.error.as_deref(), Some("the host is on fire"));
    assert_eq!(r.stdout, "partial", "output before the failure is kept");
    assert_eq!((r.exit_code, r.signal), (None, None));
}

#[tokio::test]
async fn usage_is_reported() {
    let (r, _) = script("cpu 120\nmemory 5000\ncpu 30\nmemory 100").await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!((r.cpu_ms, r.peak_memory_bytes), (150, 5000));
    let (r, _) = script("oom").await;
    assert_eq!(
        r.peak_memory_bytes,
        ScriptedSandbox::request("").limits.memory_bytes
    );
}

#[tokio::test]
async fn a_script_that_does_not_parse_runs_nothing() {
    let (r, events) = script("out hello\nfly away").await;
    assert_eq!(r.status, RunStatus::Errored);
    assert!(
        r.error.as_deref().unwrap_or("").contains("script line 2"),
        "{r:?}"
    );
    assert!(events.is_empty());
}

#[tokio::test]
async fn sleeps_are_interrupted_by_the_wall_limit_and_by_cancellation() {
    let mut req = ScriptedSandbox::request("out a\nsleep 100\nout b\nsleep 60000\nout c");
    req.limits.wall_time_ms = 400;
    let began = Instant::now();
    let (r, _) = run(&ScriptedSandbox::new(), req).await;
    assert_eq!(r.status, RunStatus::TimedOut, "{r:?}");
    assert_eq!(r.stdout, "ab");
    assert!(began.elapsed() < Duration::from_secs(5));
    assert!(r.wall_ms >= 400, "{r:?}");

    let sandbox = ScriptedSandbox::new();
    let cancel = CancellationToken::new();
    let task = {
        let (sandbox, cancel) = (sandbox.clone(), cancel.clone());
        tokio::spawn(async move {
            sandbox
                .run(ScriptedSandbox::request("sleep 60000"), None, cancel)
                .await
        })
    };
    sandbox.wait_until_started(1).await;
    cancel.cancel();
    let r = task.await.unwrap();
    assert_eq!(r.status, RunStatus::Cancelled, "{r:?}");
    assert!(r.wall_ms < 5000, "{r:?}");
}

#[tokio::test]
async fn an_endless_flood_on_one_thread_still_yields_to_cancellation() {
    // A current-thread runtime: the canceller only runs when the flood yields.
    let sandbox = ScriptedSandbox::new();
    let cancel = CancellationToken::new();
    let mut req = ScriptedSandbox::request("repeat forever out y");
    req.limits.output_bytes = u64::MAX;
    let canceller = {
        let cancel = cancel.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cancel.cancel();
        }
    };
    let (r, ()) = tokio::join!(sandbox.run(req, None, cancel), canceller);
    assert_eq!(r.status, RunStatus::Cancelled);
    assert!(!r.stdout.is_empty());
}

#[tokio::test]
async fn escapes_reach_the_output_as_bytes() {
    let (r, events) = script("out tab\\there\\x00\\\\ end \nerr \\xff\\n").await;
    assert_eq!(r.stdout, "tab\there\0\\ end ");
    assert_eq!(
        r.stderr, "\u{fffd}\n",
        "invalid UTF-8 is replaced, as the engine does"
    );
    assert!(events.contains(&RunEvent::Output {
        stream: OutputStream::Stderr,
        data: vec![0xff, b'\n']
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_runs_in_flight() {
    let sandbox = Arc::new(ScriptedSandbox::new());
    assert_eq!(sandbox.runtime_name(), "fake");
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (sandbox, cancel) = (sandbox.clone(), cancel.clone());
        tasks.push(tokio::spawn(async move {
            // Through the trait object, as the worker holds it.
            let s: Arc<dyn Sandbox> = sandbox;
            s.run(ScriptedSandbox::request("hang"), None, cancel).await
        }));
    }
    sandbox.wait_until_started(3).await;
    assert_eq!(sandbox.runs_in_flight(), 3);
    cancel.cancel();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, RunStatus::Cancelled);
    }
    assert_eq!(sandbox.runs_started(), 3);
    assert_eq!(sandbox.runs_in_flight(), 0);
    assert_eq!(sandbox.max_runs_in_flight(), 3);

    // A run whose future is dropped mid-way is no longer in flight either.
    let dropped = tokio::time::timeout(
        Duration::from_millis(50),
        sandbox.run(
            ScriptedSandbox::request("hang"),
            None,
            CancellationToken::new(),
        ),
    )
    .await;
    assert!(dropped.is_err());
    assert_eq!((sandbox.runs_started(), sandbox.runs_in_flight()), (4, 0));
}
