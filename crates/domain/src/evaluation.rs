//! Evaluations: a submitted program's life from `queued` to a terminal status, the retry policy,
//! and validation of submissions.

use crate::limits::{LimitError, LimitOverrides, LimitPolicy, Limits};
use crate::program::{Program, ProgramError, ProgramFile};
use crate::result::RunStatus;
use crate::syntax::{SyntaxError, check_python};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Status of an evaluation. `queued → running → terminal`; `running → queued` only when the
/// platform failed and a retry is due. Terminal statuses never change (except `dead`, which an
/// operator may requeue).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    MemoryExceeded,
    OutputExceeded,
    Cancelled,
    /// The platform failed on the last allowed attempt... never used as a final state by the
    /// queue (it retries, then dead-letters); kept so a run result maps one to one.
    Errored,
    /// Dead-lettered: platform failures exhausted the attempts. The reason is kept.
    Dead,
}

impl EvaluationStatus {
    pub const ALL: [EvaluationStatus; 10] = [
        EvaluationStatus::Queued,
        EvaluationStatus::Running,
        EvaluationStatus::Succeeded,
        EvaluationStatus::Failed,
        EvaluationStatus::TimedOut,
        EvaluationStatus::MemoryExceeded,
        EvaluationStatus::OutputExceeded,
        EvaluationStatus::Cancelled,
        EvaluationStatus::Errored,
        EvaluationStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EvaluationStatus::Queued => "queued",
            EvaluationStatus::Running => "running",
            EvaluationStatus::Succeeded => "succeeded",
            EvaluationStatus::Failed => "failed",
            EvaluationStatus::TimedOut => "timed_out",
            EvaluationStatus::MemoryExceeded => "memory_exceeded",
            EvaluationStatus::OutputExceeded => "output_exceeded",
            EvaluationStatus::Cancelled => "cancelled",
            EvaluationStatus::Errored => "errored",
            EvaluationStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<EvaluationStatus> {
        EvaluationStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, EvaluationStatus::Queued | EvaluationStatus::Running)
    }
}

impl fmt::Display for EvaluationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<RunStatus> for EvaluationStatus {
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Succeeded => EvaluationStatus::Succeeded,
            RunStatus::Failed => EvaluationStatus::Failed,
            RunStatus::TimedOut => EvaluationStatus::TimedOut,
            RunStatus::MemoryExceeded => EvaluationStatus::MemoryExceeded,
            RunStatus::OutputExceeded => EvaluationStatus::OutputExceeded,
            RunStatus::Cancelled => EvaluationStatus::Cancelled,
            RunStatus::Errored => EvaluationStatus::Errored,
        }
    }
}

/// Retries for platform failures only: exponential backoff, capped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_backoff_ms: 500,
            max_backoff_ms: 30_000,
        }
    }
}

/// What the queue does after an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterAttempt {
    /// The evaluation is over with this status.
    Final(EvaluationStatus),
    /// Platform failure with attempts left: back to the queue, not before `after`.
    Retry { after: Duration },
    /// Platform failure on the last attempt: dead-lettered with this reason.
    Dead { reason: String },
}

impl RetryPolicy {
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_backoff_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
        Duration::from_millis(exp.min(self.max_backoff_ms))
    }

    /// Who is to blame decides: a failure of the user's code is final; a platform failure
    /// (`errored`, or a lost lease) is retried until `max_attempts`, then dead.
    pub fn after_attempt(
        &self,
        status: RunStatus,
        attempt: u32,
        platform_reason: &str,
    ) -> AfterAttempt {
        if !status.is_platform_failure() {
            return AfterAttempt::Final(status.into());
        }
        self.after_platform_failure(attempt, platform_reason)
    }

    pub fn after_platform_failure(&self, attempt: u32, reason: &str) -> AfterAttempt {
        if attempt >= self.max_attempts {
            AfterAttempt::Dead {
                reason: format!("{reason} (attempt {attempt} of {})", self.max_attempts),
            }
        } else {
            AfterAttempt::Retry {
                after: self.backoff(attempt),
            }
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    Python,
}

impl Language {
    pub const ALL: [Language; 1] = [Language::Python];

    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
        }
    }

    /// `UnsupportedLanguage` unless `s` names a supported language.
    pub fn parse(s: &str) -> Result<Language, ValidationError> {
        Language::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| ValidationError::UnsupportedLanguage(s.into()))
    }
}

/// A submission that passed validation: ready to store and queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    pub language: Language,
    pub program: Program,
    pub stdin: String,
    pub limits: Limits,
    pub priority: i32,
    pub labels: BTreeMap<String, String>,
}

pub const MAX_STDIN_BYTES: usize = 1 << 20;
pub const MAX_LABELS: usize = 16;
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -100..=100;

/// Why a submission was refused. `code` is stable and machine-readable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("unsupported language {0:?} (supported: python)")]
    UnsupportedLanguage(String),
    #[error("give either `code` or `files` (with `entrypoint`), not both and not neither")]
    ProgramShape,
    #[error("the program is empty")]
    EmptyCode,
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error("syntax error at {0}")]
    Syntax(SyntaxError),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("stdin is {0} bytes; at most {MAX_STDIN_BYTES}")]
    StdinTooLarge(usize),
    #[error("priority {0} is outside -100..=100")]
    Priority(i32),
    #[error("invalid labels: {0}")]
    Labels(String),
}

/// Labels: at most 16; keys of 1-63 letters, digits, `-`, `_`, `.`, `/`; values of at most 256
/// bytes without control characters.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    if labels.len() > MAX_LABELS {
        return Err(ValidationError::Labels(format!(
            "at most {MAX_LABELS} labels"
        )));
    }
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= 63
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        if !key_ok {
            return Err(ValidationError::Labels(format!(
                "key {k:?}: 1-63 characters of letters, digits, '-', '_', '.', '/'"
            )));
        }
        if v.len() > 256 || v.chars().any(char::is_control) {
            return Err(ValidationError::Labels(format!(
                "value of {k:?}: at most 256 bytes, no control characters"
            )));
        }
    }
    Ok(())
}

/// How a submission gives its program: one piece of code (run as `main.py`), or files and the
/// entrypoint among them (default `main.py`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgramSource {
    Code(String),
    Files {
        files: Vec<ProgramFile>,
        entrypoint: Option<String>,
    },
}

/// A submission as received, before any rule was checked. The API's request body maps onto it
/// field by field; [`Draft::validate`] applies every rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    pub language: String,
    /// `None`: the request gave no program, or an ambiguous one (`code` and `files`, or an
    /// `entrypoint` beside `code`).
    pub program: Option<ProgramSource>,
    pub stdin: Option<String>,
    pub limits: Option<LimitOverrides>,
    pub priority: Option<i32>,
    pub labels: Option<BTreeMap<String, String>>,
}

impl Draft {
    /// Checks every rule, in this order: language, program shape, paths, emptiness, Python
    /// syntax of every `.py` file and of the entrypoint, limits against `policy`, stdin size,
    /// priority, labels. The first broken rule is the error.
    pub fn validate(self, policy: &LimitPolicy) -> Result<Submission, ValidationError> {
        let language = Language::parse(&self.language)?;
        let program = match self.program.ok_or(ValidationError::ProgramShape)? {
            ProgramSource::Code(code) => {
                if code.trim().is_empty() {
                    return Err(ValidationError::EmptyCode);
                }
                Program::new(
                    vec![ProgramFile {
                        path: "main.py".into(),
                        content: code,
                    }],
                    "main.py",
                )?
            }
            ProgramSource::Files { files, entrypoint } => {
                let entry = entrypoint.unwrap_or_else(|| "main.py".into());
                let p = Program::new(files, entry)?;
                if p.files().iter().all(|f| f.content.trim().is_empty()) {
                    return Err(ValidationError::EmptyCode);
                }
                p
            }
        };
        for f in program.files() {
            if f.path.ends_with(".py") || f.path == program.entrypoint() {
                check_python(&f.path, &f.content).map_err(ValidationError::Syntax)?;
            }
        }
        let limits = policy.resolve(&self.limits.unwrap_or_default())?;
        let stdin = self.stdin.unwrap_or_default();
        if stdin.len() > MAX_STDIN_BYTES {
            return Err(ValidationError::StdinTooLarge(stdin.len()));
        }
        let priority = self.priority.unwrap_or(0);
        if !PRIORITY_RANGE.contains(&priority) {
            return Err(ValidationError::Priority(priority));
        }
        let labels = self.labels.unwrap_or_default();
        check_labels(&labels)?;
        Ok(Submission {
            language,
            program,
            stdin,
            limits,
            priority,
            labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(code: &str) -> Draft {
        Draft {
            language: "python".into(),
            program: Some(ProgramSource::Code(code.into())),
            stdin: None,
            limits: None,
            priority: None,
            labels: None,
        }
    }

    #[test]
    fn statuses_round_trip_and_terminality() {
        for s in EvaluationStatus::ALL {
            assert_eq!(EvaluationStatus::parse(s.as_str()), Some(s));
        }
        assert!(!EvaluationStatus::Queued.is_terminal());
        assert!(!EvaluationStatus::Running.is_terminal());
        assert!(EvaluationStatus::Dead.is_terminal());
        assert_eq!(
            EvaluationStatus::from(RunStatus::TimedOut),
            EvaluationStatus::TimedOut
        );
    }

    #[test]
    fn retries_only_platform_failures() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.after_attempt(RunStatus::Failed, 1, ""),
            AfterAttempt::Final(EvaluationStatus::Failed)
        );
        assert_eq!(
            p.after_attempt(RunStatus::TimedOut, 1, ""),
            AfterAttempt::Final(EvaluationStatus::TimedOut)
        );
        assert_eq!(
            p.after_attempt(RunStatus::Errored, 1, "runtime crashed"),
            AfterAttempt::Retry {
                after: Duration::from_millis(500)
            }
        );
        assert_eq!(
            p.after_attempt(RunStatus::Errored, 2, "x"),
            AfterAttempt::Retry {
                after: Duration::from_millis(1000)
            }
        );
        match p.after_attempt(RunStatus::Errored, 3, "runtime crashed") {
            AfterAttempt::Dead { reason } => {
                assert!(reason.contains("runtime crashed") && reason.contains("3 of 3"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.backoff(40), Duration::from_millis(30_000));
    }

    #[test]
    fn valid_submission() {
        let s = req("print(1)").validate(&LimitPolicy::default()).unwrap();
        assert_eq!(s.program.entrypoint(), "main.py");
        assert_eq!(s.priority, 0);
    }

    #[test]
    fn each_rule_refuses_with_its_own_error() {
        let p = LimitPolicy::default();
        let err = |d: Draft| d.validate(&p).unwrap_err();
        assert!(matches!(err(req("def f(:\n")), ValidationError::Syntax(_)));
        assert_eq!(err(req("   \n")), ValidationError::EmptyCode);
        assert_eq!(
            err(Draft {
                language: "cobol".into(),
                ..req("x")
            }),
            ValidationError::UnsupportedLanguage("cobol".into())
        );
        assert_eq!(
            err(Draft {
                program: None,
                ..req("x")
            }),
            ValidationError::ProgramShape
        );
        assert!(matches!(
            err(Draft {
                limits: Some(LimitOverrides {
                    memory_bytes: Some(1 << 40),
                    ..Default::default()
                }),
                ..req("print(1)")
            }),
            ValidationError::Limit(LimitError::AboveMaximum { .. })
        ));
        assert_eq!(
            err(Draft {
                priority: Some(1000),
                ..req("print(1)")
            }),
            ValidationError::Priority(1000)
        );
        let mut labels = BTreeMap::new();
        labels.insert("bad key!".into(), "v".into());
        assert!(matches!(
            err(Draft {
                labels: Some(labels),
                ..req("print(1)")
            }),
            ValidationError::Labels(_)
        ));
        assert!(matches!(err(req("x = '\0'")), ValidationError::Syntax(_)));
        assert_eq!(
            err(Draft {
                stdin: Some("x".repeat(MAX_STDIN_BYTES + 1)),
                ..req("print(1)")
            }),
            ValidationError::StdinTooLarge(MAX_STDIN_BYTES + 1)
        );
    }

    #[test]
    fn syntax_error_names_the_file_line_and_column() {
        let r = Draft {
            program: Some(ProgramSource::Files {
                files: vec![
                    ProgramFile {
                        path: "main.py".into(),
                        content: "import util\n".into(),
                    },
                    ProgramFile {
                        path: "util.py".into(),
                        content: "x = 1\nif x\n".into(),
                    },
                ],
                entrypoint: Some("main.py".into()),
            }),
            ..req("")
        };
        match r.validate(&LimitPolicy::default()) {
            Err(ValidationError::Syntax(e)) => {
                assert_eq!(e.file, "util.py");
                assert_eq!(e.line, 2);
            }
            other => panic!("{other:?}"),
        }
    }
}
