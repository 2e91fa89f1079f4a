//! Stored formats: how an evaluation's structured columns are written (as JSON) by every
//! backend. They are not wire formats (`assay-api`) and not domain types: a stored row must keep
//! loading after the code changed.
//!
//! Rules: a field added later has a default (so rows written before it still load); fields a
//! row has that the code no longer knows are ignored (so removing a field never breaks old rows);
//! nothing here refuses unknown fields.

use crate::event::EventPayload;
use crate::{Result, StoreError};
use assay_domain::{LimitPolicy, Limits, OutputStream, ProgramFile, RunResult, RunStatus};
use serde::{Deserialize, Serialize};

/// How a run ended, as stored: everything but the output (which lives in the event log, once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub status: RunStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub wall_ms: u64,
    #[serde(default)]
    pub cpu_ms: u64,
    #[serde(default)]
    pub peak_memory_bytes: u64,
    #[serde(default)]
    pub stdout_truncated: bool,
    #[serde(default)]
    pub stderr_truncated: bool,
    #[serde(default)]
    pub runtime: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Bytes of stdout the run kept. Added in 0.2 (with the output moving out of this record):
    /// `None` on rows written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_bytes: Option<u64>,
    /// Bytes of stderr the run kept (`None` before 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_bytes: Option<u64>,
    /// The whole stdout, published to the blob store by the fenced finish (`None`: the event
    /// log holds all of it, as before 0.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_blob: Option<BlobRef>,
    /// The whole stderr in the blob store (`None` as for stdout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_blob: Option<BlobRef>,
}

/// An object of the blob store that holds one output stream whole. The key carries the
/// attempt's fencing token, so a zombie attempt writes elsewhere and is never published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub key: String,
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex.
    #[serde(default)]
    pub sha256: String,
}

impl RunRecord {
    /// What is stored of a run result: all but the output.
    pub fn of(r: &RunResult) -> RunRecord {
        RunRecord {
            status: r.status,
            exit_code: r.exit_code,
            signal: r.signal,
            wall_ms: r.wall_ms,
            cpu_ms: r.cpu_ms,
            peak_memory_bytes: r.peak_memory_bytes,
            stdout_truncated: r.stdout_truncated,
            stderr_truncated: r.stderr_truncated,
            runtime: r.runtime.clone(),
            error: r.error.clone(),
            stdout_bytes: Some(r.stdout.len() as u64),
            stderr_bytes: Some(r.stderr.len() as u64),
            stdout_blob: None,
            stderr_blob: None,
        }
    }

    /// The keys of the blob objects this result references.
    pub fn blob_keys(&self) -> Vec<String> {
        [&self.stdout_blob, &self.stderr_blob]
            .into_iter()
            .flatten()
            .map(|b| b.key.clone())
            .collect()
    }

    /// The whole result again, with the output read from the event log.
    pub fn with_output(&self, output: Output) -> RunResult {
        RunResult {
            status: self.status,
            exit_code: self.exit_code,
            signal: self.signal,
            wall_ms: self.wall_ms,
            cpu_ms: self.cpu_ms,
            peak_memory_bytes: self.peak_memory_bytes,
            stdout: output.stdout,
            stderr: output.stderr,
            stdout_truncated: self.stdout_truncated,
            stderr_truncated: self.stderr_truncated,
            runtime: self.runtime.clone(),
            error: self.error.clone(),
        }
    }
}

/// An evaluation's output: the concatenation of its `stdout` and `stderr` events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Adds an event's output (other events add nothing).
    pub fn push(&mut self, payload: &EventPayload) {
        if let EventPayload::Output { stream, text } = payload {
            match stream {
                OutputStream::Stdout => self.stdout.push_str(text),
                OutputStream::Stderr => self.stderr.push_str(text),
            }
        }
    }
}

impl<'a> FromIterator<&'a EventPayload> for Output {
    fn from_iter<I: IntoIterator<Item = &'a EventPayload>>(events: I) -> Output {
        let mut out = Output::default();
        for e in events {
            out.push(e);
        }
        out
    }
}

/// Limits as stored. A limit missing from a row (one added after the row was written) takes
/// the built-in default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct LimitsRecord {
    wall_time_ms: u64,
    cpu_time_ms: u64,
    memory_bytes: u64,
    pids: u32,
    output_bytes: u64,
    tmpfs_bytes: u64,
    open_files: u32,
    file_size_bytes: u64,
    cpu_millicores: u32,
}

impl Default for LimitsRecord {
    fn default() -> Self {
        LimitsRecord::from(LimitPolicy::default().defaults)
    }
}

impl From<Limits> for LimitsRecord {
    fn from(l: Limits) -> Self {
        LimitsRecord {
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

impl From<LimitsRecord> for Limits {
    fn from(l: LimitsRecord) -> Self {
        Limits {
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

/// A program file as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FileRecord {
    path: String,
    content: String,
}

fn corrupt(what: &str) -> impl FnOnce(serde_json::Error) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("corrupt {what}: {e}"))
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("stored records serialise")
}

pub fn encode_limits(l: &Limits) -> String {
    to_json(&LimitsRecord::from(*l))
}

pub fn decode_limits(s: &str) -> Result<Limits> {
    serde_json::from_str::<LimitsRecord>(s)
        .map(Limits::from)
        .map_err(corrupt("limits"))
}

pub fn encode_files(files: &[ProgramFile]) -> String {
    let records: Vec<FileRecord> = files
        .iter()
        .map(|f| FileRecord {
            path: f.path.clone(),
            content: f.content.clone(),
        })
        .collect();
    to_json(&records)
}

pub fn decode_files(s: &str) -> Result<Vec<ProgramFile>> {
    let records: Vec<FileRecord> = serde_json::from_str(s).map_err(corrupt("files"))?;
    Ok(records
        .into_iter()
        .map(|f| ProgramFile {
            path: f.path,
            content: f.content,
        })
        .collect())
}

pub fn encode_result(r: &RunRecord) -> String {
    to_json(r)
}

pub fn decode_result(s: &str) -> Result<RunRecord> {
    serde_json::from_str(s).map_err(corrupt("result"))
}

pub fn encode_labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    to_json(labels)
}

pub fn decode_labels(s: &str) -> Result<std::collections::BTreeMap<String, String>> {
    serde_json::from_str(s).map_err(corrupt("labels"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result row exactly as version 0.1 wrote it: with the output inside, and without the
    /// byte counts added since.
    const RESULT_0_1: &str = r#"{"status":"succeeded","exit_code":0,"signal":null,"wall_ms":27,
        "cpu_ms":13,"peak_memory_bytes":3641344,"stdout":"hello\n","stderr":"",
        "stdout_truncated":false,"stderr_truncated":false,"runtime":"crun"}"#;

    #[test]
    fn a_result_written_before_fields_were_added_or_removed_still_loads() {
        let r = decode_result(RESULT_0_1).unwrap();
        assert_eq!(r.status, RunStatus::Succeeded);
        assert_eq!(
            (r.exit_code, r.wall_ms, r.runtime.as_str()),
            (Some(0), 27, "crun")
        );
        assert_eq!(
            (r.stdout_bytes, r.stderr_bytes),
            (None, None),
            "unknown, not zero"
        );
        assert_eq!(r.error, None);
        // The output is not part of the record any more, whatever old rows hold.
        assert!(!encode_result(&r).contains("hello"));
    }

    #[test]
    fn results_round_trip_without_their_output() {
        let mut run = RunResult::platform_error("runc", "boom");
        run.stdout = "out".into();
        run.stderr = "error!".into();
        let rec = RunRecord::of(&run);
        assert_eq!((rec.stdout_bytes, rec.stderr_bytes), (Some(3), Some(6)));
        let text = encode_result(&rec);
        assert!(
            !text.contains("out\"") && !text.contains("error!"),
            "{text}"
        );
        let back = decode_result(&text).unwrap();
        assert_eq!(back, rec);
        let output = Output {
            stdout: "out".into(),
            stderr: "error!".into(),
        };
        assert_eq!(back.with_output(output), run);
    }

    #[test]
    fn output_is_the_concatenation_of_output_events_per_stream() {
        let events = [
            EventPayload::Output {
                stream: OutputStream::Stdout,
                text: "a".into(),
            },
            EventPayload::status(assay_domain::EvaluationStatus::Running, 1),
            EventPayload::Output {
                stream: OutputStream::Stderr,
                text: "x".into(),
            },
            EventPayload::Output {
                stream: OutputStream::Stdout,
                text: "b\n".into(),
            },
        ];
        let out: Output = events.iter().collect();
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("ab\n", "x"));
    }

    #[test]
    fn limits_missing_from_a_row_take_the_defaults_and_unknown_ones_are_ignored() {
        let defaults = LimitPolicy::default().defaults;
        let l = decode_limits(r#"{"wall_time_ms": 5000, "gpu_seconds": 3}"#).unwrap();
        assert_eq!(l.wall_time_ms, 5000);
        assert_eq!(l.memory_bytes, defaults.memory_bytes);
        assert_eq!(decode_limits(&encode_limits(&defaults)).unwrap(), defaults);
        assert!(matches!(
            decode_limits("\"five\""),
            Err(StoreError::Backend(m)) if m.contains("limits")
        ));
    }

    #[test]
    fn files_round_trip_and_tolerate_extra_fields() {
        let files = vec![ProgramFile {
            path: "main.py".into(),
            content: "print(1)".into(),
        }];
        assert_eq!(decode_files(&encode_files(&files)).unwrap(), files);
        let extra = r#"[{"path": "main.py", "content": "print(1)", "mode": 420}]"#;
        assert_eq!(decode_files(extra).unwrap(), files);
    }
}
