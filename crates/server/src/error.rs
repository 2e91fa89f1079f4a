//! Rendering the API's errors: status from the code, the JSON body, `Retry-After`,
//! `WWW-Authenticate` on 401. An internal error's cause goes to the log with the request's span,
//! never into the answer.

use assay_api::{ApiError, ErrorCode};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An [`ApiError`] as an HTTP answer.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let e = self.0;
        if let Some(cause) = &e.cause {
            match e.code {
                ErrorCode::Internal => tracing::error!(error = %cause, "internal error"),
                _ => tracing::warn!(error = %cause, code = %e.code, "refused"),
            }
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(e.body())).into_response();
        if let Some(secs) = e.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
