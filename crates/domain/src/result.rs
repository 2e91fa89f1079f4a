//! How a run ended.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Terminal status of one sandboxed run.
///
/// Everything but `Errored` describes the user's program; `Errored` means the platform failed
/// (the runtime could not start the sandbox, for instance) and says nothing about the code.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    TimedOut,
    MemoryExceeded,
    OutputExceeded,
    Cancelled,
    Errored,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::MemoryExceeded,
        RunStatus::OutputExceeded,
        RunStatus::Cancelled,
        RunStatus::Errored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::MemoryExceeded => "memory_exceeded",
            RunStatus::OutputExceeded => "output_exceeded",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Errored => "errored",
        }
    }

    /// True when the platform, not the program, is to blame (such runs may be retried).
    pub fn is_platform_failure(self) -> bool {
        self == RunStatus::Errored
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which output stream a chunk belongs to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// The outcome of one run, as the CLI's `--json` prints it and the API will store it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    pub status: RunStatus,
    /// Exit code of the program, when it exited on its own (or with `128 + signal`).
    pub exit_code: Option<i32>,
    /// Signal that ended the program, when one did.
    pub signal: Option<i32>,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub peak_memory_bytes: u64,
    /// Captured stdout (at most the output limit; invalid UTF-8 replaced with U+FFFD).
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Which OCI runtime ran the program (`runc`, `crun`, `runsc`).
    pub runtime: String,
    /// For `errored` runs: what went wrong in the platform. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RunResult {
    /// The result of a run the platform could not carry out (nothing ran, or it was cut off by
    /// a platform fault): `errored`, with the reason.
    pub fn platform_error(runtime: &str, error: impl Into<String>) -> RunResult {
        RunResult {
            status: RunStatus::Errored,
            exit_code: None,
            signal: None,
            wall_ms: 0,
            cpu_ms: 0,
            peak_memory_bytes: 0,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            runtime: runtime.into(),
            error: Some(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_stable() {
        for s in RunStatus::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert!(RunStatus::Errored.is_platform_failure());
        assert!(!RunStatus::TimedOut.is_platform_failure());
    }
}
