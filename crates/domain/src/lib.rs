//! Assay's domain: the vocabulary every other crate shares.
//!
//! Limits (with operator defaults and maxima), run statuses, run results, roles, submissions and
//! their validation, and the small parsers for human-written durations and sizes. This crate performs no I/O: no files, no processes, no
//! network. Everything here is plain data and pure functions, so it is tested by unit tests alone.
#![forbid(unsafe_code)]

mod evaluation;
mod limits;
mod parse;
mod program;
mod quota;
mod result;
mod role;
mod syntax;

pub use evaluation::{
    AfterAttempt, Draft, EvaluationStatus, Language, MAX_LABELS, MAX_STDIN_BYTES, PRIORITY_RANGE,
    ProgramSource, RetryPolicy, Submission, ValidationError, check_labels,
};
pub use limits::{LimitError, LimitOverrides, LimitPolicy, Limits};
pub use parse::{ParseError, format_size, parse_duration, parse_size};
pub use program::{Program, ProgramError, ProgramFile};
pub use quota::{
    DEFAULT_BURST, DEFAULT_MAX_QUEUED, DEFAULT_MAX_QUEUED_TOTAL, DEFAULT_RATE_PER_MINUTE,
    QuotaError, QuotaPolicy, TenantQuota,
};
pub use result::{OutputStream, RunResult, RunStatus};
pub use role::Role;
pub use syntax::{SyntaxError, check_python};
