//! The conformance suite every [`Sandbox`] implementation passes (the engine under each
//! runtime, and the fake).
//!
//! A sandbox cannot be asked to run "a program" in the abstract: the engine runs Python, the
//! fake a script. So each check asks the test's [`Fixture`] for a request showing one
//! [`Behaviour`], sets the limits it is about, runs it, and asserts what every implementation
//! must do. A check panics with a message naming the runtime and what broke.
//!
//! Two ways to run it from a test crate (with `assay-sandbox`'s `conformance` feature):
//!
//! ```text
//! // One #[tokio::test] per check (needs `tokio` with `macros` and `rt-multi-thread`). The
//! // function is async, takes no arguments and returns a value implementing `Fixture`.
//! async fn fixture() -> MyFixture { ... }
//! assay_sandbox::conformance_tests!(fixture);
//!
//! // The same, for a fixture that may be unavailable on this machine (an uninstalled
//! // runtime): the function returns Option<MyFixture>, and None passes every check vacuously,
//! // so it must say loudly why.
//! assay_sandbox::conformance_tests!(optional fixture);
//!
//! // Or everything in one test, on one fixture:
//! assay_sandbox::conformance::run_all(&fixture().await).await;
//! ```
//!
//! The contract the checks pin, besides the trait's documentation:
//! - `RunResult::runtime` is `Sandbox::runtime_name`.
//! - Every event is sent before `run` returns, and no sender outlives it.
//! - `RunEvent::Output` chunks are never empty; per stream their concatenation is the result's
//!   `stdout`/`stderr`; a `RunEvent::Started`, if any, comes before them.
//! - A run Assay ended (wall time, output cap, cancellation) has that status whatever the
//!   program's exit looked like.

use crate::sandbox::{RunEvent, RunRequest, Sandbox};
use assay_domain::{OutputStream, RunResult, RunStatus};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{self, UnboundedReceiver, error::TryRecvError};
use tokio_util::sync::CancellationToken;

/// How quickly a cancelled run must end. Generous: the engine takes tens of milliseconds, but
/// CI machines are slow and gVisor slower.
pub const CANCEL_BOUND: Duration = Duration::from_secs(5);

/// A run of the suite that has not ended after this long fails its check rather than hanging
/// the test run.
const RUN_BOUND: Duration = Duration::from_secs(120);

/// The wall-time limit of the timeout check.
const WALL_LIMIT_MS: u64 = 1500;

/// The output limit of the output-cap check.
const OUTPUT_LIMIT: u64 = 10_000;

/// What a test crate provides: the sandbox under test, and how to make it show a behaviour.
pub trait Fixture: Send + Sync {
    fn sandbox(&self) -> &dyn Sandbox;

    /// A request whose program behaves as described, with the fixture's usual limits (a wall
    /// time of at least 20 s; the checks change the limit they are about). Stdin is empty;
    /// checks that need some set it.
    fn request(&self, behaviour: &Behaviour) -> RunRequest;
}

/// What the program of a request does. Output is exactly as described, byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Writes `"{tag} {i}\n"` for each `i` in `0..count` to stdout, each line as it goes
    /// (flushed), then exits 0.
    PrintLines { tag: String, count: u32 },
    /// Writes nothing and exits with this code (1 to 127).
    ExitWith(i32),
    /// Writes nothing and ends killed by this signal (sent to itself).
    KilledBy(i32),
    /// Copies its stdin to stdout, then exits 0.
    EchoStdin,
    /// Writes nothing and never ends on its own.
    SleepForever,
    /// Writes the byte `x` to this stream, endlessly.
    Flood(OutputStream),
    /// Writes this text to stdout (flushed), then never ends on its own.
    PrintThenHang(String),
    /// A request the platform cannot carry out (for the engine, an environment it does not
    /// know; for the fake, its `error` instruction).
    PlatformFailure,
}

/// One run's result and every event it sent.
struct Ran {
    result: RunResult,
    events: Vec<RunEvent>,
}

impl Ran {
    fn output(&self, stream: OutputStream) -> Vec<u8> {
        output_of(&self.events, stream)
    }
}

/// The concatenated `Output` chunks of one stream.
fn output_of(events: &[RunEvent], stream: OutputStream) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Output { stream: s, data } if *s == stream => Some(data.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}

/// The events `run` sent, all of which must have been sent before it returned: the channel is
/// drained without waiting, and must then be closed (no sender lives on).
fn drain(name: &str, rx: &mut UnboundedReceiver<RunEvent>) -> Vec<RunEvent> {
    let mut events = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => events.push(e),
            Err(TryRecvError::Disconnected) => return events,
            Err(TryRecvError::Empty) => panic!(
                "[{name}] the events sender outlived `run`: events could still come after it returned"
            ),
        }
    }
}

/// What every run must satisfy, whatever it did.
fn assert_consistent(name: &str, ran: &Ran) {
    let r = &ran.result;
    assert_eq!(
        r.runtime, name,
        "[{name}] the result names the runtime: {r:?}"
    );
    if let Some(i) = ran
        .events
        .iter()
        .position(|e| matches!(e, RunEvent::Started { .. }))
    {
        assert!(
            !ran.events[..i]
                .iter()
                .any(|e| matches!(e, RunEvent::Output { .. })),
            "[{name}] Started comes before any output"
        );
    }
    assert!(
        !ran.events
            .iter()
            .any(|e| matches!(e, RunEvent::Output { data, .. } if data.is_empty())),
        "[{name}] an empty output chunk was sent"
    );
    for (stream, text) in [
        (OutputStream::Stdout, &r.stdout),
        (OutputStream::Stderr, &r.stderr),
    ] {
        assert_eq!(
            &String::from_utf8_lossy(&ran.output(stream)),
            text,
            "[{name}] the result's {stream:?} is the concatenation of its Output events"
        );
    }
}

/// Runs `req` to its end (bounded), collecting its events.
async fn run(f: &dyn Fixture, req: RunRequest, cancel: CancellationToken) -> Ran {
    let name = f.sandbox().runtime_name();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let result = tokio::time::timeout(RUN_BOUND, f.sandbox().run(req, Some(tx), cancel))
        .await
        .unwrap_or_else(|_| panic!("[{name}] a run did not end within {RUN_BOUND:?}"));
    let ran = Ran {
        result,
        events: drain(name, &mut rx),
    };
    assert_consistent(name, &ran);
    ran
}

async fn run_behaviour(f: &dyn Fixture, b: &Behaviour) -> Ran {
    run(f, f.request(b), CancellationToken::new()).await
}

fn lines(tag: &str, count: u32) -> String {
    (0..count).map(|i| format!("{tag} {i}\n")).collect()
}

/// A program that ends well: `succeeded`, exit code 0, its stdout in the result and in the
/// events, in order, nothing on stderr, no error.
pub async fn succeeds_with_its_output(f: &dyn Fixture) {
    let name = f.sandbox().runtime_name();
    let ran = run_behaviour(
        f,
        &Behaviour::PrintLines {
            tag: "line".into(),
            count: 5,
        },
    )
    .await;
    let r = &ran.result;
    assert_eq!(r.status, RunStatus::Succeeded, "[{name}] {r:?}");
    assert_eq!(r.exit_code, Some(0), "[{name}] {r:?}");
    assert_eq!(r.signal, None, "[{name}] {r:?}");
    assert_eq!(r.error, None, "[{name}] {r:?}");
    assert_eq!(r.stdout, lines("line", 5), "[{name}] {r:?}");
    assert_eq!(r.stderr, "", "[{name}] {r:?}");
    assert!(!r.stdout_truncated && !r.stderr_truncated, "[{name}] {r:?}");
}

/// A non-zero exit is the program's failure: `failed` with its code, no signal, no error.
pub async fn nonzero_exit_is_failed_with_its_code(f: &dyn Fixture) {
    let name = f.sandbox().runtime_name();
    for code in [1, 3, 42] {
        let r = run_behaviour(f, &Behaviour::ExitWith(code)).await.result;
        assert_eq!(r.status, RunStatus::Failed, "[{name}] exit {code}: {r:?}");
        assert_eq!(r.exit_code, Some(code), "[{name}] {r:?}");
        assert_eq!(r.signal, None, "[{name}] {r:?}");
        assert_eq!(r.error, None, "[{name}] {r:?}");
    }
}

/// A program killed by a signal (its own doing) failed, and the signal is reported.
pub async fn killed_by_a_signal_is_failed_with_it(f: &dyn Fixture) {
    let name = f.sandbox().runtime_name();
    let sigsegv = 11;
    let r = run_behaviour(f, &Behaviour::KilledBy(sigsegv)).await.result;
    assert_eq!(r.status, RunStatus::Failed, "[{name}] {r:?}");
    assert_eq!(r.signal, Some(sigsegv), "[{name}] {r:?}");
    assert_eq!(r.error, None, "[{name}] {r:?}");
}

/// Stdin reaches the program whole, also when it is larger than a pipe's buffer; and a program
/// that never reads its stdin is not held up by it.
pub async fn stdin_reaches_the_program(f: &dyn Fixture) {
    let name = f.sandbox().runtime_name();
    let alphabet = b"abcdefghijklmnopqrstuvwxyz\n";
    let big: Vec<u8> = (0..200_000).map(|i| alphabet[i % alphabet.len()]).collect();
    for stdin in [b"hello\nworld".to_vec(), big] {
        let mut req = f.request(&Behaviour::EchoStdin);
        req.stdin = stdin.clone();
        req.limits.output_bytes = 1 << 20;
        let r = run(f, req, CancellationToken::new()).await.result;
        assert_eq!(r.status, RunStatus::Succeeded, "[{name}] {r:?}");
        assert!(
            r.stdout.as_bytes() == stdin.as_slice(),
            "[{name}] stdin of {} bytes came back as {} bytes",
            stdin.len(),
            r.stdout.len()
        );
    }
    let mut ignored = f.request(&Behaviour::PrintLines {
        tag: "ignoring".into(),
        count: 1,
    });
    ignored.stdin = vec![b'z'; 1 << 20];
    let r = run(f, ignored, CancellationToken::new()).await.result;
    assert_eq!(
        r.status,
        RunStatus::Succeeded,
        "[{name}] unread stdin: {r:?}"
    );
    assert_eq!(r.stdout, "ignoring 0\n", "[{name}] unread stdin: {r:?}");
}

/// The wall-time limit ends a program that does not end: `timed_out`, not before the limit,
/// and not long after it.
pub async fn wall_time_limit_times_out(f: &dyn Fixture) {
    let name = f.sandbox().runtime_name();
    let mut req = f.request(&Behaviour::SleepForever);
    req.limits.wall_time_ms = WALL_LIMIT_MS;
    let began = Instant::now();
    let r = run(f, req, CancellationToken::new()).await.result;
    let took = began.elapsed();
    assert_eq!(r.status, RunStatus::TimedOut, "[{name}] {r:?}");
    assert!(
        r.wall_ms >= WALL_LIMIT_MS,
        "[{name}] ended before the limit: {r:?}"
    );
    assert!(
        took < Duration::from_millis(WALL_LIMIT_MS) + Duration::from_secs(10),
        "[{name}] a {WALL_LIMIT_MS} ms limit took {took:?} to end the run"
    );
    assert_eq!(r.error, None, "[{name}] {r:?}");
}

/// Output beyond the limit ends the run `output_exceeded`: the stream is marked truncated, and
/// exactly the limit's worth of bytes was kept and sent, on either stream.
pub async fn output_cap_keeps_only_the_cap(f: &dyn Fixture) {
    let name = f.sandbox().runtime_name();
    for stream in [OutputStream::Stdout, OutputStream::Stderr] {
        let mut req = f.request(&Behaviour::Flood(stream));
        req.limits.output_bytes = OUTPUT_LIMIT;
        let ran = run(f, req, CancellationToken::new()).await;
        let r = &ran.result;
        assert_eq!(
            r.status,
            RunStatus::OutputExceeded,
            "[{name}] {stream:?}: {r:?}"
        );
        let (kept, truncated, other, other_truncated) = match stream {
            OutputStream::Stdout => (&r.stdout, r.stdout_truncated, &r.stderr, r.stderr_truncated),
            OutputStream::Stderr => (&r.stderr, r.stderr_truncated, &r.stdout, r.stdout_truncated),
        };
        assert!(truncated, "[{name}] {stream:?} is marked truncated");
        assert!(
            !other_truncated && other.is_empty(),
            "[{name}] the other stream is untouched"
        );
        let sent = ran.output(stream);
        assert_eq!(
            u64::try_from(sent.len()),
            Ok(OUTPUT_LIMIT),
            "[{name}] {stream:?}: only the kept bytes are sent"
        );
        assert!(
            sent.iter().all(|&b| b == b'x'),
            "[{name}] the kept bytes are the program's"
        );
        assert_eq!(
            u64::try_from(kept.len()),
            Ok(OUTPUT_LIMIT),
            "[{name}] {stream:?}"
        );
    }
}

/// Cancelling a run that is going ends it `cancelled` within [`CANCEL_BOUND`], with the output
/// it wrote before. Returns how long the end took after the cancel.
pub async fn cancel_mid_run_is_prompt(f: &dyn Fixture) -> Duration {
    let name = f.sandbox().runtime_name();
    let req = f.request(&Behaviour::PrintThenHang("ready\n".into()));
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let running = f.sandbox().run(req, Some(tx), cancel.clone());
    // Cancel once the program has shown it runs; the run ends after that.
    let drive = async {
        let mut seen = Vec::new();
        let mut events = Vec::new();
        while let Some(ev) = rx.recv().await {
            if let RunEvent::Output {
                stream: OutputStream::Stdout,
                data,
            } = &ev
            {
                seen.extend_from_slice(data);
            }
            events.push(ev);
            if seen == b"ready\n" {
                break;
            }
        }
        let at = Instant::now();
        cancel.cancel();
        (at, events)
    };
    let (result, (cancelled_at, mut events)) =
        tokio::time::timeout(RUN_BOUND, async { tokio::join!(running, drive) })
            .await
            .unwrap_or_else(|_| {
                panic!("[{name}] a cancelled run did not end within {RUN_BOUND:?}")
            });
    let latency = cancelled_at.elapsed();
    events.extend(drain(name, &mut rx));
    let ran = Ran { result, events };
    assert_consistent(name, &ran);
    let r = &ran.result;
    eprintln!("[{name}] cancel_mid_run_is_prompt: the run ended {latency:?} after the cancel");
    assert_eq!(r.status, RunStatus::Cancelled, "[{name}] {r:?}");
    assert_eq!(r.stdout, "ready\n", "[{name}] {r:?}");
    assert!(
        latency < CANCEL_BOUND,
        "[{name}] the run ended {latency:?} after the cancel (bound {CANCEL_BOUND:?})"
    );
    latency
}

/// A run whose token is already cancelled ends `cancelled` at once. Returns how long it took.
pub async fn cancel_before_start_is_prompt(f: &dyn Fixture) -> Duration {
    let name = f.sandbox().runtime_name();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let began = Instant::now();
    let r = run(f, f.request(&Behaviour::SleepForever), cancel)
        .await
        .result;
    let took = began.elapsed();
    eprintln!("[{name}] cancel_before_start_is_prompt: the run ended after {took:?}");
    assert_eq!(r.status, RunStatus::Cancelled, "[{name}] {r:?}");
    assert!(
        took < CANCEL_BOUND,
        "[{name}] a cancelled run took {took:?} (bound {CANCEL_BOUND:?})"
    );
    took
}

/// Runs going on at once each get exactly their own output, in the result and in the events.
pub async fn concurrent_runs_do_not_mix(f: &dyn Fixture) {
    let name = f.sandbox().runtime_name();
    let one = |tag: &'static str| {
        let req = f.request(&Behaviour::PrintLines {
            tag: tag.into(),
            count: 20,
        });
        run(f, req, CancellationToken::new())
    };
    let (a, b, c, d) = tokio::join!(one("a"), one("b"), one("c"), one("d"));
    for (tag, ran) in [("a", a), ("b", b), ("c", c), ("d", d)] {
        let r = &ran.result;
        assert_eq!(r.status, RunStatus::Succeeded, "[{name}] run {tag}: {r:?}");
        assert_eq!(r.stdout, lines(tag, 20), "[{name}] run {tag}: {r:?}");
    }
}

/// A request the platform cannot carry out is an `errored` result saying why, not a panic.
pub async fn platform_failure_is_an_errored_result(f: &dyn Fixture) {
    let name = f.sandbox().runtime_name();
    let r = run_behaviour(f, &Behaviour::PlatformFailure).await.result;
    assert_eq!(r.status, RunStatus::Errored, "[{name}] {r:?}");
    assert!(
        r.error.as_deref().is_some_and(|e| !e.trim().is_empty()),
        "[{name}] an errored result says why: {r:?}"
    );
}

/// Runs every check on `f`, one after the other. Panics at the first failure.
pub async fn run_all(f: &dyn Fixture) {
    crate::conformance_tests!(@each [run f]);
}

/// Expands to one `#[tokio::test]` per conformance check. The argument is the path of an async
/// function (no arguments) returning a value that implements [`Fixture`]; with `optional`
/// before it, an `Option` of one (`None`: nothing to test on this machine).
#[macro_export]
macro_rules! conformance_tests {
    (@one [test $fixture:path] $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let fixture = $fixture().await;
            let _ = $crate::conformance::$name(&fixture).await;
        }
    };
    (@one [optional $fixture:path] $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(fixture) = $fixture().await else {
                return;
            };
            let _ = $crate::conformance::$name(&fixture).await;
        }
    };
    (@one [run $fixture:ident] $name:ident) => {{
        eprintln!(
            "[{}] conformance check {} ...",
            $fixture.sandbox().runtime_name(),
            stringify!($name)
        );
        let _ = $crate::conformance::$name($fixture).await;
    }};
    (@each $how:tt) => {
        $crate::conformance_tests!(@list $how
            succeeds_with_its_output
            nonzero_exit_is_failed_with_its_code
            killed_by_a_signal_is_failed_with_it
            stdin_reaches_the_program
            wall_time_limit_times_out
            output_cap_keeps_only_the_cap
            cancel_mid_run_is_prompt
            cancel_before_start_is_prompt
            concurrent_runs_do_not_mix
            platform_failure_is_an_errored_result
        );
    };
    (@list $how:tt $($name:ident)*) => {
        $( $crate::conformance_tests!(@one $how $name); )*
    };
    (optional $fixture:path) => {
        $crate::conformance_tests!(@each [optional $fixture]);
    };
    ($fixture:path) => {
        $crate::conformance_tests!(@each [test $fixture]);
    };
}
