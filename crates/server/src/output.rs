//! `GET /v1/evaluations/{id}/output/{stream}`: one whole output stream as plain bytes, with
//! single byte ranges (RFC 9110): a download of a program's output however large, and a way to
//! page through it.

use crate::error::HttpError;
use crate::state::AppState;
use assay_api::{ApiError, ErrorBody, ErrorCode};
use assay_domain::OutputStream;
use assay_service::Context;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::ops::Range;

/// What a `Range` header asks of a body of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    /// No `Range`, one that does not parse, or several ranges: the whole body (a server may
    /// ignore a `Range`; several would need a multipart body).
    Whole,
    /// One satisfiable range, `[start, end)`.
    Part(Range<u64>),
    /// A range the body does not have: 416.
    Unsatisfiable,
}

fn wanted(range: Option<&HeaderValue>, size: u64) -> Wanted {
    let Some(Ok(parsed)) = range
        .and_then(|v| v.to_str().ok())
        .map(http_range_header::parse_range_header)
    else {
        return Wanted::Whole;
    };
    if size == 0 {
        // No byte to start at (the crate would answer 0-0 here).
        return Wanted::Unsatisfiable;
    }
    match parsed.validate(size) {
        Ok(ranges) => match ranges.as_slice() {
            [one] => Wanted::Part(*one.start()..one.end() + 1),
            _ => Wanted::Whole,
        },
        Err(_) => Wanted::Unsatisfiable,
    }
}

fn stream_name(s: &str) -> Result<OutputStream, ApiError> {
    match s {
        "stdout" => Ok(OutputStream::Stdout),
        "stderr" => Ok(OutputStream::Stderr),
        _ => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no output stream {s:?}: stdout or stderr"),
        )),
    }
}

/// One whole output stream of a finished evaluation, byte for byte as the program wrote it (up to the output limit), even when the evaluation shows only its first 64 KiB (`stdout_partial`). Single byte ranges (`Range: bytes=0-1023`, `bytes=-1024`) are answered with 206. Another tenant's evaluation is a 404.
#[utoipa::path(get, path = "/v1/evaluations/{id}/output/{stream}", operation_id = "get_evaluation_output", tag = "evaluations",
    params(("id" = String, Path, description = "Evaluation id"),
           ("stream" = String, Path, description = "`stdout` or `stderr`"),
           ("Range" = Option<String>, Header, description = "One byte range (`bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX`); several ranges or a malformed header get the whole stream")),
    responses(
        (status = 200, description = "The whole stream", content_type = "text/plain", body = String,
            headers(("Accept-Ranges" = String, description = "`bytes`"),
                    ("ETag" = Option<String>, description = "The stream's SHA-256, when it is in the blob store"))),
        (status = 206, description = "The range asked for", content_type = "text/plain", body = String,
            headers(("Content-Range" = String, description = "`bytes START-END/SIZE`"))),
        (status = 404, description = "No such evaluation (or another tenant's), or no such stream", body = ErrorBody),
        (status = 409, description = "`not_finished`: the evaluation has not ended (follow it on `/events`)", body = ErrorBody),
        (status = 416, description = "`range_not_satisfiable`: the stream has no byte in the range", body = ErrorBody,
            headers(("Content-Range" = String, description = "`bytes */SIZE`"))),
    ))]
pub(crate) async fn get_output(
    State(st): State<AppState>,
    Extension(ctx): Extension<Context>,
    Path((id, stream)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let body = st.service.output(&ctx, &id, stream_name(&stream)).await?;
    let size = body.size;
    let etag = body
        .sha256
        .as_ref()
        .and_then(|h| HeaderValue::from_str(&format!("\"{h}\"")).ok());
    let (status, range) = match wanted(headers.get(header::RANGE), size) {
        Wanted::Whole => (StatusCode::OK, None),
        Wanted::Part(r) => (StatusCode::PARTIAL_CONTENT, Some(r)),
        Wanted::Unsatisfiable => {
            let mut resp = HttpError(ApiError::new(
                ErrorCode::RangeNotSatisfiable,
                format!("the {stream} of {id} has {size} bytes: the range is outside them"),
            ))
            .into_response();
            resp.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).map_err(ApiError::internal)?,
            );
            return Ok(resp);
        }
    };
    let length = range.as_ref().map_or(size, |r| r.end - r.start);
    let content_range = range
        .as_ref()
        .map(|r| format!("bytes {}-{}/{size}", r.start, r.end - 1));
    let bytes = body.read(range).await?;
    let mut resp = Body::from_stream(bytes).into_response();
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(tag) = etag {
        h.insert(header::ETAG, tag);
    }
    if let Some(cr) = content_range {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&cr).map_err(ApiError::internal)?,
        );
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(range: &str, size: u64) -> Wanted {
        wanted(Some(&HeaderValue::from_str(range).unwrap()), size)
    }

    #[test]
    fn ranges_read_as_rfc_9110_says() {
        assert_eq!(wanted(None, 10), Wanted::Whole);
        assert_eq!(w("bytes=0-3", 10), Wanted::Part(0..4));
        assert_eq!(w("bytes=4-", 10), Wanted::Part(4..10));
        assert_eq!(w("bytes=-3", 10), Wanted::Part(7..10));
        assert_eq!(w("bytes=5-100", 10), Wanted::Part(5..10), "cut at the end");
        assert_eq!(w("bytes=10-", 10), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=0-", 0), Wanted::Unsatisfiable, "an empty body");
        assert_eq!(w("bytes=-5", 0), Wanted::Unsatisfiable, "an empty body");
        assert_eq!(w("bytes=3-1", 10), Wanted::Unsatisfiable, "backwards");
        assert_eq!(w("bytes=0-1,4-5", 10), Wanted::Whole, "several: the whole");
        assert_eq!(w("lines=1-2", 10), Wanted::Whole, "not bytes: ignored");
        assert_eq!(w("bytes=x", 10), Wanted::Whole, "malformed: ignored");
    }

    #[test]
    fn only_stdout_and_stderr_are_streams() {
        assert_eq!(stream_name("stdout").unwrap(), OutputStream::Stdout);
        assert_eq!(stream_name("stderr").unwrap(), OutputStream::Stderr);
        assert_eq!(stream_name("stdin").unwrap_err().status(), 404);
    }
}
