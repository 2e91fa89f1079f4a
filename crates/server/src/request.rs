//! Around every request: a fresh request id (a client's `X-Request-Id` is never trusted), in
//! the request's extensions for the audit log, in the answer's `X-Request-Id`, and on a tracing
//! span that covers everything the request does.

use assay_api::REQUEST_ID_HEADER;
use assay_service::RequestMeta;
use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::net::SocketAddr;
use tracing::Instrument;

/// A new request id: `req_` and 32 hex digits.
pub fn new_request_id() -> String {
    format!("req_{}", uuid::Uuid::new_v4().simple())
}

/// Middleware around the whole app.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = new_request_id();
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string());
    // The path only: a query string may hold anything (keys are refused there, but are not
    // to be logged on the way).
    let span = tracing::info_span!(
        "http.request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    req.extensions_mut().insert(RequestMeta {
        request_id: id.clone(),
        source,
    });
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}
