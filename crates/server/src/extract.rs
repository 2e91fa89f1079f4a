//! Reading requests: JSON bodies and query strings whose failures are API errors with stable
//! codes, and the headers the API defines.

use crate::error::HttpError;
use assay_api::{ApiError, ErrorCode, IDEMPOTENCY_KEY_HEADER, MAX_BODY_BYTES, MAX_IDEMPOTENCY_KEY};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Query, Request};
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

/// A JSON body.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(HttpError(json_error(rejection))),
        }
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            ErrorCode::InvalidJson,
            format!("malformed JSON: {}", source_text(&e)),
        ),
        JsonRejection::JsonDataError(e) => {
            ApiError::new(ErrorCode::InvalidRequest, source_text(&e))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body larger than {MAX_BODY_BYTES} bytes"),
            )
        }
        other => ApiError::new(ErrorCode::InvalidBody, other.body_text()),
    }
}

/// The body of a request whose body failed to read, as the error it is.
pub fn body<T>(b: Result<ApiJson<T>, HttpError>) -> Result<T, ApiError> {
    b.map(|ApiJson(v)| v).map_err(|HttpError(e)| e)
}

/// serde's message without axum's prefix ("Failed to deserialize the JSON body into the
/// target type: ").
fn source_text(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    msg
}

/// Query parameters; unknown or malformed ones are `invalid_query`.
pub fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::invalid_query(e.body_text()))
}

/// The `Idempotency-Key` header: 1-200 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidIdempotencyKey,
                "Idempotency-Key must be 1-200 visible ASCII characters",
            )
        })?;
    Ok(Some(s.to_string()))
}

/// The `Last-Event-ID` header: the sequence number to resume after (0 without it).
pub fn last_event_id(headers: &HeaderMap) -> Result<i64, ApiError> {
    let Some(v) = headers.get("last-event-id") else {
        return Ok(0);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidLastEventId,
                "Last-Event-ID must be a sequence number",
            )
        })
}
