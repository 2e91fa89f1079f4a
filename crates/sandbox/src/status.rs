//! How a run ended, decided in one place for the engine and the fake alike.

use assay_domain::RunStatus;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// Status, exit code, signal and platform error of a run.
pub(crate) type Classified = (RunStatus, Option<i32>, Option<i32>, Option<String>);

/// Decides the status. Order matters: what Assay did (cancel, timeout, output cap) first, then
/// what the cgroup saw (OOM), then whether the runtime ever started the program, then the exit.
///
/// `exit` is the runtime process's status; `stderr` what the run wrote there (the runtime's
/// complaint when it failed before the program started).
pub(crate) fn classify(
    exit: ExitStatus,
    kill_reason: Option<RunStatus>,
    oom_events: u64,
    started_ok: bool,
    stderr: &[u8],
) -> Classified {
    let code = exit.code();
    // tini reports a child killed by signal N as exit code 128 + N.
    let signal = exit
        .signal()
        .or_else(|| code.filter(|c| (129..=192).contains(c)).map(|c| c - 128));
    if let Some(reason) = kill_reason {
        return (reason, code, signal, None);
    }
    if oom_events > 0 {
        return (RunStatus::MemoryExceeded, code, signal, None);
    }
    if !started_ok {
        let msg = String::from_utf8_lossy(stderr).trim().to_string();
        return (
            RunStatus::Errored,
            code,
            signal,
            Some(format!(
                "the runtime failed before the program started: {msg}"
            )),
        );
    }
    if exit.signal().is_some() {
        // The runtime process itself was killed (not the program: its fate arrives as tini's
        // exit code). The sandbox was killed with it.
        return (
            RunStatus::Errored,
            None,
            exit.signal(),
            Some("the runtime process died during the run".into()),
        );
    }
    match code {
        Some(0) => (RunStatus::Succeeded, Some(0), None, None),
        _ => (RunStatus::Failed, code, signal, None),
    }
}

/// What the runtime reports when tini ended with `code`.
#[cfg(any(test, feature = "fake"))]
pub(crate) fn exited(code: u8) -> ExitStatus {
    ExitStatus::from_raw(i32::from(code) << 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunStatus::*;

    /// A runtime process killed by signal `s` (not the program: that arrives as 128 + N).
    fn killed(s: i32) -> ExitStatus {
        ExitStatus::from_raw(s)
    }

    /// Every branch, and the precedence between them: what Assay did, then OOM, then whether
    /// the program started, then the exit. Columns: exit, kill reason, OOM events, pid file
    /// written, then the expected status, exit code, signal and a fragment of the error.
    #[test]
    fn every_branch_in_its_order() {
        let fate = Some("runtime process died");
        let early = Some("failed before the program started: no such file");
        #[rustfmt::skip]
        let rows = [
            // The exit alone.
            (exited(0), None, 0, true, (Succeeded, Some(0), None), None),
            (exited(7), None, 0, true, (Failed, Some(7), None), None),
            (exited(128), None, 0, true, (Failed, Some(128), None), None),
            // tini reports a child killed by signal N as 128 + N (N up to 64).
            (exited(139), None, 0, true, (Failed, Some(139), Some(11)), None),
            (exited(192), None, 0, true, (Failed, Some(192), Some(64)), None),
            (exited(193), None, 0, true, (Failed, Some(193), None), None),
            // The runtime process itself died: a platform failure.
            (killed(9), None, 0, true, (Errored, None, Some(9)), fate),
            // The runtime never started the program (no pid file), even if it then died.
            (exited(1), None, 0, false, (Errored, Some(1), None), early),
            (killed(9), None, 0, false, (Errored, None, Some(9)), early),
            // OOM beats the start check and the exit.
            (exited(137), None, 1, true, (MemoryExceeded, Some(137), Some(9)), None),
            (exited(0), None, 2, true, (MemoryExceeded, Some(0), None), None),
            (exited(1), None, 1, false, (MemoryExceeded, Some(1), None), None),
            // What Assay did beats everything.
            (exited(137), Some(TimedOut), 0, true, (TimedOut, Some(137), Some(9)), None),
            (exited(137), Some(TimedOut), 1, true, (TimedOut, Some(137), Some(9)), None),
            (exited(1), Some(Cancelled), 0, false, (Cancelled, Some(1), None), None),
            (exited(0), Some(Cancelled), 0, true, (Cancelled, Some(0), None), None),
            (killed(9), Some(OutputExceeded), 1, true, (OutputExceeded, None, Some(9)), None),
        ];
        for (i, (exit, kill, oom, started, want, fragment)) in rows.into_iter().enumerate() {
            let (status, code, signal, error) =
                classify(exit, kill, oom, started, b"  no such file\n");
            assert_eq!((status, code, signal), want, "row {i}");
            match (fragment, &error) {
                (None, None) => {}
                (Some(f), Some(e)) => assert!(e.contains(f), "row {i}: error {e:?}"),
                _ => panic!("row {i}: error {error:?}, expected {fragment:?}"),
            }
        }
    }
}
