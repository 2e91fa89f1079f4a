//! `assay-server`: the HTTP API. The only crate that knows HTTP.
//!
//! Routes (all `/v1` routes need `Authorization: Bearer <key>`):
//! `POST /v1/evaluations[?wait=S]`, `POST /v1/evaluations/batch`, `GET /v1/evaluations`,
//! `GET /v1/evaluations/{id}`, `POST /v1/evaluations/{id}/cancel`,
//! `GET /v1/evaluations/{id}/events` (SSE), `POST /v1/evaluations/{id}/requeue`,
//! `GET /v1/queue`, `GET /v1/dead-letters`, `POST /v1/keys`, `GET /v1/keys`,
//! `DELETE /v1/keys/{id}`, `GET /v1/me`, `/healthz`, `/readyz`, `/openapi.json`.
//!
//! Every key belongs to a tenant and has a role (see [`Caller`]); a tenant sees only its
//! own evaluations, and another tenant's is a 404 on every route.
#![forbid(unsafe_code)]

mod api;
mod auth;
pub mod error;
mod extract;
pub mod keys;
pub mod settings;
mod sse;
pub mod view;

use assay_domain::{LimitPolicy, RetryPolicy};
use assay_store::Store;
use assay_store::bus::LocalBus;
use axum::Router;
use std::sync::Arc;

pub use api::ApiDoc;
pub use auth::{Caller, bootstrap_admin_key, generate_key, hash_key};
pub use keys::{InvalidKey, new_key, parse_role, validate_key_name, validate_tenant};

/// Largest request body accepted (a batch of 1000 programs fits; one program is capped lower by
/// validation).
pub const MAX_BODY_BYTES: usize = 32 << 20;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub bus: LocalBus,
    pub limits: LimitPolicy,
    pub retry: RetryPolicy,
    /// Operator settings (quotas, external identity, HTTP).
    pub settings: Arc<settings::Settings>,
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
