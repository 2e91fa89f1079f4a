//! The `Sandbox` conformance suite against the real engine, once per runtime (`runc::…`,
//! `crun::…`, `runsc::…`, so that failures are attributed). Needs root, like the engine.
//!
//! A runtime that is not installed fails its checks when `CI` is set (CI installs all three),
//! and is reported loudly and skipped otherwise.

use assay_domain::{LimitPolicy, OutputStream, Program};
use assay_sandbox::conformance::{Behaviour, Fixture};
use assay_sandbox::{Engine, EngineConfig, RunRequest, RuntimeChoice, RuntimeKind, Sandbox};

mod common;

/// An engine on a temporary state directory, running each behaviour as Python.
struct EngineFixture {
    engine: Engine,
    /// Dropped after the engine (fields drop in order), which removes its directory first.
    _state: tempfile::TempDir,
}

/// A Python string literal of `text` (JSON's escapes are Python's for these).
fn py(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

fn python(behaviour: &Behaviour) -> String {
    match behaviour {
        Behaviour::PrintLines { tag, count } => format!(
            "for i in range({count}):\n    print({} + ' ' + str(i), flush=True)",
            py(tag)
        ),
        Behaviour::ExitWith(code) => format!("import sys\nsys.exit({code})"),
        Behaviour::KilledBy(signal) => format!("import os\nos.kill(os.getpid(), {signal})"),
        // Short writes are retried: unbuffered (PYTHONUNBUFFERED) `sys.stdout.buffer` is a raw
        // file whose `write` is one syscall, and under gVisor a pipe write of more than 64 KiB
        // returns early.
        Behaviour::EchoStdin => "import os, sys\n\
             data = memoryview(sys.stdin.buffer.read())\n\
             while data:\n    data = data[os.write(1, data):]"
            .into(),
        Behaviour::SleepForever => "import time\nwhile True:\n    time.sleep(60)".into(),
        Behaviour::Flood(stream) => {
            let name = match stream {
                OutputStream::Stdout => "stdout",
                OutputStream::Stderr => "stderr",
            };
            format!("import sys\nwhile True:\n    sys.{name}.write('x' * 4096)")
        }
        Behaviour::PrintThenHang(text) => format!(
            "import sys, time\nsys.stdout.write({})\nsys.stdout.flush()\nwhile True:\n    time.sleep(60)",
            py(text)
        ),
        // Never run: the environment is unknown.
        Behaviour::PlatformFailure => "print('unreachable')".into(),
    }
}

impl Fixture for EngineFixture {
    fn sandbox(&self) -> &dyn Sandbox {
        &self.engine
    }

    fn request(&self, behaviour: &Behaviour) -> RunRequest {
        let mut limits = LimitPolicy::default().defaults;
        limits.wall_time_ms = 20_000;
        RunRequest {
            program: Program::single(python(behaviour)),
            environment: if *behaviour == Behaviour::PlatformFailure {
                "no-such-environment".into()
            } else {
                "python".into()
            },
            args: Vec::new(),
            stdin: Vec::new(),
            limits,
            retain_output: None,
            output_budget: None,
        }
    }
}

async fn engine_fixture(kind: RuntimeKind) -> Option<EngineFixture> {
    if !common::installed(kind, "conformance checks") {
        return None;
    }
    let state = tempfile::tempdir().expect("temporary state directory");
    let engine = Engine::new(EngineConfig {
        runtime: RuntimeChoice::Exactly(kind),
        state_dir: state.path().to_path_buf(),
        ..EngineConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("[{kind}] starting the engine: {e}"));
    assert_eq!(engine.runtime_name(), kind.name());
    Some(EngineFixture {
        engine,
        _state: state,
    })
}

mod runc {
    async fn fixture() -> Option<super::EngineFixture> {
        super::engine_fixture(assay_sandbox::RuntimeKind::Runc).await
    }
    assay_sandbox::conformance_tests!(optional fixture);
}

mod crun {
    async fn fixture() -> Option<super::EngineFixture> {
        super::engine_fixture(assay_sandbox::RuntimeKind::Crun).await
    }
    assay_sandbox::conformance_tests!(optional fixture);
}

mod runsc {
    async fn fixture() -> Option<super::EngineFixture> {
        super::engine_fixture(assay_sandbox::RuntimeKind::Runsc).await
    }
    assay_sandbox::conformance_tests!(optional fixture);
}
