//! A scripted [`Sandbox`] for tests of the crates above (the worker, the service): no root, no
//! runtime, no Python. The program's entrypoint file is read as a script, one instruction per
//! line:
//!
//! | Instruction | What the "program" does |
//! |---|---|
//! | `out TEXT` | writes TEXT to stdout, as one chunk (one `RunEvent::Output`) |
//! | `err TEXT` | writes TEXT to stderr, as one chunk |
//! | `repeat N out TEXT`, `repeat N err TEXT` | writes TEXT N times, N chunks back to back (`repeat 20000 out x`: 20000 one-byte chunks); N may be `forever` |
//! | `echo-stdin` | writes the request's stdin to stdout, as one chunk |
//! | `sleep MS` | waits MS milliseconds (cancellation and the wall-time limit interrupt it) |
//! | `hang` | waits until cancelled or timed out |
//! | `cpu MS` | counts MS of CPU time (at once); beyond `limits.cpu_time_ms` the run is `timed_out` |
//! | `memory BYTES` | reaches BYTES of memory (the result's peak); beyond `limits.memory_bytes` the run ends `memory_exceeded` |
//! | `oom` | ends killed by the OOM killer: `memory_exceeded` |
//! | `exit CODE` | ends with exit code CODE (0–255): 0 `succeeded`, else `failed` |
//! | `signal N` | ends killed by signal N (1–64): `failed`, signal N, exit code 128 + N (as tini reports it) |
//! | `error REASON` | ends as a platform failure: `errored` with REASON as the error |
//!
//! TEXT is everything after the single space that follows the word (leading and trailing
//! spaces included), with the escapes `\n`, `\t`, `\r`, `\\` and `\xHH` ([`escape`] writes
//! them). Blank lines and lines starting with `#` are skipped. A script that ends without
//! `exit` exits 0. A script that does not parse is an `errored` result naming the line, and
//! nothing runs.
//!
//! Like the engine, the fake enforces the request's limits and decides the status with the
//! same rules: the wall-time limit ends the run `timed_out`; a stream beyond
//! `limits.output_bytes` ends it `output_exceeded` with `*_truncated` set and only the bytes
//! kept sent as events; cancellation ends it `cancelled` at once; a run Assay ended reports
//! exit code 137 and signal 9, as a killed sandbox does. The result's `stdout`/`stderr` are the
//! concatenation of the Output events sent (as lossy UTF-8), every event is sent before `run`
//! returns, and nothing of a run outlives the call. It reports `runtime: "fake"` and never sends
//! `RunEvent::Started` (there is no runtime process). The request's environment and arguments
//! are ignored.

mod script;

pub use script::{ScriptError, escape};

use crate::capture::Capture;
use crate::sandbox::{RunEvent, RunRequest, Sandbox};
use crate::status::{classify, exited};
use assay_domain::{LimitPolicy, OutputStream, Program, RunResult, RunStatus};
use script::Instruction;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// The runtime name a fake reports.
pub const RUNTIME: &str = "fake";

/// Chunks written back to back between two looks at cancellation and the clock (and a yield,
/// so that a `repeat forever` shares its thread).
const CHUNKS_PER_YIELD: u64 = 256;

/// A [`Sandbox`] that interprets the entrypoint as a script (see the module documentation).
/// Clones share their counters.
#[derive(Clone, Default)]
pub struct ScriptedSandbox {
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    started: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Woken at every start, for [`ScriptedSandbox::wait_until_started`].
    start: Notify,
}

/// Counts a run as in flight from its start until it returns (or its future is dropped).
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(c: &'a Counters) -> InFlight<'a> {
        c.started.fetch_add(1, Ordering::SeqCst);
        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_in_flight.fetch_max(now, Ordering::SeqCst);
        c.start.notify_waiters();
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ScriptedSandbox {
    pub fn new() -> ScriptedSandbox {
        ScriptedSandbox::default()
    }

    /// A request running `script` under the default limits.
    pub fn request(script: impl Into<String>) -> RunRequest {
        RunRequest {
            program: Program::single(script),
            environment: "python".into(),
            args: Vec::new(),
            stdin: Vec::new(),
            limits: LimitPolicy::default().defaults,
            retain_output: None,
            output_budget: None,
        }
    }

    /// Runs started so far.
    pub fn runs_started(&self) -> u64 {
        self.counters.started.load(Ordering::SeqCst)
    }

    /// Runs started that have not returned yet.
    pub fn runs_in_flight(&self) -> u64 {
        self.counters.in_flight.load(Ordering::SeqCst)
    }

    /// The most runs that were in flight at once.
    pub fn max_runs_in_flight(&self) -> u64 {
        self.counters.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` runs have started.
    pub async fn wait_until_started(&self, n: u64) {
        loop {
            let notified = self.counters.start.notified();
            tokio::pin!(notified);
            // Registered before the check, so that a start in between is not missed.
            notified.as_mut().enable();
            if self.runs_started() >= n {
                return;
            }
            notified.await;
        }
    }
}

/// How a script ended.
enum End {
    Exited(u8),
    Signalled(u8),
    Oom,
    /// Ended by Assay: timeout, cancellation, output cap.
    Killed(RunStatus),
    /// A platform failure the script asked for.
    Error(String),
}

/// One run's state while its script goes.
struct Run<'a> {
    req: &'a RunRequest,
    events: Option<UnboundedSender<RunEvent>>,
    cancel: &'a CancellationToken,
    deadline: tokio::time::Instant,
    out: Capture,
    err: Capture,
    cpu_ms: u64,
    peak_memory_bytes: u64,
}

impl Run<'_> {
    /// Why the run must end now, if it must.
    fn interrupted(&self) -> Option<RunStatus> {
        if self.cancel.is_cancelled() {
            Some(RunStatus::Cancelled)
        } else if tokio::time::Instant::now() >= self.deadline {
            Some(RunStatus::TimedOut)
        } else {
            None
        }
    }

    /// Waits for `until` unless cancellation or the deadline come first.
    async fn wait(&self, until: Option<tokio::time::Instant>) -> Option<RunStatus> {
        let until = until.map_or(self.deadline, |u| u.min(self.deadline));
        tokio::select! {
            () = self.cancel.cancelled() => Some(RunStatus::Cancelled),
            () = tokio::time::sleep_until(until) => {
                (until >= self.deadline).then_some(RunStatus::TimedOut)
            }
        }
    }

    /// Writes one chunk; true when it went beyond the output limit.
    fn write(&mut self, stream: OutputStream, data: &[u8]) -> bool {
        let capture = match stream {
            OutputStream::Stdout => &mut self.out,
            OutputStream::Stderr => &mut self.err,
        };
        capture.push(data, &self.events)
    }

    async fn interpret(&mut self, script: &[Instruction]) -> End {
        for ins in script {
            if let Some(reason) = self.interrupted() {
                return End::Killed(reason);
            }
            match ins {
                Instruction::Write {
                    stream,
                    data,
                    times,
                } => {
                    let mut written = 0u64;
                    while times.is_none_or(|n| written < n) {
                        if self.write(*stream, data) {
                            return End::Killed(RunStatus::OutputExceeded);
                        }
                        written += 1;
                        if written.is_multiple_of(CHUNKS_PER_YIELD) {
                            tokio::task::yield_now().await;
                            if let Some(reason) = self.interrupted() {
                                return End::Killed(reason);
                            }
                        }
                    }
                }
                Instruction::EchoStdin => {
                    let req = self.req;
                    if self.write(OutputStream::Stdout, &req.stdin) {
                        return End::Killed(RunStatus::OutputExceeded);
                    }
                }
                Instruction::Sleep(d) => {
                    let until = tokio::time::Instant::now() + *d;
                    if let Some(reason) = self.wait(Some(until)).await {
                        return End::Killed(reason);
                    }
                }
                Instruction::Hang => {
                    if let Some(reason) = self.wait(None).await {
                        return End::Killed(reason);
                    }
                }
                Instruction::Cpu(ms) => {
                    self.cpu_ms = self.cpu_ms.saturating_add(*ms);
                    if self.cpu_ms > self.req.limits.cpu_time_ms {
                        return End::Killed(RunStatus::TimedOut);
                    }
                }
                Instruction::Memory(bytes) => {
                    if *bytes > self.req.limits.memory_bytes {
                        self.peak_memory_bytes = self.req.limits.memory_bytes;
                        return End::Oom;
                    }
                    self.peak_memory_bytes = self.peak_memory_bytes.max(*bytes);
                }
                Instruction::Oom => {
                    self.peak_memory_bytes = self.req.limits.memory_bytes;
                    return End::Oom;
                }
                Instruction::Exit(code) => return End::Exited(*code),
                Instruction::Signal(n) => return End::Signalled(*n),
                Instruction::Error(reason) => return End::Error(reason.clone()),
            }
        }
        End::Exited(0)
    }
}

/// Exit code of a sandbox whose processes were SIGKILLed (128 + 9).
const KILLED: u8 = 137;

#[async_trait::async_trait]
impl Sandbox for ScriptedSandbox {
    fn runtime_name(&self) -> &str {
        RUNTIME
    }

    async fn run(
        &self,
        req: RunRequest,
        events: Option<UnboundedSender<RunEvent>>,
        cancel: CancellationToken,
    ) -> RunResult {
        let _in_flight = InFlight::enter(&self.counters);
        let started = Instant::now();
        let entrypoint = req.program.entrypoint();
        let Some(file) = req.program.files().iter().find(|f| f.path == entrypoint) else {
            return RunResult::platform_error(RUNTIME, format!("no entrypoint {entrypoint:?}"));
        };
        let script = match script::parse(&file.content) {
            Ok(s) => s,
            Err(e) => return RunResult::platform_error(RUNTIME, e.to_string()),
        };
        let mut run = Run {
            req: &req,
            events,
            cancel: &cancel,
            deadline: tokio::time::Instant::now() + req.limits.wall_time(),
            out: Capture::new(
                OutputStream::Stdout,
                req.limits.output_bytes,
                req.retain_output,
            ),
            err: Capture::new(
                OutputStream::Stderr,
                req.limits.output_bytes,
                req.retain_output,
            ),
            cpu_ms: 0,
            peak_memory_bytes: 0,
        };
        let end = run.interpret(&script).await;
        let (exit, kill_reason, oom_events, platform_error) = match end {
            End::Exited(code) => (exited(code), None, 0, None),
            End::Signalled(n) => (exited(128 + n), None, 0, None),
            End::Oom => (exited(KILLED), None, 1, None),
            End::Killed(reason) => (exited(KILLED), Some(reason), 0, None),
            End::Error(reason) => (exited(KILLED), None, 0, Some(reason)),
        };
        let (status, exit_code, signal, error) =
            classify(exit, kill_reason, oom_events, true, &run.err.kept);
        let mut result = RunResult {
            status,
            exit_code,
            signal,
            wall_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            cpu_ms: run.cpu_ms,
            peak_memory_bytes: run.peak_memory_bytes,
            stdout: run.out.text(),
            stderr: run.err.text(),
            stdout_truncated: run.out.truncated,
            stderr_truncated: run.err.truncated,
            runtime: RUNTIME.into(),
            error,
        };
        if let Some(reason) = platform_error {
            result.status = RunStatus::Errored;
            result.exit_code = None;
            result.signal = None;
            result.error = Some(reason);
        }
        result
    }
}
