//! `assay-server`: the HTTP API. The only crate that knows HTTP.
//!
//! Routes (all `/v1` routes need `Authorization: Bearer <key>`, or a JWT of the configured
//! issuer, see [`jwt`]):
//! `POST /v1/evaluations[?wait=S]`, `POST /v1/evaluations/batch`, `GET /v1/evaluations`,
//! `GET /v1/evaluations/{id}`, `POST /v1/evaluations/{id}/cancel`,
//! `GET /v1/evaluations/{id}/events` (SSE), `POST /v1/evaluations/{id}/requeue`,
//! `GET /v1/queue`, `GET /v1/dead-letters`, `POST /v1/keys`, `GET /v1/keys`,
//! `DELETE /v1/keys/{id}`, `GET /v1/me`, `GET /v1/audit`, `/healthz`, `/readyz`, `/openapi.json`.
//!
//! Every key belongs to a tenant and has a role (see [`Caller`]); a tenant sees only its
//! own evaluations, and another tenant's is a 404 on every route.
#![forbid(unsafe_code)]

mod api;
pub mod audit;
mod auth;
pub mod error;
mod extract;
pub mod http;
pub mod jwt;
pub mod keys;
pub mod quota;
pub mod settings;
mod sse;
pub mod view;

use assay_domain::{LimitPolicy, RetryPolicy};
use assay_store::Store;
use assay_store::bus::LocalBus;
use axum::Router;
use std::sync::Arc;

pub use api::ApiDoc;
pub use auth::{
    Caller, bootstrap_admin_key, generate_key, hash_key, install_operator_admin_key,
    valid_operator_key,
};
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
    /// Submission rate buckets per key and the queue-cap admission lock (`settings.quotas`).
    pub quota: quota::QuotaGate,
    /// External identity: set when `settings.jwt` is (see [`jwt::JwtVerifier::new`]).
    pub jwt: Option<Arc<jwt::JwtVerifier>>,
}

/// The whole API as an axum router.
pub fn router(state: AppState) -> Router {
    let http = state.settings.http.clone();
    // Outermost: every answer (CORS preflights included) carries its `X-Request-Id`.
    http::harden(api::router(state), &http).layer(axum::middleware::from_fn(audit::request_id))
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
