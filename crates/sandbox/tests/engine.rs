//! Behaviour of the engine under every installed runtime: results, streaming, stdin, limits,
//! cancellation, crashes of the runtime process, and that nothing is left behind.

use assay_domain::{LimitPolicy, Limits, OutputStream, Program, ProgramFile, RunResult, RunStatus};
use assay_sandbox::{
    CancellationToken, Engine, EngineConfig, Environment, OutputBudget, RunEvent, RunRequest,
    RuntimeChoice, RuntimeKind, SandboxError,
};
use std::path::Path;
use tokio::sync::mpsc;

/// Every runtime this machine has. Under CI all three must be there.
fn runtimes() -> Vec<RuntimeKind> {
    let all = [RuntimeKind::Runc, RuntimeKind::Crun, RuntimeKind::Runsc];
    let found: Vec<_> = all.into_iter().filter(|k| k.find().is_some()).collect();
    if std::env::var_os("CI").is_some() {
        assert_eq!(
            found.len(),
            3,
            "CI must have runc, crun and runsc installed; found {found:?}"
        );
    }
    assert!(!found.is_empty(), "no OCI runtime installed");
    found
}

async fn engine(kind: RuntimeKind, state: &Path) -> Engine {
    Engine::new(EngineConfig {
        runtime: RuntimeChoice::Exactly(kind),
        state_dir: state.to_path_buf(),
        ..EngineConfig::default()
    })
    .await
    .expect("engine starts")
}

fn limits() -> Limits {
    let mut l = LimitPolicy::default().defaults;
    l.wall_time_ms = 20_000;
    l
}

fn req(code: &str) -> RunRequest {
    RunRequest {
        program: Program::single(code),
        environment: "python".into(),
        args: vec![],
        stdin: vec![],
        limits: limits(),
        retain_output: None,
        output_budget: None,
    }
}

async fn run(e: &Engine, r: RunRequest) -> RunResult {
    e.run(r, None, CancellationToken::new()).await
}

/// Asserts that nothing of the engine's runs is left: bundles, runtime state, cgroups.
fn assert_clean(e: &Engine) {
    let runs: Vec<_> = std::fs::read_dir(e.dir().join("runs"))
        .unwrap()
        .flatten()
        .collect();
    assert!(runs.is_empty(), "bundles left behind: {runs:?}");
    let state = e.dir().join(e.runtime().name());
    if let Ok(rd) = std::fs::read_dir(&state) {
        let left: Vec<_> = rd.flatten().filter(|d| d.path().is_dir()).collect();
        assert!(left.is_empty(), "runtime state left behind: {left:?}");
    }
    for c in [
        "memory", "pids", "cpu", "freezer", "cpuset", "devices", "unified",
    ] {
        let dir = Path::new("/sys/fs/cgroup").join(c).join(e.cgroup_root());
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let left: Vec<_> = rd.flatten().filter(|d| d.path().is_dir()).collect();
            assert!(
                left.is_empty(),
                "cgroups left behind in {}: {left:?}",
                dir.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn results_exit_codes_signals_and_stdin() {
    for kind in runtimes() {
        let t = tempfile::tempdir().unwrap();
        let e = engine(kind, t.path()).await;

        let ok = run(&e, req("print('hello')")).await;
        assert_eq!(ok.status, RunStatus::Succeeded, "{kind}: {ok:?}");
        assert_eq!(ok.stdout, "hello\n");
        assert_eq!(ok.exit_code, Some(0));
        assert_eq!(ok.runtime, kind.name());
        assert!(
            ok.peak_memory_bytes > 0,
            "{kind}: peak memory read from the cgroup"
        );

        let failed = run(
            &e,
            req("import sys; print('bad', file=sys.stderr); sys.exit(7)"),
        )
        .await;
        assert_eq!(failed.status, RunStatus::Failed, "{kind}: {failed:?}");
        assert_eq!(failed.exit_code, Some(7));
        assert_eq!(failed.signal, None);
        assert_eq!(failed.stderr, "bad\n");

        let raised = run(&e, req("raise ValueError('boom')")).await;
        assert_eq!(raised.status, RunStatus::Failed);
        assert!(
            raised.stderr.contains("ValueError: boom"),
            "{kind}: {raised:?}"
        );

        let signalled = run(
            &e,
            req("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"),
        )
        .await;
        assert_eq!(signalled.status, RunStatus::Failed, "{kind}: {signalled:?}");
        assert_eq!(signalled.signal, Some(11), "{kind}: {signalled:?}");

        let mut with_stdin =
            req("import sys; data = sys.stdin.read(); print(len(data), data.upper())");
        with_stdin.stdin = b"abc def".to_vec();
        let echoed = run(&e, with_stdin).await;
        assert_eq!(echoed.stdout, "7 ABC DEF\n", "{kind}: {echoed:?}");

        let mut with_args = req("import sys; print(sys.argv[1:])");
        with_args.args = vec!["x".into(), "y z".into()];
        assert_eq!(run(&e, with_args).await.stdout, "['x', 'y z']\n");

        let multi = RunRequest {
            program: Program::new(
                vec![
                    ProgramFile {
                        path: "main.py".into(),
                        content: "from pkg.util import f\nprint(f())".into(),
                    },
                    ProgramFile {
                        path: "pkg/__init__.py".into(),
                        content: String::new(),
                    },
                    ProgramFile {
                        path: "pkg/util.py".into(),
                        content: "def f():\n    return 42".into(),
                    },
                ],
                "main.py",
            )
            .unwrap(),
            ..req("")
        };
        assert_eq!(
            run(&e, multi).await.stdout,
            "42\n",
            "{kind}: multi-file programs import their modules"
        );
        assert_clean(&e);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn output_streams_live_and_cancellation_kills_at_once() {
    for kind in runtimes() {
        let t = tempfile::tempdir().unwrap();
        let e = engine(kind, t.path()).await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let code = "import sys, time\nprint('first', flush=True)\nprint('err', file=sys.stderr, flush=True)\ntime.sleep(60)\nprint('never')";
        let handle = {
            let e = e.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move { e.run(req(code), Some(tx), cancel).await })
        };
        // The run is still going (it sleeps a minute) when its first line arrives: live output.
        let mut seen = Vec::new();
        let mut started = false;
        while let Some(ev) = rx.recv().await {
            match ev {
                RunEvent::Started { runtime, .. } => {
                    assert_eq!(runtime, kind);
                    started = true;
                }
                RunEvent::Output { stream, data } => {
                    assert!(started, "Started comes first");
                    if stream == OutputStream::Stdout {
                        seen.extend_from_slice(&data);
                    }
                    // Chunks may split anywhere (gVisor splits writes): look at the joined stream.
                    if seen == b"first\n" {
                        break;
                    }
                }
            }
        }
        assert!(
            !handle.is_finished(),
            "{kind}: output arrived before the program ended"
        );
        cancel.cancel();
        let r = handle.await.unwrap();
        assert_eq!(r.status, RunStatus::Cancelled, "{kind}: {r:?}");
        assert_eq!(r.stdout, "first\n");
        assert!(
            r.wall_ms < 30_000,
            "{kind}: cancellation did not wait for the program"
        );
        assert_clean(&e);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_receiver_holds_the_program_back_within_its_budget_and_loses_nothing() {
    const BUDGET: usize = 256 * 1024;
    const TOTAL: usize = 4 << 20;
    // 4 MiB in 4 KiB writes, each retried until whole (gVisor may write short).
    let code = "import os\nb = b'x' * 4096\nfor _ in range(1024):\n    v = memoryview(b)\n    while v:\n        v = v[os.write(1, v):]\n";
    for kind in runtimes() {
        let t = tempfile::tempdir().unwrap();
        let e = engine(kind, t.path()).await;
        let budget = OutputBudget::new(BUDGET);
        let mut r = req(code);
        r.limits.output_bytes = 8 << 20;
        r.retain_output = Some(0);
        r.output_budget = Some(budget.clone());
        let (tx, mut rx) = mpsc::unbounded_channel();
        // The receiver stores nothing for 20 ms at a time, then gives back all it received: a
        // program unbounded by the budget would be megabytes ahead by then.
        let receiver = async {
            let (mut got, mut held, mut most_held) = (0usize, 0usize, 0usize);
            let mut store = tokio::time::interval(std::time::Duration::from_millis(20));
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(RunEvent::Output { data, .. }) => {
                            got += data.len();
                            held += data.len();
                            most_held = most_held.max(held);
                        }
                        Some(RunEvent::Started { .. }) => {}
                        None => return (got, most_held),
                    },
                    _ = store.tick() => {
                        budget.release(held);
                        held = 0;
                    }
                }
            }
        };
        let (result, (got, most_held)) =
            tokio::join!(e.run(r, Some(tx), CancellationToken::new()), receiver);
        assert_eq!(result.status, RunStatus::Succeeded, "{kind}: {result:?}");
        assert_eq!(got, TOTAL, "{kind}: every byte arrived");
        assert!(
            most_held <= BUDGET,
            "{kind}: {most_held} bytes waited for the receiver, over the budget of {BUDGET}"
        );
        assert!(result.stdout.is_empty(), "{kind}: nothing retained");
        assert_clean(&e);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn large_writes_arrive_whole_and_tracebacks_start_in_the_program() {
    // gVisor answers a write into a full pipe with a short count; Python's unbuffered streams
    // used to drop the rest (200,001 bytes printed, 65,537 kept).
    let code = "import sys\nprint('x' * 200000)\nsys.stdout.buffer.write(b'y' * (1 << 20))\n\
                print(sys.argv[1:], __name__, file=sys.stderr)\n";
    for kind in runtimes() {
        let t = tempfile::tempdir().unwrap();
        let e = engine(kind, t.path()).await;
        let mut r = req(code);
        r.limits.output_bytes = 4 << 20;
        r.args = vec!["a".into()];
        let result = run(&e, r).await;
        assert_eq!(result.status, RunStatus::Succeeded, "{kind}: {result:?}");
        assert_eq!(
            result.stdout.len(),
            200_001 + (1 << 20),
            "{kind}: every byte of two large writes"
        );
        assert_eq!(result.stderr, "['a'] __main__\n", "{kind}");

        let failing = run(&e, req("def f():\n    raise ValueError('boom')\nf()\n")).await;
        assert_eq!(
            (failing.status, failing.exit_code),
            (RunStatus::Failed, Some(1)),
            "{kind}: {failing:?}"
        );
        assert!(
            failing
                .stderr
                .starts_with("Traceback (most recent call last):\n  File \"/code/main.py\""),
            "{kind}: the traceback starts in the program: {}",
            failing.stderr
        );
        assert!(
            !failing.stderr.contains("runpy") && failing.stderr.ends_with("ValueError: boom\n"),
            "{kind}: {}",
            failing.stderr
        );
        assert_clean(&e);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wall_and_cpu_time_limits() {
    for kind in runtimes() {
        let t = tempfile::tempdir().unwrap();
        let e = engine(kind, t.path()).await;
        let mut sleeper = req("import time; time.sleep(30)");
        sleeper.limits.wall_time_ms = 1500;
        let r = run(&e, sleeper).await;
        assert_eq!(r.status, RunStatus::TimedOut, "{kind}: {r:?}");
        assert!(
            r.wall_ms >= 1500,
            "{kind}: not before the limit: {}",
            r.wall_ms
        );

        // Two processes burning CPU: the limit is on the run's total, not per process.
        let mut burner = req("import os\nos.fork()\nwhile True: pass");
        burner.limits.cpu_time_ms = 1000;
        burner.limits.cpu_millicores = 2000;
        burner.limits.wall_time_ms = 20_000;
        let r = run(&e, burner).await;
        assert_eq!(r.status, RunStatus::TimedOut, "{kind}: {r:?}");
        assert!(r.cpu_ms >= 1000, "{kind}: cpu {}", r.cpu_ms);
        assert!(
            r.wall_ms < 10_000,
            "{kind}: the CPU limit, not the wall limit, ended it: {r:?}"
        );
        assert_clean(&e);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_and_output_limits() {
    for kind in runtimes() {
        let t = tempfile::tempdir().unwrap();
        let e = engine(kind, t.path()).await;
        let mut hog = req("x = bytearray(300 * 1024 * 1024)\nprint('survived')");
        hog.limits.memory_bytes = 96 << 20;
        let r = run(&e, hog).await;
        assert_eq!(r.status, RunStatus::MemoryExceeded, "{kind}: {r:?}");
        assert!(r.stdout.is_empty());

        // A program that stays under its limit is not reported as an OOM.
        let mut fits = req("x = bytearray(20 * 1024 * 1024)\nprint(len(x))");
        fits.limits.memory_bytes = 96 << 20;
        let r = run(&e, fits).await;
        assert_eq!(r.status, RunStatus::Succeeded, "{kind}: {r:?}");
        assert!(
            r.peak_memory_bytes >= 20 << 20,
            "{kind}: peak {}",
            r.peak_memory_bytes
        );

        let mut flood = req("import sys\nwhile True: sys.stderr.write('y' * 4096)");
        flood.limits.output_bytes = 10_000;
        let r = run(&e, flood).await;
        assert_eq!(r.status, RunStatus::OutputExceeded, "{kind}: {r:?}");
        assert!(r.stderr_truncated && !r.stdout_truncated);
        assert_eq!(r.stderr.len(), 10_000);
        assert_clean(&e);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runtime_crash_leaves_nothing_behind() {
    for kind in runtimes() {
        let t = tempfile::tempdir().unwrap();
        let e = engine(kind, t.path()).await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handle = {
            let e = e.clone();
            tokio::spawn(async move {
                e.run(
                    req("import time\nprint('up', flush=True)\ntime.sleep(60)"),
                    Some(tx),
                    CancellationToken::new(),
                )
                .await
            })
        };
        let mut runtime_pid = 0;
        while let Some(ev) = rx.recv().await {
            match ev {
                RunEvent::Started { runtime_pid: p, .. } => runtime_pid = p,
                RunEvent::Output { .. } => break,
            }
        }
        assert!(runtime_pid > 0);
        // The runtime process dies; the container it started would live on by itself.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(runtime_pid).expect("a PID fits an i32")),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let r = handle.await.unwrap();
        assert_eq!(r.status, RunStatus::Errored, "{kind}: {r:?}");
        assert!(
            r.error.as_deref().unwrap_or("").contains("runtime"),
            "{kind}: {r:?}"
        );
        assert!(r.wall_ms < 30_000);
        assert_clean(&e);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_runs_do_not_mix() {
    for kind in runtimes() {
        let t = tempfile::tempdir().unwrap();
        let e = engine(kind, t.path()).await;
        let mut set = tokio::task::JoinSet::new();
        for i in 0..6 {
            let e = e.clone();
            set.spawn(async move {
                let r = run(&e, req(&format!("import os\nopen('/tmp/me', 'w').write('{i}')\nprint(open('/tmp/me').read(), os.listdir('/tmp'))"))).await;
                (i, r)
            });
        }
        while let Some(res) = set.join_next().await {
            let (i, r) = res.unwrap();
            assert_eq!(r.status, RunStatus::Succeeded, "{kind}: {r:?}");
            assert_eq!(
                r.stdout,
                format!("{i} ['me']\n"),
                "{kind}: each run has its own /tmp"
            );
        }
        assert_clean(&e);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_environment_is_a_platform_error() {
    let t = tempfile::tempdir().unwrap();
    let e = engine(runtimes()[0], t.path()).await;
    let mut r = req("print(1)");
    r.environment = "cobol".into();
    let res = run(&e, r).await;
    assert_eq!(res.status, RunStatus::Errored);
    assert!(res.error.unwrap().contains("cobol"));
    assert_clean(&e);
}

/// An environment registered from a directory is the sandbox's root: here a tree holding only a
/// static binary, which exists nowhere else the sandbox can see.
#[tokio::test(flavor = "multi_thread")]
async fn registered_directory_environment() {
    let envdir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(envdir.path().join("bin")).unwrap();
    std::fs::copy(
        assay_sandbox::find_init().unwrap(),
        envdir.path().join("bin/tool"),
    )
    .unwrap();
    for kind in runtimes() {
        let t = tempfile::tempdir().unwrap();
        let env =
            Environment::from_dir("tiny", envdir.path(), vec!["/bin/tool".into(), "-l".into()])
                .unwrap();
        let e = Engine::new(EngineConfig {
            runtime: RuntimeChoice::Exactly(kind),
            state_dir: t.path().to_path_buf(),
            environments: vec![Environment::python(), env],
            ..EngineConfig::default()
        })
        .await
        .unwrap();
        let mut r = req("unused");
        r.environment = "tiny".into();
        let res = run(&e, r).await;
        assert_eq!(res.status, RunStatus::Succeeded, "{kind}: {res:?}");
        assert!(res.stdout.contains("The MIT License"), "{kind}: {res:?}");
        // And python, which lives on the host, is not in that environment.
        let env =
            Environment::from_dir("tiny2", envdir.path(), vec!["/usr/bin/python3".into()]).unwrap();
        let e2 = Engine::new(EngineConfig {
            runtime: RuntimeChoice::Exactly(kind),
            state_dir: t.path().to_path_buf(),
            environments: vec![env],
            ..EngineConfig::default()
        })
        .await
        .unwrap();
        let mut r = req("print(1)");
        r.environment = "tiny2".into();
        let res = run(&e2, r).await;
        assert_ne!(
            res.status,
            RunStatus::Succeeded,
            "{kind}: host python must not be visible: {res:?}"
        );
        assert_clean(&e);
        assert_clean(&e2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn engine_removes_its_directory_when_dropped() {
    let t = tempfile::tempdir().unwrap();
    let e = engine(runtimes()[0], t.path()).await;
    let dir = e.dir().to_path_buf();
    assert!(dir.exists());
    assert_eq!(run(&e, req("print(1)")).await.status, RunStatus::Succeeded);
    drop(e);
    assert!(!dir.exists());
}

/// The engine reads its cgroups under the configured mount, not a hard-coded path: pointed at
/// a directory holding no hierarchy, it refuses to start and names that directory.
#[tokio::test(flavor = "multi_thread")]
async fn cgroup_mount_is_configurable() {
    let t = tempfile::tempdir().unwrap();
    let nowhere = tempfile::tempdir().unwrap();
    let started = Engine::new(EngineConfig {
        runtime: RuntimeChoice::Exactly(runtimes()[0]),
        state_dir: t.path().to_path_buf(),
        cgroup_mount: nowhere.path().to_path_buf(),
        ..EngineConfig::default()
    })
    .await;
    match started {
        Err(e @ SandboxError::Cgroup(_)) => assert!(
            e.to_string()
                .contains(&nowhere.path().display().to_string()),
            "{e}"
        ),
        Err(e) => panic!("expected a cgroup error, got {e}"),
        Ok(_) => panic!("an engine started without cgroups"),
    }
}
