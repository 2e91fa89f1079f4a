//! `assay-server`: the HTTP API. The only crate that knows HTTP.
//!
//! Routes (all `/v1` routes need `Authorization: Bearer <key>`):
//! `POST /v1/evaluations[?wait=S]`, `POST /v1/evaluations/batch`, `GET /v1/evaluations`,
//! `GET /v1/evaluations/{id}`, `POST /v1/evaluations/{id}/cancel`,
//! `GET /v1/evaluations/{id}/events` (SSE), `POST /v1/evaluations/{id}/requeue`,
//! `GET /v1/queue`, `GET /v1/dead-letters`, `/healthz`, `/readyz`, `/openapi.json`.
#![forbid(unsafe_code)]

mod api;
mod auth;
pub mod error;
mod extract;
mod sse;
pub mod view;

use assay_domain::{LimitPolicy, RetryPolicy};
use assay_store::Store;
use assay_store::bus::LocalBus;
use axum::Router;
use std::sync::Arc;

pub use api::ApiDoc;
pub use auth::{bootstrap_admin_key, generate_key, hash_key};

/// Largest request body accepted (a batch of 1000 programs fits; one program is capped lower by
/// validation).
pub const MAX_BODY_BYTES: usize = 32 << 20;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub bus: LocalBus,
    pub limits: LimitPolicy,
    pub retry: RetryPolicy,
}

/// The whole API as an axum router.
pub fn router(state: AppState) -> Router {
    api::router(state)
}

/// The OpenAPI document, as committed in `docs/openapi.json`.
pub fn openapi_json() -> String {
    use utoipa::OpenApi;
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .expect("OpenAPI serialises");
    s.push('\n');
    s
}
