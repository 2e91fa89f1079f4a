//! Evaluations on the wire: what a submission sends, what the API shows of one evaluation (in
//! full, or as a summary in lists), and the query parameters of those routes.

use crate::DEFAULT_PAGE;
use assay_domain::{
    Draft, EvaluationStatus, Language, LimitOverrides, LimitPolicy, Limits, ProgramFile,
    ProgramSource, RunResult, RunStatus, Submission, ValidationError,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// The body of `POST /v1/evaluations` (and each item of a batch). Unknown fields are refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// `python` (the only language for now).
    #[schema(example = "python")]
    pub language: String,
    /// The program as one file (`main.py`). Exactly one of `code` and `files` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "print(6*7)")]
    pub code: Option<String>,
    /// The program as several files; `entrypoint` names the one to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<ProgramFile>>,
    /// With `files`: the file to run (default `main.py`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// The program's standard input (at most 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Limits above the operator's (or the tenant's) maximum are refused, never clamped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitOverrides>,
    /// Higher runs first; -100..=100, default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// At most 16 `key: value` pairs to find the evaluation by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

impl SubmitRequest {
    /// The submission as the domain's rules see it.
    pub fn to_draft(&self) -> Draft {
        let program = match (&self.code, &self.files, &self.entrypoint) {
            (Some(code), None, None) => Some(ProgramSource::Code(code.clone())),
            (None, Some(files), entrypoint) => Some(ProgramSource::Files {
                files: files.clone(),
                entrypoint: entrypoint.clone(),
            }),
            _ => None,
        };
        Draft {
            language: self.language.clone(),
            program,
            stdin: self.stdin.clone(),
            limits: self.limits,
            priority: self.priority,
            labels: self.labels.clone(),
        }
    }

    /// Checks every rule (Python syntax included) against the operator's limit policy.
    pub fn validate(&self, policy: &LimitPolicy) -> Result<Submission, ValidationError> {
        self.to_draft().validate(policy)
    }
}

/// The body of `POST /v1/evaluations/batch`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 1000 submissions, validated all or nothing.
    pub items: Vec<SubmitRequest>,
}

/// The limits a run had (every field a hard cap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LimitsView {
    /// Wall-clock time, in milliseconds.
    pub wall_time_ms: u64,
    /// CPU time of all processes together, in milliseconds.
    pub cpu_time_ms: u64,
    /// Memory of all processes together (no swap; `/tmp` included), in bytes.
    pub memory_bytes: u64,
    /// Processes and threads alive at once.
    pub pids: u32,
    /// Bytes kept of each of stdout and stderr; more ends the run (`output_exceeded`).
    pub output_bytes: u64,
    /// Size of the writable `/tmp` (and `/dev/shm`), in bytes.
    pub tmpfs_bytes: u64,
    /// Open file descriptors per process.
    pub open_files: u32,
    /// Largest file a process may write, in bytes.
    pub file_size_bytes: u64,
    /// CPU bandwidth in thousandths of a core.
    pub cpu_millicores: u32,
}

impl From<Limits> for LimitsView {
    fn from(l: Limits) -> Self {
        LimitsView {
            wall_time_ms: l.wall_time_ms,
            cpu_time_ms: l.cpu_time_ms,
            memory_bytes: l.memory_bytes,
            pids: l.pids,
            output_bytes: l.output_bytes,
            tmpfs_bytes: l.tmpfs_bytes,
            open_files: l.open_files,
            file_size_bytes: l.file_size_bytes,
            cpu_millicores: l.cpu_millicores,
        }
    }
}

/// How one run ended, with its whole output. `assay run --json` prints this object too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunResultView {
    pub status: RunStatus,
    /// Exit code, when the program exited on its own (or `128 + signal`).
    pub exit_code: Option<i32>,
    /// The signal that ended the program, when one did.
    pub signal: Option<i32>,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub peak_memory_bytes: u64,
    /// Captured stdout (at most the output limit; invalid UTF-8 replaced with U+FFFD). When
    /// `stdout_partial`, only the stream's first 64 KiB: the whole stream is at
    /// `GET /v1/evaluations/{id}/output/stdout`.
    pub stdout: String,
    /// Captured stderr, as `stdout`.
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Bytes of stdout the run kept (under the output limit), however many `stdout` shows.
    /// Absent on evaluations finished before this field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_bytes: Option<u64>,
    /// Bytes of stderr the run kept, as `stdout_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_bytes: Option<u64>,
    /// `stdout` is a preview (the first 64 KiB, or the stream was not UTF-8): the whole
    /// stream, byte for byte, is at `GET /v1/evaluations/{id}/output/stdout`.
    #[serde(default)]
    pub stdout_partial: bool,
    /// `stderr` is a preview, as `stdout_partial`.
    #[serde(default)]
    pub stderr_partial: bool,
    /// The OCI runtime that ran the program (`runc`, `crun`, `runsc`).
    pub runtime: String,
    /// For `errored` runs: what went wrong in the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<RunResult> for RunResultView {
    fn from(r: RunResult) -> Self {
        RunResultView {
            status: r.status,
            exit_code: r.exit_code,
            signal: r.signal,
            wall_ms: r.wall_ms,
            cpu_ms: r.cpu_ms,
            peak_memory_bytes: r.peak_memory_bytes,
            stdout_bytes: Some(r.stdout.len() as u64),
            stderr_bytes: Some(r.stderr.len() as u64),
            stdout_partial: false,
            stderr_partial: false,
            stdout: r.stdout,
            stderr: r.stderr,
            stdout_truncated: r.stdout_truncated,
            stderr_truncated: r.stderr_truncated,
            runtime: r.runtime,
            error: r.error,
        }
    }
}

/// How one run ended, without its output (lists).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunSummaryView {
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub peak_memory_bytes: u64,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub runtime: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One evaluation in full, as `GET /v1/evaluations/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EvaluationView {
    pub id: String,
    /// The tenant it belongs to.
    pub tenant: String,
    pub status: EvaluationStatus,
    pub language: Language,
    pub entrypoint: String,
    pub priority: i32,
    pub labels: BTreeMap<String, String>,
    pub limits: LimitsView,
    /// Attempts started (more than one when the platform failed and the run was retried).
    pub attempts: u32,
    pub max_attempts: u32,
    /// RFC 3339.
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// How the run ended, with its output; absent until it did (and for evaluations cancelled
    /// while queued, and dead letters).
    pub result: Option<RunResultView>,
    /// Dead-letter reason or the last platform error.
    pub error: Option<String>,
    pub worker_id: Option<String>,
    pub cancel_requested: bool,
}

/// One evaluation in a list: everything but the output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EvaluationSummary {
    pub id: String,
    pub tenant: String,
    pub status: EvaluationStatus,
    pub language: Language,
    pub entrypoint: String,
    pub priority: i32,
    pub labels: BTreeMap<String, String>,
    pub attempts: u32,
    pub max_attempts: u32,
    /// RFC 3339.
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// How the run ended (exit code, times, runtime), without stdout and stderr: those are on
    /// `GET /v1/evaluations/{id}`.
    pub result: Option<RunSummaryView>,
    pub error: Option<String>,
    pub cancel_requested: bool,
}

/// A page of evaluations, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EvaluationPage {
    pub items: Vec<EvaluationSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The answer to a batch: the evaluations, in the order of the request's items.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    pub items: Vec<EvaluationView>,
}

/// Query of `POST /v1/evaluations`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubmitParams {
    /// Wait up to this many seconds (at most 60) for the result: 200 with the finished
    /// evaluation if it ends in time, else 202 as without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<u64>,
}

/// Query of `GET /v1/evaluations`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<EvaluationStatus>)]
    pub status: Option<String>,
    /// `key=value`: only evaluations with this label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// RFC 3339: created at or after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_after: Option<String>,
    /// RFC 3339: created before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<String>,
    /// From a previous page's `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Query of the plain paged lists (`GET /v1/dead-letters`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// From a previous page's `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A page size from a query: 1 to 1000, 100 when absent.
pub fn page_size(limit: Option<u32>) -> Result<u32, crate::ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=crate::MAX_PAGE).contains(&limit) {
        return Err(crate::ApiError::invalid_query("limit must be 1 to 1000"));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_bodies_refuse_unknown_fields_and_map_onto_the_domain() {
        let bad = serde_json::from_value::<SubmitRequest>(
            json!({"language": "python", "code": "print(1)", "priority_": 3}),
        );
        assert!(bad.is_err());
        let r: SubmitRequest =
            serde_json::from_value(json!({"language": "python", "code": "print(1)"})).unwrap();
        let s = r.validate(&LimitPolicy::default()).unwrap();
        assert_eq!(s.program.entrypoint(), "main.py");
        // `code` with an entrypoint, or both shapes, is no program at all.
        for ambiguous in [
            json!({"language": "python", "code": "print(1)", "entrypoint": "main.py"}),
            json!({"language": "python", "code": "print(1)", "files": []}),
            json!({"language": "python"}),
        ] {
            let r: SubmitRequest = serde_json::from_value(ambiguous).unwrap();
            assert_eq!(
                r.validate(&LimitPolicy::default()).unwrap_err(),
                ValidationError::ProgramShape
            );
        }
        // Only what is set goes on the wire.
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"language": "python", "code": "print(1)"})
        );
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(None).unwrap(), 100);
        assert_eq!(page_size(Some(1000)).unwrap(), 1000);
        assert!(page_size(Some(0)).is_err() && page_size(Some(1001)).is_err());
    }
}
