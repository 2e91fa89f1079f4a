//! Errors on the wire: an HTTP status and a stable, machine-readable code.
//!
//! Every refusal the API gives is an [`ApiError`]: the [`ErrorCode`] decides the status, the
//! message is for people, `details` for programs. The body is always
//! `{"error": {"code", "message", "details"}}` ([`ErrorBody`]).

use assay_domain::{LimitError, ProgramError, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt;
use utoipa::ToSchema;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($name:literal, $status:literal), )*) => {
        /// Every error code the API gives. Stable: codes are added, never renamed.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as sent (`snake_case`).
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* }
            }

            /// The HTTP status of an answer with this code.
            pub fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }
        }
    };
}

error_codes! {
    /// The body is not valid JSON.
    InvalidJson = ("invalid_json", 400),
    /// The body could not be read.
    InvalidBody = ("invalid_body", 400),
    /// A query parameter is unknown or malformed.
    InvalidQuery = ("invalid_query", 400),
    /// The `cursor` does not come from a previous page.
    InvalidCursor = ("invalid_cursor", 400),
    /// `Idempotency-Key` is not 1-200 visible ASCII characters.
    InvalidIdempotencyKey = ("invalid_idempotency_key", 400),
    /// `Last-Event-ID` is not a sequence number.
    InvalidLastEventId = ("invalid_last_event_id", 400),
    /// A credential in the query string (keys go only in the `Authorization` header).
    KeyInQuery = ("key_in_query", 400),
    /// No, malformed, unknown, revoked or expired key or token.
    Unauthorized = ("unauthorized", 401),
    /// The caller's role does not allow this.
    Forbidden = ("forbidden", 403),
    /// A JWT without the configured role claim (and no default role).
    JwtRoleMissing = ("jwt_role_missing", 403),
    /// A JWT whose role is not admin, member or viewer (or admin, not allowed).
    JwtRoleInvalid = ("jwt_role_invalid", 403),
    /// A JWT without the configured tenant claim.
    JwtTenantMissing = ("jwt_tenant_missing", 403),
    /// A JWT whose tenant is not a valid tenant name.
    JwtTenantInvalid = ("jwt_tenant_invalid", 403),
    /// No such evaluation, key or route (or another tenant's).
    NotFound = ("not_found", 404),
    /// The state of the resource does not allow this.
    Conflict = ("conflict", 409),
    /// The evaluation already ended.
    AlreadyFinished = ("already_finished", 409),
    /// The evaluation has not ended yet (its whole output exists once it has; follow it live
    /// on `/events`).
    NotFinished = ("not_finished", 409),
    /// The `Idempotency-Key` was used for a different request.
    IdempotencyConflict = ("idempotency_conflict", 409),
    /// The body is larger than the server accepts.
    PayloadTooLarge = ("payload_too_large", 413),
    /// The body is not `Content-Type: application/json`.
    UnsupportedMediaType = ("unsupported_media_type", 415),
    /// The body has unknown, missing or mistyped fields.
    InvalidRequest = ("invalid_request", 422),
    /// At least one item of a batch is invalid (each in `details.errors`), or the batch's size
    /// is out of bounds.
    InvalidBatch = ("invalid_batch", 422),
    /// The program does not parse (`details`: `file`, `line`, `column`).
    SyntaxError = ("syntax_error", 422),
    UnsupportedLanguage = ("unsupported_language", 422),
    /// Give `code`, or `files` with an optional `entrypoint`; paths relative, unique, inside.
    InvalidProgram = ("invalid_program", 422),
    EmptyCode = ("empty_code", 422),
    /// A limit above the operator's (or the tenant's) maximum.
    LimitExceeded = ("limit_exceeded", 422),
    /// A limit of zero or otherwise unusable.
    InvalidLimit = ("invalid_limit", 422),
    StdinTooLarge = ("stdin_too_large", 422),
    /// The `Range` asks for bytes the output does not have (`Content-Range: bytes */SIZE`).
    RangeNotSatisfiable = ("range_not_satisfiable", 416),
    InvalidPriority = ("invalid_priority", 422),
    InvalidLabels = ("invalid_labels", 422),
    InvalidTenant = ("invalid_tenant", 422),
    InvalidRole = ("invalid_role", 422),
    InvalidName = ("invalid_name", 422),
    InvalidExpiry = ("invalid_expiry", 422),
    /// This key's submission rate is used up (`Retry-After`).
    RateLimited = ("rate_limited", 429),
    /// The tenant's queued cap is reached (`Retry-After`).
    QuotaExceeded = ("quota_exceeded", 429),
    /// The server failed; the request id finds the cause in its log.
    Internal = ("internal", 500),
    /// The global queue cap is reached (`Retry-After`).
    QueueFull = ("queue_full", 503),
    /// The store does not answer (`/readyz`).
    NotReady = ("not_ready", 503),
    /// The store is busy or unreachable for a moment; the same request may succeed later
    /// (`Retry-After`).
    Unavailable = ("unavailable", 503),
    /// The external identity provider's keys cannot be fetched.
    JwksUnavailable = ("jwks_unavailable", 503),
}

impl ErrorCode {
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: code (and so status), message, optional details and `Retry-After`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds, sent as `Retry-After` (rate limits, full queues, a busy store).
    pub retry_after: Option<u64>,
    /// For `internal`: what really failed, for the server's log. Never sent.
    pub cause: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            cause: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unauthorized, message)
    }

    pub fn invalid_query(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidQuery, message)
    }

    /// A failure of the server: the answer says only "internal error"; `cause` goes to the log.
    pub fn internal(cause: impl fmt::Display) -> ApiError {
        ApiError {
            cause: Some(cause.to_string()),
            ..ApiError::new(ErrorCode::Internal, "internal error")
        }
    }

    /// A moment of unavailability (the store is busy or unreachable): retry after `secs`.
    pub fn unavailable(cause: impl fmt::Display, secs: u64) -> ApiError {
        ApiError {
            cause: Some(cause.to_string()),
            ..ApiError::new(
                ErrorCode::Unavailable,
                "the service is briefly unavailable; retry",
            )
            .with_retry_after(secs)
        }
    }

    /// The body of the answer.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorInfo {
                code: self.code,
                message: self.message.clone(),
                details: self.details.clone(),
            },
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> ApiError {
        let code = match &e {
            ValidationError::UnsupportedLanguage(_) => ErrorCode::UnsupportedLanguage,
            ValidationError::ProgramShape | ValidationError::Program(_) => {
                ErrorCode::InvalidProgram
            }
            ValidationError::EmptyCode => ErrorCode::EmptyCode,
            ValidationError::Syntax(_) => ErrorCode::SyntaxError,
            ValidationError::Limit(l) => return ApiError::from(l.clone()),
            ValidationError::StdinTooLarge(_) => ErrorCode::StdinTooLarge,
            ValidationError::Priority(_) => ErrorCode::InvalidPriority,
            ValidationError::Labels(_) => ErrorCode::InvalidLabels,
        };
        let mut err = ApiError::new(code, e.to_string());
        if let ValidationError::Syntax(s) = &e {
            err.details = Some(json!({"file": s.file, "line": s.line, "column": s.column}));
        }
        err
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> ApiError {
        let code = match &e {
            LimitError::AboveMaximum { .. } => ErrorCode::LimitExceeded,
            LimitError::Zero { .. } | LimitError::Invalid { .. } => ErrorCode::InvalidLimit,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<ProgramError> for ApiError {
    fn from(e: ProgramError) -> ApiError {
        ApiError::from(ValidationError::Program(e))
    }
}

/// The body of every error answer: `{"error": {"code", "message", "details"}}`.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, PartialEq)]
pub struct ErrorInfo {
    /// Stable, machine-readable (e.g. `syntax_error`, `limit_exceeded`, `not_found`).
    pub code: ErrorCode,
    pub message: String,
    /// More about the error, by code: `syntax_error` `{file, line, column}`; `invalid_batch`
    /// `{errors: [{index, code, message, details}]}`; `rate_limited` `{rate_per_minute, burst,
    /// requested, retry_after_ms}`; `quota_exceeded` `{limit, queued, requested}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_domain::{Draft, LimitOverrides, LimitPolicy, ProgramSource};

    #[test]
    fn codes_are_unique_snake_case_with_error_statuses() {
        let mut seen = std::collections::BTreeSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "duplicate {c}");
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert_eq!(ErrorCode::parse(c.as_str()), Some(*c));
            assert!((400..600).contains(&c.status()), "{c}");
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }

    #[test]
    fn validation_errors_map_to_their_codes() {
        let p = LimitPolicy::default();
        let draft = |code: &str| Draft {
            language: "python".into(),
            program: Some(ProgramSource::Code(code.into())),
            stdin: None,
            limits: None,
            priority: None,
            labels: None,
        };
        let code = |d: Draft| ApiError::from(d.validate(&p).unwrap_err());
        let e = code(draft("def f(:\n"));
        assert_eq!((e.code, e.status()), (ErrorCode::SyntaxError, 422));
        assert_eq!(e.details.as_ref().unwrap()["line"], 1);
        assert_eq!(code(draft(" ")).code, ErrorCode::EmptyCode);
        let big = Draft {
            limits: Some(LimitOverrides {
                memory_bytes: Some(1 << 40),
                ..Default::default()
            }),
            ..draft("print(1)")
        };
        assert_eq!(code(big).code, ErrorCode::LimitExceeded);
        let zero = Draft {
            limits: Some(LimitOverrides {
                pids: Some(0),
                ..Default::default()
            }),
            ..draft("print(1)")
        };
        assert_eq!(code(zero).code, ErrorCode::InvalidLimit);
    }

    #[test]
    fn bodies_carry_code_message_and_details_but_never_the_cause() {
        let e = ApiError::internal("disk on fire");
        let body = serde_json::to_value(e.body()).unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": "internal", "message": "internal error"}})
        );
        assert_eq!(e.cause.as_deref(), Some("disk on fire"));
        let e = ApiError::unavailable("busy", 1);
        assert_eq!((e.status(), e.retry_after), (503, Some(1)));
    }
}
